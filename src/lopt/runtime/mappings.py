"""Headroom under the kernel's per-process limit on memory mappings (Linux ``vm.max_map_count``).

XLA's CPU compiler maps the code of every compiled program in many small pieces: about 1,500–
2,000 mappings per meta-training program on the 2-core machine (measured with
``/proc/<pid>/maps``). When a process reaches the kernel's limit (65,530 by default), LLVM
aborts the whole process ("LLVM ERROR: Unable to allocate section memory") — no exception, no
checkpoint. Long-lived processes that compile one program per task, such as meta-training over
a bank of tasks, check before compiling another and stop with one clear error instead.
"""

from __future__ import annotations

import gc
import pathlib

import jax

from lopt.errors import LoptError

MAX_MAP_COUNT = pathlib.Path("/proc/sys/vm/max_map_count")
OWN_MAPS = pathlib.Path("/proc/self/maps")
# Stop once this fraction of the limit is used: the rest covers the program about to compile.
USABLE_FRACTION = 0.85


def mapping_usage() -> tuple[int, int] | None:
    """(memory mappings this process holds, the kernel's limit); ``None`` where the kernel does
    not tell (not Linux)."""
    try:
        limit = int(MAX_MAP_COUNT.read_text())
        with OWN_MAPS.open("rb") as maps:
            used = sum(1 for _ in maps)
    except (OSError, ValueError):
        return None
    return used, limit


def check_mapping_headroom(what: str) -> None:
    """Raise ``LoptError`` if compiling another program could reach the mapping limit."""
    usage = mapping_usage()
    if usage is None:
        return
    used, limit = usage
    if used > USABLE_FRACTION * limit:
        raise LoptError(
            f"{what}: this process holds {used:,} of the {limit:,} memory mappings the kernel "
            "allows (vm.max_map_count), and XLA's CPU compiler takes about 2,000 more for each "
            "program it compiles; at the limit it aborts the process. Raise the limit "
            "(sudo sysctl -w vm.max_map_count=262144) or compile fewer programs per process "
            "(a smaller task_bank, or bank_refresh to replace the bank during the run)"
        )


def release_compiled_programs() -> None:
    """Drop every program JAX holds compiled, returning their memory mappings to the kernel.

    Later calls compile again (a load, with the persistent compilation cache). Measured on the
    2-core machine: forty small programs took 180-190 mappings, and this call gave back 60-65%
    of them (the rest stay with the allocator and are reused by the next programs).
    """
    jax.clear_caches()
    gc.collect()
