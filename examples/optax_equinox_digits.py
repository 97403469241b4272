"""Train an equinox MLP on sklearn's digits with optax: ``lopt.pretrained("small")`` vs Adam.

    python examples/optax_equinox_digits.py
    lopt meta-train --config mlp-from-scratch --out runs/mine
    python examples/optax_equinox_digits.py --weights runs/mine/best.safetensors

A learned optimizer is an ``optax.GradientTransformationExtraArgs``: ``update`` takes the
training loss and the latest validation-minibatch loss as keywords (read as features by the
shipped optimizers); everything else is the usual optax loop.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits

import lopt

STEPS, BATCH, HIDDEN, SEED = 1000, 128, 64, 0
VALID_EVERY = 10  # steps between validation-minibatch losses, as lopt's training loop does


def data():
    x, y = load_digits(return_X_y=True)
    x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)
    perm = jax.random.permutation(jax.random.key(SEED), len(x))
    train, valid, test = perm[:1200], perm[1200:1400], perm[1400:]
    return (x[train], y[train]), (x[valid], y[valid]), (x[test], y[test])


def loss_fn(model, x, y):
    logits = jax.vmap(model)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train(optimizer, train_data, valid_data, test_data) -> list[tuple[int, float, float]]:
    """``(step, train loss, test loss)`` every 100 steps of minibatch training."""
    model = eqx.nn.MLP(64, 10, HIDDEN, depth=1, key=jax.random.key(SEED))
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    (x, y), (x_valid, y_valid), (x_test, y_test) = train_data, valid_data, test_data

    @eqx.filter_jit
    def step(model, state, key, valid_loss):
        batch = jax.random.randint(key, (BATCH,), 0, len(x))
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x[batch], y[batch])
        params = eqx.filter(model, eqx.is_array)
        updates, state = optimizer.update(grads, state, params, loss=loss, valid_loss=valid_loss)
        return eqx.apply_updates(model, updates), state, loss

    @eqx.filter_jit
    def validation_loss(model, key):
        batch = jax.random.randint(key, (BATCH,), 0, len(x_valid))
        return loss_fn(model, x_valid[batch], y_valid[batch])

    keys = jax.random.split(jax.random.key(SEED + 1), (STEPS, 2))
    log = []
    for i in range(STEPS):
        if i % VALID_EVERY == 0:
            valid_loss = validation_loss(model, keys[i, 1])
        model, state, loss = step(model, state, keys[i, 0], valid_loss)
        if i % 100 == 0 or i == STEPS - 1:
            log.append((i + 1, float(loss), float(eqx.filter_jit(loss_fn)(model, x_test, y_test))))
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a saved optimizer (default: the shipped 'small')")
    parser.add_argument("--adam-lr", type=float, default=1e-3)
    args = parser.parse_args()
    learned = lopt.load(args.weights or "small", total_steps=STEPS)
    splits = data()
    runs = {
        f"learned ({args.weights or 'small'})": learned,
        f"Adam (lr={args.adam_lr:g})": optax.with_extra_args_support(optax.adam(args.adam_lr)),
    }
    logs = {}
    for name, optimizer in runs.items():
        start = time.perf_counter()
        logs[name] = train(optimizer, *splits)
        print(f"{name}: {time.perf_counter() - start:.1f} s for {STEPS} steps")
    print(f"\n{'step':>5} " + " ".join(f"{n + ' train/test':>34}" for n in logs))
    for rows in zip(*logs.values(), strict=True):
        cells = " ".join(f"{f'{train:.4f} / {test:.4f}':>34}" for _, train, test in rows)
        print(f"{rows[0][0]:>5} {cells}")


if __name__ == "__main__":
    main()
