"""Max pooling as a training step runs it: forward with indices, backward from them.

The pooling layers of the two nets of ``bench_training.py`` (2x2 windows, stride
2, float32) plus an overlapping 3x3 stride-2 window, timed the way layers use
them:

* convcore: ``max_pool2d(x, k, return_indices=True)`` and
  ``max_pool2d_backward(g, x, k, indices=...)`` (what ``convcore.MaxPool2D``
  does), on the numba backend (its own kernels) and on the numpy backend
  (im2col, a reduction, a one-hot and col2im); also the backward that recomputes
  the winners from ``x`` (no ``indices``).
* torch: ``F.max_pool2d`` on a tensor that requires grad, then ``backward``
  (autograd keeps the indices), with ``torch.set_num_threads(--threads)``.

Every round times each implementation in turn after a ``--pause`` (spinning
worker threads of the previous library otherwise slow the next one down);
figures are medians over ``--repeat`` rounds of the per-call time, ratios the
medians of per-round ratios to torch's forward plus backward.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/bench_pool.py [--repeat 9] [--calls 20] [--threads 2] [--no-torch]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import median, positive_int

import convcore

#: (name, input shape, kernel, stride, padding)
CASES = [
    ("digits pool 1", (32, 8, 8, 8), 2, 2, 0),
    ("digits pool 2", (32, 16, 4, 4), 2, 2, 0),
    ("cifar pool 1", (64, 32, 32, 32), 2, 2, 0),
    ("cifar pool 2", (64, 64, 16, 16), 2, 2, 0),
    ("overlapping 3x3/2", (32, 64, 28, 28), 3, 2, 1),
]


def _per_call(func, calls: int) -> float:
    func()
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls


def _convcore(backend: str, x, g, k, s, p):
    opts = dict(stride=s, padding=p, backend=backend)
    _, index = convcore.max_pool2d(x, k, return_indices=True, **opts)
    return {
        "fwd": lambda: convcore.max_pool2d(x, k, return_indices=True, **opts),
        "bwd": lambda: convcore.max_pool2d_backward(g, x, k, indices=index, **opts),
        "bwd, recomputed": lambda: convcore.max_pool2d_backward(g, x, k, **opts),
    }


def _torch(torch, x, g, k, s, p):
    xt = torch.from_numpy(x)
    gt = torch.from_numpy(g)
    F = torch.nn.functional

    def both():
        leaf = xt.detach().requires_grad_()
        F.max_pool2d(leaf, k, s, p).backward(gt)

    return {"fwd": lambda: F.max_pool2d(xt.requires_grad_(False), k, s, p), "fwd+bwd": both}


def run_case(case, args, torch, out=print) -> dict[str, list[float]]:
    name, shape, k, s, p = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = convcore.max_pool2d(x, k, s, p)
    g = rng.standard_normal(y.shape).astype(np.float32)
    impls = {}
    for backend in args.backends:
        for what, func in _convcore(backend, x, g, k, s, p).items():
            impls[f"{backend} {what}"] = func
    if torch is not None:
        for what, func in _torch(torch, x, g, k, s, p).items():
            impls[f"torch {what}"] = func
    times: dict[str, list[float]] = {key: [] for key in impls}
    for _ in range(args.repeat):
        for key, func in impls.items():
            time.sleep(args.pause)
            times[key].append(_per_call(func, args.calls))
    out(f"\n{name}: x {shape}, {k}x{k} windows, stride {s}, padding {p}")
    ref = times.get("torch fwd+bwd")
    for key, spent in times.items():
        line = f"  {key:28s} {1e6 * median(spent):9.1f} us"
        if ref is not None:
            line += f"  {median([a / b for a, b in zip(spent, ref)]):6.2f} x torch fwd+bwd"
        out(line)
    for backend in args.backends:
        fwd, bwd = times[f"{backend} fwd"], times[f"{backend} bwd"]
        both = [a + b for a, b in zip(fwd, bwd)]
        line = f"  {backend + ' fwd+bwd (the layer)':28s} {1e6 * median(both):9.1f} us"
        if ref is not None:
            line += f"  {median([a / b for a, b in zip(both, ref)]):6.2f} x torch fwd+bwd"
        out(line)
    return times


def _backends(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {b.name for b in convcore.available_backends()}
    bad = [n for n in names if n not in known]
    if bad or not names:
        choices = ", ".join(sorted(known))
        raise argparse.ArgumentTypeError(
            f"unknown backend {bad[0] if bad else text!r}; expected some of {choices}"
        )
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=9)
    parser.add_argument("--calls", type=positive_int, default=20)
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--backends", type=_backends, default=["numba", "numpy"])
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            parser.error("torch is not installed; pass --no-torch")
        torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads, user_api="blas")
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    tv = "" if torch is None else f", torch {torch.__version__}"
    print(f"convcore {convcore.__version__}, numba {numba.__version__}{tv}; {args.threads} threads")
    print(f"load average before: {load}; median of {args.repeat} rounds of {args.calls} calls")
    for case in CASES:
        run_case(case, args, torch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
