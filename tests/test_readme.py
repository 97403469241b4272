"""The README's quickstarts run as written (the PyTorch one for fewer steps); every ``lopt``
command in the README and docs parses, and every script they run exists. The long commands
(meta-training, full evaluations, self-training) are not run here: their verbs run on tiny
configs in test_cli, test_meta and test_population."""

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


def _doc_commands(prefix: str) -> list[tuple[str, str]]:
    """``(file, line)`` of every command starting with ``prefix`` in the docs' bash blocks."""
    root = pathlib.Path(__file__).parent.parent
    pages = [*sorted((root / "docs").glob("*.md")), root / "BENCHMARKS.md"]
    pages += [root / "README.md", root / "reproduce" / "README.md"]
    found = []
    for page in pages:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith(prefix):
                    found.append((page.name, line.strip()))
    return found


def test_every_lopt_command_in_the_docs_names_real_options():
    """The long commands (meta-training, full evaluations) are not run here; their verbs run in
    test_cli on tiny configs. Here each must parse: a renamed option or verb fails."""
    from lopt.cli import build_parser

    parser = build_parser()
    commands = _doc_commands("lopt ")
    assert len(commands) > 20
    for page, line in commands:
        try:
            parser.parse_args(shlex.split(line, comments=True)[1:])
        except SystemExit:
            pytest.fail(f"{page}: {line}")


def test_every_script_and_module_the_docs_run_exists():
    import importlib.util

    root = pathlib.Path(__file__).parent.parent
    commands = [shlex.split(line, comments=True)[1:] for _, line in _doc_commands("python ")]
    assert commands
    for argv in commands:
        if argv[0] == "-m":
            assert importlib.util.find_spec(argv[1]) is not None, argv[1]
        else:
            assert (root / argv[0]).is_file(), argv[0]
