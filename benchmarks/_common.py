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
