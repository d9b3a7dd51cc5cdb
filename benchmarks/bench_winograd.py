"""The numba backend's Winograd forward against its im2col path and PyTorch (float32 3x3 s1).

For every layer the implementations run interleaved (torch, im2col, F(2x2),
F(4x4), torch, ...) in the steady state of ``bench_numba.py``'s ``warm``
regime: after a ``--pause`` (the previous library's threads go to sleep),
``--burst`` back-to-back calls, the median of the last ``--burst - 3``; a
burst during which another process used more than ``--max-other`` cores is
taken again.  Reported per implementation: the median over ``--repeat``
rounds, GFLOP/s of the direct convolution's multiply-adds, the median of the
per-round ratios to torch and to the im2col path, and the error against a
float64 reference (``max|y - ref| / max|ref|``, torch in float64).

The implementations:

* ``torch``: ``torch.nn.functional.conv2d`` with ``torch.set_num_threads(--threads)``;
* ``im2col``: ``convcore.conv2d(..., backend="numba")`` with ``CONVCORE_NUMBA_WINOGRAD=0``;
* ``wino2`` / ``wino4``: the same call with ``CONVCORE_NUMBA_WINOGRAD=2`` / ``4``
  (F(2x2, 3x3), the default, and F(4x4, 3x3)).

Layers: ``B`` (``_common.LAYERS``: N=8 C=64 56x56 F=64 3x3 p1) and others of
ResNet-like shapes, all 3x3, stride 1, padding 1.

Usage::

    python benchmarks/bench_winograd.py [--layers B,W32,W28,W14,W7,S56]
        [--impls torch,im2col,wino2,wino4] [--threads 2] [--repeat 7] [--burst 8]
        [--pause 0.2] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LAYERS, Layer, median, timeit_burst_quiet, two_core_scaling

import convcore

#: The layers: B of the project's set, and other 3x3 stride-1 shapes.
WINO_LAYERS = {
    "B": LAYERS["B"],
    "W32": Layer("W32", 32, 32, 32, 64, 3, pad=1),
    "W28": Layer("W28", 16, 128, 28, 128, 3, pad=1),
    "W14": Layer("W14", 8, 256, 14, 256, 3, pad=1),
    "W7": Layer("W7", 8, 512, 7, 512, 3, pad=1),
    "S56": Layer("S56", 8, 16, 56, 16, 3, pad=1),
}

#: ``CONVCORE_NUMBA_WINOGRAD`` per convcore implementation.
SWITCH = {"im2col": "0", "wino2": "2", "wino4": "4"}


def _convcore_func(layer, setting, x, w, b):
    def func():
        before = os.environ.get("CONVCORE_NUMBA_WINOGRAD")
        os.environ["CONVCORE_NUMBA_WINOGRAD"] = setting
        try:
            return convcore.conv2d(x, w, b, padding=layer.pad, backend="numba")
        finally:
            if before is None:
                del os.environ["CONVCORE_NUMBA_WINOGRAD"]
            else:
                os.environ["CONVCORE_NUMBA_WINOGRAD"] = before

    return func


def _torch_func(torch, layer, x, w, b):
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

    def func():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, padding=layer.pad).numpy()

    return func


def _reference(torch, layer, x, w, b):
    """The float64 result (torch in float64, or the numpy backend without torch)."""
    import numpy as np

    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    if torch is None:
        return convcore.conv2d(x64, w64, b64, padding=layer.pad, backend="numpy")
    with torch.no_grad():
        return torch.nn.functional.conv2d(
            torch.from_numpy(x64), torch.from_numpy(w64), torch.from_numpy(b64), padding=layer.pad
        ).numpy()


def _ratio(times, name, to):
    """Median of the per-round ratios of ``name``'s times to ``to``'s (None without ``to``)."""
    if to not in times:
        return None
    return median([a / r for a, r in zip(times[name], times[to])])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(WINO_LAYERS))
    parser.add_argument("--impls", default="torch,im2col,wino2,wino4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--max-other", type=float, default=0.05)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    impls = [i for i in args.impls.split(",") if i]
    unknown = set(impls) - {"torch", *SWITCH}
    if unknown:
        parser.error(f"--impls: unknown {sorted(unknown)}, expected torch, im2col, wino2, wino4")
    layers = [k for k in args.layers.split(",") if k]
    missing = set(layers) - set(WINO_LAYERS)
    if missing:
        parser.error(f"--layers: unknown {sorted(missing)}, expected some of {sorted(WINO_LAYERS)}")
    torch = None
    if "torch" in impls:
        try:
            import torch
        except ImportError:
            impls.remove("torch")
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(args.threads, user_api="blas")
    if torch is not None:
        torch.set_num_threads(args.threads)
    header = [
        f"date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"two-core scaling of two 1-thread 512^3 GEMMs at the start: {two_core_scaling():.2f}"
        " (2.00 = two free cores)",
        f"threads: numba {numba.get_num_threads()}, BLAS {args.threads}, torch "
        + (str(torch.get_num_threads()) if torch is not None else "-"),
        f"versions: numpy {np.__version__}, numba {numba.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else ""),
        f"command: python benchmarks/bench_winograd.py {' '.join(argv or sys.argv[1:])}".rstrip(),
    ]
    print("\n".join(header))
    print(
        f"\n{'layer':5s} {'shape':32s} {'impl':6s} {'ms':>8s} {'GFLOP/s':>8s} {'/torch':>7s}"
        f" {'/im2col':>8s} {'error':>8s} {'other':>6s}"
    )
    records = []
    for key in layers:
        layer = WINO_LAYERS[key]
        x, w, b, _ = layer.arrays("float32")
        funcs = {}
        for name in impls:
            if name == "torch":
                funcs[name] = _torch_func(torch, layer, x, w, b)
            else:
                funcs[name] = _convcore_func(layer, SWITCH[name], x, w, b)
        ref = _reference(torch, layer, x, w, b)
        scale = float(np.max(np.abs(ref)))
        errors = {}
        for name, func in funcs.items():
            errors[name] = float(np.max(np.abs(func() - ref))) / scale  # also the warm-up
        times = {name: [] for name in funcs}
        worst = 0.0
        for _ in range(args.repeat):
            for name, func in funcs.items():
                t, other = timeit_burst_quiet(func, args.burst, 3, args.pause, args.max_other)
                times[name].append(t)
                worst = max(worst, other or 0.0)
        for name in funcs:
            t = median(times[name])
            to_torch, to_im2col = (_ratio(times, name, to) for to in ("torch", "im2col"))
            gflops = layer.flops / t / 1e9
            print(
                f"{key:5s} {layer.describe():32s} {name:6s} {t * 1e3:8.2f} {gflops:8.1f}"
                + (f" {to_torch:7.2f}" if to_torch is not None else f" {'-':>7s}")
                + (f" {to_im2col:8.2f}" if to_im2col is not None else f" {'-':>8s}")
                + f" {errors[name]:8.1e} {worst:6.2f}",
                flush=True,
            )
            records.append(
                {
                    "layer": key,
                    "shape": layer.describe(),
                    "impl": name,
                    "median_s": t,
                    "times_s": times[name],
                    "gflops": gflops,
                    "ratio_to_torch": to_torch,
                    "ratio_to_im2col": to_im2col,
                    "error": errors[name],
                    "max_other_load": worst,
                }
            )
    end = f"two-core scaling at the end: {two_core_scaling():.2f}"
    print("\n" + end)
    header.append(end)
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
