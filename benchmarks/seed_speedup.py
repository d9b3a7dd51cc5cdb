"""The seed's claim: im2col + GEMM is "200x or more" faster than per-pixel loops.

Times, in one process, the seed's per-pixel loop convolution
(``convcore._naive.seed_conv2d_loops``, one image timed and scaled to the batch, as
the loops are linear in N) against the ``numpy`` and ``array_api`` backends on
the seed's AlexNet layer (N images of 3x227x227, 96 filters of 11x11, stride 4).

Usage::

    python benchmarks/seed_speedup.py [--batch 8] [--repeat 7] [--dtype float64]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LAYERS, gemm_peak, median, timeit

import convcore
from convcore._naive import seed_conv2d_loops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args(argv)

    layer = LAYERS["A"]
    x, w, b, _ = replace(layer, n=args.batch).arrays(args.dtype)
    peak = gemm_peak(args.dtype)
    loop_one = median([timeit(lambda: seed_conv2d_loops(x[:1], w, b, stride=4)) for _ in range(2)])
    t_loops = loop_one * args.batch
    ref = seed_conv2d_loops(x[:1], w, b, stride=4)

    print(f"AlexNet layer A, N={args.batch}, {args.dtype}; GEMM peak {peak:.1f} GFLOP/s")
    print(f"per-pixel loops: {t_loops:.2f} s (one image {loop_one:.2f} s x {args.batch})")
    results, errors = {}, {}
    for name in ("numpy", "array_api"):
        y = convcore.conv2d(x, w, b, stride=4, backend=name)  # warm-up, and the check
        errors[name] = float(abs(y[:1] - ref).max())
        results[name] = []
    for _ in range(args.repeat):  # interleave the backends, pause so BLAS threads sleep
        for name in results:
            fn = lambda name=name: convcore.conv2d(x, w, b, stride=4, backend=name)  # noqa: E731
            results[name].append(timeit(fn, pause=0.2))
    for name, times in results.items():
        t = median(times)
        print(
            f"{name:10s} {t * 1e3:8.1f} ms  {t_loops / t:6.0f}x faster than the loops"
            f"  (max abs error vs loops {errors[name]:.1e})"
        )
    ratios = [a / b for a, b in zip(results["array_api"], results["numpy"])]
    print(f"numpy backend vs array_api backend: {median(ratios):.2f}x (median per-pair ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
