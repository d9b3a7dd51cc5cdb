"""The ``convcore`` command line (also ``python -m convcore``)."""

from __future__ import annotations

import os
import platform
import sys
import time

import click

from . import __version__
from ._config import get_backend, use_backend
from ._registry import available_backends, get_registry
from .errors import ConvcoreError

__all__ = ["main"]


class _Group(click.Group):
    """Turn user mistakes into one line on stderr and exit status 2, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConvcoreError, ValueError, TypeError) as exc:
            raise click.UsageError(str(exc), ctx) from None


def _backend_option(func):
    return click.option(
        "--backend",
        "-b",
        metavar="NAME",
        default=None,
        help="Backend to use (overrides CONVCORE_BACKEND and configuration files).",
    )(func)


def _selection(backend: str | None) -> tuple[str, str]:
    if backend is not None:
        with use_backend(backend):
            return backend, "--backend"
    return get_backend()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convcore")
def main():
    """convcore: convolution as matrix multiplication (im2col + GEMM + col2im)."""


@main.command()
@_backend_option
def info(backend):
    """Backends, versions, threads and where the backend selection comes from."""
    import numpy as np

    name, source = _selection(backend)
    click.echo(
        f"convcore {__version__}  Python {platform.python_version()}  numpy {np.__version__}"
    )
    click.echo(f"platform: {platform.platform()}  cpus: {os.cpu_count()}")
    click.echo(f"backend selection: {name}  (from {source})")
    disabled = sorted(get_registry().disabled)
    if disabled:
        click.echo(f"disabled by CONVCORE_DISABLED_BACKENDS: {', '.join(disabled)}")
    click.echo("")
    rows = [("backend", "available", "priority", "version", "namespaces", "dtypes", "ops")]
    for b in available_backends():
        rows.append(
            (
                b.name,
                "yes" if b.available else f"no: {b.reason}",
                str(b.priority),
                b.version or "-",
                "any" if b.namespaces is None else ",".join(sorted(b.namespaces)),
                ",".join(sorted(b.dtypes)),
                ",".join(sorted(b.ops)),
            )
        )
    _table(rows)
    click.echo("")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    for pool in threadpool_info():
        click.echo(
            f"thread pool: {pool.get('internal_api')} {pool.get('version')} "
            f"({pool.get('user_api')}, {pool.get('num_threads')} threads)"
        )


def _table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _median_time(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


@main.command()
@_backend_option
@click.option("--batch", "-n", default=1, show_default=True, help="Images in the batch.")
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True
)
@click.option("--repeat", default=5, show_default=True, help="Timed runs per backend (median).")
@click.option("--seed", default=0, show_default=True, help="Random seed for the data.")
def demo(backend, batch, dtype, repeat, seed):
    """The seed's worked example, live: AlexNet's first layer as one GEMM.

    A 227x227x3 image and 96 filters of 11x11x3 at stride 4: im2col gives X_col
    (363 x 3025), the filters give W_row (96 x 363), one product gives 96 x 3025,
    reshaped to 55x55x96.  Every backend is checked against the seed's
    per-pixel loops and timed against them.
    """
    import numpy as np

    from . import conv2d, im2col, reshape_gemm_output
    from ._loops import conv2d_loops

    if batch < 1:
        raise click.BadParameter(f"must be >= 1, got {batch}", param_hint="--batch")
    name, source = _selection(backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 227, 227)).astype(dtype)
    w = (rng.standard_normal((96, 3, 11, 11)) * 0.1).astype(dtype)
    b = rng.standard_normal(96).astype(dtype)
    stride = 4

    click.echo(f"input x: {batch} x 3 x 227 x 227 (N, C, H, W), {dtype}")
    click.echo("filters: 96 x 3 x 11 x 11, stride 4, padding 0")
    click.echo("output size: floor((227 + 0 - 11) / 4) + 1 = 55 per axis")
    cols = im2col(x[:1], 11, stride=stride, backend=None if name == "auto" else name)
    click.echo(f"X_col = im2col(x[0]): {cols.shape[1]} x {cols.shape[2]}   (3*11*11 x 55*55)")
    w_row = w.reshape(96, -1)
    click.echo(f"W_row = weight reshaped: {w_row.shape[0]} x {w_row.shape[1]}")
    product = w_row @ cols[0]
    click.echo(f"W_row @ X_col: {product.shape[0]} x {product.shape[1]}")
    y0 = reshape_gemm_output(product[None] + b[:, None], (55, 55))[0]
    click.echo(f"reshaped: {y0.shape[0]} x {y0.shape[1]} x {y0.shape[2]} (F, H', W') = 55x55x96")
    click.echo("")

    click.echo("seed's per-pixel loops (the reference): ", nl=False)
    start = time.perf_counter()
    ref0 = conv2d_loops(x[:1], w, b, stride=stride)
    t_loop = (time.perf_counter() - start) * batch
    click.echo(f"{t_loop:.2f} s for {batch} image(s) (one image timed, scaled to the batch)")
    worst = float(np.max(np.abs(y0 - ref0[0])))
    click.echo(f"hand-built GEMM above vs loops: max abs error {worst:.2e}")
    click.echo("")

    if name == "auto":
        names = [
            info.name
            for info in available_backends()
            if info.available
            and "conv" in info.ops
            and dtype in info.dtypes
            and (info.namespaces is None or "numpy" in info.namespaces)
        ]
    else:
        names = [name]
    tol = 1e-9 if dtype == "float64" else 1e-3
    rows = [("backend", "time", "speed-up vs loops", "max abs error vs loops", "check")]
    failed = False
    for be in names:
        y = conv2d(x, w, b, stride=stride, backend=be)  # warm-up and result
        err = float(np.max(np.abs(y[:1] - ref0)))
        ok = err <= tol * max(1.0, float(np.max(np.abs(ref0))))
        failed |= not ok
        t = _median_time(lambda be=be: conv2d(x, w, b, stride=stride, backend=be), repeat)
        rows.append(
            (be, f"{t * 1e3:.1f} ms", f"{t_loop / t:.0f}x", f"{err:.2e}", "ok" if ok else "FAIL")
        )
    click.echo(f"backends (selection: {name}, from {source}); median of {repeat} runs:")
    _table(rows)
    if failed:
        raise SystemExit(1)


@main.command()
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(["float32", "float64"]),
    multiple=True,
    help="Dtype to compile for (repeatable; default: both).",
)
def warmup(dtypes):
    """Compile the numba backend's kernels now instead of on first use.

    Serial kernels are cached on disk by Numba, so later processes load them
    instead of compiling them; the parallel im2col/col2im kernels are compiled
    for this process only.  Prints the time each step took.
    """
    registry = get_registry()
    if "numba" not in registry.names():
        raise click.UsageError(
            "the numba backend is not registered (blocked by CONVCORE_DISABLED_BACKENDS "
            "or its package is not installed)"
        )
    reason = registry.unavailable_reason("numba")
    if reason is not None:
        raise click.UsageError(f"the numba backend is unavailable: {reason}")
    dtypes = dtypes or ("float32", "float64")
    start = time.perf_counter()
    from convcore_numba import warmup as numba_warmup

    times = numba_warmup(dtypes)
    total = time.perf_counter() - start
    click.echo(f"import numba and the kernels: {times['import']:.2f} s")
    for name in dtypes:
        click.echo(f"compile {name}: {times[name]:.2f} s")
    click.echo(
        f"cached kernels: {times['cache_hits']} loaded from Numba's cache, "
        f"{times['compiled']} compiled"
    )
    click.echo(f"total: {total:.2f} s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
