"""Run configs: the shipped ones run on their own, the recipe in reproduce/ runs in the order
its README gives, and the shipped optimizers' files name that recipe."""

import importlib.util
import pathlib
import re
import shlex
import tomllib

import pytest

import lopt
from lopt.cli import build_parser
from lopt.configs import COMMANDS, command_of, config_path, shipped_config_names
from lopt.errors import LoptError
from lopt.meta import MetaTrainConfig
from lopt.population import PopulationConfig
from lopt.pretrained import pretrained_path
from lopt.storage.files import read_metadata

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPRODUCE = ROOT / "reproduce"
CONFIG_CLASS = {"meta-train": MetaTrainConfig, "self-train": PopulationConfig}


def _commands(markdown: str) -> list[list[str]]:
    """The ``lopt`` commands of a markdown text's bash blocks, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.startswith("lopt ")]


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _config_file(config: str) -> pathlib.Path:
    """What a command's ``--config`` names: a shipped config, or a file under the repository."""
    return ROOT / config_path(config)  # a shipped config's path is absolute


@pytest.mark.parametrize("name", shipped_config_names())
def test_every_shipped_config_is_valid_and_runs_on_its_own(name):
    """Package data: a config that needs no earlier run (an ``init_from`` naming ``runs/...``
    would mean nothing in an installed package)."""
    path = config_path(name)
    config = CONFIG_CLASS[command_of(path)].from_file(path)
    assert config.outer_steps > 0
    assert getattr(config, "init_from", None) is None, f"{name} continues another run"


def test_the_cli_help_lists_the_shipped_configs_of_each_command(capsys):
    assert set(shipped_config_names()) == {"mlp-from-scratch", "self-train", "self-train-slow"}
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        for name in shipped_config_names(command):
            assert name in help_text, (command, name)
        others = set(shipped_config_names()) - set(shipped_config_names(command))
        assert not any(re.search(rf"\b{n}\b(?!-)", help_text) for n in others), command


def test_config_paths_and_names():
    assert config_path("reproduce/configs/small-stage1.json") == pathlib.Path(
        "reproduce/configs/small-stage1.json"
    )
    with pytest.raises(LoptError, match="unknown shipped config 'small-stage1'.*reproduce"):
        config_path("small-stage1")
    with pytest.raises(LoptError, match="unknown command"):
        shipped_config_names("train")


def test_the_recipe_runs_in_the_order_of_reproduce_readme():
    """Every config in reproduce/configs is run by a command of reproduce/README.md (or by
    reproduce/fast.py), and every ``init_from`` it names is written by an earlier command."""
    commands = _commands((REPRODUCE / "README.md").read_text())
    written: list[str] = []
    run: set[str] = set()
    for argv in commands:
        config = _flag(argv, "--config")
        if config is not None:
            path = _config_file(config)
            cfg = CONFIG_CLASS[argv[1]].from_file(path)
            start = getattr(cfg, "init_from", None)
            if start is not None and start.startswith("runs/"):
                assert any(start == out or start.startswith(out + "/") for out in written), (
                    f"{config} starts from {start}, which no earlier command writes"
                )
            run.add(path.name)
        written.append(_flag(argv, "--out"))
    fast = (REPRODUCE / "fast.py").read_text()
    for path in sorted((REPRODUCE / "configs").glob("*.json")):
        assert path.name in run or path.name in fast, f"no command runs {path.name}"


@pytest.mark.parametrize("name", ["small-v11", "rnn-mlp-v6", "self-trained-v1"])
def test_the_shipped_optimizers_name_the_commands_of_reproduce_readme(name):
    info = read_metadata(pretrained_path(name))["info"]
    chain = info["produced_by"].split(" (")[0].split(" && ")
    readme = [shlex.join(argv) for argv in _commands((REPRODUCE / "README.md").read_text())]
    for command in chain:
        assert shlex.join(shlex.split(command)) in readme, command
        config = _flag(shlex.split(command), "--config")
        assert config is None or _config_file(config).exists(), config


def test_the_version_is_the_one_pyproject_declares():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert lopt.__version__ == pyproject["project"]["version"]


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe", REPRODUCE / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_script_runs_the_readme_commands_in_order(tmp_path, monkeypatch, capsys):
    recipe = _recipe()
    small = recipe.commands("small-v11")
    assert small[0][:2] == ["lopt", "meta-train"] and "small-stage1.json" in small[0][3]
    assert small[-1][:2] == ["lopt", "average"] and small[-1][-1] == "runs/small-stage12/v11"
    rnn = recipe.commands("rnn-mlp-v6")
    assert rnn[: len(small)] == small and rnn[-1][-1] == "runs/rnn-mlp-stage6/v6"
    readme = [shlex.join(argv) for argv in _commands((REPRODUCE / "README.md").read_text())]
    positions = [readme.index(shlex.join(step)) for step in rnn]
    assert positions == sorted(positions)  # the README's order
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "small-stage5").mkdir(parents=True)
    (tmp_path / "runs" / "small-stage5" / "average.safetensors").write_bytes(b"")
    assert recipe.main(["small-v11", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(small)
    assert sum(line.startswith("done already:") for line in printed) == 1
