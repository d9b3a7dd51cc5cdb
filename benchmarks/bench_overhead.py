"""Per-call overhead: a tiny conv2d under auto, numpy, numba, against torch's conv2d.

A 1x1x4x4 float32 image and a 1x1x3x3 weight: the arithmetic is a few dozen
flops, so what is timed is what a call costs around its kernel (argument
checks, backend selection, configuration lookups, thread-pool handling).
Every implementation is timed in the same process, interleaved: each round
times ``--calls`` back-to-back calls of each implementation in turn, after a
``--pause`` that lets the previous library's worker threads go to sleep (torch's
and numba's spinning threads otherwise slow each other down on 2 cores), and the
figure quoted is the median over ``--repeat`` rounds of the per-call time, with
the median of the per-round ratios to torch.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/bench_overhead.py [--repeat 15] [--calls 2000] [--pause 0.2]
        [--no-torch] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import median

import convcore


def _implementations(x, w, use_torch: bool) -> dict:
    impls = {
        "convcore auto": lambda: convcore.conv2d(x, w),
        'backend="numpy"': lambda: convcore.conv2d(x, w, backend="numpy"),
    }
    registry = convcore.available_backends()
    if any(info.name == "numba" and info.available for info in registry):
        impls['backend="numba"'] = lambda: convcore.conv2d(x, w, backend="numba")
    if use_torch:
        try:
            import torch
        except ImportError:
            return impls
        import torch.nn.functional as F

        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        impls["torch conv2d"] = lambda: F.conv2d(xt, wt)
    return impls


def _per_call(func, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (median taken)")
    parser.add_argument("--calls", type=int, default=2000, help="back-to-back calls per round")
    parser.add_argument(
        "--pause", type=float, default=0.2, help="seconds of sleep before each block of calls"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave torch out")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) first (default: torch's own, one per core)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    if args.torch_threads is not None and not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
        else:
            torch.set_num_threads(args.torch_threads)
    impls = _implementations(x, w, not args.no_torch)
    for func in impls.values():  # compile, load kernels, read the configuration
        for _ in range(20):
            func()
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(args.repeat):
        for name, func in impls.items():
            time.sleep(args.pause)  # the previous library's worker threads go to sleep
            times[name].append(_per_call(func, args.calls))
    print(f"command: python benchmarks/bench_overhead.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"conv2d 1x1x4x4 * 1x1x3x3 float32, auto picks "
        f"{convcore.resolve_backend('conv', x)!r}; median of {args.repeat} rounds "
        f"of {args.calls} calls"
    )
    reference = times.get("torch conv2d")
    print(f"{'implementation':18s} {'us/call':>9s} {'x torch':>8s}")
    for name, ts in times.items():
        ratio = "-"
        if reference is not None:
            ratio = f"{median([t / r for t, r in zip(ts, reference)]):.2f}"
        print(f"{name:18s} {median(ts) * 1e6:9.1f} {ratio:>8s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
