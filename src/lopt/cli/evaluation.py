"""``lopt eval``, ``lopt bench`` and ``lopt demo``: comparing optimizers and timing them."""

from __future__ import annotations

import argparse
import sys

from lopt.cli.common import positive_float, positive_int, print_results, setup
from lopt.errors import split_names
from lopt.storage.lock import exclusive
from lopt.storage.outputs import check_output_dir


def add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="compare optimizers on a task set",
        description="Train every optimizer on every task, normalize against tuned Adam and "
        "write results.json, results.md and plots. Re-running on the same --out reuses results "
        "(if the learned optimizers' weights are unchanged); an interrupted evaluation resumes "
        "from the trial grids it had finished.",
    )
    p.add_argument(
        "--optimizer",
        required=True,
        help="comma-separated specs: adam-tuned, adam-global, nadamw-tuned, a baseline name "
        "(adam, sgd, ...), NAME@LR (adam@3e-3), a shipped or saved learned optimizer (small, "
        "runs/x), LEARNED:loss-only (updated with loss= alone); adam-tuned and adam-global "
        "always run",
    )
    p.add_argument(
        "--tasks",
        default="tiny",
        help="comma-separated task sets (tiny, heldout, ...) and task names",
    )
    p.add_argument("--steps", type=positive_int, default=1000, help="inner training steps")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per trial")
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps between evals")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-baseline-cache",
        action="store_true",
        help="re-run the Adam/NAdamW reference grids instead of reusing cached runs of the same "
        "code ($LOPT_BASELINE_CACHE, default ~/.cache/lopt/baselines)",
    )
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    specs = split_names("--optimizer", args.optimizer)
    setup()
    import jax

    from lopt.evaluation.baseline_cache import BaselineCache, default_dir
    from lopt.evaluation.harness import evaluate_into
    from lopt.tasks import task_names

    tasks = task_names(args.tasks)
    cache = None if args.no_baseline_cache else BaselineCache(default_dir())
    with exclusive(args.out):
        data, reused = evaluate_into(
            args.out,
            tasks,
            specs,
            args.steps,
            args.seeds,
            jax.random.key(args.seed),
            args.eval_every,
            progress=not args.no_progress,
            baseline_cache=cache,
        )
    print_results(data, args.out, reused)
    return 0


def add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="speed benchmarks",
        description="Inner-training steps/s per task family, vmapped-tuning speedup and "
        "achieved GFLOP/s against a measured matmul peak; writes bench.json as each benchmark "
        "finishes.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke run)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    setup()
    from lopt.bench import print_bench, run_bench, write_bench

    say = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
    with exclusive(args.out):
        result = run_bench(
            quick=args.quick, progress=say, save=lambda partial: write_bench(partial, args.out)
        )
    print_bench(result)
    print(f"wrote {args.out}/bench.json")
    return 0


def add_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the main job on embedded defaults (writes a report with plots)",
        description="Meta-train a small learned optimizer with ES (600 outer steps, a few "
        "minutes), then evaluate it and the shipped 'small' against learning-rate-tuned Adam, "
        "global-lr Adam and tuned NAdamW on held-out tasks; writes the report and plots.",
    )
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument(
        "--minutes", type=positive_float, default=None, help="cap on meta-training minutes"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    setup()
    from lopt.cli.demo import run_demo

    with exclusive(args.out):
        data, reused = run_demo(args.out, args.minutes, progress=not args.no_progress)
    print_results(data, f"{args.out}/eval", reused)
    print(f"meta-training run: {args.out}/meta-train (metrics.jsonl, meta_loss.png)")
    return 0
