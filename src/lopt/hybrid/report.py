"""Report of a HUB comparison: who wins each task, the fraction HUB wins, table and curves.

Reads only the JSON results of ``lopt.hybrid.compare`` (``results.json``), so a finished run
can be re-reported without re-running it. "HUB beats every competitor" on a task means its
final test loss (mean over seeds) is lower than that of the learned optimizer alone and of each
lr-tuned baseline by more than ``TIE`` (relative): the selection mode often keeps the learned
update at nearly every step, and a loss equal to the learned optimizer's in its sixth digit is a
tie, not a win. The strict count (no margin) is reported beside it.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from lopt.evaluation import plots
from lopt.hybrid.config import COMPETITORS, MODE_LABELS
from lopt.storage.files import write_atomically


def hub_labels(results: dict) -> list[str]:
    """Labels of the HUB modes a comparison ran (``hub``, ``hub-select``)."""
    return [MODE_LABELS[m] for m in results["config"]["modes"]]


TIE = 1e-3  # final test losses within 0.1% of each other tie


def beats(ours: float, other: float, tolerance: float = TIE) -> bool:
    """Whether loss ``ours`` is below ``other`` by more than ``tolerance`` × ``|other|`` (a
    finite loss beats a non-finite one)."""
    if not np.isfinite(other):
        return bool(np.isfinite(ours))
    return bool(ours < other - tolerance * abs(other))


def beats_all(task: dict, label: str, tolerance: float = TIE) -> bool:
    """Whether ``label``'s final test loss beats every competitor's on ``task``."""
    ours = task["optimizers"][label]["final_test_loss"]
    others = [task["optimizers"][c]["final_test_loss"] for c in COMPETITORS]
    return all(beats(ours, o, tolerance) for o in others)


def summary(results: dict) -> dict:
    """Per HUB mode: tasks won against every competitor (all, scratch, fine-tuning) and the
    number of tasks won against each competitor alone; plus each optimizer's task wins."""
    tasks = results["tasks"]
    out = {}
    for label in hub_labels(results):
        won = [name for name, t in tasks.items() if beats_all(t, label)]
        kinds = {
            kind: [n for n, t in tasks.items() if t["finetune"] == (kind == "finetune")]
            for kind in ("scratch", "finetune")
        }
        out[label] = {
            "beats_all": len(won),
            "tasks": len(tasks),
            "fraction": len(won) / max(len(tasks), 1),
            "beats_all_strict": sum(beats_all(t, label, 0.0) for t in tasks.values()),
            **{f"beats_all_{k}": f"{sum(n in won for n in v)}/{len(v)}" for k, v in kinds.items()},
            "wins_vs": {
                c: sum(
                    beats(
                        t["optimizers"][label]["final_test_loss"],
                        t["optimizers"][c]["final_test_loss"],
                    )
                    for t in tasks.values()
                )
                for c in COMPETITORS
            },
        }
    labels = [*hub_labels(results), *COMPETITORS]
    best = {label: sum(_winner(t) == label for t in tasks.values()) for label in labels}
    return {"hub": out, "best_on_tasks": best}


def _winner(task: dict) -> str:
    losses = {k: v["final_test_loss"] for k, v in task["optimizers"].items()}
    finite = {k: v for k, v in losses.items() if np.isfinite(v)}
    return min(finite, key=finite.get) if finite else "none"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(results: dict, figures: dict[str, str]) -> str:
    """The report: settings, the fraction HUB wins, the per-task test-loss table, curves."""
    cfg, tasks, summ = results["config"], results["tasks"], summary(results)
    hubs = hub_labels(results)
    labels = [*hubs, *COMPETITORS]
    rows = []
    for name, t in tasks.items():
        winner = _winner(t)
        cells = []
        for label in labels:
            entry = t["optimizers"][label]
            cell = f"{entry['final_test_loss']:.4g}"
            if label in COMPETITORS[1:]:
                cell += f" ({entry['hyperparameters']})"
            cells.append(f"**{cell}**" if label == winner else cell)
        flags = " / ".join("yes" if beats_all(t, h) else "no" for h in hubs)
        rows.append([name, "fine-tune" if t["finetune"] else "scratch", *cells, flags])
    fraction_rows = [
        [
            h,
            f"{s['beats_all']}/{s['tasks']} = {s['fraction']:.0%}",
            str(s["beats_all_strict"]),
            s["beats_all_scratch"],
            s["beats_all_finetune"],
            *(str(s["wins_vs"][c]) for c in COMPETITORS),
        ]
        for h, s in summ["hub"].items()
    ]
    parts = [
        "# HUB comparison",
        f"{len(tasks)} tasks · {cfg['steps']} steps · {cfg['seeds']} seeds · learned optimizer "
        f"`{cfg['learned']}` · HUB's hand-designed component `{cfg['hand_designed']}` · "
        f"temperature {cfg['temperature']:g} · tuned baselines: {cfg['lrs']} log-spaced lrs in "
        "[1e-4, 1], selected on the final inner-validation loss.",
        "## Fraction of tasks where HUB beats every competitor (final test loss)",
        _table(
            [
                "HUB mode",
                "beats all",
                "strictly lower (no margin)",
                "scratch",
                "fine-tune",
                *(f"vs {c}" for c in COMPETITORS),
            ],
            fraction_rows,
        ),
        f"A win needs a final test loss lower by more than {TIE:.1%} (relative); `vs X` counts "
        "the tasks won against X alone.",
        "Best optimizer per task (count): "
        + ", ".join(f"{k} {v}" for k, v in summ["best_on_tasks"].items()),
        "## Final test loss per task (mean over seeds; bold: lowest)",
        _table(["task", "kind", *labels, f"beats all ({' / '.join(hubs)})"], rows),
    ]
    if figures:
        parts.append("## Test-loss curves (mean over seeds)")
        parts += [f"![{name}]({file})" for name, file in figures.items()]
    return "\n\n".join(parts) + "\n"


def write_report(results: dict, out_dir: str | pathlib.Path) -> None:
    """Write one curve PNG per task, ``metrics.jsonl`` (one line per task and optimizer),
    ``results.md`` and ``results.json`` (last: it marks the run done) to ``out_dir``."""
    out = pathlib.Path(out_dir)
    with open(out / "metrics.jsonl", "w") as f:
        for name, t in results["tasks"].items():
            for label, entry in t["optimizers"].items():
                metrics = {k: v for k, v in entry.items() if k != "test_curve"}
                f.write(json.dumps({"task": name, "optimizer": label, **metrics}) + "\n")
    figures = {}
    for name, t in results["tasks"].items():
        path = out / plots.curve_filename(name)
        curves = {k: np.asarray(v["test_curve"]) for k, v in t["optimizers"].items()}
        order = [*hub_labels(results), *COMPETITORS]
        plots.plot_curves(name, np.asarray(t["steps"]), curves, None, path, order)
        figures[name] = path.name
    data = {**results, "summary": summary(results)}
    (out / "results.md").write_text(markdown(results, figures))
    write_atomically(out / "results.json", (json.dumps(data, indent=2) + "\n").encode())
