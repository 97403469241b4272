"""The README's quickstarts run as written (the PyTorch one for fewer steps), and its cheap
commands parse; the long ones (meta-training, evaluation, self-training) are run by their own
tests on tiny configs (test_cli, test_meta, test_population)."""

import pathlib
import re
import shlex

import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_jax_quickstart_runs_as_written():
    jax_block = next(b for b in _blocks("python") if "lopt.pretrained" in b)
    scope: dict = {}
    exec(compile(jax_block, "README.md (JAX quickstart)", "exec"), scope)
    assert float(scope["loss"]) < 0.1 * float(
        scope["loss_fn"](scope["jnp"].zeros(8), *_data(scope))
    )


def _data(scope):
    return scope["x"][:400], scope["y"][:400]


def test_the_pytorch_quickstart_runs():
    pytest.importorskip("torch")
    torch_block = next(b for b in _blocks("python") if "LearnedOptimizer" in b)
    assert "range(1000)" in torch_block
    scope: dict = {}
    shortened = torch_block.replace("range(1000)", "range(30)")
    exec(compile(shortened, "README.md (PyTorch quickstart)", "exec"), scope)
    assert scope["optimizer"].state  # it stepped


def test_the_cli_commands_name_real_options():
    from lopt.cli import build_parser

    parser = build_parser()
    commands = [line.split("#")[0] for b in _blocks("bash") for line in b.splitlines()]
    lopt_commands = [shlex.split(c)[1:] for c in commands if c.startswith("lopt ")]
    assert lopt_commands
    for argv in lopt_commands:
        parser.parse_args(argv)  # exits (SystemExit) on an unknown verb or option
