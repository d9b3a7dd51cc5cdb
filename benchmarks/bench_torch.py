"""convcore.torch against torch.nn.functional: one conv layer, forward and forward + backward.

Three implementations of the same layer (``N x C x H x H`` input, ``F`` filters of
``K x K``, stride 1, padding ``K // 2``, with a bias), on CPU tensors that require
grad, run interleaved (convcore.torch, torch, array_api, convcore.torch, ...) with a
pause before every call so that the previous library's threads have gone to sleep:

* ``convcore.torch``: ``convcore.torch.conv2d`` (NumPy views of the tensors, the
  backend ``auto`` picks for NumPy arrays, ``conv2d_backward`` in the backward pass);
* ``torch``: ``torch.nn.functional.conv2d`` (oneDNN / torch's CPU kernels);
* ``array_api``: ``convcore.conv2d`` on the tensors themselves, i.e. the portable
  ``array_api`` backend with torch's autograd through its ops (what torch tensors
  got before convcore.torch); ``--no-array-api`` leaves it out.

``fwd`` is the forward call alone (under ``torch.no_grad()``), ``fwd+bwd`` the
forward call and ``out.backward(grad)`` (dx, dw and db).  Printed: the median of
``--repeat`` timings of each (each after ``--warm`` untimed calls) and the median
of the per-run ratios to torch.  Every implementation is first checked against
torch.

Usage::

    python benchmarks/bench_torch.py [--n 32] [--c 64] [--h 28] [--f 64] [--k 3]
        [--dtype float32] [--threads N] [--repeat 9] [--warm 1] [--pause 0.2]
        [--no-array-api]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, timeit

import convcore


def _cases(torch, args):
    import torch.nn.functional as F

    import convcore.torch as ct

    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    out = args.h + 2 * (args.k // 2) - args.k + 1
    x = torch.randn(args.n, args.c, args.h, args.h, generator=gen, dtype=dtype)
    w = torch.randn(args.f, args.c, args.k, args.k, generator=gen, dtype=dtype) / args.k
    b = torch.randn(args.f, generator=gen, dtype=dtype)
    g = torch.randn(args.n, args.f, out, out, generator=gen, dtype=dtype)
    for t in (x, w, b):
        t.requires_grad_(True)
    pad = args.k // 2
    impls = {
        "convcore.torch": lambda: ct.conv2d(x, w, b, padding=pad),
        "torch": lambda: F.conv2d(x, w, b, padding=pad),
    }
    if not args.no_array_api:
        impls["array_api"] = lambda: convcore.conv2d(x, w, b, padding=pad, backend="array_api")

    def forward(conv):
        def run():
            with torch.no_grad():
                return conv()

        return run

    def both(conv):
        def run():
            for t in (x, w, b):
                t.grad = None
            conv().backward(g)
            return x.grad, w.grad, b.grad

        return run

    return {name: (forward(conv), both(conv)) for name, conv in impls.items()}


def _check(torch, cases, dtype):
    tol = {"float32": 1e-3, "float64": 1e-9}.get(dtype, 2e-2)
    ref_y = cases["torch"][0]()
    ref_g = [t.clone() for t in cases["torch"][1]()]
    for name, (fwd, bwd) in cases.items():
        got = [fwd(), *(t.clone() for t in bwd())]
        for a, r, what in zip(got, [ref_y, *ref_g], ("y", "dx", "dw", "db")):
            scale = max(1.0, float(r.abs().max()))
            err = float((a.double() - r.double()).abs().max()) / scale
            if err > tol:
                sys.exit(f"{name}: {what} differs from torch by {err:.2e} (relative)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--c", type=int, default=64)
    parser.add_argument("--h", type=int, default=28)
    parser.add_argument("--f", type=int, default=64)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--warm", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--no-array-api", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("bench_torch.py needs PyTorch (pip install torch)")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        numba_info = f"numba {numba.__version__} ({numba.get_num_threads()} threads)"
    except ImportError:
        numba_info = "no numba"
    probe = __import__("numpy").zeros((1, 1, 3, 3), dtype=args.dtype)
    backend = convcore.resolve_backend("conv", probe)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average before: {load}")
    print(f"versions: torch {torch.__version__} ({torch.get_num_threads()} threads), {numba_info}")
    print(f"command: python benchmarks/bench_torch.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"layer: x {args.n}x{args.c}x{args.h}x{args.h} {args.dtype}, weight "
        f"{args.f}x{args.c}x{args.k}x{args.k}, padding {args.k // 2}, bias; convcore.torch's "
        f"backend for NumPy arrays: {backend}"
    )
    print(f"median of {args.repeat} interleaved runs; ratios are medians of per-run ratios\n")

    cases = _cases(torch, args)
    _check(torch, cases, args.dtype)  # also the warm-up (numba compiles here)
    times = {(name, d): [] for name in cases for d in ("fwd", "fwd+bwd")}
    for _ in range(args.repeat):
        for direction, index in (("fwd", 0), ("fwd+bwd", 1)):
            for name, funcs in cases.items():
                func = funcs[index]
                time.sleep(args.pause)
                for _ in range(args.warm):
                    func()
                times[name, direction].append(timeit(func))
    print(f"{'implementation':16s} {'direction':9s} {'median ms':>10s} {'/ torch':>8s}")
    for direction in ("fwd", "fwd+bwd"):
        ref = times["torch", direction]
        for name in cases:
            mine = times[name, direction]
            ratio = median([a / r for a, r in zip(mine, ref)])
            print(f"{name:16s} {direction:9s} {1e3 * median(mine):10.2f} {ratio:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
