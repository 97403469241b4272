"""What a learned update costs against Adam's, down a ladder of designs.

    python benchmarks/speed_floor.py                  # JAX, then torch (1 thread) if installed
    python benchmarks/speed_floor.py --no-torch

lopt's speed targets (BENCHMARKS.md) ask a learned update to cost at most 3× (``small``) or 8×
(``rnn-mlp``) an Adam update. This measures which parts of a design cost what on this machine,
from the shipped architectures down to a network with no reduction over the tensor, all side
by side in one process (JAX: ``update_times`` of ``lopt.bench.learned``, interleaved, best of
5; torch: ``step_time`` of ``lopt.torch.bench``, best of 3, taking turns):

- ``fast`` and ``fast hierarchical``: the ``fast`` architecture (``lopt.specs.fast``: three
  accumulators, features scaled per parameter, one reduction over each tensor, a network of 4
  hidden units) and its hierarchical variant with a per-tensor LSTM of 8 units;
- ``fast adaptive``: ``fast`` with every option a meta-trained ``fast`` uses (a relative step,
  the ``valid_over_train`` input and ``adaptive_step``: three more sums over each tensor);
- ``small`` and ``rnn-mlp``: the shipped architectures (random weights);
- ``per-parameter``: ``small``'s network (one hidden layer of 8, four decays, loss and horizon
  inputs) with ``feature_normalization="parameter"`` — features scaled per parameter, no
  reduction over the tensor — and no trust region or distance scaling: the architecture of
  ``reproduce/configs/ab-parameter-normalization.json``;
- ``minimal``: the smallest ``mlp`` learned optimizer that corrects Adam's direction as
  ``small`` does (momenta and second moments at Adam's two decays, 0.9 and 0.999, so 8
  per-parameter features, each normalized over its tensor; no time, loss, horizon or distance
  inputs, no trust region) with one hidden layer of 4;
- ``rnn-mlp minimal``: the smallest hierarchical optimizer that keeps what defines the design
  (features at the five decays 0.5–0.9999, normalized over the tensor; the per-tensor LSTM,
  here of 8 units; the learned gradient clipping) and a per-parameter MLP of two hidden
  layers of 4 (one is not cheaper: with the first layer pooled for the LSTM, XLA's CPU code
  for the update was slower than the shipped network's), no trust region, no distance scaling;
- ``no reductions`` (written here, not something lopt ships or can meta-train): below what the
  library builds — the gradient and the momenta at 0.9 and 0.99, each divided by √v̂ at 0.999
  (Adam's normalization, per parameter) and clipped, instead of normalized over the tensor,
  into one hidden layer of 4 whose two outputs correct Adam's direction as ``small``'s do. No
  input needs a reduction over the tensor, so the whole update can be one pass; it keeps three
  accumulators to Adam's two. In torch: the accumulators by ``torch._foreach_lerp_`` (as
  ``torch.optim.Adam`` updates its own), the rest per tensor, eagerly and through
  ``torch.compile``;
- ``accumulators``: only the EMAs of g and g² at 0.9 and 0.999, no features and no network
  (JAX only): what keeping two momenta and two second moments costs, whatever the network.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.bench.learned import SIZES, accumulators_only, mlp_params, update_times
from lopt.learned import build_architecture
from lopt.learned.features import bias_corrected
from lopt.pretrained import shipped_architecture
from lopt.specs.constants import EPS, FEATURE_CLIP
from lopt.unrolled import affine

MINIMAL = {
    "kind": "mlp",
    "hidden": [4],
    "decays": [0.9, 0.999],
    "timescales": [],
    "nominal": True,
}
RNN_MLP_MINIMAL = {
    "kind": "rnn-mlp",
    "mlp_hidden": [4, 4],
    "lstm_hidden": 8,
    "to_mlp": 4,
    "deepsets": 4,
}
PER_PARAMETER = {
    "kind": "mlp",
    "hidden": [8],
    "with_loss_features": True,
    "with_horizon_feature": True,
    "feature_normalization": "parameter",
}
FAST = {"kind": "fast"}
FAST_HIERARCHICAL = {"kind": "fast", "lstm_hidden": 8}
FAST_ADAPTIVE = {
    "kind": "fast",
    "relative_step": True,
    "valid_over_train": True,
    "adaptive_step": True,
}
LADDER = {
    "fast": FAST,
    "fast hierarchical": FAST_HIERARCHICAL,
    "fast adaptive": FAST_ADAPTIVE,
    "small": shipped_architecture("small"),
    "per-parameter": PER_PARAMETER,
    "minimal": MINIMAL,
    "rnn-mlp": shipped_architecture("rnn-mlp"),
    "rnn-mlp minimal": RNN_MLP_MINIMAL,
}


class NoReductionState(NamedTuple):
    momentum_09: optax.Params
    momentum_099: optax.Params
    second_moment_0999: optax.Params
    count: jax.Array


def no_reduction_weights(hidden: int = 4, output_scale: float = 0.1) -> list[np.ndarray]:
    """``[w1 (hidden, 3), b1, w2 (2, hidden), b2]`` of the reduction-free network: N(0, 1) first
    layer, ``output_scale`` × N(0, 1) output layer (0 makes the optimizer Adam)."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(hidden, 3)), output_scale * rng.normal(size=(2, hidden))
    return [x.astype(np.float32) for x in (w1, np.zeros(hidden), w2, np.zeros(2))]


def no_reduction_optimizer(step: float = 1e-3, **weights):
    """The reduction-free per-parameter MLP optimizer in JAX (``no_reduction_weights``): g,
    m₀.₉ and m₀.₉₉, each ÷ √v̂₀.₉₉₉ and clipped, → hidden ReLU units → a direction ``d`` and a
    log-magnitude ``a``; ``Δp = −step · exp(a) · (m̂₀.₉/√v̂₀.₉₉₉ + d)``."""
    w1, b1, w2, b2 = (jnp.asarray(x) for x in no_reduction_weights(**weights))
    ema = lambda decay: lambda x, g: decay * x + (1 - decay) * g

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return NoReductionState(zeros, zeros, zeros, jnp.zeros((), jnp.int32))

    def one_tensor(g, m9, m99, v, count):
        rsqrt_v = jax.lax.rsqrt(bias_corrected(v, 0.999, count) + EPS)
        inputs = [jnp.clip(x * rsqrt_v, -FEATURE_CLIP, FEATURE_CLIP) for x in (g, m9, m99)]
        units = [jax.nn.relu(h) for h in affine(w1, b1, inputs)]
        direction, log_magnitude = affine(w2, b2, units)
        nominal = bias_corrected(m9, 0.9, count) * rsqrt_v
        return -step * jnp.exp(log_magnitude) * (nominal + direction)

    def update(grads, state, params=None, **extra):
        del params, extra
        state = NoReductionState(
            jax.tree.map(ema(0.9), state.momentum_09, grads),
            jax.tree.map(ema(0.99), state.momentum_099, grads),
            jax.tree.map(lambda v, g: ema(0.999)(v, g * g), state.second_moment_0999, grads),
            state.count + 1,
        )
        updates = jax.tree.map(
            lambda *xs: one_tensor(*xs, state.count),
            grads,
            state.momentum_09,
            state.momentum_099,
            state.second_moment_0999,
        )
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)


def torch_no_reduction_optimizer(params, step: float = 1e-3, compile: bool = False, **weights):
    """The same optimizer as ``no_reduction_optimizer``, as a ``torch.optim.Optimizer``."""
    import torch

    w1, b1, w2, b2 = (torch.from_numpy(x) for x in no_reduction_weights(**weights))

    def delta(g, m9, m99, v, correction1, correction2):
        rsqrt_v = torch.rsqrt(v / correction2 + EPS)
        inputs = [torch.clamp(x * rsqrt_v, -FEATURE_CLIP, FEATURE_CLIP) for x in (g, m9, m99)]
        units = [torch.relu(h) for h in affine(w1, b1, inputs)]
        direction, log_magnitude = affine(w2, b2, units)
        return -step * torch.exp(log_magnitude) * (m9 / correction1 * rsqrt_v + direction)

    per_tensor = torch.compile(delta, dynamic=False) if compile else delta

    class NoReduction(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})
            self.count = 0

        @torch.no_grad()
        def step(self):
            params = [p for group in self.param_groups for p in group["params"]]
            grads = [p.grad for p in params]
            if not self.state:
                for p in params:
                    self.state[p] = {k: torch.zeros_like(p) for k in ("m9", "m99", "v")}
            m9, m99, v = ([self.state[p][k] for p in params] for k in ("m9", "m99", "v"))
            torch._foreach_lerp_(m9, grads, 0.1)
            torch._foreach_lerp_(m99, grads, 0.01)
            torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 0.001)
            self.count += 1
            # tensors, not floats: torch.compile would specialize on every new float
            c1, c2 = torch.tensor(1 - 0.9**self.count), torch.tensor(1 - 0.999**self.count)
            deltas = [per_tensor(*xs, c1, c2) for xs in zip(grads, m9, m99, v, strict=True)]
            torch._foreach_add_(params, deltas)

    return NoReduction(params)


def jax_ratios(sizes=SIZES, calls: int = 30, repeats: int = 5) -> dict[int, dict[str, float]]:
    """Per size: Adam's update in ms and every rung's update time ÷ Adam's."""
    rows = {}
    for size in sizes:
        params = mlp_params(size)
        optimizers = {"adam": optax.with_extra_args_support(optax.adam(1e-3))}
        for name, config in LADDER.items():
            arch = build_architecture(config)
            optimizers[name] = arch.optimizer(arch.init_theta(jax.random.key(0)))
        optimizers["no reductions"] = no_reduction_optimizer()
        optimizers["accumulators"] = accumulators_only(tuple(MINIMAL["decays"]))
        times = update_times(optimizers, params, calls, repeats)
        adam = times.pop("adam")
        rows[size] = {"adam_ms": 1e3 * adam, **{n: t / adam for n, t in times.items()}}
    return rows


def torch_ratios(sizes=SIZES, calls: int = 20, repeats: int = 3) -> dict[int, dict[str, float]]:
    """Per size: torch.optim.Adam's step in ms and each rung's step time ÷ Adam's, eager and
    compiled (``compile=True``), on one intra-op thread."""
    import torch

    from lopt.torch.bench import mlp_params as torch_params
    from lopt.torch.bench import step_time, write_random_optimizer
    from lopt.torch.optimizer import LearnedOptimizer

    rows = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # Every compiled rung compiles the same function (up to three shape classes each): above
    # dynamo's default of 8 compilations per function the later rungs would run eagerly. Both
    # settings are the process's, so they are given back afterwards.
    try:
        with (
            torch._dynamo.config.patch(recompile_limit=64),
            tempfile.TemporaryDirectory() as folder,
        ):
            stems = {name: pathlib.Path(folder) / name for name in LADDER}
            for name, config in LADDER.items():
                write_random_optimizer(stems[name], config)
            for size in sizes:
                params = torch_params(size)
                optimizers = {"adam": torch.optim.Adam(params, lr=1e-3)}
                for name, stem in stems.items():
                    optimizers[name] = LearnedOptimizer(params, stem)
                    optimizers[f"{name} compiled"] = LearnedOptimizer(params, stem, compile=True)
                optimizers["no reductions"] = torch_no_reduction_optimizer(params)
                optimizers["no reductions compiled"] = torch_no_reduction_optimizer(
                    params, compile=True
                )
                best = dict.fromkeys(optimizers, float("inf"))
                for _ in range(repeats):
                    for name, optimizer in optimizers.items():
                        best[name] = min(best[name], step_time(optimizer, params, calls, 1))
                adam = best.pop("adam")
                rows[size] = {"adam_ms": 1e3 * adam, **{n: t / adam for n, t in best.items()}}
    finally:
        torch.set_num_threads(threads)
    return rows


def state_ratios(sizes=SIZES) -> dict[int, dict[str, float]]:
    """Per size: the bytes of each rung's optimizer state ÷ the bytes of Adam's."""
    nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
    rows = {}
    for size in sizes:
        params = mlp_params(size)
        adam = nbytes(optax.adam(1e-3).init(params))
        row = {}
        for name, config in LADDER.items():
            arch = build_architecture(config)
            state = jax.eval_shape(arch.optimizer(arch.init_theta(jax.random.key(0))).init, params)
            row[name] = nbytes(state) / adam
        rows[size] = row
    return rows


def table(title: str, rows: dict[int, dict[str, float]]) -> str:
    """A markdown table of ratios per size, with Adam's time when the rows hold one."""
    first = next(iter(rows.values()))
    names = [n for n in first if n != "adam_ms"]
    timed = "adam_ms" in first
    lines = [
        f"{title}\n",
        "| params | " + "Adam (ms) | " * timed + " | ".join(f"{n} ÷ Adam" for n in names) + " |",
        "|---:|" + "---:|" * (timed + len(names)),
    ]
    for size, row in rows.items():
        adam = [f"{row['adam_ms']:.3f}"] if timed else []
        cells = [f"{size:,}", *adam, *(f"{row[n]:.1f}×" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-torch", action="store_true", help="JAX only")
    args = parser.parse_args()
    print(table("JAX: jitted update ÷ optax.adam", jax_ratios()), flush=True)
    print()
    print(table("optimizer state ÷ Adam's (bytes)", state_ratios()), flush=True)
    if not args.no_torch:
        print()
        print(table("torch (1 thread): step ÷ torch.optim.Adam", torch_ratios()))


if __name__ == "__main__":
    main()
