"""``lopt hub``: hybrid updates (HUB) against tuned baselines."""

from __future__ import annotations

import argparse
import sys

from lopt.cli.common import positive_float, positive_int, setup
from lopt.errors import split_names
from lopt.storage.lock import exclusive
from lopt.storage.outputs import check_output_dir

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
    check_output_dir(args.out)
    setup()
    if args.cost:
        from lopt.hybrid.cost import COST_TASKS, measure_costs, write_costs
        from lopt.tasks import task_names

        tasks = task_names(args.tasks) if args.tasks is not None else COST_TASKS
        with exclusive(args.out):
            costs = measure_costs(
                tasks,
                num_steps=50 if args.quick else (args.steps or 500),
                rounds=2 if args.quick else 3,
                progress=lambda msg: print(f"hub: {msg}", file=sys.stderr, flush=True),
                save=lambda partial: write_costs(partial, args.out),
                learned=args.learned,
                hand_designed=args.hand_designed,
            )
        for task, c in costs.items():
            print(f"{task}: " + ", ".join(f"{k} {v:.2f}x" for k, v in c["ratios"].items()))
        print(f"wrote {args.out}/cost.json")
        return 0

    from lopt.hybrid.compare import compare
    from lopt.hybrid.config import HubConfig
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
        modes=split_names("--modes", args.modes),
    )
    with exclusive(args.out):
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
