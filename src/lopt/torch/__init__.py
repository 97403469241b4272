"""PyTorch front end: the learned optimizers of lopt as a ``torch.optim.Optimizer``.

>>> from lopt.torch import LearnedOptimizer
>>> optimizer = LearnedOptimizer(model.parameters(), "small")
>>> loss.backward()
>>> optimizer.step(loss=loss)

The "fast", "mlp" and "rnn-mlp" architectures run in PyTorch (no JAX at step time; this package
imports neither JAX nor ``lopt.learned``) and match the JAX update to float32 rounding. Needs the
optional extra: ``pip install 'lopt[torch]'``. See docs/torch.md.
"""

from lopt.torch.fast import FastConfig
from lopt.torch.files import SHIPPED, load
from lopt.torch.networks import MLPConfig, RNNMLPConfig
from lopt.torch.optimizer import LearnedOptimizer

__all__ = ["SHIPPED", "FastConfig", "LearnedOptimizer", "MLPConfig", "RNNMLPConfig", "load"]
