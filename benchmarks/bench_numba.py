"""The numba backend against the numpy backend and PyTorch, side by side in one process.

For every layer (``_common.LAYERS``), dtype and direction the implementations
run interleaved (numba, numpy, torch, numba, numpy, torch, ...), in two
regimes (``--regimes``):

* ``cold``: one call after an idle pause (``--pause``), so that the previous
  library's spinning BLAS / OpenMP threads have gone to sleep (PERF_NOTES): the
  first call of a script, or a layer called now and then.  Every library pays
  for waking its threads, and the kernel sometimes wakes two of them on one
  core (up to a 4 ms tick; torch's times are bimodal here).
* ``warm``: after the same pause, ``--burst`` back-to-back calls of one
  implementation, the median of the last ``--burst - 3``: the steady state of
  a loop that calls the same layer again and again (threads awake, operands
  in cache).

A timing during which another process used more than ``--max-other`` cores
(read from ``/proc/stat``) is thrown away and taken again, because these
machines are shared.

Reported per implementation and regime: median time, GFLOP/s, the fraction of
the GEMM peak measured in this run (1024^3 NumPy matmul), the median of the
per-pair ratios to torch (the goal is a ratio, so it is taken from pairs of
runs made seconds apart), and the peak extra memory of one call
(``tracemalloc``; NumPy and Numba allocations are traced, torch's are not).

Forward is ``torch.nn.functional.conv2d`` against ``convcore.conv2d``; backward
is ``torch.ops.aten.convolution_backward`` (dx, dw, db) against
``convcore.conv2d_backward``.

Usage::

    python benchmarks/bench_numba.py [--layers ABCDEF] [--dtypes float32,float64]
        [--regimes cold,warm] [--threads 2] [--repeat 7] [--burst 8]
        [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LAYERS,
    gemm_peak,
    median,
    timeit_burst_quiet,
    timeit_quiet,
    two_core_scaling,
)

import convcore

DIRECTIONS = (("fwd", 0, 1.0), ("bwd", 1, 2.0))


def _convcore_funcs(layer, name, x, w, b, g):
    kw = {"stride": layer.stride, "padding": layer.pad, "backend": name}
    return (
        lambda: convcore.conv2d(x, w, b, **kw),
        lambda: convcore.conv2d_backward(g, x, w, **kw),
    )


def _torch_funcs(torch, layer, x, w, b, g):
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    s, p = layer.stride, layer.pad
    conv2d = torch.nn.functional.conv2d
    backward = torch.ops.aten.convolution_backward
    return (
        lambda: conv2d(tx, tw, tb, stride=s, padding=p),
        lambda: backward(
            tg, tx, tw, [layer.f], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
        ),
    )


def _peak_mib(func) -> float:
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _set_threads(threads: int, torch) -> str:
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(threads, user_api="blas")  # the numpy backend's GEMMs
    if torch is not None:
        torch.set_num_threads(threads)
    return (
        f"numba {numba.get_num_threads()} threads ({numba.threading_layer()} layer), "
        f"BLAS {threads}, torch {torch.get_num_threads() if torch is not None else '-'}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="ABCDEF")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--backends", default="numba,numpy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--regimes", default="cold,warm")
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--max-other", type=float, default=0.05)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    available = {b.name for b in convcore.available_backends() if b.available}
    backends = [b for b in args.backends.split(",") if b in available]
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    threads = _set_threads(args.threads, torch)
    import numba
    import numpy as np

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    header = [
        f"date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        f"load average before: {load}",
        f"two-core scaling of two 1-thread 512^3 GEMMs at the start: {two_core_scaling():.2f}"
        " (2.00 = two free cores)",
        f"threads: {threads}",
        f"versions: numpy {np.__version__}, numba {numba.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else ""),
        f"command: python benchmarks/bench_numba.py {' '.join(argv or sys.argv[1:])}".rstrip(),
    ]
    print("\n".join(header))
    records = []
    regimes = [r for r in args.regimes.split(",") if r]
    unknown = set(regimes) - {"cold", "warm"}
    if unknown:
        parser.error(f"--regimes: unknown {sorted(unknown)}, expected cold and/or warm")
    for dtype in args.dtypes.split(","):
        peak = gemm_peak(dtype)
        print(f"\n{dtype}: GEMM peak {peak:.1f} GFLOP/s (1024^3 NumPy matmul, this run)")
        print(
            f"{'layer':5s} {'dir':4s} {'regime':6s} {'impl':6s} {'ms':>8s} {'GFLOP/s':>8s}"
            f" {'%peak':>6s} {'/torch':>7s} {'MiB':>7s} {'other':>6s}"
        )
        for key in args.layers:
            layer = LAYERS[key]
            x, w, b, g = layer.arrays(dtype)
            impls = {name: _convcore_funcs(layer, name, x, w, b, g) for name in backends}
            if torch is not None:
                impls["torch"] = _torch_funcs(torch, layer, x, w, b, g)
            ref = "torch" if "torch" in impls else backends[0]
            for direction, idx, scale in DIRECTIONS:
                flops = scale * layer.flops
                for funcs in impls.values():
                    funcs[idx]()  # warm-up (and compilation)
                mems = {
                    name: (_peak_mib(funcs[idx]) if name != "torch" else None)
                    for name, funcs in impls.items()
                }
                for regime in regimes:
                    times = {name: [] for name in impls}
                    worst = 0.0
                    for _ in range(args.repeat):
                        for name, funcs in impls.items():
                            if regime == "cold":
                                t, other = timeit_quiet(funcs[idx], args.pause, args.max_other)
                            else:
                                t, other = timeit_burst_quiet(
                                    funcs[idx], args.burst, 3, args.pause, args.max_other
                                )
                            times[name].append(t)
                            worst = max(worst, other or 0.0)
                    for name in impls:
                        t = median(times[name])
                        ratio = median([a / r for a, r in zip(times[name], times[ref])])
                        mem = mems[name]
                        gflops = flops / t / 1e9
                        print(
                            f"{key:5s} {direction:4s} {regime:6s} {name:6s} {t * 1e3:8.2f}"
                            f" {gflops:8.1f} {100 * gflops / peak:5.0f}% {ratio:7.2f} "
                            + (f"{mem:7.1f}" if mem is not None else f"{'-':>7s}")
                            + f" {worst:6.2f}",
                            flush=True,
                        )
                        record = {
                            "layer": key,
                            "shape": layer.describe(),
                            "dtype": dtype,
                            "direction": direction,
                            "regime": regime,
                            "impl": name,
                            "median_s": t,
                            "times_s": times[name],
                            "gflops": gflops,
                            "gemm_peak_gflops": peak,
                            "peak_fraction": gflops / peak,
                            "ratio_to_" + ref: ratio,
                            "peak_extra_mib": mem,
                            "max_other_load": worst,
                        }
                        records.append(record)
    end = f"two-core scaling at the end: {two_core_scaling():.2f}"
    print("\n" + end)
    header.append(end)
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "records": records}, indent=1))
    if args.markdown is not None:
        args.markdown.write_text(_markdown(header, records, ref))
    return 0


def _markdown(header, rows, ref) -> str:
    lines = [f"- {h}" for h in header] + [""]
    lines.append(
        "| layer | dtype | dir | regime | numba ms | numpy ms | torch ms | numba GFLOP/s | "
        f"numba % peak | numba / {ref} | numpy / {ref} | numba MiB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    by = {(r["layer"], r["dtype"], r["direction"], r["regime"], r["impl"]): r for r in rows}
    keys = sorted({(r["dtype"], r["layer"], r["direction"], r["regime"]) for r in rows})
    for dtype, layer, direction, regime in keys:
        nb = by.get((layer, dtype, direction, regime, "numba"))
        npy = by.get((layer, dtype, direction, regime, "numpy"))
        tch = by.get((layer, dtype, direction, regime, "torch"))

        def ms(r):
            return f"{r['median_s'] * 1e3:.2f}" if r else "-"

        def ratio(r):
            return f"{r['ratio_to_' + ref]:.2f}" if r else "-"

        lines.append(
            f"| {layer} | {dtype} | {direction} | {regime} | {ms(nb)} | {ms(npy)} | {ms(tch)} | "
            f"{nb['gflops']:.1f} | {100 * nb['peak_fraction']:.0f}% | {ratio(nb)} | "
            f"{ratio(npy)} | {nb['peak_extra_mib']:.1f} |"
            if nb
            else f"| {layer} | {dtype} | {direction} | {regime} | - | {ms(npy)} | {ms(tch)} "
            "| | | | | |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
