"""Human-readable output of an evaluation: markdown report, rich tables, progress bar.

Everything here reads the JSON form of a result (``EvalResult.to_json()`` or a run directory's
``results.json``), so a finished run can be re-reported without re-running it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import pathlib
import time
from collections.abc import Callable, Iterator

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lopt.errors import LoptError
from lopt.tasks.registry import TASK_GROUPS

SUMMARY_COLUMNS = ("mean_curve", "median_curve", "mean_final", "median_final")
NORMALIZED_NOTE = (
    "Normalized test loss: 0 = best reference baseline (any Adam lr / NAdamW trial, any step), "
    "1 = initial loss; lower is better. `curve` = mean over evaluation points (primary), "
    "`final` = last point."
)


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr over ``total`` units of work; where stderr is not a
    terminal (a log file, a pipe), one plain line per unit instead, which a live bar cannot give.

    Yields ``start(description)``: marks the previous unit done and names the next one.
    """
    console = Console(stderr=True)
    if enabled and not console.is_terminal:
        began, count = time.perf_counter(), 0

        def start_line(description: str) -> None:
            nonlocal count
            count += 1
            elapsed = datetime.timedelta(seconds=round(time.perf_counter() - began))
            console.print(
                f"[{count}/{total}] {description} (elapsed {elapsed})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

        yield start_line
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled) as progress:
        bar = progress.add_task("starting", total=total)
        started = False

        def start(description: str) -> None:
            nonlocal started
            if started:
                progress.advance(bar)
            started = True
            progress.update(bar, description=escape(description))

        yield start
        if started:
            progress.advance(bar)
        progress.update(bar, description="done")


def read_results(out_dir: str | pathlib.Path) -> dict | None:
    """The ``results.json`` of a finished run directory, or None (one clear error if it cannot
    be read: it is never overwritten unread)."""
    path = pathlib.Path(out_dir) / "results.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        data = e
    if not isinstance(data, dict):
        raise LoptError(
            f"{path} is not the results of an evaluation ({data}); remove it, or choose "
            "another output directory, to evaluate again"
        )
    return data


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def summary_rows(data: dict) -> list[list[str]]:
    """Rows ``[optimizer, mean curve, median curve, mean final, median final]``."""
    return [[k, *(_fmt(s[c]) for c in SUMMARY_COLUMNS)] for k, s in data["summary"].items()]


def group_rows(data: dict) -> list[list[str]]:
    """Rows ``[group (tasks), optimizer, mean curve, median curve, wins]`` per task group
    (``lopt.tasks.TASK_GROUPS``) present in the run; empty when the run spans one group."""
    groups = {
        group: [n for n in data["tasks"] if n in names] for group, names in TASK_GROUPS.items()
    }
    groups = {group: names for group, names in groups.items() if names}
    if len(groups) < 2:
        return []
    labels = list(data["summary"])
    rows = []
    for group, names in groups.items():
        curve = {
            k: [data["tasks"][n]["optimizers"][k]["normalized_curve"] for n in names]
            for k in labels
        }
        for k in labels:
            wins = ", ".join(
                f"{sum(a < b for a, b in zip(curve[k], curve[o], strict=True))} vs {o}"
                for o in labels
                if o != k
            )
            row = [f"{group} ({len(names)})", k]
            rows.append([*row, _fmt(np.mean(curve[k])), _fmt(np.median(curve[k])), wins])
    return rows


def wins_rows(data: dict) -> list[list[str]]:
    """Wins matrix: row ``a``, column ``b`` = tasks where ``a``'s normalized curve < ``b``'s."""
    labels = list(data["summary"])
    return [
        [a, *("–" if a == b else str(data["summary"][a]["wins"][b]) for b in labels)]
        for a in labels
    ]


def summary_tables(data: dict) -> tuple[Table, Table]:
    """The summary and the wins matrix as rich tables (printed by ``lopt eval``)."""
    cfg = data["config"]
    summary = Table(
        title=f"Normalized test loss over {len(data['tasks'])} tasks "
        f"({cfg['steps']} steps, {cfg['seeds']} seeds; lower is better)"
    )
    for col in ("optimizer", "mean curve", "median curve", "mean final", "median final"):
        summary.add_column(col, justify="left" if col == "optimizer" else "right")
    for row in summary_rows(data):
        summary.add_row(*(escape(c) for c in row))
    wins = Table(title="Wins: tasks where the row beats the column (normalized curve)")
    wins.add_column("")
    for label in data["summary"]:
        wins.add_column(escape(label), justify="right")
    for row in wins_rows(data):
        wins.add_row(*(escape(c) for c in row))
    return summary, wins


def print_summary(data: dict, console: Console | None = None) -> None:
    console = console or Console()
    for table in summary_tables(data):
        console.print(table)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(data: dict, figures: dict[str, str] | None = None) -> str:
    """The report: summary, wins, per-task normalized and raw losses, links to figures."""
    cfg = data["config"]
    labels = list(data["summary"])
    parts = [
        "# lopt evaluation",
        f"{len(cfg['tasks'])} tasks · optimizers: {', '.join(labels)} · {cfg['steps']} steps · "
        f"{cfg['seeds']} seeds · evaluation every {cfg['eval_every']} steps.",
        *(
            [
                "Learned optimizers (SHA-256 of the weights file and architecture): "
                + ", ".join(f"{label} `{digest[:16]}`" for label, digest in weights.items())
                + "."
            ]
            if (weights := cfg.get("learned_sha256"))
            else []
        ),
        NORMALIZED_NOTE,
        "## Summary",
        _md_table(
            ["optimizer", "mean curve", "median curve", "mean final", "median final"],
            summary_rows(data),
        ),
        "![summary](summary.png)",
        *(
            [
                "## By task group",
                _md_table(["group", "optimizer", "mean curve", "median curve", "wins"], rows),
            ]
            if (rows := group_rows(data))
            else []
        ),
        "## Wins",
        "Number of tasks on which the row optimizer has a lower normalized curve than the column.",
        _md_table(["", *labels], wins_rows(data)),
        "## Normalized test loss per task: curve (final)",
        _md_table(
            ["task", *labels],
            [
                [
                    name,
                    *(
                        f"{_fmt(t['optimizers'][k]['normalized_curve'])} "
                        f"({_fmt(t['optimizers'][k]['normalized_final'])})"
                        for k in labels
                    ),
                ]
                for name, t in data["tasks"].items()
            ],
        ),
        "## Final test loss per task (selected hyperparameters)",
        _md_table(
            ["task", "initial", "best ref.", *labels],
            [
                [
                    name,
                    f"{t['initial_test_loss']:.4g}",
                    f"{t['best_test_loss']:.4g}",
                    *(
                        f"{t['optimizers'][k]['final_test_loss']:.4g}"
                        + (f" ({h})" if (h := t["optimizers"][k]["hyperparameters"]) else "")
                        for k in labels
                    ),
                ]
                for name, t in data["tasks"].items()
            ],
        ),
    ]
    if figures:
        parts.append("## Learning curves (test loss, mean over seeds)")
        parts += [f"![{name}]({file})" for name, file in figures.items()]
    return "\n\n".join(parts) + "\n"
