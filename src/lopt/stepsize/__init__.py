"""Step-size learning-to-learn laboratory (Wang, Yuan, Wu & Ge, ICML 2021, arXiv 2006.16495).

Quadratics with a known spectrum, the naive and log meta-objectives of a GD unroll, their
meta-gradients (autodiff through ``lax.scan`` or a numerically stable closed form in log space),
meta-gradient descent on the step size, train-by-train vs train-by-validation on noisy least
squares, and its neural version with the small learned optimizer (``neural``, ``small_data``).
``lopt.stepsize.report.run`` (``lopt stepsize``) runs everything and writes a report.
"""

from lopt.stepsize.least_squares import Comparison, compare
from lopt.stepsize.metadescent import (
    MetaDescentResult,
    meta_gradient_descent,
    optimal_step_size,
    steps_to_converge,
)
from lopt.stepsize.quadratic import (
    QuadraticProblem,
    StableGradient,
    gd_unroll,
    make_quadratic,
    make_spectrum,
    meta_gradient,
    meta_gradient_log_abs,
    meta_objective,
    predicted_growth_rate,
)
from lopt.stepsize.reference import ReferenceGradient, reference_meta_gradient

__all__ = [
    "Comparison",
    "MetaDescentResult",
    "QuadraticProblem",
    "ReferenceGradient",
    "StableGradient",
    "compare",
    "gd_unroll",
    "make_quadratic",
    "make_spectrum",
    "meta_gradient",
    "meta_gradient_descent",
    "meta_gradient_log_abs",
    "meta_objective",
    "optimal_step_size",
    "predicted_growth_rate",
    "reference_meta_gradient",
    "steps_to_converge",
]
