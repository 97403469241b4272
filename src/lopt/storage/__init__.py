"""What lopt keeps on disk, and how: atomic writes and strict JSON (``files``), checksummed
safetensors pytrees for saved optimizers and run checkpoints (``checkpoint``), one process at a
time in a directory (``lock``), and output directories checked before long jobs (``outputs``).

Imports nothing itself: ``files``, ``lock`` and ``outputs`` import no JAX (``lopt.torch`` reads
saved optimizers through ``files``); ``checkpoint`` does.
"""
