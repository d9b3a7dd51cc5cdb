"""Two-thread speed-up of the numba backend: the same calls on 1 and on 2 threads.

For every layer, dtype and direction: ``numba.set_num_threads(1)``, then ``2``,
each call after ``--pause`` seconds (the cold regime of ``bench_numba.py``),
median of ``--repeat``; prints both times, GFLOP/s and the speed-up.

Usage::

    python benchmarks/bench_threads.py [--layers ABCDEF] [--dtypes float32,float64]
        [--directions fwd,bwd] [--repeat 7] [--pause 0.05]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LAYERS, median, timeit_quiet

import convcore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="ABCDEF")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--directions", default="fwd,bwd")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.05)
    args = parser.parse_args(argv)
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        print("NUMBA_NUM_THREADS < 2: nothing to compare", file=sys.stderr)
        return 1
    print(f"command: python benchmarks/bench_threads.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"{'layer':5s} {'dtype':8s} {'dir':4s} {'1 thr ms':>9s} {'2 thr ms':>9s} "
        f"{'GFLOP/s':>8s} {'speed-up':>8s}"
    )
    for key in args.layers:
        layer = LAYERS[key]
        kw = {"stride": layer.stride, "padding": layer.pad, "groups": layer.groups}
        for dtype in args.dtypes.split(","):
            x, w, b, g = layer.arrays(dtype)
            for direction in args.directions.split(","):
                if direction == "fwd":

                    def func(x=x, w=w, b=b, kw=kw):
                        convcore.conv(x, w, b, backend="numba", **kw)

                    flops = 1
                else:

                    def func(g=g, x=x, w=w, kw=kw):
                        convcore.conv_backward(g, x, w, backend="numba", **kw)

                    flops = 2
                times = {}
                for threads in (1, 2):
                    numba.set_num_threads(threads)
                    func()
                    times[threads] = median(
                        [timeit_quiet(func, args.pause)[0] for _ in range(args.repeat)]
                    )
                gflops = flops * layer.flops / times[2] / 1e9
                print(
                    f"{key:5s} {dtype:8s} {direction:4s} {times[1] * 1e3:9.2f} "
                    f"{times[2] * 1e3:9.2f} {gflops:8.1f} {times[1] / times[2]:8.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
