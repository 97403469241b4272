"""Comparisons of results that separately compiled XLA programs computed (other jit calls,
processes, device counts, a program read from the persistent compilation cache): XLA fuses and
orders reductions as it likes, so their floats agree to rounding, not bit for bit. Everything
else (integers, strings, keys, shapes, dtypes) must be equal."""

from __future__ import annotations

import jax
import numpy as np

# θ of a tiny meta-training run (tiny_configs.TINY_META_TRAIN: learned Adam's four
# log-hyperparameters, 2 to 20 in size) after about ten outer steps, in programs compiled apart
# (a resumed run, Ray workers): differences up to 1e-5 seen, where one outer step more or less
# moves θ by 1e-2 to 1e-1.
TINY_THETA = {"rtol": 1e-5, "atol": 1e-4}
# Arrays of a tiny self-training run (a population of small MLP θ, their outer optimizers'
# moments, scores) likewise: one outer step more or less moves every θ array of the population
# by 5 to 60 times this.
TINY_POPULATION = {"rtol": 1e-4, "atol_of_max": 1e-4}


def assert_trees_close(
    actual, expected, *, rtol: float, atol: float = 0.0, atol_of_max: float = 0.0
) -> None:
    """Same pytree structure, leaf dtypes and shapes; float leaves within ``rtol`` and
    ``atol + atol_of_max × the leaf's largest finite |expected| entry`` (entries near 0 lose
    relative precision to cancellation), other leaves equal."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(expected)
    assert jax.tree.structure(actual) == treedef
    for (path, b), a in zip(leaves, jax.tree.leaves(actual), strict=True):
        path = jax.tree_util.keystr(path)
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        if np.issubdtype(b.dtype, np.inexact):
            scale = np.abs(b[np.isfinite(b)]).max(initial=0.0)
            np.testing.assert_allclose(
                a, b, rtol=rtol, atol=atol + atol_of_max * scale, err_msg=path
            )
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)


def assert_records_close(actual, expected, *, rtol: float, atol: float = 0.0, path="") -> None:
    """JSON-like data: dicts with the same keys, lists of the same length, floats within
    ``rtol``/``atol`` (NaN matches NaN), anything else (ints, strings, bools) equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_records_close(
                actual[key], expected[key], rtol=rtol, atol=atol, path=f"{path}.{key}"
            )
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(expected), path
        for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
            assert_records_close(a, b, rtol=rtol, atol=atol, path=f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float), path
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=path)
    else:
        assert actual == expected, path
