"""Small Equinox models used by the task families.

Every non-array field is static, so a model *is* its parameter pytree: optax, the learned
optimizers and ``jax.vmap`` see arrays only. Models act on one example; tasks ``vmap`` them.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "sigmoid": jax.nn.sigmoid,
}


def scale_init(model: eqx.Module, scale: float) -> eqx.Module:
    """Multiply every parameter by ``scale`` (the sampled initialization scale)."""
    return jax.tree.map(lambda a: a * scale, model)


class MLP(eqx.Module):
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]``; no activation on the output."""

    layers: list[eqx.nn.Linear]
    activation: str = eqx.field(static=True)

    def __init__(self, sizes: tuple[int, ...], activation: str, *, key: jax.Array):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (sizes[0],) -> (sizes[-1],)``."""
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


class ResidualMLP(eqx.Module):
    """A linear map to ``width``, ``blocks`` pre-LayerNorm residual blocks
    ``x + W₂ act(W₁ LN(x))`` (``width × width`` each), a final LayerNorm and a linear head."""

    embed: eqx.nn.Linear
    norms: list[eqx.nn.LayerNorm]
    inner: list[eqx.nn.Linear]
    outer: list[eqx.nn.Linear]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    activation: str = eqx.field(static=True)

    def __init__(
        self, in_dim: int, width: int, blocks: int, out_dim: int, activation: str, *, key: jax.Array
    ):
        keys = jax.random.split(key, 2 * blocks + 2)
        self.embed = eqx.nn.Linear(in_dim, width, key=keys[0])
        self.norms = [eqx.nn.LayerNorm(width) for _ in range(blocks)]
        self.inner = [eqx.nn.Linear(width, width, key=k) for k in keys[2 : 2 + blocks]]
        self.outer = [eqx.nn.Linear(width, width, key=k) for k in keys[2 + blocks :]]
        self.norm = eqx.nn.LayerNorm(width)
        self.head = eqx.nn.Linear(width, out_dim, key=keys[1])
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (in_dim,) -> (out_dim,)``."""
        act = ACTIVATIONS[self.activation]
        x = self.embed(x)
        for norm, inner, outer in zip(self.norms, self.inner, self.outer, strict=True):
            x = x + outer(act(inner(norm(x))))
        return self.head(self.norm(x))


class ConvNet(eqx.Module):
    """Strided convolutions, global average pooling, then a linear head (1-D or 2-D inputs)."""

    convs: list[eqx.nn.Conv]
    head: eqx.nn.Linear
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        spatial_dims: int,
        channels: tuple[int, ...],
        kernel: int,
        num_classes: int,
        activation: str,
        *,
        key: jax.Array,
    ):
        keys = jax.random.split(key, len(channels) + 1)
        sizes = (1, *channels)
        self.convs = [
            eqx.nn.Conv(spatial_dims, a, b, kernel, stride=2, padding=kernel // 2, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys[:-1], strict=True)
        ]
        self.head = eqx.nn.Linear(channels[-1], num_classes, key=keys[-1])
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (1, *spatial) -> (num_classes,)``."""
        act = ACTIVATIONS[self.activation]
        for conv in self.convs:
            x = act(conv_as_matmul(conv, x))
        return self.head(jnp.mean(x.reshape(x.shape[0], -1), axis=1))


def conv_as_matmul(conv: eqx.nn.Conv, x: jax.Array) -> jax.Array:
    """``conv(x)`` for one example, computed as the input's patches times the flattened kernel.

    The same function as the convolution (in float32 the two usually agree bit for bit), but
    when the weights are batched — ``jax.vmap`` over several sets of parameters, as in learning
    rate grids and ES particles — it is a batched matmul instead of the grouped convolution
    that JAX's batching rule makes, which XLA on CPU runs slowly: Adam over 14 learning rates
    trains the conv tasks 1.9–2.6× faster this way, ES estimates run 1.5–2.8× and single runs
    1.3–1.9× faster (``benchmarks/conv_as_matmul.py``). For convolutions as ``ConvNet``
    builds them: one group, zero padding, with a bias.
    """
    patches = jax.lax.conv_general_dilated_patches(
        x[None], conv.kernel_size, conv.stride, conv.padding, rhs_dilation=conv.dilation
    )[0]  # (in_channels · prod(kernel), *out_spatial), channel-major like the kernel
    out = jnp.einsum("oc,c...->o...", conv.weight.reshape(conv.weight.shape[0], -1), patches)
    return out + conv.bias


class CharRNN(eqx.Module):
    """Character-level GRU language model: embed, recur, project to the vocabulary."""

    embed: eqx.nn.Embedding
    cell: eqx.nn.GRUCell
    head: eqx.nn.Linear

    def __init__(self, vocab: int, embed: int, hidden: int, *, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.embed = eqx.nn.Embedding(vocab, embed, key=k1)
        self.cell = eqx.nn.GRUCell(embed, hidden, key=k2)
        self.head = eqx.nn.Linear(hidden, vocab, key=k3)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``tokens (seq,) int -> logits (seq, vocab)`` predicting each next token."""

        def step(h, token):
            h = self.cell(self.embed(token), h)
            return h, self.head(h)

        _, logits = jax.lax.scan(step, jnp.zeros(self.cell.hidden_size), tokens)
        return logits
