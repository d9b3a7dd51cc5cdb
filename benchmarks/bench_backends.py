"""Forward and backward time of convcore backends (and torch, when installed), side by side.

For every benchmark layer, backend and direction, the runs are interleaved
(A B C, A B C, ...) with a pause between calls so that spinning BLAS threads do
not slow the next library down (PERF_NOTES), and the median is reported with
GFLOP/s, the fraction of the GEMM peak measured in the same run, and the
median per-pair ratio to the reference (torch when installed, else the first
backend).  Peak extra memory is the ``tracemalloc`` peak of one call (NumPy
allocations are traced; torch's are not, so it shows as "-").

Usage::

    python benchmarks/bench_backends.py [--layers ABCDEF] [--dtypes float32,float64]
        [--backends numpy,array_api] [--repeat 5] [--no-torch] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LAYERS, gemm_peak, median, timeit

import convcore


def _torch_funcs(layer, x, w, b, g):
    try:
        import torch
    except ImportError:
        return None
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    s, p = layer.stride, layer.pad

    def fwd():
        torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)

    def bwd():
        torch.ops.aten.convolution_backward(
            tg, tx, tw, [layer.f], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
        )

    return fwd, bwd


def _convcore_funcs(layer, name, x, w, b, g):
    kw = {"stride": layer.stride, "padding": layer.pad, "backend": name}

    def fwd():
        convcore.conv2d(x, w, b, **kw)

    def bwd():
        convcore.conv2d_backward(g, x, w, **kw)

    return fwd, bwd


def _peak_mb(func) -> float:
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="ABCDEF")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--backends", default="numpy,array_api")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    backends = [b for b in args.backends.split(",") if b]
    records = []
    for dtype in args.dtypes.split(","):
        peak = gemm_peak(dtype)
        print(f"\n{dtype}: GEMM peak {peak:.1f} GFLOP/s (1024^3 NumPy matmul, this run)")
        header = f"{'layer':5s} {'dir':4s} {'impl':10s} {'ms':>9s} {'GFLOP/s':>8s} {'%peak':>6s}"
        print(header + f" {'ratio':>6s} {'MiB':>7s}")
        for key in args.layers:
            layer = LAYERS[key]
            x, w, b, g = layer.arrays(dtype)
            impls = {name: _convcore_funcs(layer, name, x, w, b, g) for name in backends}
            torch_funcs = None if args.no_torch else _torch_funcs(layer, x, w, b, g)
            if torch_funcs is not None:
                impls["torch"] = torch_funcs
            ref = "torch" if "torch" in impls else backends[0]
            for direction, idx, flops in (("fwd", 0, layer.flops), ("bwd", 1, 2 * layer.flops)):
                times = {name: [] for name in impls}
                for funcs in impls.values():
                    funcs[idx]()  # warm-up
                for _ in range(args.repeat):
                    for name, funcs in impls.items():
                        times[name].append(timeit(funcs[idx], pause=args.pause))
                for name, funcs in impls.items():
                    t = median(times[name])
                    ratio = median([a / r for a, r in zip(times[name], times[ref])])
                    mem = _peak_mb(funcs[idx]) if name != "torch" else None
                    gflops = flops / t / 1e9
                    print(
                        f"{key:5s} {direction:4s} {name:10s} {t * 1e3:9.2f} {gflops:8.1f} "
                        f"{100 * gflops / peak:5.0f}% {ratio:6.2f} "
                        + (f"{mem:7.1f}" if mem is not None else f"{'-':>7s}")
                    )
                    records.append(
                        {
                            "layer": key,
                            "shape": layer.describe(),
                            "dtype": dtype,
                            "direction": direction,
                            "impl": name,
                            "median_s": t,
                            "gflops": gflops,
                            "peak_fraction": gflops / peak,
                            "ratio_to_" + ref: ratio,
                            "peak_extra_mib": mem,
                        }
                    )
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
