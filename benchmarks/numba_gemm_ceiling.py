"""How fast a GEMM written in Numba runs, against single-threaded OpenBLAS.

The float32 forward goals ask for oneDNN's speed, which comes from JIT kernels
that read the input directly (no columns) at 88-101% of the GEMM peak.  An
implicit-GEMM or direct kernel in Numba would have to run its multiply-adds
about as fast as OpenBLAS does on the columns.  This script measures what Numba
loops reach on the backend's GEMM shapes (float32, one thread, median of 15):

* ``ikj``: the textbook loop order, the inner loop over a row of ``B`` and
  ``C`` (LLVM vectorises it; ``fastmath``);
* ``4x8 tile``: a register tile of 4 x 8 outputs in 32 scalar accumulators with
  the ``k`` loop innermost, the shape of a BLAS micro-kernel.

Usage::

    python benchmarks/numba_gemm_ceiling.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba as nb
import numpy as np
from threadpoolctl import threadpool_limits

_OPTS = {"fastmath": True, "boundscheck": False, "nogil": True, "cache": False}


@nb.njit(**_OPTS)
def gemm_ikj(a, b, c):
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            c[i, j] = 0
        for p in range(k):
            x = a[i, p]
            for j in range(n):
                c[i, j] += x * b[p, j]


@nb.njit(**_OPTS)
def _tile_row(a, b, c, i, j, k):
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = c.dtype.type(0)
    for p in range(k):
        x = a[i, p]
        s0 += x * b[p, j]
        s1 += x * b[p, j + 1]
        s2 += x * b[p, j + 2]
        s3 += x * b[p, j + 3]
        s4 += x * b[p, j + 4]
        s5 += x * b[p, j + 5]
        s6 += x * b[p, j + 6]
        s7 += x * b[p, j + 7]
    return s0, s1, s2, s3, s4, s5, s6, s7


@nb.njit(**_OPTS)
def gemm_tile(a, b, c):
    """4 x 8 tiles, 32 scalar accumulators, ``k`` innermost (m % 4 == n % 8 == 0)."""
    m, k = a.shape
    n = b.shape[1]
    for i in range(0, m, 4):
        for j in range(0, n, 8):
            for r in range(4):
                s = _tile_row(a, b, c, i + r, j, k)
                for q in range(8):
                    c[i + r, j + q] = s[q]


def _median_time(func, repeat):
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    # (M, K, N): B forward's item, F forward's image, E forward's image.
    shapes = [(64, 577, 448), (256, 1153, 192), (32, 148, 1024)]
    head = f"{'shape M x K x N':18s} {'OpenBLAS':>9s} {'ikj':>7s} {'4x8 tile':>9s}"
    print(head + "  GFLOP/s, 1 thread")
    for m, k, n in shapes:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        want = a @ b
        flops = 2.0 * m * k * n
        rates = []
        with threadpool_limits(1, user_api="blas"):
            blas = _median_time(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), args.repeat)
        rates.append(flops / blas / 1e9)
        for kernel in (gemm_ikj, gemm_tile):
            t = _median_time(lambda f=kernel, a=a, b=b, c=c: f(a, b, c), args.repeat)
            rates.append(flops / t / 1e9)
            np.testing.assert_allclose(c, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
        shape = f"{m} x {k} x {n}"
        print(f"{shape:18s} {rates[0]:9.1f} {rates[1]:7.1f} {rates[2]:9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
