"""``lopt stepsize``: the quadratic step-size laboratory."""

from __future__ import annotations

import argparse

from lopt.cli.common import setup
from lopt.storage.lock import exclusive
from lopt.storage.outputs import check_output_dir


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
    out = check_output_dir(args.out)
    setup()
    from lopt.stepsize.report import run

    with exclusive(out):
        run(out, quick=args.quick, neural=not args.no_neural)
    print(f"report: {args.out}/report.md")
    return 0
