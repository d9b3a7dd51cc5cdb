"""What keeping the numba backend's pool thread off the caller's CPU is worth.

Two measurements, side by side in one process:

1. **Plain threads.** After a pause, the calling thread and one pool thread
   each run ``--products`` single-threaded GEMMs of layer F's forward shape
   (``(256 x 1153) @ (1153 x 196)``), first with the threads left where the
   kernel puts them, then with the caller on its CPU and the pool thread on the
   others (what ``convcore_numba._threads.run_items`` does).  Printed: the
   median time of a round and how many products took over twice the median
   product (a thread that waited for a core).
2. **The backend.** ``convcore.conv2d`` / ``conv2d_backward`` on the numba
   backend with ``CONVCORE_NUMBA_AFFINITY=0`` and with the default, interleaved,
   a pause before every call (as in ``bench_numba.py``), median of ``--repeat``.

Linux only (``sched_setaffinity``); needs two CPUs.

Usage::

    python benchmarks/bench_affinity.py [--layers ABCDEF] [--dtypes float32]
        [--repeat 9] [--rounds 40] [--pause 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import LAYERS, median, timeit_quiet
from threadpoolctl import threadpool_limits

import convcore


def plain_threads(rounds: int, pause: float, products: int, dtype: str) -> None:
    from convcore_numba._threads import _caller_cpu

    rng = np.random.default_rng(0)
    a = rng.random((256, 1153)).astype(dtype)
    bs = [rng.random((1153, 196)).astype(dtype) for _ in range(2)]
    cs = [np.empty((256, 196), dtype) for _ in range(2)]
    pool = ThreadPoolExecutor(1)
    tid = pool.submit(threading.get_native_id).result()
    allowed = os.sched_getaffinity(0)

    def work(i, out):
        for _ in range(products):
            t = time.perf_counter()
            np.matmul(a, bs[i], out=cs[i])
            out.append(time.perf_counter() - t)

    with threadpool_limits(1, user_api="blas"):
        work(0, [])
        for mode in ("left alone", "kept apart"):
            rounds_t, each = [], []
            for _ in range(rounds):
                time.sleep(pause)
                start = time.perf_counter()
                if mode == "kept apart":
                    cpu = _caller_cpu()
                    os.sched_setaffinity(tid, allowed - {cpu})
                    os.sched_setaffinity(0, {cpu})
                mine, theirs = [], []
                fut = pool.submit(work, 1, theirs)
                work(0, mine)
                fut.result()
                rounds_t.append(time.perf_counter() - start)
                each += mine + theirs
                os.sched_setaffinity(0, allowed)
                os.sched_setaffinity(tid, allowed)
            typical = median(each)
            slow = sum(t > 2 * typical for t in each)
            print(
                f"plain threads, {dtype}, {mode:10s}: round {median(rounds_t) * 1e3:6.2f} ms"
                f" (median of {rounds}), {slow} of {len(each)} products over 2x the median"
                f" {typical * 1e3:.2f} ms",
                flush=True,
            )
    pool.shutdown()


def backend(layers: str, dtypes: str, repeat: int, pause: float) -> None:
    print(f"\n{'layer':5s} {'dtype':8s} {'dir':4s} {'off ms':>8s} {'on ms':>8s} {'on/off':>7s}")
    for key in layers:
        layer = LAYERS[key]
        for dtype in dtypes.split(","):
            x, w, b, g = layer.arrays(dtype)
            kw = {"stride": layer.stride, "padding": layer.pad, "backend": "numba"}
            for direction, func in (
                ("fwd", lambda x=x, w=w, b=b, kw=kw: convcore.conv2d(x, w, b, **kw)),
                ("bwd", lambda g=g, x=x, w=w, kw=kw: convcore.conv2d_backward(g, x, w, **kw)),
            ):
                func()
                times = {"0": [], "1": []}
                for _ in range(repeat):
                    for flag in times:
                        os.environ["CONVCORE_NUMBA_AFFINITY"] = flag
                        times[flag].append(timeit_quiet(func, pause)[0])
                os.environ.pop("CONVCORE_NUMBA_AFFINITY")
                ratio = median([on / off for on, off in zip(times["1"], times["0"])])
                print(
                    f"{key:5s} {dtype:8s} {direction:4s} {median(times['0']) * 1e3:8.2f}"
                    f" {median(times['1']) * 1e3:8.2f} {ratio:7.2f}",
                    flush=True,
                )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="ABCDEF")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--products", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.2)
    args = parser.parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        print("needs Linux and at least two CPUs", file=sys.stderr)
        return 1
    import numba

    numba.set_num_threads(2)
    print(f"command: python benchmarks/bench_affinity.py {' '.join(argv or sys.argv[1:])}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for dtype in args.dtypes.split(","):
        plain_threads(args.rounds, args.pause, args.products, dtype)
    backend(args.layers, args.dtypes, args.repeat, args.pause)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
