"""``lopt meta-train`` and ``lopt self-train``: resumable outer-training runs, local or on Ray."""

from __future__ import annotations

import argparse

from lopt.cli.common import non_negative_int, positive_float, positive_int, setup
from lopt.errors import LoptError, split_names
from lopt.storage.outputs import check_output_dir


def add_average(subparsers) -> None:
    p = subparsers.add_parser(
        "average",
        help="average saved learned optimizers of one architecture (a model soup)",
        description="Write the weighted mean of the weights θ of two or more saved learned "
        "optimizers of the same architecture as a new saved optimizer (STEM.safetensors and "
        "STEM.json). The architecture is the first one's; another optimizer may also be one "
        "that it widens as a warm start would (a small into an rnn-mlp started from it).",
    )
    p.add_argument(
        "--optimizer",
        required=True,
        help="comma-separated saved optimizers: shipped names, files, stems or run directories",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="comma-separated weights, one per optimizer (default: equal)",
    )
    p.add_argument("--out", required=True, help="stem of the saved optimizer to write")
    p.set_defaults(run=run_average)


def run_average(args: argparse.Namespace) -> int:
    setup()
    from lopt.learned.io import average_optimizers, save_optimizer

    paths = split_names("--optimizer", args.optimizer)
    weights = None
    if args.weights is not None:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise LoptError(f"invalid value for --weights: {args.weights!r} (numbers)") from None
    arch, theta = average_optimizers(paths, weights)
    info = {"averaged": paths, "weights": weights or [1.0] * len(paths)}
    save_optimizer(args.out, arch, theta, info)
    print(f"wrote {args.out}.safetensors and {args.out}.json")
    return 0


def add_reconfigure(subparsers) -> None:
    p = subparsers.add_parser(
        "reconfigure",
        help="save a learned optimizer again with other settings outside its weights",
        description="Write a saved learned optimizer's weights θ under its architecture with "
        "some settings changed that θ does not hold (trust_ratio, distance_power, ...), as a "
        "new saved optimizer (STEM.safetensors and STEM.json). θ must fit the new settings.",
    )
    p.add_argument(
        "--optimizer", required=True, help="a saved optimizer: shipped name, file, stem or run"
    )
    p.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="KEY=VALUE",
        help="a setting to change (VALUE read as JSON: 0.5, true, [8]); repeatable",
    )
    p.add_argument("--out", required=True, help="stem of the saved optimizer to write")
    p.set_defaults(run=run_reconfigure)


def run_reconfigure(args: argparse.Namespace) -> int:
    setup()
    import json

    from lopt.learned.io import reconfigure_optimizer, save_optimizer

    changes = {}
    for item in args.set:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise LoptError(f"invalid --set {item!r} (expected KEY=VALUE, e.g. trust_ratio=0.1)")
        try:
            changes[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            changes[key.strip()] = text
    arch, theta = reconfigure_optimizer(args.optimizer, changes)
    save_optimizer(args.out, arch, theta, {"reconfigured": args.optimizer, "changes": changes})
    print(f"wrote {args.out}.safetensors and {args.out}.json")
    return 0


def add_meta_train(subparsers) -> None:
    p = subparsers.add_parser(
        "meta-train",
        help="meta-train a learned optimizer with evolution strategies",
        description="Outer-train a learned optimizer on sampled tasks. Writes config.json, "
        "metrics.jsonl, checkpoints (safetensors) and plots to --out; re-running on the same "
        "--out resumes exactly where the run stopped.",
    )
    add_config_argument(p, "meta-train")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    p.add_argument(
        "--seed", type=non_negative_int, default=None, help="override seed (for a new run)"
    )
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


def add_config_argument(p: argparse.ArgumentParser, command: str) -> None:
    """``--config``: a JSON file, or one of the configs shipped for ``command``."""
    from lopt.configs import shipped_config_names

    names = ", ".join(shipped_config_names(command))
    p.add_argument(
        "--config",
        default=None,
        help=f"a JSON config file (a path with a suffix, e.g. reproduce/configs/*.json), or the "
        f"name of a shipped config ({names}); omit to resume the run in --out",
    )


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
    shipped config's name, ``lopt.configs.config_path``), else the run directory's
    ``config.json`` when flags override some of its fields, else None (resume the run as it
    is); non-None ``overrides`` are applied."""
    import dataclasses
    import pathlib

    from lopt.configs import config_path

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.config is not None:
        config = config_class.from_file(config_path(args.config))
    elif overrides:
        config = config_class.from_file(pathlib.Path(args.out) / "config.json")
    else:
        return None
    return dataclasses.replace(config, **overrides)


def run_meta_train(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    setup()
    from lopt.meta import MetaTrainConfig, meta_train

    config = load_run_config(MetaTrainConfig, args, outer_steps=args.outer_steps, seed=args.seed)
    backend = make_backend(args)
    try:
        summary = meta_train(args.out, config, max_minutes=args.minutes, backend=backend)
    finally:
        backend.close()
    state = "finished" if summary["finished"] else "stopped (re-run to resume)"
    best = summary["best"]
    if best["step"] < 0:
        print(f"{args.out}: {state}; no validation yet")
    else:
        print(
            f"{args.out}: {state}; best validation score {best['score']:.4f} at step {best['step']}"
        )
    return 0


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
    add_config_argument(p, "self-train")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--outer",
        default=None,
        help="override who applies the meta-gradients: self, best, random, or adam "
        "(the comparison run: optax Adam with a PBT-tuned learning rate)",
    )
    p.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    p.add_argument(
        "--seed", type=non_negative_int, default=None, help="override seed (for a new run)"
    )
    p.add_argument("--minutes", type=positive_float, default=None, help="stop (resumably) after")
    add_backend_arguments(p)
    p.set_defaults(run=run_self_train)


def run_self_train(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    setup()
    from lopt.population import PopulationConfig, self_train

    config = load_run_config(
        PopulationConfig, args, outer_steps=args.outer_steps, outer=args.outer, seed=args.seed
    )
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
            f"{summary['best_final']:.4f}; feedback loop "
            f"{'shown' if summary['loop_shown'] else 'not shown'} (fastest improvement "
            f"{summary['loop_ratio']:.1f}× the first 5%'s, at {summary['loop_best_at']:.0%} "
            "of the run)"
        )
    return 0
