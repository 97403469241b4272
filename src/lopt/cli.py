"""The ``lopt`` command.

Each subcommand is one ``add_<name>(subparsers)`` function: it declares its arguments and sets
``run`` to a function ``(args) -> exit code``. To add one, write such a function and list it in
``SUBCOMMANDS``. User mistakes (a ``LoptError`` or a bad argument) print one line
``error: ...`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lopt.errors import LoptError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line ``error: ...`` and exit status 2."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _setup() -> None:
    """Work every command needs before it computes (the persistent compilation cache)."""
    from lopt._cache import enable_compilation_cache

    enable_compilation_cache()


def _print_results(data: dict, out_dir: str, reused: bool) -> None:
    from lopt.report import print_summary

    if reused:
        print(f"{out_dir} already holds these results (remove it to re-run)", file=sys.stderr)
    print_summary(data)
    print(f"report: {out_dir}/results.md")


# --- lopt eval ---------------------------------------------------------------------------------


def add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="compare optimizers on a task set",
        description="Train every optimizer on every task, normalize against tuned Adam and "
        "write results.json, results.md and plots. Re-running on the same --out reuses results.",
    )
    p.add_argument(
        "--optimizer",
        required=True,
        help="comma-separated specs: adam-tuned, adam-global, nadamw-tuned, a baseline name "
        "(adam, sgd, ...) or NAME@LR (adam@3e-3); adam-tuned and adam-global always run",
    )
    p.add_argument("--tasks", default="tiny", help="a task set (tiny, train, ...) or task names")
    p.add_argument("--steps", type=positive_int, default=1000, help="inner training steps")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per trial")
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps between evals")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    _setup()
    import jax

    from lopt.evaluate import evaluate_into
    from lopt.tasks import task_names

    specs = [s.strip() for s in args.optimizer.split(",") if s.strip()]
    data, reused = evaluate_into(
        args.out,
        task_names(args.tasks),
        specs,
        args.steps,
        args.seeds,
        jax.random.key(args.seed),
        args.eval_every,
        progress=not args.no_progress,
    )
    _print_results(data, args.out, reused)
    return 0


# --- lopt bench --------------------------------------------------------------------------------


def add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="speed benchmarks",
        description="Inner-training steps/s per task family, vmapped-tuning speedup and "
        "achieved GFLOP/s against a measured matmul peak; writes bench.json.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke run)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    _setup()
    from lopt.bench import print_bench, run_bench, write_bench

    say = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
    result = run_bench(quick=args.quick, progress=say)
    path = write_bench(result, args.out)
    print_bench(result)
    print(f"wrote {path}")
    return 0


# --- lopt demo ---------------------------------------------------------------------------------


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
    _setup()
    from lopt.demo import run_demo

    data, reused = run_demo(args.out, args.minutes, progress=not args.no_progress)
    _print_results(data, f"{args.out}/eval", reused)
    print(f"meta-training run: {args.out}/meta-train (metrics.jsonl, meta_loss.png)")
    return 0


# --- lopt meta-train ---------------------------------------------------------------------------


def add_meta_train(subparsers) -> None:
    p = subparsers.add_parser(
        "meta-train",
        help="meta-train a learned optimizer with evolution strategies",
        description="Outer-train a learned optimizer on sampled tasks. Writes config.json, "
        "metrics.jsonl, checkpoints (safetensors) and plots to --out; re-running on the same "
        "--out resumes exactly where the run stopped.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a JSON config file, or the name of a committed config (small, rnn-mlp, "
        "rnn-mlp-wide-mix); "
        "omit to resume the run in --out",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    p.add_argument("--minutes", type=positive_float, default=None, help="stop (resumably) after")
    add_backend_arguments(p)
    p.add_argument(
        "--max-staleness",
        type=non_negative_int,
        default=0,
        help="0: synchronous (same θ as in-process); K>0: asynchronous, dropping estimates made "
        "from a θ more than K outer steps old",
    )
    p.set_defaults(run=run_meta_train)


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and the Ray options (docs/distributed.md)."""
    p.add_argument(
        "--backend",
        choices=("inprocess", "ray"),
        default="inprocess",
        help="where gradient estimates are computed: this process (default) or Ray workers",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (from `ray start --head`; 'auto' finds a local one); "
        "default: start a local Ray",
    )
    p.add_argument("--workers", type=positive_int, default=2, help="Ray estimate workers")


def _check_backend_arguments(args: argparse.Namespace) -> None:
    if args.backend == "inprocess" and args.address is not None:
        raise LoptError("--address needs --backend ray")


def make_backend(args: argparse.Namespace):
    """The backend the flags ask for (close it when done: a Ray one ends its workers)."""
    from lopt.meta.backend import InProcess

    _check_backend_arguments(args)
    if args.backend == "inprocess":
        return InProcess()
    from lopt.distributed import RayBackend

    return RayBackend(args.workers, args.address, args.max_staleness)


def load_run_config(config_class, args: argparse.Namespace, **overrides):
    """The config of a ``meta-train`` / ``self-train`` run: ``--config`` (a JSON file or a
    shipped config's name), else the run directory's ``config.json`` when flags override some
    of its fields, else None (resume the run as it is); non-None ``overrides`` are applied."""
    import dataclasses
    import pathlib

    from lopt.meta.config import shipped_config_path

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.config is not None:
        path = pathlib.Path(args.config)
        config = config_class.from_file(path if path.suffix else shipped_config_path(args.config))
    elif overrides:
        config = config_class.from_file(pathlib.Path(args.out) / "config.json")
    else:
        return None
    return dataclasses.replace(config, **overrides)


def run_meta_train(args: argparse.Namespace) -> int:
    _setup()
    from lopt.meta import MetaTrainConfig, meta_train

    config = load_run_config(MetaTrainConfig, args, outer_steps=args.outer_steps)
    backend = make_backend(args)
    try:
        summary = meta_train(args.out, config, max_minutes=args.minutes, backend=backend)
    finally:
        backend.close()
    state = "finished" if summary["finished"] else "stopped (re-run to resume)"
    print(f"{args.out}: {state}; best validation {summary['best']}")
    return 0


# --- lopt self-train ---------------------------------------------------------------------------


def add_self_train(subparsers) -> None:
    p = subparsers.add_parser(
        "self-train",
        help="self-training from scratch: a population of random learned optimizers trains itself",
        description="A population of randomly initialized learned optimizers, each outer-trained "
        "by a learned optimizer, orchestrated by population-based training, with no "
        "hand-designed optimizer anywhere (Metz et al. 2021). Writes config.json, metrics.jsonl, "
        "lineage.jsonl, checkpoints (safetensors), members/, best.*, summary.json and plots to "
        "--out; re-running on the same --out resumes exactly where the run stopped.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a JSON config file, or the name of a shipped config (self-train); "
        "omit to resume the run in --out",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--outer",
        default=None,
        help="override who applies the meta-gradients: self, best, random, or adam "
        "(the comparison run: optax Adam with a PBT-tuned learning rate)",
    )
    p.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    p.add_argument("--minutes", type=positive_float, default=None, help="stop (resumably) after")
    add_backend_arguments(p)
    p.set_defaults(run=run_self_train)


def run_self_train(args: argparse.Namespace) -> int:
    _setup()
    from lopt.population import PopulationConfig, self_train

    config = load_run_config(PopulationConfig, args, outer_steps=args.outer_steps, outer=args.outer)
    _check_backend_arguments(args)
    members = None
    if args.backend == "ray":
        from lopt.distributed.members import RayMembers

        members = RayMembers(args.workers, args.address)
    try:
        summary = self_train(args.out, config, max_minutes=args.minutes, members=members)
    finally:
        if members is not None:
            members.close()
    state = "finished" if summary["finished"] else "stopped (re-run to resume)"
    print(f"{args.out}: {state} at outer step {summary['outer_step']}")
    if "best_final" in summary:
        print(
            f"best member's validation meta-loss {summary['best_initial']:.4f} -> "
            f"{summary['best_final']:.4f}; improvement rate last third / first third "
            f"{summary['rate_ratio']:.2f}"
        )
    return 0


# --- lopt stepsize -----------------------------------------------------------------------------


def add_stepsize(subparsers) -> None:
    p = subparsers.add_parser(
        "stepsize",
        help="the step-size learning-to-learn laboratory (Wang et al. 2021)",
        description="Meta-gradient explosion/vanishing on quadratics, the log objective and its "
        "stable meta-gradient, meta-gradient descent, train-by-train vs train-by-validation; "
        "writes report.md, figures and metrics JSON to --out.",
    )
    p.add_argument("--out", default="runs/stepsize", help="output directory")
    p.add_argument("--quick", action="store_true", help="smaller settings (a smoke run)")
    p.add_argument(
        "--no-neural", action="store_true", help="skip the neural (learned-optimizer) experiment"
    )
    p.set_defaults(run=run_stepsize)


def run_stepsize(args: argparse.Namespace) -> int:
    _setup()
    import pathlib

    from lopt.stepsize.report import run

    run(pathlib.Path(args.out), quick=args.quick, neural=not args.no_neural)
    print(f"report: {args.out}/report.md")
    return 0


# --- lopt hub ----------------------------------------------------------------------------------

HUB_DEFAULTS = {"tasks": "all", "steps": 1000, "seeds": 2, "lrs": 14}
HUB_QUICK = {"tasks": "quick", "steps": 100, "seeds": 1, "lrs": 3}


def add_hub(subparsers) -> None:
    p = subparsers.add_parser(
        "hub",
        help="hybrid updates (HUB, Dai et al. 2023) against tuned baselines on 17 tasks",
        description="Train HUB (weighting and selection modes), the learned optimizer alone "
        "and lr-tuned Adam, AdamW and SGD-momentum on 13 from-scratch and 4 fine-tuning tasks; "
        "writes a test-loss table (results.md, results.json), the fraction of tasks where HUB "
        "beats every competitor and curves. Re-running on the same --out resumes per task. "
        "--cost measures HUB's time per step against its components instead.",
    )
    p.add_argument("--out", default="runs/hub", help="run directory")
    p.add_argument("--tasks", default=None, help="all, scratch, finetune, quick, or task names")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps (1000)")
    p.add_argument("--seeds", type=positive_int, default=None, help="seeds per trial (2)")
    p.add_argument("--lrs", type=positive_int, default=None, help="lr grid size per baseline (14)")
    p.add_argument("--learned", default="small", help="shipped name or path of the learned opt.")
    p.add_argument("--hand-designed", default="adam@1e-3", help="HUB's component, NAME@LR")
    p.add_argument(
        "--temperature", type=positive_float, default=None, help="softmax temperature (0.25)"
    )
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--modes", default="weighting,select", help="HUB modes to run")
    p.add_argument("--quick", action="store_true", help="2 tasks, 100 steps, 1 seed, 3 lrs")
    p.add_argument("--cost", action="store_true", help="measure ms/step instead (cost.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_hub)


def run_hub(args: argparse.Namespace) -> int:
    _setup()
    if args.cost:
        from lopt.hybrid.cost import COST_TASKS, measure_costs, write_costs

        costs = measure_costs(
            args.tasks.split(",") if args.tasks else COST_TASKS,
            num_steps=50 if args.quick else (args.steps or 500),
            rounds=2 if args.quick else 3,
            progress=lambda msg: print(f"hub: {msg}", file=sys.stderr, flush=True),
            learned=args.learned,
            hand_designed=args.hand_designed,
        )
        for task, c in costs.items():
            print(f"{task}: " + ", ".join(f"{k} {v:.2f}x" for k, v in c["ratios"].items()))
        print(f"wrote {write_costs(costs, args.out)}")
        return 0

    from lopt.hybrid.compare import HubConfig, compare
    from lopt.hybrid.hub import DEFAULT_TEMPERATURE
    from lopt.hybrid.report import summary
    from lopt.hybrid.tasks import hub_task_names

    chosen = HUB_QUICK if args.quick else HUB_DEFAULTS
    value = lambda name: getattr(args, name) if getattr(args, name) is not None else chosen[name]
    config = HubConfig(
        tasks=hub_task_names(value("tasks")),
        steps=value("steps"),
        seeds=value("seeds"),
        lrs=value("lrs"),
        learned=args.learned,
        hand_designed=args.hand_designed,
        temperature=args.temperature or DEFAULT_TEMPERATURE,
        seed=args.seed,
        modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
    )
    results, reused = compare(config, args.out, progress=not args.no_progress)
    if reused:
        print(f"{args.out}: reused {reused} finished task(s)", file=sys.stderr)
    for mode, s in summary(results)["hub"].items():
        print(
            f"{mode}: beats every competitor on {s['beats_all']}/{s['tasks']} tasks "
            f"({s['fraction']:.0%}; scratch {s['beats_all_scratch']}, "
            f"fine-tune {s['beats_all_finetune']})"
        )
    print(f"report: {args.out}/results.md")
    return 0


SUBCOMMANDS: tuple[Callable, ...] = (
    add_eval,
    add_bench,
    add_demo,
    add_meta_train,
    add_self_train,
    add_stepsize,
    add_hub,
)


def build_parser() -> argparse.ArgumentParser:
    import lopt

    parser = _Parser(prog="lopt", description="Learned optimizers: train, study and use them.")
    parser.add_argument("--version", action="version", version=f"lopt {lopt.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lopt`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LoptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (runs resume from their last checkpoint when re-run)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
