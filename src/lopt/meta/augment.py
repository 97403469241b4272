"""Task augmentation for meta-training: the same problem in rescaled parameter coordinates.

``ParameterScaled(task, scale)`` trains ``p' = p / scale`` and scores ``task.loss(p' · scale)``:
the same losses along the same trajectories in ``p``, but a gradient ``scale`` times larger and
parameters ``scale`` times smaller. An update normalized as Adam's moves ``p'`` by about its
learning rate each step, hence ``p`` by ``scale`` times that, so the learning rate a task wants
moves by ``1 / scale``. Meta-training over log-uniform scales (learned_optimization's parameter
reparameterization, used by Celo, does the same) shows a learned optimizer tasks that want
unusual step sizes, and its inputs that see parameter size (``log_rms_param`` of ``fast``) the
reason to read them. Only floating-point arrays are rescaled.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import numpy as np

from lopt.errors import LoptError, check_range
from lopt.tasks.base import Task, WrappedTask

MAX_SCALE = 1e3  # ± three decades either way
SCALE_STREAM = 1  # the scale's draw uses (seed, SCALE_STREAM): apart from a family's (seed)


class ParameterScaled(WrappedTask):
    """``task`` trained in the coordinates ``p' = p / scale`` (see the module docstring)."""

    def __init__(self, task: Task, scale: float):
        check_range("parameter scale", scale, 1 / MAX_SCALE, MAX_SCALE)
        super().__init__(task)
        self.scale = float(scale)
        self.name = f"{task.name}*p/{self.scale:.3g}"

    def init(self, key):
        return _times(self.inner.init(key), 1 / self.scale)

    def loss(self, params, batch):
        return self.inner.loss(_times(params, self.scale), batch)


def scaled_task(task: Task, scale_range: tuple[float, float], seed: int) -> Task:
    """``task`` at a scale drawn log-uniformly from ``scale_range`` with ``seed`` (the task
    itself when the range is one point at 1). The draw does not correlate with a family's
    config drawn from the same seed."""
    low, high = scale_range
    if low == high == 1.0:
        return task
    log_scale = np.random.default_rng((seed, SCALE_STREAM)).uniform(math.log(low), math.log(high))
    return ParameterScaled(task, math.exp(log_scale))


def check_scale_range(field: str, value) -> None:
    """One clear error unless ``value`` is ``[low, high]`` with ``1/MAX_SCALE ≤ low ≤ high ≤
    MAX_SCALE``."""
    ok = len(value) == 2 and 1 / MAX_SCALE <= value[0] <= value[1] <= MAX_SCALE
    if not ok:
        raise LoptError(
            f"invalid value for {field}: {list(value)} (expected [low, high] with "
            f"{1 / MAX_SCALE:g} <= low <= high <= {MAX_SCALE:g}; [1, 1] for none)"
        )


def _times(params, factor: float):
    return jax.tree.map(lambda x: x * factor if eqx.is_inexact_array(x) else x, params)
