"""``convcore bench``: the benchmark layers on chosen backends, side by side with PyTorch.

Timing rules (see ``PERF_NOTES`` of the project): implementations run
interleaved (A B C, A B C, ...) after one warm-up call each, with a short pause
before every timed call so that spinning BLAS / OpenMP threads of the previous
library have gone to sleep; the median of ``repeat`` calls is reported, and
the ratio to the fastest implementation is the median of per-pair ratios
(pairs taken seconds apart survive drifting clocks better than two medians).
The GEMM peak is a 1024^3 NumPy matmul measured in the same run.  Peak extra
memory is the ``tracemalloc`` peak of one call: NumPy and Numba allocations are
traced, PyTorch's are not (shown as ``None``).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .geometry import conv_output_size

__all__ = ["LAYERS", "Layer", "Record", "gemm_peak", "median", "run_bench", "timeit"]


@dataclass(frozen=True)
class Layer:
    """One benchmark layer: channels-first, the same size and kernel along every axis."""

    key: str
    n: int
    c: int
    h: int
    f: int
    k: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    nd: int = 2

    @property
    def out(self) -> int:
        return conv_output_size((self.h,), self.k, stride=self.stride, padding=self.pad)[0]

    @property
    def flops(self) -> float:
        """Multiply-adds x 2 of the forward convolution."""
        return 2.0 * self.n * self.f * self.out**self.nd * (self.c // self.groups) * self.k**self.nd

    def describe(self) -> str:
        size = "x".join([str(self.h)] * self.nd)
        kernel = "x".join([str(self.k)] * self.nd)
        groups = "" if self.groups == 1 else f" groups={self.groups}"
        return (
            f"N={self.n} C={self.c} {size} F={self.f} {kernel} s{self.stride} p{self.pad}{groups}"
        )

    def arrays(self, dtype, seed: int = 0):
        """``x, weight, bias, grad_out`` as NumPy arrays of ``dtype``."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.c, *(self.h,) * self.nd)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, *(self.k,) * self.nd))
        w = (w * 0.1).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        g = rng.standard_normal((self.n, self.f, *(self.out,) * self.nd)).astype(dtype)
        return x, w, b, g


#: The benchmark layers of the project, channels-first.  A-F are the Numba
#: issue's; G is a depthwise layer (MobileNet's 56x56 stage) and H a 3-D one.
LAYERS = {
    "A": Layer("A", 8, 3, 227, 96, 11, stride=4),
    "B": Layer("B", 8, 64, 56, 64, 3, pad=1),
    "C": Layer("C", 8, 256, 14, 256, 1),
    "D": Layer("D", 64, 1, 28, 32, 5, pad=2),
    "E": Layer("E", 50, 3, 32, 32, 7, pad=3),
    "F": Layer("F", 8, 128, 28, 256, 3, stride=2, pad=1),
    "G": Layer("G", 8, 128, 56, 128, 3, pad=1, groups=128),
    "H": Layer("H", 4, 16, 16, 32, 3, pad=1, nd=3),
}


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def timeit(func, pause: float = 0.0, burst: int = 1) -> float:
    """Seconds for a call of ``func``, after an optional pause that lets BLAS threads sleep.

    ``burst > 1`` times the steady state instead: ``burst`` calls back to back,
    the median of all but the first ``min(3, burst // 2)`` (threads awake,
    operands in cache, as in a loop over the same layer).
    """
    if pause:
        time.sleep(pause)
    times = []
    for _ in range(max(1, burst)):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return median(times[min(3, len(times) // 2) :])


def gemm_peak(dtype, size: int = 1024, repeat: int = 5) -> float:
    """GFLOP/s of a square NumPy GEMM (also warms OpenBLAS up)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b
    t = median([timeit(lambda: a @ b) for _ in range(repeat)])
    return 2.0 * size**3 / t / 1e9


def peak_mib(func) -> float:
    """Peak extra MiB traced by ``tracemalloc`` during one call of ``func``."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@dataclass(frozen=True)
class Record:
    """One (layer, dtype, direction, implementation) result."""

    layer: str
    shape: str
    dtype: str
    direction: str
    impl: str
    median_s: float
    gflops: float
    peak_fraction: float
    ratio_to_fastest: float
    peak_mib: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_funcs(layer: Layer, x, w, b, g):
    import torch

    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    nd, s, p = layer.nd, layer.stride, layer.pad
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d}.get(
        nd, torch.nn.functional.conv3d
    )

    def fwd():
        conv(tx, tw, tb, stride=s, padding=p, groups=layer.groups)

    def bwd():
        torch.ops.aten.convolution_backward(
            tg,
            tx,
            tw,
            [layer.f],
            [s] * nd,
            [p] * nd,
            [1] * nd,
            False,
            [0] * nd,
            layer.groups,
            [True, True, True],
        )

    return fwd, bwd


def _convcore_funcs(layer: Layer, name: str, x, w, b, g):
    import convcore

    kw = {"stride": layer.stride, "padding": layer.pad, "groups": layer.groups, "backend": name}

    def fwd():
        convcore.conv(x, w, b, **kw)

    def bwd():
        convcore.conv_backward(g, x, w, **kw)

    return fwd, bwd


DIRECTIONS = ("fwd", "bwd")


def _can_run(name: str, x) -> bool:
    """Whether backend ``name`` declares what layer input ``x`` needs (e.g. 3-D)."""
    import convcore

    try:
        convcore.resolve_backend("conv_backward", x, backend=name)
        convcore.resolve_backend("conv", x, backend=name)
    except convcore.BackendCapabilityError:
        return False
    return True


def run_bench(
    layers: Sequence[str],
    dtypes: Sequence[str],
    backends: Sequence[str],
    *,
    torch: bool = True,
    directions: Sequence[str] = DIRECTIONS,
    repeat: int = 5,
    pause: float = 0.05,
    burst: int = 1,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Record], dict[str, float]]:
    """Time ``backends`` (and PyTorch when ``torch``) on ``layers``.

    Every timing is :func:`timeit` with ``pause`` and ``burst``: one call after
    the pause (``burst=1``), or the steady state of ``burst`` back-to-back calls.

    Returns the records and the GEMM peak (GFLOP/s) per dtype.  A backend that
    does not declare what a layer needs (the numba backend and 3-D layers) is
    left out of that layer.  ``progress(k)`` is called after every ``k`` calls;
    there are at most ``len(dtypes) * len(layers) * len(directions) *
    (repeat + 2) * impls`` in all.
    """
    records: list[Record] = []
    peaks: dict[str, float] = {}
    for dtype in dtypes:
        peaks[dtype] = peak = gemm_peak(dtype)
        for key in layers:
            layer = LAYERS[key]
            x, w, b, g = layer.arrays(dtype)
            impls = {
                name: _convcore_funcs(layer, name, x, w, b, g)
                for name in backends
                if _can_run(name, x)
            }
            if torch:
                impls["torch"] = _torch_funcs(layer, x, w, b, g)
            for direction in directions:
                idx = DIRECTIONS.index(direction)
                flops = layer.flops * (1 if direction == "fwd" else 2)
                times: dict[str, list[float]] = {name: [] for name in impls}
                for funcs in impls.values():
                    funcs[idx]()  # warm-up (and compilation, for numba)
                    if progress:
                        progress(1)
                for _ in range(repeat):
                    for name, funcs in impls.items():
                        times[name].append(timeit(funcs[idx], pause=pause, burst=burst))
                        if progress:
                            progress(1)
                fastest = min(impls, key=lambda name: median(times[name]))
                for name, funcs in impls.items():
                    t = median(times[name])
                    gflops = flops / t / 1e9
                    records.append(
                        Record(
                            layer=key,
                            shape=layer.describe(),
                            dtype=dtype,
                            direction=direction,
                            impl=name,
                            median_s=t,
                            gflops=gflops,
                            peak_fraction=gflops / peak,
                            ratio_to_fastest=median(
                                [a / r for a, r in zip(times[name], times[fastest])]
                            ),
                            peak_mib=None if name == "torch" else peak_mib(funcs[idx]),
                        )
                    )
                    if progress:
                        progress(1)
    return records, peaks


def plot(records: Sequence[Record], peaks: dict[str, float], path, title: str = "") -> None:
    """Bar chart of GFLOP/s per layer and implementation, one panel per dtype and direction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r.dtype for r in records))
    directions = list(dict.fromkeys(r.direction for r in records))
    impls = list(dict.fromkeys(r.impl for r in records))
    layers = list(dict.fromkeys(r.layer for r in records))
    fig, axes = plt.subplots(
        len(dtypes),
        len(directions),
        figsize=(4.5 * len(directions) + 1, 3.2 * len(dtypes) + 0.6),
        squeeze=False,
        sharey="row",
    )
    width = 0.8 / max(1, len(impls))
    for i, dtype in enumerate(dtypes):
        for j, direction in enumerate(directions):
            ax = axes[i][j]
            for k, impl in enumerate(impls):
                vals = {
                    r.layer: r.gflops
                    for r in records
                    if r.dtype == dtype and r.direction == direction and r.impl == impl
                }
                xs = [li + (k - (len(impls) - 1) / 2) * width for li in range(len(layers))]
                ax.bar(xs, [vals.get(lk, 0.0) for lk in layers], width, label=impl)
            ax.axhline(peaks[dtype], color="0.3", linestyle="--", linewidth=1)
            ax.text(
                len(layers) - 0.5, peaks[dtype], "GEMM peak", ha="right", va="bottom", fontsize=8
            )
            ax.set_xticks(range(len(layers)), layers)
            ax.set_title(f"{dtype} {'forward' if direction == 'fwd' else 'backward'}")
            if j == 0:
                ax.set_ylabel("GFLOP/s")
            ax.set_xlabel("layer")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
