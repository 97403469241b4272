"""All of ``lopt bench``: each benchmark in turn, its results kept as they finish, and its tables.

Every number is measured after compilation, as the best of a few repeats, and ratios compare
quantities measured in the same run on the same machine (DESIGN.md "How we judge quality"):

- steps/s of Adam inside the scanned training loop, one sampled task per family, and its
  achieved GFLOP/s ÷ a float32 matmul peak measured in the same run (``lopt.bench.inner``);
- the speedup of tuning 14 Adam learning rates as one vmapped program over a Python loop of 14
  calls to one jitted run (``lopt.bench.inner``);
- learned-optimizer update time ÷ Adam's, and ES meta-training throughput
  (``lopt.bench.learned``).
"""

from __future__ import annotations

import os
import pathlib
import platform
from collections.abc import Callable

import jax
import optax
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import lopt
from lopt.bench.inner import TUNING_TASKS, inner_throughput, tuning_speedup
from lopt.bench.learned import es_throughput, update_ratios
from lopt.bench.timing import matmul_peak
from lopt.storage.outputs import write_json
from lopt.tasks import FAMILIES, get_task


def run_bench(
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    save: Callable[[dict], object] | None = None,
) -> dict:
    """All benchmarks; ``quick`` uses fewer steps and repeats (a smoke run, noisier numbers).

    ``save`` is called with the results so far after each benchmark finishes (``"finished"``
    is false until the last), so that an interrupted run keeps what it measured.
    """
    say = progress or (lambda _msg: None)
    keep = save or (lambda _result: None)
    steps, repeats = (100, 2) if quick else (1000, 3)
    result = {
        "config": {"quick": quick, "steps": steps, "repeats": repeats, "optimizer": "adam(1e-3)"},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "lopt": lopt.__version__,
        },
        "finished": False,
    }
    say("matmul peak")
    peak = matmul_peak(512 if quick else 1024, 5 if quick else 10)
    result["matmul_peak_gflop_per_s"] = peak
    keep(result)
    families = result["families"] = {}
    for name, family in FAMILIES.items():
        say(f"family {name}")
        task = family.sample(0)
        stats = inner_throughput(task, optax.adam(1e-3), steps, repeats)
        families[name] = {
            "task": task.name,
            **stats,
            "fraction_of_peak": stats["gflop_per_s"] / peak,
        }
        keep(result)
    tuning = result["tuning"] = {}
    for name in TUNING_TASKS:
        say(f"tuning {name}")
        tuning[name] = tuning_speedup(get_task(name), steps, repeats)
        keep(result)
    say("learned-optimizer update time vs Adam")
    result["learned_updates"] = update_ratios(quick)
    keep(result)
    say("ES meta-training throughput")
    result["es"] = es_throughput(peak, quick)
    result["finished"] = True
    keep(result)
    return result


def write_bench(result: dict, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write ``bench.json`` into ``out_dir`` atomically; returns its path."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    write_json(path, result)
    return path


def bench_rows(result: dict) -> tuple[list[list[str]], list[list[str]]]:
    """Table rows: per family, then per tuning task (shared by the CLI and BENCHMARKS.md)."""
    families = [
        [
            name,
            f"{r['num_params']}",
            f"{r['steps_per_s']:,.0f}",
            f"{r['compile_s']:.1f}",
            f"{r['gflop_per_s']:.2f}",
            f"{100 * r['fraction_of_peak']:.1f}%",
        ]
        for name, r in result["families"].items()
    ]
    tuning = [
        [name, f"{r['loop_s']:.3f}", f"{r['vmapped_s']:.3f}", f"{r['speedup']:.1f}×"]
        for name, r in result["tuning"].items()
    ]
    return families, tuning


def learned_rows(result: dict) -> tuple[list[list[str]], list[list[str]]]:
    """Table rows: update-time ratios per model size, then ES throughput per device count."""
    updates = [
        [
            f"{r['num_params']:,}",
            f"{r['adam_ms']:.3f}",
            f"{r['small_ratio']:.1f}×",
            f"{r['small_accumulators_ratio']:.1f}×",
            f"{r['rnn-mlp_ratio']:.1f}×",
            f"{r['rnn-mlp_accumulators_ratio']:.1f}×",
        ]
        for r in result["learned_updates"].values()
    ]
    es = result["es"]
    rows = []
    for devices in (1, 2):
        r = es.get(f"devices_{devices}")
        if r:
            rows.append(
                [
                    str(devices),
                    f"{r['inner_steps_per_s']:,.0f}",
                    f"{r['outer_steps_per_s']:.2f}",
                    f"{r['gflop_per_s']:.2f}",
                    f"{100 * r['fraction_of_peak']:.1f}%",
                    f"{r['cores_busy']:.2f}",
                ]
            )
    return updates, rows


UPDATE_HEADER = [
    "params",
    "Adam update (ms)",
    "small ÷ Adam",
    "its accumulators alone ÷ Adam",
    "rnn-mlp ÷ Adam",
    "its accumulators alone ÷ Adam",
]
ES_HEADER = ["devices", "inner steps/s", "outer steps/s", "GFLOP/s", "of peak", "cores busy"]


FAMILY_HEADER = ["family", "params", "Adam steps/s", "compile s", "GFLOP/s", "of peak"]
TUNING_HEADER = ["task", "loop of 14 jitted (s)", "one vmapped (s)", "speedup"]


def print_bench(result: dict) -> None:
    """Print the tables of ``run_bench``'s result."""
    families, tuning = bench_rows(result)
    updates, es_rows = learned_rows(result)
    cfg = result["config"]
    console = Console()
    peak = result["matmul_peak_gflop_per_s"]
    for title, header, rows in (
        (
            f"Inner training, Adam, {cfg['steps']} steps (matmul peak {peak:.1f} GFLOP/s)",
            FAMILY_HEADER,
            families,
        ),
        (f"Tuning 14 Adam learning rates, {cfg['steps']} steps", TUNING_HEADER, tuning),
        ("Learned-optimizer update time ÷ optax.adam update time", UPDATE_HEADER, updates),
        (f"ES meta-training ({result['es']['task']}, 8 antithetic pairs)", ES_HEADER, es_rows),
    ):
        table = Table(title=title)
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
