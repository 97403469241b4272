"""The per-parameter MLP as fused multiply-adds (lopt's form) against a stacked-feature matmul.

    python benchmarks/per_param_mlp.py            # as in BENCHMARKS.md

``lopt.learned.features.per_param_mlp`` writes the network's first layer (and, when nothing is
pooled, every layer) as scalar-weight multiply-adds over whole feature arrays, so XLA fuses the
features and the network into one loop over the parameters. The alternative it replaced stacks
the features into a ``(numel, n)`` matrix and runs the layers as matmuls. Both are timed inside
the shipped architectures' ``update`` on MLP-shaped parameters of about 10k, 100k and 1M
entries, interleaved in one process with ``optax.adam`` (the denominator), best of 3 rounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import lopt.learned.hierarchical as hierarchical
import lopt.learned.mlp as mlp
from lopt.bench.learned import ARCHITECTURES, SIZES, mlp_params, update_time
from lopt.learned import build_architecture
from lopt.learned.features import per_param_mlp as fused


def stacked(layers, features, constants=None, pool=False):
    """The network as matmuls over the stacked ``(numel, n)`` feature matrix."""
    shape, n = features[0].shape, len(features)
    first = layers[0]
    bias = first.bias if constants is None else first.bias + first.weight[:, n:] @ constants
    x = jnp.stack([f.reshape(-1) for f in features], axis=-1) @ first.weight[:, :n].T + bias
    for layer in layers[1:]:
        hidden = jax.nn.relu(x)
        x = hidden @ layer.weight.T + layer.bias
    outputs = [x[:, j].reshape(shape) for j in range(x.shape[1])]
    return outputs, jnp.mean(hidden, axis=0) if pool else None


def optimizer(name: str, form) -> optax.GradientTransformationExtraArgs:
    mlp.per_param_mlp = hierarchical.per_param_mlp = form
    arch = build_architecture(ARCHITECTURES[name])
    theta = jax.tree.map(lambda x: x + 0.01, arch.init_theta(jax.random.key(0)))
    return arch.optimizer(theta)


def main() -> None:
    forms = {"fused": fused, "stacked": stacked}
    print(
        "params | Adam ms | " + " | ".join(f"{a} {f} ÷ Adam" for a in ARCHITECTURES for f in forms)
    )
    for size in SIZES:
        params = mlp_params(size)
        best: dict[str, float] = {}
        for _ in range(3):
            best["adam"] = min(
                best.get("adam", float("inf")),
                update_time(optax.with_extra_args_support(optax.adam(1e-3)), params, 30, 5),
            )
            for arch in ARCHITECTURES:
                for form_name, form in forms.items():
                    # The form is looked up when ``update`` is traced: inside update_time.
                    seconds = update_time(optimizer(arch, form), params, 30, 5)
                    label = f"{arch} {form_name}"
                    best[label] = min(best.get(label, float("inf")), seconds)
        adam = best.pop("adam")
        ratios = " | ".join(f"{t / adam:.1f}×" for t in best.values())
        print(f"{size:,} | {1e3 * adam:.3f} | {ratios}", flush=True)
    mlp.per_param_mlp = hierarchical.per_param_mlp = fused


if __name__ == "__main__":
    main()
