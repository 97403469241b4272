"""Population-based training (Jaderberg et al. 2017, arXiv 1711.09846) as used for self-training
(Metz et al. 2021, arXiv 2101.07367), whose exploit/explore rules are not published; these are:

- **exploit** (truncation selection): rank members by validation meta-loss (lower is better;
  non-finite counts as worst); each of the worst ``n = round(fraction · P)`` members (at least one,
  at most P/2) copies a member drawn uniformly from the best ``n`` — its θ, outer-optimizer state,
  estimator state and hyperparameters.
- **explore**: each copy's θ moves by ``sigma · N(0, 1)``; a per-member learning rate (the Adam
  comparison) is multiplied or divided by a factor, chosen at random.

Every choice comes from an explicit PRNG key, so a seed fixes the whole history. Members carry
ids: a copy gets a fresh id, and the lineage records who copied whom, when.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def num_replaced(population: int, fraction: float) -> int:
    """How many members a PBT round replaces: ``round(fraction · P)`` clipped to [1, P // 2]."""
    if population < 2 or fraction <= 0:
        return 0
    return min(population // 2, max(1, round(fraction * population)))


def plan(key: jax.Array, scores: np.ndarray, fraction: float) -> np.ndarray:
    """The member each member continues from after exploitation.

    Args:
        key: PRNG key of this round.
        scores: ``(P,)`` validation meta-losses (lower is better).
        fraction: share of members to replace (see ``num_replaced``).

    Returns:
        ``parents``, ``(P,)`` int: ``parents[i] == i`` for a kept member, else the member it copies.
    """
    scores = np.where(np.isfinite(scores), scores, np.inf)
    population = len(scores)
    n = num_replaced(population, fraction)
    parents = np.arange(population)
    if n:
        order = np.argsort(scores, kind="stable")  # best first; ties by index
        winners, losers = order[:n], order[population - n :]
        picks = np.asarray(jax.random.randint(key, (n,), 0, n))
        parents[losers] = winners[picks]
    return parents


def exploit(tree: Any, parents: np.ndarray) -> Any:
    """Every leaf (member axis first) with member ``i`` replaced by member ``parents[i]``."""
    index = jnp.asarray(parents)
    return jax.tree.map(lambda x: x[index], tree)


def explore(key: jax.Array, thetas: Any, replaced: np.ndarray, sigma: float) -> Any:
    """``thetas`` with ``sigma · N(0, 1)`` added to the members where ``replaced`` is true."""
    leaves, treedef = jax.tree.flatten(thetas)
    keys = jax.random.split(key, len(leaves))
    mask = jnp.asarray(replaced)

    def perturb(x, k):
        noise = sigma * jax.random.normal(k, x.shape, x.dtype)
        return x + noise * mask.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)

    return jax.tree.unflatten(treedef, [perturb(x, k) for x, k in zip(leaves, keys, strict=True)])


def explore_log_scale(
    key: jax.Array, log_values: jax.Array, replaced: np.ndarray, factor: float
) -> jax.Array:
    """Per-member log hyperparameters ``(P,)``, moved by ±log(factor) where ``replaced``."""
    sign = jnp.where(jax.random.bernoulli(key, 0.5, log_values.shape), 1.0, -1.0)
    return log_values + jnp.where(jnp.asarray(replaced), sign * np.log(factor), 0.0)


def lineage(
    step: int, parents: np.ndarray, scores: np.ndarray, member_ids: np.ndarray, next_id: int
) -> tuple[list[dict], np.ndarray, int]:
    """Lineage records of one round, the new member ids and the next free id.

    Each replaced slot gets a fresh id; its record names the member that was replaced, the
    member copied, and both scores at the time of the round.
    """
    records, ids = [], np.array(member_ids)
    for slot in np.flatnonzero(parents != np.arange(len(parents))):
        parent = int(parents[slot])
        records.append(
            {
                "step": step,
                "slot": int(slot),
                "member": next_id,
                "parent": int(member_ids[parent]),
                "parent_slot": parent,
                "replaced": int(member_ids[slot]),
                "score": float(scores[slot]),
                "parent_score": float(scores[parent]),
            }
        )
        ids[slot] = next_id
        next_id += 1
    return records, ids, next_id
