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
    name = "charlm"

    def sample_config(self, rng):
        return CharLMConfig(
            corpus=str(rng.choice(["prose", "code"])),
            embed=int(rng.choice([8, 16])),
            hidden=int(rng.choice([32, 64])),
            seq_len=int(rng.choice([16, 32])),
            batch_size=int(rng.choice([16, 32])),
        )

    def task(self, config):
        return CharLM(config)
