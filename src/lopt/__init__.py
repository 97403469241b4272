"""lopt: learned optimizers — meta-train, self-train, study and use them.

>>> import lopt, optax
>>> opt = lopt.pretrained("small", total_steps=1000)  # an optax.GradientTransformationExtraArgs
>>> state = opt.init(params)
>>> updates, state = opt.update(grads, state, params, loss=loss)
>>> params = optax.apply_updates(params, updates)

Importing lopt does not import JAX (it loads with the first optimizer or subpackage that needs
it), so ``import lopt.torch``, the PyTorch front end, never does.
"""

import importlib

from lopt.pretrained import load, pretrained

__version__ = "0.12.0"
__all__ = ["hybrid", "load", "pretrained", "stepsize"]


def __getattr__(name: str):
    if name in ("hybrid", "stepsize"):
        return importlib.import_module(f"lopt.{name}")
    raise AttributeError(f"module 'lopt' has no attribute {name!r}")
