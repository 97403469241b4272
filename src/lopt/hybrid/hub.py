"""Hybrid updates (HUB): one step combines a learned and a hand-designed optimizer's updates.

Dai et al. 2023, "HUB: Guiding Learned Optimizers with Continuous Prompt Tuning" (arXiv
2305.16823). The exact update rule of the paper was not available to us; the two modes are two
readings of what is published (docs/hybrid.md says which is which):

- ``"weighting"`` — the reviewers' description: per tensor, a convex combination
  ``u = w_L·u_L + w_H·u_H`` whose weights are a softmax over the two updates' magnitudes. With
  ``s_k = rms(u_k) / (rms(u_L) + rms(u_H))`` (scale-free, ``s_L + s_H = 1``),
  ``(w_L, w_H) = softmax(±(s_L, s_H) / temperature)``: ``+`` from scratch (the larger proposal —
  usually the learned one — dominates), ``−`` for fine-tuning (``finetune=True``: the smaller,
  more conservative proposal dominates, keeping the weights near their pretrained values).
- ``"select"`` — the abstract's "result selection": each step, evaluate the minibatch loss under
  both candidate updates and keep the lower one (two extra forward passes per step, counted in
  the state).

``weight=`` pins ``w_L`` (a float in ``[0, 1]`` or a traced scalar): ``1`` reproduces the learned
optimizer exactly, ``0`` the hand-designed one. Both components always run, so their states
evolve exactly as they would alone.

Example::

    opt = hub(lopt.pretrained("small"), optax.adam(1e-3))                  # weighting
    opt = hub(learned, optax.adam(1e-3), mode="select", loss_fn=task.loss)
    updates, state = opt.update(grads, state, params, loss=loss, batch=batch)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.errors import LoptError, check_choice, check_range

MODES = ("weighting", "select")
DEFAULT_TEMPERATURE = 0.25
CANDIDATES = 2  # the learned and the hand-designed update
_TINY = 1e-30


class HubState(NamedTuple):
    """State of a hybrid optimizer.

    Attributes:
        learned: the learned optimizer's own state.
        hand_designed: the hand-designed optimizer's own state.
        learned_weight: pytree like params with one float32 scalar per tensor: the weight the
            last step gave the learned update (``1``/``0`` in ``"select"`` mode).
        extra_forward_passes: int32 scalar, loss evaluations made by the combinator so far
            (``2`` per step in ``"select"`` mode, ``0`` otherwise).
    """

    learned: Any
    hand_designed: Any
    learned_weight: Any
    extra_forward_passes: jax.Array


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32))))


def softmax_weight(learned: jax.Array, hand: jax.Array, temperature, finetune: bool) -> jax.Array:
    """Weight of the learned update of one tensor (a float32 scalar in ``(0, 1)``).

    Args:
        learned, hand: the two proposed updates of the tensor (same shape).
        temperature: softmax temperature (> 0); small values make the choice sharper.
        finetune: invert the preference (the smaller update dominates).
    """
    a_learned, a_hand = _rms(learned), _rms(hand)
    total = a_learned + a_hand + _TINY
    sign = -1.0 if finetune else 1.0
    # softmax over two logits = sigmoid of their difference
    return jax.nn.sigmoid(sign * (a_learned - a_hand) / total / temperature)


def _mix(learned: jax.Array, hand: jax.Array, weight: jax.Array) -> jax.Array:
    """``weight·learned + (1 − weight)·hand``; a weight of exactly 1 or 0 returns that update
    untouched (even where the other one is not finite)."""
    mixed = weight * learned.astype(jnp.float32) + (1 - weight) * hand.astype(jnp.float32)
    mixed = jnp.where(weight == 0, hand.astype(jnp.float32), mixed)
    return jnp.where(weight == 1, learned, mixed.astype(learned.dtype))


def hub(
    learned: optax.GradientTransformation,
    hand_designed: optax.GradientTransformation,
    mode: str = "weighting",
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    finetune: bool = False,
    weight: float | jax.Array | None = None,
    loss_fn: Callable[[Any, Any], jax.Array] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Combine a learned and a hand-designed optimizer per tensor (Dai et al. 2023).

    Args:
        learned: the learned optimizer (any optax transformation; receives every extra arg).
        hand_designed: the hand-designed one (e.g. ``optax.adam(1e-3)``).
        mode: ``"weighting"`` (softmax over update magnitudes) or ``"select"`` (keep the
            candidate with the lower minibatch loss).
        temperature: softmax temperature of ``"weighting"`` (> 0; may be traced).
        finetune: ``"weighting"`` prefers the smaller update instead of the larger one.
        weight: pin the learned update's weight (``"weighting"`` only; ``[0, 1]``; may be
            traced, so a population can vmap over it).
        loss_fn: ``(params, batch) -> scalar`` loss, required by ``"select"``; ``update`` then
            needs the minibatch as ``batch=`` (``lopt.inner`` passes it).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` whose state is a ``HubState``.
    """
    check_choice("mode", mode, MODES)
    if not isinstance(temperature, jax.Array):  # a traced value is checked by its caller
        check_range("temperature", temperature, 1e-6)
    if weight is not None and not isinstance(weight, jax.Array):
        check_range("weight", weight, 0.0, 1.0)
    if mode == "select" and loss_fn is None:
        raise LoptError("mode='select' needs loss_fn=(params, batch) -> loss")
    if mode == "select" and weight is not None:
        raise LoptError("weight= pins the 'weighting' mode; mode='select' chooses per step")
    learned = optax.with_extra_args_support(learned)  # (returned as is if it takes them)
    hand_designed = optax.with_extra_args_support(hand_designed)

    def init(params):
        return HubState(
            learned.init(params),
            hand_designed.init(params),
            jax.tree.map(lambda _: jnp.ones((), jnp.float32), params),
            jnp.zeros((), jnp.int32),
        )

    def update(grads, state, params=None, **extra):
        u_learned, s_learned = learned.update(grads, state.learned, params, **extra)
        u_hand, s_hand = hand_designed.update(grads, state.hand_designed, params, **extra)
        passes = state.extra_forward_passes
        if mode == "select":
            weights = _select(u_learned, u_hand, params, extra)
            passes = passes + CANDIDATES
        elif weight is not None:
            pinned = jnp.asarray(weight, jnp.float32)
            weights = jax.tree.map(lambda _: pinned, u_learned)
        else:
            weights = jax.tree.map(
                lambda a, b: softmax_weight(a, b, temperature, finetune), u_learned, u_hand
            )
        updates = jax.tree.map(_mix, u_learned, u_hand, weights)
        return updates, HubState(s_learned, s_hand, weights, passes)

    def _select(u_learned, u_hand, params, extra):
        if "batch" not in extra or params is None:
            raise LoptError(
                "mode='select' evaluates the minibatch loss under both candidates: call "
                "update(grads, state, params, batch=batch)"
            )
        batch = extra["batch"]
        loss_learned = loss_fn(optax.apply_updates(params, u_learned), batch)
        loss_hand = loss_fn(optax.apply_updates(params, u_hand), batch)
        # A non-finite candidate loses; ties go to the learned update.
        finite_learned, finite_hand = jnp.isfinite(loss_learned), jnp.isfinite(loss_hand)
        take_learned = finite_learned & (~finite_hand | (loss_learned <= loss_hand))
        chosen = take_learned.astype(jnp.float32)
        return jax.tree.map(lambda _: chosen, u_learned)

    return optax.GradientTransformationExtraArgs(init, update)


def mean_learned_weight(state: HubState) -> jax.Array:
    """Mean over tensors of the weight the last step gave the learned update (a scalar)."""
    return jnp.mean(jnp.stack(jax.tree.leaves(state.learned_weight)))
