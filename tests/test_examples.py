"""The examples run end to end (shortened to a few steps) and print both optimizers' losses."""

import importlib.util
import math
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _run_example(name: str, monkeypatch, capsys) -> list[list[float]]:
    """Run ``examples/<name>.py``'s ``main`` for 200 steps; the printed train/test loss rows."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STEPS", 200)
    monkeypatch.setattr(sys, "argv", [name])
    module.main()
    out = capsys.readouterr().out
    assert "learned (small)" in out and "Adam (lr=0.001)" in out, out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    losses = [[float(x) for x in row[1:] if x != "/"] for row in rows]
    assert losses and all(len(row) == 4 and all(map(math.isfinite, row)) for row in losses), out
    return losses


def test_torch_digits(monkeypatch, capsys):
    pytest.importorskip("torch")
    losses = _run_example("torch_digits", monkeypatch, capsys)
    assert losses[-1][0] < losses[0][0]  # the learned optimizer lowered the training loss


def test_optax_equinox_digits(monkeypatch, capsys):
    losses = _run_example("optax_equinox_digits", monkeypatch, capsys)
    assert losses[-1][0] < losses[0][0]
