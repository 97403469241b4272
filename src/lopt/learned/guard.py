"""What every learned optimizer's update is guarded against: ``guarded`` wraps an
architecture's optax transformation in these checks, each a small function of its own.

- Parameters must be real floating point (``check_float_params``): an integer leaf would
  otherwise get a zero update, silently.
- ``horizon=`` must be ``None`` or a step count >= 0, 0 meaning unknown (``check_horizon``).
  Only a concrete value can be checked: a traced one (under ``jit``) is not, and a negative
  traced horizon reads as unknown (``features.run_fraction``).
- Statistics are computed in float32 whatever the parameters' dtype, and each update is cast
  back to its parameter's dtype (``nonempty_float32``, ``with_empty``): in float16 an ε of
  1e-8 is 0, and normalizing a zero tensor (a bias at its initial 0) by its RMS gives 0 · ∞.
- Empty tensors take no part in a step (``nonempty_float32``, ``with_empty``): their updates
  are empty, and they reach no statistic shared across tensors (a mean over zero entries is
  NaN; ``rnn-mlp``'s DeepSets channel would spread it to every tensor).
- A step whose gradient is finite but whose squares overflow float32 (``overflows``: the sum
  of a tensor's squared entries is not finite, as with an entry beyond ≈ 1.8·10¹⁹) is skipped
  as a whole: zero update, state unchanged (the step count included). Taken, it would leave
  an infinite second moment behind and with it steps far too small for the rest of the run,
  with nothing non-finite for ``optax.apply_if_finite`` to catch. A gradient holding a NaN or
  an infinity is not skipped here: its update is NaN, for ``optax.apply_if_finite`` to catch
  (docs/learned.md).

The PyTorch front end applies the same rules (``lopt.torch.checks``).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.errors import LoptError, say_once
from lopt.learned.base import check_update_args


def check_float_params(kind: str, params) -> None:
    """Raise, naming the leaf and its dtype, unless every leaf of ``params`` is real floating
    point (dtypes are static: this runs once per trace)."""
    for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(p)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise LoptError(
                f"the {kind!r} learned optimizer needs real floating-point parameters; the one "
                f"at {jax.tree_util.keystr(path) or 'the root'} is {dtype} "
                f"(shape {tuple(jnp.shape(p))})"
            )


def check_horizon(horizon) -> None:
    """Raise unless ``horizon`` is ``None``, a traced value, or a number >= 0."""
    if horizon is None or isinstance(horizon, jax.core.Tracer):
        return
    value = np.asarray(horizon)
    number = value.shape == () and value.dtype.kind in "iuf"
    if isinstance(horizon, bool) or not number or not value >= 0:
        shown = horizon if isinstance(horizon, numbers.Number) else value.tolist()
        raise LoptError(
            f"invalid value for horizon: {shown!r} (allowed: the run's total number of steps, "
            "a number >= 0, 0 or None when unknown)"
        )


def nonempty_float32(tree):
    """``tree`` with each non-empty leaf in float32 and each empty leaf replaced by ``None``
    (no leaf): what the architectures compute on."""
    return jax.tree.map(lambda x: None if jnp.size(x) == 0 else jnp.asarray(x, jnp.float32), tree)


def with_empty(updates, params):
    """The updates of every leaf of ``params`` from ``updates``, those of its non-empty leaves in
    order: each cast to its parameter's dtype, and an empty update for each empty leaf."""
    computed = iter(jax.tree.leaves(updates))
    leaves, treedef = jax.tree.flatten(params)
    full = [
        jnp.zeros(jnp.shape(p), jnp.result_type(p))
        if jnp.size(p) == 0
        else next(computed).astype(jnp.result_type(p))
        for p in leaves
    ]
    return jax.tree.unflatten(treedef, full)


def overflows(grads) -> jax.Array:
    """Whether every entry of ``grads`` (float32) is finite but the sum of some tensor's
    squared entries is not: a boolean scalar. A normal step costs one reduction over the
    gradients (the sums of squares, all finite); only when one is not are the entries checked
    (a ``lax.cond``: under ``vmap`` with per-example gradients both run)."""
    leaves = jax.tree.leaves(grads)
    squares = jnp.all(jnp.stack([jnp.isfinite(jnp.sum(jnp.square(g))) for g in leaves]))
    return jax.lax.cond(
        squares,
        lambda: ~squares,  # False, typed as the input is (varying across devices under shard_map)
        lambda: jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in leaves])),
    )


def guarded(
    kind: str,
    optimizer: optax.GradientTransformationExtraArgs,
    reads_params: bool = True,
    reads_horizon: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` (architecture ``kind``) behind this module's checks: it sees the non-empty
    leaves only, in float32 (its updates must be float32 too), and its steps with overflowing
    squared gradients are skipped. With ``reads_params=False`` (an optimizer that does not read
    them) ``update`` may be called without parameters; the gradients' dtypes and shapes stand
    in for theirs. With ``reads_horizon`` (an optimizer that reads how far the run has gone),
    an ``update`` traced without ``horizon=`` says once that it should be given.

    The skip is a ``lax.cond``, so a normal step costs one reduction over the gradients more
    than the bare optimizer's (``overflows``); under ``vmap`` with a per-example decision both
    branches run and the results are selected (a pass over the state more)."""

    def init(params):
        check_float_params(kind, params)
        return optimizer.init(nonempty_float32(params))

    def update(grads, state, params=None, **extra):
        if reads_params or params is not None:
            check_update_args(kind, grads, params)
        reference = grads if params is None else params
        check_float_params(kind, reference)
        check_horizon(extra.get("horizon"))
        if reads_horizon and extra.get("horizon") is None:
            say_once(
                f"the {kind!r} learned optimizer reads how far the run has gone, and was not told "
                "the run's length: give it (lopt.pretrained(..., total_steps=N), or horizon=N to "
                "every update) for the updates it was meta-trained to make"
            )
        grads32, params32 = nonempty_float32(grads), nonempty_float32(params)
        if not jax.tree.leaves(grads32):  # nothing to update
            return with_empty([], reference), state
        updates, state = jax.lax.cond(
            overflows(grads32),
            lambda: (jax.tree.map(jnp.zeros_like, grads32), state),
            lambda: optimizer.update(grads32, state, params32, **extra),
        )
        return with_empty(updates, reference), state

    return optax.GradientTransformationExtraArgs(init, update)
