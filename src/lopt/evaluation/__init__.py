"""Evaluation: compare optimizers on task sets against honestly tuned baselines, in normalized
loss (Metz et al. 2020), and report the results.

- ``harness``: train every optimizer on every task (``evaluate``), normalize, write a run
  directory (``evaluate_into``, resumable);
- ``optimizer_specs``: what an optimizer name of ``lopt eval`` means (``adam-tuned``, ``small``,
  a path);
- ``baseline_cache``: the reference baselines' runs, kept on disk across evaluations;
- ``report`` and ``plots``: markdown and rich tables, learning-curve and summary figures.
"""

from lopt.evaluation.harness import (
    EvalResult,
    evaluate,
    evaluate_into,
    normalized_loss,
    write_run,
)

__all__ = ["EvalResult", "evaluate", "evaluate_into", "normalized_loss", "write_run"]
