"""The cupy backend against cuDNN (torch.nn.functional.conv2d) on the benchmark layers.

For every layer of ``_common.LAYERS`` (A-F), dtype and direction (forward;
backward = dx, dw and db), the GPU time of one call is measured with CUDA
events (CuPy events for convcore, torch events for torch) after a warm-up, and
the median over ``--repeat`` runs is reported with TFLOP/s and the ratio
convcore / cuDNN.  The goal of the CuPy issue is a forward ratio of at most 1.5
for layers A, B and F in float32; the script prints whether it is met.

TF32 is off on both sides by default (cuDNN would otherwise use TF32 tensor
cores for float32, CuPy would not): ``--tf32`` turns it on for both
(``CUPY_TF32=1`` and ``torch.backends.cuda.matmul/cudnn.allow_tf32``).  cuDNN
autotuning (``torch.backends.cudnn.benchmark``) is on; ``--no-autotune`` turns
it off.  Each result is also checked against the other implementation.

Needs a CUDA GPU, CuPy and the cupy backend; torch with CUDA for the ratios.

Usage::

    python benchmarks/bench_cupy.py [--layers ABCDEF] [--dtypes float32,float16]
        [--repeat 20] [--tf32] [--no-autotune] [--no-torch] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LAYERS, median

import convcore

#: Layers and dtype of the issue's goal, and the goal itself (forward, ratio to cuDNN).
GOAL_LAYERS, GOAL_DTYPE, GOAL_RATIO = "ABF", "float32", 1.5


def _cupy_or_exit():
    info = {i.name: i for i in convcore.available_backends()}.get("cupy")
    if info is None:
        sys.exit("the cupy backend is not registered (is convcore installed with it?)")
    if not info.available:
        sys.exit(f"the cupy backend is unavailable here: {info.reason}")
    import cupy

    return cupy


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _time_gpu(func, start, stop, synchronize, elapsed_ms, repeat, warmup=3):
    """Median milliseconds of ``func`` between two events on the current stream."""
    for _ in range(warmup):
        func()
    synchronize()
    times = []
    for _ in range(repeat):
        start.record()
        func()
        stop.record()
        stop.synchronize()
        times.append(elapsed_ms(start, stop))
    return median(times)


def _convcore_case(cp, layer, arrays):
    x, w, b, g = (cp.asarray(a) for a in arrays)
    kw = {"stride": layer.stride, "padding": layer.pad, "backend": "cupy"}

    def fwd():
        return convcore.conv2d(x, w, b, **kw)

    def bwd():
        return convcore.conv2d_backward(g, x, w, **kw)

    start, stop = cp.cuda.Event(), cp.cuda.Event()
    timing = (start, stop, cp.cuda.Device().synchronize, cp.cuda.get_elapsed_time)
    return fwd, bwd, timing


def _torch_case(torch, layer, arrays):
    x, w, b, g = (torch.from_numpy(a).cuda() for a in arrays)
    s, p = layer.stride, layer.pad

    def fwd():
        return torch.nn.functional.conv2d(x, w, b, stride=s, padding=p)

    def bwd():
        dx, dw, db = torch.ops.aten.convolution_backward(
            g, x, w, [layer.f], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
        )
        return dx, dw, db

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    timing = (start, stop, torch.cuda.synchronize, lambda a, b: a.elapsed_time(b))
    return fwd, bwd, timing


def _max_rel_error(ours, theirs, to_numpy):
    import numpy as np

    worst = 0.0
    for a, b in zip(ours, theirs):
        a = np.asarray(to_numpy[0](a), dtype=np.float64)
        b = np.asarray(to_numpy[1](b), dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="ABCDEF")
    parser.add_argument("--dtypes", default="float32,float16")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in cuBLAS and cuDNN")
    parser.add_argument("--no-autotune", action="store_true", help="cudnn.benchmark = False")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.tf32:
        os.environ["CUPY_TF32"] = "1"  # read by CuPy when it first picks a compute type
    cp = _cupy_or_exit()
    torch = None if args.no_torch else _torch_cuda()
    if torch is not None:
        torch.backends.cudnn.benchmark = not args.no_autotune
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"GPU: {gpu}; CuPy {cp.__version__}; CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}")
    if torch is not None:
        print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    else:
        print("torch with CUDA not available: no cuDNN ratios")
    print(f"TF32 {'on' if args.tf32 else 'off'}; median of {args.repeat} runs after warm-up\n")
    print(
        f"{'layer':5s} {'dtype':8s} {'dir':4s} {'convcore ms':>11s} {'TFLOP/s':>8s} "
        f"{'cuDNN ms':>9s} {'TFLOP/s':>8s} {'ratio':>6s} {'max rel err':>11s}"
    )

    records = []
    for dtype in args.dtypes.split(","):
        for key in args.layers:
            layer = LAYERS[key]
            arrays = layer.arrays(dtype)
            ours = _convcore_case(cp, layer, arrays)
            theirs = _torch_case(torch, layer, arrays) if torch is not None else None
            for direction, idx, flops in (("fwd", 0, layer.flops), ("bwd", 1, 2 * layer.flops)):
                t_ours = _time_gpu(ours[idx], *ours[2], repeat=args.repeat)
                t_theirs = ratio = err = None
                if theirs is not None:
                    t_theirs = _time_gpu(theirs[idx], *theirs[2], repeat=args.repeat)
                    ratio = t_ours / t_theirs
                    a, b = ours[idx](), theirs[idx]()
                    a, b = (a, b) if direction == "bwd" else ((a,), (b,))
                    err = _max_rel_error(a, b, (cp.asnumpy, lambda t: t.float().cpu().numpy()))
                tf = flops / (t_ours * 1e-3) / 1e12
                row = f"{key:5s} {dtype:8s} {direction:4s} {t_ours:11.3f} {tf:8.2f} "
                if t_theirs is not None:
                    tf_theirs = flops / (t_theirs * 1e-3) / 1e12
                    row += f"{t_theirs:9.3f} {tf_theirs:8.2f} {ratio:6.2f} {err:11.2e}"
                print(row)
                records.append(
                    {
                        "gpu": gpu,
                        "layer": key,
                        "shape": layer.describe(),
                        "dtype": dtype,
                        "direction": direction,
                        "tf32": args.tf32,
                        "convcore_ms": t_ours,
                        "cudnn_ms": t_theirs,
                        "ratio_to_cudnn": ratio,
                        "max_rel_error": err,
                    }
                )

    goal = [
        r
        for r in records
        if r["layer"] in GOAL_LAYERS and r["dtype"] == GOAL_DTYPE and r["direction"] == "fwd"
    ]
    if goal and all(r["ratio_to_cudnn"] is not None for r in goal):
        met = all(r["ratio_to_cudnn"] <= GOAL_RATIO for r in goal)
        ratios = ", ".join(f"{r['layer']} {r['ratio_to_cudnn']:.2f}" for r in goal)
        print(
            f"\ngoal (forward {GOAL_DTYPE}, layers {', '.join(GOAL_LAYERS)}, "
            f"<= {GOAL_RATIO}x cuDNN): {'met' if met else 'NOT met'} ({ratios})"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
