"""The feedback-loop numbers of a self-training run, read back from its ``metrics.jsonl``.

Metz et al. 2021 report that self-training starts slow and then accelerates, as better
optimizers become better at training themselves. Measured here on the validation meta-loss of
the population's best member (and its median), ``L(s)`` at outer step ``s``, linearly
interpolated between validations, over a run of ``T`` steps:

- improvement: ``L(0) − L(T)`` (``L(0)`` is the best randomly initialized member);
- improvement rate over a third of the run: the drop of ``L`` over it divided by its length
  (per 1000 outer steps): first third ``[0, T/3]``, last third ``[2T/3, T]``;
- ``rate_ratio``: last-third rate ÷ first-third rate (≥ 2 is the accelerating feedback loop;
  undefined when the first third did not improve).
"""

from __future__ import annotations

import pathlib

import numpy as np

from lopt.meta.rundir import read_jsonl


def validation_curves(run_dir: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Validation records as arrays: ``step``, ``wall``, ``best``, ``median`` ``(V,)`` and
    ``scores`` ``(V, P)``."""
    records = [r for r in read_jsonl(pathlib.Path(run_dir) / "metrics.jsonl") if "validation" in r]
    return {
        "step": np.array([r["step"] for r in records], float),
        "wall": np.array([r["wall"] for r in records], float),
        "best": np.array([r["best"] for r in records], float),
        "median": np.array([r["median"] for r in records], float),
        "scores": np.array([r["validation"] for r in records], float),
    }


def third_rates(steps: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Improvement rates (per 1000 outer steps) over the first and the last third."""
    total = steps[-1] - steps[0]
    at = lambda s: float(np.interp(steps[0] + s * total, steps, values))
    per_k = 1000 / (total / 3)
    first = (at(0) - at(1 / 3)) * per_k
    last = (at(2 / 3) - at(1)) * per_k
    return {
        "rate_first_third": float(first),
        "rate_last_third": float(last),
        "rate_ratio": float(last / first) if first > 0 else float("nan"),
    }


def feedback_summary(run_dir: str | pathlib.Path) -> dict:
    """The numbers above for the best member (and ``median_*`` for the median member)."""
    curves = validation_curves(run_dir)
    if len(curves["step"]) < 2:
        return {"validations": len(curves["step"])}
    best, median = curves["best"], curves["median"]
    summary = {
        "validations": len(best),
        "outer_steps": int(curves["step"][-1]),
        "wall_seconds": float(curves["wall"][-1]),
        "best_initial": float(best[0]),
        "best_final": float(best[-1]),
        "best_improvement": float(best[0] - best[-1]),
        "median_initial": float(median[0]),
        "median_final": float(median[-1]),
        **third_rates(curves["step"], best),
    }
    summary.update({f"median_{k}": v for k, v in third_rates(curves["step"], median).items()})
    return summary
