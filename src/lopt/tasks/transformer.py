"""A character-level transformer language model on real text (English prose from Python's
``pydoc_data/topics.py`` or Python source from the standard library): token and learned
positional embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP
(4× wide), a final LayerNorm and a linear head over the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp

from lopt.errors import LoptError, check_choice, check_range
from lopt.tasks.base import DataTask, config_name, cross_entropy
from lopt.tasks.datasets import VOCAB


class CausalSelfAttention(eqx.Module):
    """Multi-head self-attention in which each position attends to itself and earlier ones."""

    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, d_model: int, heads: int, *, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.qkv = eqx.nn.Linear(d_model, 3 * d_model, key=k1)
        self.out = eqx.nn.Linear(d_model, d_model, key=k2)
        self.heads = heads

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (seq, d_model) -> (seq, d_model)``."""
        seq, d_model = x.shape
        q, k, v = (
            a.reshape(seq, self.heads, d_model // self.heads)
            for a in jnp.split(jax.vmap(self.qkv)(x), 3, axis=-1)
        )
        scores = jnp.einsum("thd,shd->hts", q, k) * q.shape[-1] ** -0.5
        causal = jnp.tril(jnp.ones((seq, seq), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        mixed = jnp.einsum("hts,shd->thd", weights, v).reshape(seq, d_model)
        return jax.vmap(self.out)(mixed)


class TransformerBlock(eqx.Module):
    """``x + attention(LN(x))``, then ``x + MLP(LN(x))`` (GELU, hidden 4 × ``d_model``)."""

    norm1: eqx.nn.LayerNorm
    attention: CausalSelfAttention
    norm2: eqx.nn.LayerNorm
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, d_model: int, heads: int, *, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm1 = eqx.nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, heads, key=k1)
        self.norm2 = eqx.nn.LayerNorm(d_model)
        self.fc1 = eqx.nn.Linear(d_model, 4 * d_model, key=k2)
        self.fc2 = eqx.nn.Linear(4 * d_model, d_model, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x (seq, d_model) -> (seq, d_model)``."""
        x = x + self.attention(jax.vmap(self.norm1)(x))
        mlp = lambda h: self.fc2(jax.nn.gelu(self.fc1(self.norm2(h))))
        return x + jax.vmap(mlp)(x)


class Transformer(eqx.Module):
    """Decoder-only transformer: embed tokens and positions, blocks, LayerNorm, project."""

    embed: eqx.nn.Embedding
    position: eqx.nn.Embedding
    blocks: list[TransformerBlock]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(
        self, vocab: int, seq_len: int, d_model: int, layers: int, heads: int, *, key: jax.Array
    ):
        keys = jax.random.split(key, layers + 3)
        self.embed = eqx.nn.Embedding(vocab, d_model, key=keys[0])
        self.position = eqx.nn.Embedding(seq_len, d_model, key=keys[1])
        self.blocks = [TransformerBlock(d_model, heads, key=k) for k in keys[3:]]
        self.norm = eqx.nn.LayerNorm(d_model)
        self.head = eqx.nn.Linear(d_model, vocab, key=keys[2])

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``tokens (seq,) int -> logits (seq, vocab)`` predicting each next token."""
        x = self.embed.weight[tokens] + self.position.weight[: tokens.shape[0]]
        for block in self.blocks:
            x = block(x)
        return jax.vmap(lambda h: self.head(self.norm(h)))(x)


@dataclass(frozen=True)
class TransformerLMConfig:
    corpus: str = "prose"
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    seq_len: int = 64
    batch_size: int = 32


class TransformerLM(DataTask):
    """Next-character prediction; loss is mean cross-entropy per character (nats)."""

    eval_cap = 256

    def __init__(self, config: TransformerLMConfig):
        check_choice("corpus", config.corpus, ["prose", "code"])
        check_range("d_model", config.d_model, 1, 1024)
        check_range("layers", config.layers, 1, 16)
        check_range("heads", config.heads, 1, config.d_model)
        if config.d_model % config.heads:
            raise LoptError(
                f"invalid value for heads: {config.heads} (allowed: a divisor of d_model="
                f"{config.d_model})"
            )
        check_range("seq_len", config.seq_len, 2, 64)
        check_range("batch_size", config.batch_size, 1, 4096)
        super().__init__(
            config_name("transformer", config), f"text-{config.corpus}", config.batch_size
        )
        self.config = config

    def init(self, key):
        c = self.config
        return Transformer(len(VOCAB), c.seq_len, c.d_model, c.layers, c.heads, key=key)

    def loss(self, params, batch):
        x, y = batch
        n = self.config.seq_len
        return cross_entropy(jax.vmap(params)(x[:, :n]), y[:, :n])
