"""Speed benchmarks (``lopt bench``), every ratio measured in one run on one machine.

- ``timing``: best-of-repeats wall time, FLOPs from XLA's cost analysis, a measured matmul peak;
- ``inner``: inner-training steps/s and GFLOP/s per task family, the vmapped-tuning speedup;
- ``learned``: learned-optimizer update time ÷ Adam's, ES meta-training throughput;
- ``suite``: all of them in turn (``run_bench``), ``bench.json`` and the printed tables.
"""

from lopt.bench.suite import print_bench, run_bench, write_bench

__all__ = ["print_bench", "run_bench", "write_bench"]
