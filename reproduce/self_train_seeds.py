"""Self-training against its Adam-outer twin over several seeds: the feedback loop and the gap.

    python reproduce/self_train_seeds.py                         # self-train.json, seeds 0-2
    python reproduce/self_train_seeds.py --config self-train-slow --out runs/self-train-slow-seeds

For every seed, two runs of the same config: ``outer: self`` (the population trains itself,
inside the guard) and ``--outer adam`` (its twin: the same members, tasks, estimator, PBT and
validations, with optax Adam applying the meta-gradients). The two runs of a seed go side by
side, one process each; re-running resumes unfinished runs and skips finished ones. Then it
writes ``comparison.md`` (per seed: the loop measure of both runs, the final validation
meta-loss of both and their ratio; the means) and ``comparison-seed<N>.png`` (the curves and
improvement rates of both runs, ``lopt.population.plots.plot_comparison``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from lopt.population.feedback import LOOP_DELAY, LOOP_FACTOR
from lopt.population.plots import plot_comparison

OUTERS = {"self": [], "adam": ["--outer", "adam"]}


def run_dir(out: pathlib.Path, seed: int, outer: str) -> pathlib.Path:
    return out / f"seed{seed}-{outer}"


def train(config: str, out: pathlib.Path, seeds: list[int]) -> None:
    """Run (or resume) both runs of every seed, the two of a seed at once."""
    for seed in seeds:
        procs = []
        for outer, flags in OUTERS.items():
            path = run_dir(out, seed, outer)
            if finished(path):
                continue
            argv = [sys.executable, "-m", "lopt.cli", "self-train", "--out", str(path)]
            if not (path / "config.json").exists():  # a new run; else resume it
                argv += ["--config", config, "--seed", str(seed), *flags]
            print(" ".join(argv[1:]), flush=True)
            procs.append(subprocess.Popen(argv))
        for proc in procs:
            if proc.wait():
                raise SystemExit(f"a self-training run failed (exit {proc.returncode})")


def finished(path: pathlib.Path) -> bool:
    """Whether the run in ``path`` has validated at its last outer step."""
    if not (path / "summary.json").exists():
        return False
    steps = json.loads((path / "config.json").read_text())["outer_steps"]
    return json.loads((path / "summary.json").read_text()).get("outer_steps") == steps


def table(out: pathlib.Path, seeds: list[int]) -> str:
    """The comparison as a markdown table (and the plots beside it)."""
    head = (
        "| seed | self: loop ratio | fastest at | loop shown | Adam-outer: loop ratio | "
        "fastest at | loop shown | self final | Adam-outer final | self ÷ Adam |\n"
        "|---:|---:|---:|:---:|---:|---:|:---:|---:|---:|---:|\n"
    )
    rows, finals = [], {"self": [], "adam": []}
    for seed in seeds:
        s = {o: json.loads((run_dir(out, seed, o) / "summary.json").read_text()) for o in OUTERS}
        for outer in OUTERS:
            finals[outer].append(s[outer]["best_final"])
        cells = [str(seed)]
        for outer in OUTERS:
            cells += [
                f"{s[outer]['loop_ratio']:.1f}",
                f"{s[outer]['loop_best_at']:.1%}",
                "yes" if s[outer]["loop_shown"] else "no",
            ]
        cells += [
            f"{s['self']['best_final']:.4f}",
            f"{s['adam']['best_final']:.4f}",
            f"{s['self']['best_final'] / s['adam']['best_final']:.2f}",
        ]
        rows.append("| " + " | ".join(cells) + " |\n")
        plot_comparison(
            {"self-training": run_dir(out, seed, "self"), "Adam-outer": run_dir(out, seed, "adam")},
            out / f"comparison-seed{seed}.png",
        )
    mean = {o: sum(v) / len(v) for o, v in finals.items()}
    rows.append(
        f"| mean | | | | | | | {mean['self']:.4f} | {mean['adam']:.4f} | "
        f"**{mean['self'] / mean['adam']:.2f}** |\n"
    )
    note = (
        f"\nLoop shown: the fastest window of `log L` improves ≥ {LOOP_FACTOR:g}× as fast as the "
        f"first and starts after {LOOP_DELAY:.0%} of the run (best member's validation "
        "meta-loss; `lopt.population.feedback`). Final: the best member at the last validation.\n"
    )
    return head + "".join(rows) + note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="self-train", help="a shipped config or a JSON file")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", default="runs/self-train-seeds", help="output directory")
    args = parser.parse_args(argv)
    out, seeds = pathlib.Path(args.out), [int(s) for s in args.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    train(args.config, out, seeds)
    text = table(out, seeds)
    (out / "comparison.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
