"""Character-level GRU language models on real text: English prose from Python's
``pydoc_data/topics.py`` or Python source from the standard library."""

from __future__ import annotations

from dataclasses import dataclass

import jax

from lopt.errors import check_choice, check_range
from lopt.tasks.base import DataTask, TaskFamily, config_name, cross_entropy
from lopt.tasks.datasets import VOCAB
from lopt.tasks.models import CharRNN


@dataclass(frozen=True)
class CharLMConfig:
    corpus: str = "prose"
    embed: int = 16
    hidden: int = 64
    seq_len: int = 32
    batch_size: int = 32


class CharLM(DataTask):
    """Next-character prediction; loss is mean cross-entropy per character (nats)."""

    eval_cap = 256

    def __init__(self, config: CharLMConfig):
        check_choice("corpus", config.corpus, ["prose", "code"])
        check_range("embed", config.embed, 1, 1024)
        check_range("hidden", config.hidden, 1, 4096)
        check_range("seq_len", config.seq_len, 2, 64)
        check_range("batch_size", config.batch_size, 1, 4096)
        super().__init__(config_name("charlm", config), f"text-{config.corpus}", config.batch_size)
        self.config = config

    def init(self, key):
        return CharRNN(len(VOCAB), self.config.embed, self.config.hidden, key=key)

    def loss(self, params, batch):
        x, y = batch
        n = self.config.seq_len
        return cross_entropy(jax.vmap(params)(x[:, :n]), y[:, :n])


class CharLMFamily(TaskFamily):
    """GRU character LMs; corpus, embedding, width, sequence length and batch sampled."""

    def __init__(
        self,
        name: str = "charlm",
        corpora=("prose", "code"),
        embeds=(8, 16),
        hiddens=(32, 64),
        seq_lens=(16, 32),
        batch_sizes=(16, 32),
    ):
        for corpus in corpora:
            check_choice("corpus", corpus, ["prose", "code"])
        self.name = name
        self.choices = dict(
            corpus=corpora, embed=embeds, hidden=hiddens, seq_len=seq_lens, batch_size=batch_sizes
        )

    def sample_config(self, rng):
        draws = {name: rng.choice(options) for name, options in self.choices.items()}
        return CharLMConfig(**{name: type(self.choices[name][0])(v) for name, v in draws.items()})

    def task(self, config):
        return CharLM(config)
