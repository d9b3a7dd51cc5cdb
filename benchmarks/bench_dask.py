"""``convcore apply`` on a stack larger than a worker's memory limit: images/s and peak memory.

A float32 stack ``(N, C, S, S)`` is written to a Zarr array on disk (default
2048 x 3 x 256 x 256 = 1.5 GiB, under ``/tmp``), then convolved (F filters
3x3, padding 1) and max-pooled (2x2) into another Zarr array by
:func:`convcore.stack.apply_stack`, the function behind ``convcore apply``:

* on a ``dask.distributed.LocalCluster`` of 1 and of 2 worker processes, one
  thread each, ``NUMBA_NUM_THREADS=1`` (one core per worker), each with a
  ``memory_limit`` smaller than the stack (default 1 GiB);
* with Dask's threaded scheduler (no cluster; every core in one process, a
  fresh one, warmed up like the workers).

Runs are interleaved (1 worker, 2 workers, threads, 1 worker, ...), each into a
fresh output array.  The CPU that other processes used during a run is measured
(user time in ``/proc/stat`` minus this process tree's); a run during which they used more than
``--max-other`` cores is taken again, at most ``--tries`` times (the last counts).
Throughput is images / wall time of the whole job (graph,
reading, computing, writing, progress records); the cluster's start and a
warm-up (imports, Numba kernels) are not timed.  Peak memory is each worker
process's peak resident set size (``ru_maxrss``) after the job, next to its size
after the warm-up, so the growth the job caused is visible; for the threaded
run, that process's.  A last pass, on the first ``--chunk-pass`` images, shows
how the peak follows ``--chunk``.

Usage::

    python benchmarks/bench_dask.py [--images 2048] [--size 256] [--channels 3]
        [--filters 16] [--chunk 16] [--memory-limit 1GiB] [--repeat 2]
        [--chunk-pass 512] [--max-other 0.25] [--tries 3]
        [--dir /tmp/convcore_bench_dask] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _write_stack(path: Path, n: int, c: int, size: int, chunk: int) -> float:
    """A random float32 stack in a Zarr array, written ``chunk`` images at a time."""
    import zarr

    if path.exists():
        arr = zarr.open_array(str(path), mode="r")
        if arr.shape == (n, c, size, size):
            return arr.nbytes / 2**30
        shutil.rmtree(path)
    arr = zarr.open_array(
        str(path), mode="w", shape=(n, c, size, size), chunks=(chunk, c, size, size),
        dtype="float32",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        arr[start:stop] = rng.standard_normal((stop - start, c, size, size), dtype=np.float32)
    return arr.nbytes / 2**30


class _OtherLoad:
    """Cores' worth of CPU that processes outside this process tree used in a window.

    User-space time from ``/proc/stat`` (all CPUs) minus the user time of this
    process and its children (the cluster's workers, a threaded run's process),
    in clock ticks; None off Linux.  On a shared machine a figure above a few tenths
    means the job did not have the machine to itself.
    """

    def __enter__(self):
        self.start = (_busy_ticks(), _tree_seconds(), time.perf_counter())
        return self

    def stop(self) -> float | None:
        busy, tree, start = _busy_ticks(), _tree_seconds(), time.perf_counter()
        if busy is None or self.start[0] is None:
            return None
        elapsed = start - self.start[2]
        other = (busy - self.start[0]) / os.sysconf("SC_CLK_TCK") - (tree - self.start[1])
        return max(0.0, other) / max(elapsed, 1e-9)

    def __exit__(self, *exc):
        return False


def _busy_ticks() -> int | None:
    """User-space CPU ticks of all processes (kernel time, e.g. the page cache's
    write-back of the job's output, is left out on both sides)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:3]]
    except (OSError, ValueError):
        return None
    return sum(vals)  # user + nice


def _tree_seconds() -> float:
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in (me, *me.children(recursive=True)):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user
    return total


def _write_part(source: Path, path: Path, n: int) -> None:
    import zarr

    src = zarr.open_array(str(source), mode="r")
    dst = zarr.open_array(
        str(path), mode="w", shape=(n, *src.shape[1:]), chunks=src.chunks, dtype=src.dtype
    )
    step = src.chunks[0]
    for start in range(0, n, step):
        dst[start : min(n, start + step)] = src[start : min(n, start + step)]


def _warm_up():
    """Imports, Numba kernels and Zarr in a worker (not timed)."""
    import zarr  # noqa: F401

    import convcore
    from convcore.pooling import max_pool2d

    x = np.ones((2, 3, 16, 16), np.float32)
    max_pool2d(convcore.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1), 2)
    return _rss_mib()


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _run_cluster(args, workers: int, source: Path, out: Path, weight, bias, chunk: int):
    import distributed

    from convcore.stack import ApplyOptions, apply_stack

    with distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=args.memory_limit,
        dashboard_address=None,
        env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    ) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            before = client.run(_warm_up)
        options = ApplyOptions(padding=1, pool="max", pool_size=2, chunk=chunk)
        with _OtherLoad() as load:
            start = time.perf_counter()
            report = apply_stack(
                source, out, weight, bias, options, scheduler=cluster.scheduler_address
            )
            seconds = time.perf_counter() - start
            other = load.stop()
    shutil.rmtree(out)
    peaks = [report.peak_rss_mib[a] for a in sorted(report.peak_rss_mib)]
    rss = [before[a] for a in sorted(before)]
    return seconds, peaks, rss, other


_THREADED = """
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from bench_dask import _OtherLoad, _warm_up
from convcore.stack import ApplyOptions, apply_stack

rss = _warm_up()
options = ApplyOptions(padding=1, pool="max", pool_size=2, chunk={chunk})
with _OtherLoad() as load:
    start = time.perf_counter()
    report = apply_stack({source!r}, {out!r}, np.load({w!r}), np.load({b!r}), options)
    seconds = time.perf_counter() - start
    other = load.stop()
print(json.dumps([seconds, report.peak_rss_mib["this process"], rss, other]))
"""


def _run_threads(args, source: Path, out: Path, files: dict, chunk: int):
    """Dask's threaded scheduler (no cluster) in a fresh process, warmed up like a worker."""
    code = _THREADED.format(
        here=str(Path(__file__).resolve().parent), source=str(source), out=str(out),
        w=str(files["w"]), b=str(files["b"]), chunk=chunk,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "CONVCORE_DASK_SCHEDULER"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    shutil.rmtree(out)
    seconds, peak, rss, other = json.loads(proc.stdout.strip().splitlines()[-1])
    return seconds, [peak], [rss], other


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--memory-limit", default="1GiB", help="Per worker.")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-pass", type=int, default=512, help="Images for the chunk pass.")
    parser.add_argument(
        "--max-other", type=float, default=0.25, help="Run again above this other CPU load."
    )
    parser.add_argument("--tries", type=int, default=3, help="Runs at most, per measurement.")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/convcore_bench_dask"))
    parser.add_argument("--keep", action="store_true", help="Keep the input stack.")
    args = parser.parse_args(argv)

    import dask
    import distributed
    import psutil
    import zarr

    import convcore

    args.dir.mkdir(parents=True, exist_ok=True)
    source = args.dir / "stack.zarr"
    gib = _write_stack(source, args.images, args.channels, args.size, args.chunk)
    rng = np.random.default_rng(1)
    weight = (rng.standard_normal((args.filters, args.channels, 3, 3)) * 0.2).astype(np.float32)
    bias = rng.standard_normal(args.filters).astype(np.float32)
    files = {"w": args.dir / "w.npy", "b": args.dir / "b.npy"}
    np.save(files["w"], weight)
    np.save(files["b"], bias)
    out_size = args.images * args.filters * (args.size // 2) ** 2 * 4 / 2**30

    print(f"command: python {' '.join(sys.argv)}")
    print(f"date: {datetime.date.today().isoformat()}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.platform()}"
    )
    print(
        f"versions: convcore {convcore.__version__}, dask {dask.__version__}, distributed "
        f"{distributed.__version__}, zarr {zarr.__version__}, numpy {np.__version__}"
    )
    print(
        f"stack: {args.images} x {args.channels} x {args.size} x {args.size} float32 = "
        f"{gib:.2f} GiB (Zarr, {source}); worker memory_limit {args.memory_limit}"
    )
    print(
        f"job: conv2d {args.filters} filters 3x3 padding 1 + max_pool2d 2x2 -> "
        f"{args.images} x {args.filters} x {args.size // 2} x {args.size // 2} "
        f"({out_size:.2f} GiB), chunk {args.chunk} images"
    )
    print()

    results: dict[str, list] = {"1 worker": [], "2 workers": [], "threads": []}
    for rep in range(args.repeat):
        for name in results:
            out = args.dir / f"out-{rep}.zarr"
            for attempt in range(args.tries):
                if name == "threads":
                    res = _run_threads(args, source, out, files, args.chunk)
                else:
                    res = _run_cluster(args, int(name[0]), source, out, weight, bias, args.chunk)
                secs, peaks, _, other = res
                quiet = other is None or other <= args.max_other
                print(
                    f"  run {rep + 1} {name:9s}: {secs:6.1f} s, {args.images / secs:6.1f} "
                    f"images/s, peak {' / '.join(f'{p:.0f}' for p in peaks)} MiB, other "
                    f"processes {'?' if other is None else f'{other:.2f}'} cores"
                    + ("" if quiet or attempt + 1 == args.tries else ": again"),
                    flush=True,
                )
                if quiet:
                    break
            results[name].append(res)
    print()
    print("| scheduler | workers x threads | images/s (median) | peak RSS per worker | "
          "RSS after warm-up | other processes (cores) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(args.images / r[0] for r in runs)
        peak = max(max(r[1]) for r in runs)
        warm = max(max(r[2]) for r in runs)
        where = "threaded, no cluster" if name == "threads" else "LocalCluster"
        shape = f"1 x {os.cpu_count()}" if name == "threads" else f"{name[0]} x 1"
        loads = [r[3] for r in runs if r[3] is not None]
        load = f"{statistics.median(loads):.2f}" if loads else "?"
        print(f"| {where} | {shape} | {rate:.1f} | {peak:.0f} MiB | {warm:.0f} MiB | {load} |")

    print()
    # Peak memory depends on the chunk, not on the stack's length: the first
    # --chunk-pass images are enough to show it.
    part = args.dir / "part.zarr"
    n_part = min(args.images, args.chunk_pass)
    _write_part(source, part, n_part)
    print(f"peak RSS per worker against --chunk (1 worker, the first {n_part} images):")
    for chunk in sorted({4, args.chunk, 2 * args.chunk}):
        out = args.dir / f"out-chunk-{chunk}.zarr"
        secs, peaks, rss, _ = _run_cluster(args, 1, part, out, weight, bias, chunk)
        print(
            f"  chunk {chunk:4d}: peak {peaks[0]:.0f} MiB (after warm-up {rss[0]:.0f} MiB: "
            f"+{peaks[0] - rss[0]:.0f} MiB), {n_part / secs:.1f} images/s",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
