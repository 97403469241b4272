"""The specifications (``lopt.specs``) are the one place where the learned optimizers' constants,
feature names, configs and θ shapes are written; JAX and PyTorch both build on them."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import lopt
from lopt.errors import LoptError
from lopt.learned import MLPOptimizer, RNNMLPOptimizer, build_architecture, load_theta
from lopt.specs import MLPSpec, RNNMLPSpec

SOURCE = Path(lopt.__file__).parent
SPECS = SOURCE / "specs"
CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _module_bindings(tree: ast.Module) -> set[str]:
    """UPPER_CASE names a module assigns at its top level, and its top-level feature-name
    functions (``*_feature_names``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.endswith("feature_names"):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name) and CONSTANT.match(name.id):
                    names.add(name.id)
    return names


def _bindings(tree: ast.Module) -> set[str]:
    """Every name a module binds by assignment anywhere (top level, class or function body),
    and its top-level functions."""
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_spec_constants_and_feature_names_are_assigned_once_in_specs():
    """Each constant and feature-name function or tuple of the specifications is assigned in
    exactly one module under ``src/lopt``, inside ``lopt/specs``: a re-declaration in the JAX or
    PyTorch code (or anywhere else) fails here."""
    trees = {path: ast.parse(path.read_text()) for path in sorted(SOURCE.rglob("*.py"))}
    declared = set()
    for path, tree in trees.items():
        if path.is_relative_to(SPECS):
            declared |= _module_bindings(tree)
    # the specifications hold the shared, the mlp and the rnn-mlp constants and names
    assert {
        "FEATURE_CLIP",
        "EPS",
        "LOSS_FEATURE_NAMES",
        "DISTANCE_D0",
        "NOMINAL_B1",
        "PER_PARAMETER_REFERENCE",
        "GRAD_RMS_DECAY",
        "MAX_RANK",
        "time_feature_names",
        "horizon_feature_names",
        "param_feature_names",
    } <= declared
    places = {name: [] for name in declared}
    for path, tree in trees.items():
        for name in _bindings(tree) & declared:
            places[name].append(path.relative_to(SOURCE).as_posix())
    wrong = {
        name: where
        for name, where in places.items()
        if len(where) != 1 or not where[0].startswith("specs/")
    }
    assert not wrong, f"assigned outside lopt/specs or more than once: {wrong}"


def test_bindings_see_a_redeclaration():
    """The scan above finds a constant assigned in a class or function body and a top-level
    feature-name function, so it cannot pass by missing them."""
    source = "class C:\n    EPS = 1.0\ndef f():\n    MAX_RANK = 2\ndef param_feature_names(): ..."
    assert {"EPS", "MAX_RANK", "param_feature_names"} <= _bindings(ast.parse(source))


def test_specs_import_neither_jax_nor_torch():
    code = "import sys, lopt.specs; print(sorted({'jax', 'torch'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "mlp"},
        {"kind": "mlp", "hidden": [4, 3], "with_loss_features": True, "nominal": False},
        {"kind": "mlp", "feature_normalization": "parameter", "with_horizon_feature": True},
        {"kind": "rnn-mlp"},
        {
            "kind": "rnn-mlp",
            "mlp_hidden": [4],
            "lstm_hidden": 3,
            "to_mlp": 2,
            "deepsets": 5,
            "mlp_loss_features": True,
            "with_horizon_feature": True,
            "horizon_thresholds": [0.5],
        },
    ],
)
def test_theta_shapes_are_the_jax_pytree_paths(config):
    """The specification's θ shapes, keyed by pytree path, are those of the JAX θ."""
    arch = build_architecture(config)
    theta = jax.eval_shape(arch.init_theta, jax.random.key(0))
    paths = jax.tree_util.tree_flatten_with_path(theta)[0]
    assert {jax.tree_util.keystr(p): x.shape for p, x in paths} == arch.theta_shapes()


@pytest.mark.parametrize("name", ["small-v11", "rnn-mlp-v6", "self-trained-v1"])
def test_shipped_files_load_bit_for_bit_in_both_frameworks(name):
    torch = pytest.importorskip("torch")
    import lopt.torch

    arch, theta, _ = load_theta(name)
    config, tensors = lopt.torch.load(name)
    spec = {"mlp": MLPSpec, "rnn-mlp": RNNMLPSpec}[arch.kind]
    assert isinstance(arch, spec) and isinstance(config, spec) and vars(arch) == vars(config)
    leaves = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]}
    assert set(leaves) == set(tensors) == set(arch.theta_shapes())
    for path, leaf in leaves.items():  # the same bytes read twice: bitwise
        assert torch.equal(tensors[path], torch.from_numpy(jax.device_get(leaf).copy()))


def test_problems_are_raised_by_each_framework():
    """A spec lists every problem of its config; JAX raises them as one LoptError."""
    found = MLPSpec(hidden=(), trust_ratio=0.0).problems()
    assert len(found) == 2 and "invalid hidden sizes for 'mlp'" in found[0]
    assert "invalid value for trust_ratio of 'mlp'" in found[1]
    with pytest.raises(LoptError, match="invalid hidden sizes .*; invalid value for trust_ratio"):
        MLPOptimizer(hidden=(), trust_ratio=0.0)
    assert RNNMLPSpec().problems() == [] and MLPSpec().problems() == []
    with pytest.raises(LoptError, match="horizon_thresholds \\[0.5\\] need with_horizon_feature"):
        RNNMLPOptimizer(horizon_thresholds=(0.5,))
