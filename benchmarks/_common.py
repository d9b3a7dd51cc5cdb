"""Shared helpers for the benchmark scripts: layers, timing, GEMM peak."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layer:
    key: str
    n: int
    c: int
    h: int
    f: int
    k: int
    stride: int = 1
    pad: int = 0

    @property
    def out(self) -> int:
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def flops(self) -> float:
        """Multiply-adds x 2 of the forward convolution."""
        return 2.0 * self.n * self.f * self.out**2 * self.c * self.k**2

    def describe(self) -> str:
        return (
            f"N={self.n} C={self.c} {self.h}x{self.h} F={self.f} {self.k}x{self.k}"
            f" s{self.stride} p{self.pad}"
        )

    def arrays(self, dtype, seed: int = 0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.c, self.h, self.h)).astype(dtype)
        w = (rng.standard_normal((self.f, self.c, self.k, self.k)) * 0.1).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        g = rng.standard_normal((self.n, self.f, self.out, self.out)).astype(dtype)
        return x, w, b, g


#: The benchmark layers of the project (issue "Numba backend"), NCHW.
LAYERS = {
    "A": Layer("A", 8, 3, 227, 96, 11, stride=4),
    "B": Layer("B", 8, 64, 56, 64, 3, pad=1),
    "C": Layer("C", 8, 256, 14, 256, 1),
    "D": Layer("D", 64, 1, 28, 32, 5, pad=2),
    "E": Layer("E", 50, 3, 32, 32, 7, pad=3),
    "F": Layer("F", 8, 128, 28, 256, 3, stride=2, pad=1),
}


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def timeit(func, pause: float = 0.0) -> float:
    """Seconds for one call of ``func`` (after an optional pause that lets BLAS threads sleep)."""
    if pause:
        time.sleep(pause)
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def gemm_peak(dtype, size: int = 1024, repeat: int = 5) -> float:
    """GFLOP/s of a square NumPy GEMM (also warms OpenBLAS up; see PERF_NOTES)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b
    t = median([timeit(lambda: a @ b) for _ in range(repeat)])
    return 2.0 * size**3 / t / 1e9


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
    result = {}

    def window():
        result["t"] = timeit(func)

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
