"""Train a small MLP on sklearn's digits in plain PyTorch: learned optimizer vs Adam.

    python examples/torch_digits.py                      # the shipped "small" optimizer
    python examples/torch_digits.py --optimizer rnn-mlp  # or a name, a saved file, a run dir

``LearnedOptimizer`` is a ``torch.optim.Optimizer``; the only difference in the loop is that it
is given the training loss and, every few steps, the loss on a validation minibatch (both read
as features by the shipped optimizers, as in meta-training). Needs ``lopt[torch]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits

from lopt.torch import LearnedOptimizer

STEPS, BATCH, HIDDEN, SEED = 1000, 128, 64, 0
VALID_EVERY = 10  # steps between validation-minibatch losses, as lopt's training loop does


def data():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    train, valid, test = perm[:1200], perm[1200:1400], perm[1400:]
    return (x[train], y[train]), (x[valid], y[valid]), (x[test], y[test])


def model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)
    )


def train(make_optimizer, train_data, valid_data, test_data) -> list[tuple[int, float, float]]:
    """``(step, train loss, test loss)`` every 100 steps of minibatch training."""
    net = model()
    optimizer = make_optimizer(net.parameters())
    (x, y), (x_valid, y_valid), (x_test, y_test) = train_data, valid_data, test_data
    cross_entropy = torch.nn.functional.cross_entropy
    generator = torch.Generator().manual_seed(SEED)
    log = []
    for step in range(STEPS + 1):
        batch = torch.randint(len(x), (BATCH,), generator=generator)
        loss = cross_entropy(net(x[batch]), y[batch])
        if step % 100 == 0:
            with torch.no_grad():
                test = cross_entropy(net(x_test), y_test)
            log.append((step, loss.item(), test.item()))
        if step == STEPS:
            break
        if step % VALID_EVERY == 0:
            with torch.no_grad():
                batch = torch.randint(len(x_valid), (BATCH,), generator=generator)
                valid_loss = cross_entropy(net(x_valid[batch]), y_valid[batch])
        optimizer.zero_grad()
        loss.backward()
        if isinstance(optimizer, LearnedOptimizer):
            optimizer.step(loss=loss, valid_loss=valid_loss)
        else:
            optimizer.step()
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="small", help="shipped name or saved optimizer")
    parser.add_argument("--adam-lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = data()
    runs = {
        f"learned ({args.optimizer})": lambda p: LearnedOptimizer(
            p, args.optimizer, total_steps=STEPS
        ),
        f"Adam (lr={args.adam_lr:g})": lambda p: torch.optim.Adam(p, lr=args.adam_lr),
    }
    logs = {}
    for name, make in runs.items():
        start = time.perf_counter()
        logs[name] = train(make, *splits)
        print(f"{name}: {time.perf_counter() - start:.1f} s for {STEPS} steps")
    print(f"\n{'step':>5} " + " ".join(f"{n + ' train/test':>34}" for n in logs))
    for rows in zip(*logs.values(), strict=True):
        cells = " ".join(f"{f'{train:.4f} / {test:.4f}':>34}" for _, train, test in rows)
        print(f"{rows[0][0]:>5} {cells}")


if __name__ == "__main__":
    main()
