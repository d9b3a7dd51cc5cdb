"""Backward of thin-group (depthwise) layers: the numba backend's direct kernel against
its im2col + GEMM path and PyTorch, side by side in one process.

Three implementations of ``(dx, dw, db)``, run interleaved (direct, gemm, torch,
direct, gemm, torch, ...) with a pause before every call so that spinning
threads of the previous library have gone to sleep (PERF_NOTES):

* ``direct``: ``convcore.conv2d_backward(..., backend="numba")`` as shipped
  (``conv_direct_backward_block`` for groups of at most
  ``DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP`` filters);
* ``gemm``: the same call with ``DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP = 0``,
  which forces the backend's im2col + GEMM backward (the path used before);
* ``torch``: ``torch.ops.aten.convolution_backward`` (dx, dw, db).

Each timing is one call made right after ``--warm`` untimed calls of the same
implementation (default 1): the steady state of a training loop.  (Before the
numba backend kept its threads on separate cores, a call after a pause often ran
both workers on one CPU: 6.4-7.2 ms instead of 3.3 ms for layer 1.)  A timing during which another
process used more than ``--max-other`` cores (read from ``/proc/stat``) is
taken again, at most ``--tries`` times.  Printed:
the median time of each and the medians of the per-pair ratios (each ratio
from calls made seconds apart), so that a shared machine's drift cancels.

Usage::

    python benchmarks/bench_depthwise.py [--layers 123456789] [--dtypes float32,float64]
        [--threads 2] [--repeat 7] [--warm 1] [--no-torch]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import median, other_load, timeit, two_core_scaling

import convcore


@dataclass(frozen=True)
class Thin:
    """A thin-group layer: N, C, HxW, F filters in ``groups`` groups, KxK, stride, pad."""

    n: int
    c: int
    h: int
    f: int
    groups: int
    k: int = 3
    stride: int = 1
    pad: int = 1

    def describe(self) -> str:
        return (
            f"N={self.n} C={self.c} {self.h}x{self.h} F={self.f} g={self.groups}"
            f" {self.k}x{self.k} s{self.stride} p{self.pad}"
        )

    def arrays(self, dtype, seed: int = 0):
        rng = np.random.default_rng(seed)
        out = (self.h + 2 * self.pad - self.k) // self.stride + 1
        x = rng.standard_normal((self.n, self.c, self.h, self.h)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, self.k, self.k)).astype(dtype)
        g = rng.standard_normal((self.n, self.f, out, out)).astype(dtype)
        return x, w, g


#: Depthwise layers (1-5), thin groups with several channels per group (6-7) and
#: ungrouped layers with few filters (8-9).
LAYERS = {
    "1": Thin(8, 64, 56, 64, 64),
    "2": Thin(8, 128, 28, 128, 128, stride=2),
    "3": Thin(8, 256, 14, 256, 256),
    "4": Thin(8, 32, 112, 32, 32),
    "5": Thin(8, 64, 56, 128, 64),  # channel multiplier 2
    "6": Thin(8, 64, 28, 64, 16),  # 4 channels and 4 filters per group
    "7": Thin(8, 64, 28, 8, 2),  # 32 channels and 4 filters per group
    "8": Thin(8, 128, 28, 4, 1),  # no groups, 4 filters
    "9": Thin(8, 64, 56, 3, 1),  # no groups, 3 filters (an RGB output layer)
}


def _funcs(layer, x, w, g, torch):
    from convcore_numba import _ops

    kw = {"stride": layer.stride, "padding": layer.pad, "groups": layer.groups}

    def direct():
        return convcore.conv2d_backward(g, x, w, backend="numba", **kw)

    def gemm():
        saved = _ops.DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP
        _ops.DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP = 0
        try:
            return convcore.conv2d_backward(g, x, w, backend="numba", **kw)
        finally:
            _ops.DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP = saved

    funcs = {"direct": direct, "gemm": gemm}
    if torch is not None:
        tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
        s, p = layer.stride, layer.pad

        def torch_backward():
            return torch.ops.aten.convolution_backward(
                tg, tx, tw, [layer.f], [s, s], [p, p], [1, 1], False, [0, 0], layer.groups,
                [True, True, True],
            )  # fmt: skip

        funcs["torch"] = torch_backward
    return funcs


def _time_warm(func, pause, warm, max_other, tries):
    """Seconds of one call after a pause and ``warm`` untimed calls; retaken while
    another process was busy (``(seconds, other cores)``, like ``timeit_quiet``)."""
    result = {}

    def window():
        result["t"] = timeit(func)

    load = None
    for _ in range(tries):
        time.sleep(pause)
        for _ in range(warm):
            func()
        load = other_load(window)
        if load is None or load <= max_other:
            break
    return result["t"], load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="".join(LAYERS))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--max-other", type=float, default=0.05)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--warm", type=int, default=1)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    import numba
    from threadpoolctl import threadpool_limits

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads, user_api="blas")
    if torch is not None:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average before: {load}")
    print(
        f"threads: numba {numba.get_num_threads()}, torch "
        f"{torch.get_num_threads() if torch is not None else '-'}; versions: numpy "
        f"{np.__version__}, numba {numba.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else "")
    )
    print(f"command: python benchmarks/bench_depthwise.py {' '.join(argv or sys.argv[1:])}")
    print(f"two-core scaling at the start: {two_core_scaling():.2f} (2.00 = two free cores)")
    print(f"median of {args.repeat} interleaved runs; ratios are medians of per-run ratios\n")
    names = ["direct", "gemm"] + (["torch"] if torch is not None else [])
    head = f"{'layer':38s} {'dtype':7s} " + " ".join(f"{n + ' ms':>9s}" for n in names)
    head += f" {'direct/gemm':>11s}"
    if torch is not None:
        head += f" {'direct/torch':>12s} {'gemm/torch':>10s}"
    print(head + f" {'other':>6s}")
    for dtype in args.dtypes.split(","):
        for key in args.layers:
            layer = LAYERS[key]
            x, w, g = layer.arrays(dtype)
            funcs = _funcs(layer, x, w, g, torch)
            ref = funcs["gemm"]()
            for func in funcs.values():  # warm-up (compilation) and a sanity check
                got = func()
                for a, b in zip(got, ref, strict=True):
                    np.testing.assert_allclose(
                        np.asarray(a), b, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(b).max()))
                    )
            times = {name: [] for name in funcs}
            worst = 0.0
            for _ in range(args.repeat):
                for name, func in funcs.items():
                    t, other = _time_warm(func, args.pause, args.warm, args.max_other, args.tries)
                    times[name].append(t)
                    worst = max(worst, other or 0.0)

            def ratio(a, b, times=times):
                return median([u / v for u, v in zip(times[a], times[b], strict=True)])

            line = f"{key} {layer.describe():36s} {dtype:7s} "
            line += " ".join(f"{median(times[n]) * 1e3:9.2f}" for n in names)
            line += f" {ratio('direct', 'gemm'):11.2f}"
            if torch is not None:
                line += f" {ratio('direct', 'torch'):12.2f} {ratio('gemm', 'torch'):10.2f}"
            print(line + f" {worst:6.2f}", flush=True)
    print(f"\ntwo-core scaling at the end: {two_core_scaling():.2f}")
    print("other: most cores' worth of CPU other processes used during a kept timing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
