"""lopt: learned optimizers — meta-train, self-train, study and use them.

>>> import lopt, optax
>>> opt = lopt.pretrained("small")          # an optax.GradientTransformationExtraArgs
>>> state = opt.init(params)
>>> updates, state = opt.update(grads, state, params, loss=loss)
>>> params = optax.apply_updates(params, updates)
"""

from lopt import stepsize
from lopt.pretrained import load, pretrained

__version__ = "0.1.0"
__all__ = ["load", "pretrained", "stepsize"]
