"""A per-tensor trust region on a learned optimizer's update.

Learned steps can be far too large on a task unlike the meta-training tasks: the shipped v2
``small`` moved the weights of the digits autoencoder by ≈ 1 (RMS) in its first step while
they were ≈ 0.1, and the model never recovered. The trust region scales each tensor's update
down, as a whole (its direction is kept), so that its RMS is at most ``ratio`` times the
tensor's own RMS, with ``floor`` standing in for the RMS of tensors still near zero (biases
initialized at 0). It is the relative step bound of LARS/LAMB-style trust ratios, used here as
a cap rather than a rescaling: updates already inside it are untouched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.learned.features import sqrt0
from lopt.specs.constants import MIN_NORM


def trust_region(update: jax.Array, param: jax.Array, ratio: float | None, floor: float):
    """``update`` scaled so that ``RMS(update) ≤ ratio · max(RMS(param), floor)``, the RMS
    taken in float32.

    With ``ratio=None`` the update is returned unchanged. A non-finite update stays non-finite
    (divergence is counted by the caller, not hidden here).
    """
    if ratio is None:
        return update
    rms = lambda x: sqrt0(jnp.mean(jnp.square(x.astype(jnp.float32))))
    limit = ratio * jnp.maximum(rms(param), floor)
    return update * jnp.minimum(1.0, limit / jnp.maximum(rms(update), MIN_NORM))
