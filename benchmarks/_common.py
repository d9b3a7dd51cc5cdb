"""Shared helpers for the benchmark scripts: layers, timing, GEMM peak, quiet windows."""

from __future__ import annotations

import argparse
import time

import numpy as np

# The layers and the basic timing live in the package (``convcore bench`` uses them).
from convcore._bench import LAYERS, Layer, gemm_peak, median, timeit

__all__ = [
    "LAYERS",
    "Layer",
    "gemm_peak",
    "median",
    "other_load",
    "positive_int",
    "timeit",
    "timeit_burst_quiet",
    "timeit_quiet",
    "two_core_scaling",
]


# ---------------------------------------------------------------------------
# Other processes' CPU use (Linux): shared machines make single timings lie.
# ---------------------------------------------------------------------------


def _busy_ticks():
    """(ticks all CPUs spent busy, ticks this process spent) from /proc, or None."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(vals) - vals[3] - vals[4]  # minus idle and iowait
    return busy, int(own[11]) + int(own[12])


def other_load(window):
    """Cores' worth of CPU that other processes used while ``window()`` ran (or None)."""
    import os

    before = _busy_ticks()
    start = time.perf_counter()
    window()
    elapsed = time.perf_counter() - start
    after = _busy_ticks()
    if before is None or after is None:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0, other) / os.sysconf("SC_CLK_TCK") / max(elapsed, 1e-9)


def timeit_quiet(func, pause: float = 0.2, max_other: float = 0.05, tries: int = 20):
    """``timeit(func, pause)`` repeated until no other process was busy during the call.

    Other processes' CPU use is read from ``/proc/stat`` around the call itself
    (not the pause), in clock ticks (10 ms): on a shared machine a timing during
    which another process got more than ``max_other`` cores' worth of ticks is
    thrown away and taken again, at most ``tries`` times (the last one counts).
    Returns ``(seconds, other_cores)``; ``other_cores`` is None off Linux.
    """
    return _quiet(lambda: timeit(func), pause, max_other, tries)


def _quiet(measure, pause, max_other, tries):
    """``measure()`` after ``pause``, retaken while other processes were busy during it."""
    result = {}

    def window():
        result["t"] = measure()

    load = None
    for _ in range(tries):
        if pause:
            time.sleep(pause)
        load = other_load(window)
        if load is None or load <= max_other:
            break
    return result["t"], load


def two_core_scaling(size: int = 512, reps: int = 20) -> float:
    """How much faster two single-threaded GEMMs run side by side than one after the other.

    About 2.0 when the process really has two cores to itself; near 1.0 when
    the two vCPUs share one physical core's floating-point units (or another
    process holds one).  Printed with the benchmarks: compare ratios only from
    runs taken under the same conditions.
    """
    import threading

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(2)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    outs = [np.empty_like(a), np.empty_like(a)]

    def work(i):
        for _ in range(reps):
            np.matmul(a, b, out=outs[i])

    with threadpool_limits(1, user_api="blas"):
        work(0)
        best_one, best_two = float("inf"), float("inf")
        for _ in range(3):
            start = time.perf_counter()
            work(0)
            work(1)
            best_one = min(best_one, time.perf_counter() - start)
            thread = threading.Thread(target=work, args=(1,))
            start = time.perf_counter()
            thread.start()
            work(0)
            thread.join()
            best_two = min(best_two, time.perf_counter() - start)
    return best_one / best_two


def timeit_burst_quiet(
    func,
    burst: int = 8,
    settle: int = 3,
    pause: float = 0.2,
    max_other: float = 0.05,
    tries: int = 20,
):
    """The *warm* timing: ``burst`` back-to-back calls, median of the last ``burst - settle``.

    Where :func:`timeit_quiet` measures a call after an idle pause (threads
    asleep, as between the layers of a small script), this measures the steady
    state of a loop that calls the same convolution again and again (a training
    loop): worker threads are awake and the caches hold the operands.  A pause
    before the burst lets the previous library's threads go to sleep first;
    a burst during which another process was busy is taken again (as in
    :func:`timeit_quiet`).  Returns ``(seconds, other_cores)``.
    """

    def measure():
        return median([timeit(func) for _ in range(burst)][settle:])

    return _quiet(measure, pause, max_other, tries)


def positive_int(text: str) -> int:
    """argparse type: an int of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
