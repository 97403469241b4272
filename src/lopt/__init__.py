"""lopt: learned optimizers — meta-train, self-train, study and use them."""

__version__ = "0.1.0"
