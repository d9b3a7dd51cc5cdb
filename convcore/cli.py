"""The ``convcore`` command line (also ``python -m convcore``).

``info``, ``demo``, ``bench``, ``check``, ``warmup`` and ``apply``.  Every command takes
``--backend`` and otherwise follows the selection chain (``CONVCORE_BACKEND``,
configuration files, ``auto``); an unknown backend name from any source is a
usage error, as is any other user mistake: one line on stderr and exit status
2, never a traceback.  ``check`` and ``demo`` exit with status 1 when a result
is wrong.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time

import click

from . import __version__
from ._config import _check_name, get_backend, namespace_backends, requested_backend
from ._registry import available_backends, get_registry
from .errors import BackendUnavailableError, ConvcoreError, UnknownBackendError
from .stack import ENV_SCHEDULER, ApplyOptions, apply_stack

__all__ = ["main"]


class _UserError(click.ClickException):
    """A mistake in the user's input or setup (unknown backend, bad value): exit status 2."""

    exit_code = 2


class _Group(click.Group):
    """Turn user mistakes into one line on stderr and exit status 2, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConvcoreError, ValueError, TypeError) as exc:
            raise _UserError(str(exc)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            # One line: the message and where to find help (click would print the
            # usage block first).
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _check_backend_flag(ctx, param, value):
    """Check ``--backend`` names as they are parsed: an unknown one is an error naming
    the option (and the closest registered names), before the command does any work."""
    names = value if isinstance(value, tuple) else (value,)
    for name in names:
        if name is None:
            continue
        try:
            _check_name(name, "--backend")
        except (UnknownBackendError, TypeError) as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _backend_option(func):
    return click.option(
        "--backend",
        "-b",
        metavar="NAME",
        default=None,
        callback=_check_backend_flag,
        help="Backend to use (overrides CONVCORE_BACKEND and configuration files).",
    )(func)


def _backends_option(func):
    return click.option(
        "--backend",
        "-b",
        "backends",
        metavar="NAME",
        multiple=True,
        callback=_check_backend_flag,
        help="Backend to use (repeatable; overrides CONVCORE_BACKEND and configuration files). "
        "Default: the configured backend, or every available one under 'auto'.",
    )(func)


def _selection(backend: str | None, namespace: str | None = None) -> tuple[str, str]:
    """The backend the command runs on (for arrays of ``namespace``) and where that
    choice came from.

    Checks the name from every source, so an unknown name in ``--backend``,
    ``CONVCORE_BACKEND`` or a configuration file is a usage error.
    """
    name, source = requested_backend(backend, namespace)
    return name, ("--backend" if source == "keyword" else source)


def _explicit(name: str) -> str:
    reason = get_registry().unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    return name


def _numpy_backends(backends, op_names=("conv", "conv_backward"), dtypes=()) -> list[str]:
    """The backends to run on NumPy arrays: the chosen ones, or all available under auto.

    ``backends`` are the ``--backend`` values; without any, the selection
    chain decides (one backend, or every available backend that takes NumPy
    arrays when it says ``auto``).  An explicitly chosen backend that is
    unavailable or does not take NumPy arrays of ``dtypes`` is an error.
    """
    names = [_selection(b)[0] for b in backends] or [_selection(None, "numpy")[0]]
    registry = get_registry()

    def problem(spec):
        for op in op_names:
            for dtype in dtypes or ("float64",):
                support = spec.supports(op, namespace="numpy", device="cpu", dtype=dtype)
                if not support:
                    return dtype, support.reason
        return None

    chosen: list[str] = []
    for name in names:
        if name == "auto":
            chosen += [
                info.name
                for info in available_backends()
                if info.available and problem(info.spec) is None
            ]
            continue
        _explicit(name)
        found = problem(registry.spec(name))
        if found is not None:
            raise click.UsageError(
                f"backend {name!r} cannot run this command on NumPy {found[0]} arrays: {found[1]}"
            )
        chosen.append(name)
    return list(dict.fromkeys(chosen))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convcore")
def main():
    """convcore: convolution as matrix multiplication (im2col + GEMM + col2im)."""


@main.command()
@_backend_option
def info(backend):
    """Backends, versions, threads, the GPU and where the backend selection comes from."""
    import numpy as np

    from ._api import resolve_backend

    name, source = _selection(backend)
    click.echo(
        f"convcore {__version__}  Python {platform.python_version()}  numpy {np.__version__}"
    )
    click.echo(f"platform: {platform.platform()}  cpus: {os.cpu_count()}")
    click.echo(f"backend selection: {name}  (from {_describe_source(source)})")
    if backend is None:  # per-namespace settings (CONVCORE_BACKEND="numpy=numba,...")
        for ns, (ns_name, ns_source) in namespace_backends().items():
            click.echo(f"  for {ns} arrays: {ns_name}  (from {_describe_source(ns_source)})")
    if (name if backend is not None else get_backend("numpy")[0]) == "auto":
        picks = []
        for dtype in ("float32", "float64"):
            try:
                x = np.empty((1, 1, 1, 1), dtype)
                picks.append(f"{resolve_backend('conv', x, backend='auto')} ({dtype})")
            except ConvcoreError as exc:  # every backend for NumPy arrays disabled
                picks.append(f"none ({dtype}: {exc})")
        click.echo(f"auto picks for NumPy arrays: {', '.join(picks)}")
    disabled = sorted(get_registry().disabled)
    if disabled:
        click.echo(f"disabled by CONVCORE_DISABLED_BACKENDS: {', '.join(disabled)}")
    click.echo("")
    infos = available_backends()
    rows = [
        ("backend", "available", "priority", "version", "namespaces", "devices", "dims", "dtypes")
    ]
    for b in infos:
        rows.append(
            (
                b.name,
                "yes" if b.available else "no (see below)",
                str(b.priority),
                b.version or "-",
                "any" if b.namespaces is None else ",".join(sorted(b.namespaces)),
                "any" if b.devices is None else ",".join(sorted(b.devices)),
                "any" if b.spatial_dims is None else ",".join(map(str, sorted(b.spatial_dims))),
                ",".join(sorted(b.dtypes)),
            )
        )
    _table(rows)
    for b in infos:
        if not b.available:
            click.echo(f"  {b.name}: {b.reason}")
    click.echo("")
    for line in _thread_lines():
        click.echo(line)
    click.echo(f"GPU: {_gpu_line(infos)}")


def _describe_source(source: str) -> str:
    if source.startswith("config:"):
        return f"configuration file {source[len('config:') :]}"
    if source.startswith("env:"):
        return f"environment variable {source[len('env:') :]}"
    return {"default": "default: no backend configured"}.get(source, source)


def _thread_lines() -> list[str]:
    """BLAS / OpenMP pools loaded in this process and Numba's thread setting (not imported)."""
    lines = []
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pools = []
    else:
        pools = threadpool_info()
    for pool in pools:
        lines.append(
            f"thread pool: {pool.get('internal_api')} {pool.get('version')} "
            f"({pool.get('user_api')}, {pool.get('num_threads')} threads, "
            f"{pool.get('filepath')})"
        )
    if not pools:
        lines.append("thread pool: none loaded")
    env = os.environ.get("NUMBA_NUM_THREADS")
    numba_threads = f"{env} (NUMBA_NUM_THREADS)" if env else f"{os.cpu_count()} (one per CPU)"
    lines.append(f"numba threads: {numba_threads}")
    return lines


def _gpu_line(infos) -> str:
    """The CUDA device the cupy backend would use, or why there is none."""
    cupy = next((b for b in infos if b.name == "cupy"), None)
    if cupy is None:
        return "none (the cupy backend is not registered)"
    if not cupy.available:
        return f"none ({cupy.reason})"
    try:
        import cupy as cp

        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        free, total = cp.cuda.runtime.memGetInfo()
        return (
            f"{name} (device {dev.id}, compute capability {dev.compute_capability}, "
            f"{total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free)"
        )
    except Exception as exc:  # pragma: no cover - needs a GPU that fails after the check
        return f"unknown ({type(exc).__name__}: {exc})"


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
    from ._naive import seed_conv2d_loops

    if batch < 1:
        raise click.BadParameter(f"must be >= 1, got {batch}", param_hint="--batch")
    if repeat < 1:
        raise click.BadParameter(f"must be >= 1, got {repeat}", param_hint="--repeat")
    if seed < 0:
        raise click.BadParameter(f"must be >= 0, got {seed}", param_hint="--seed")
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
    ref0 = seed_conv2d_loops(x[:1], w, b, stride=stride)
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
            and info.supports("conv", namespace="numpy", device="cpu", dtype=dtype)
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


def _layer_keys(value: str) -> list[str]:
    from ._bench import LAYERS

    keys = list(dict.fromkeys(value.upper().replace(",", "")))
    unknown = [k for k in keys if k not in LAYERS]
    if unknown or not keys:
        raise click.BadParameter(
            f"unknown layer(s) {''.join(unknown) or value!r}; the layers are {''.join(LAYERS)}",
            param_hint="--layers",
        )
    return keys


@main.command()
@_backends_option
@click.option(
    "--layers",
    default="ABCDEFGH",
    show_default=True,
    help="Benchmark layers to run, by letter (see below).",
)
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(["float32", "float64"]),
    multiple=True,
    help="Dtype (repeatable; default: float32).",
)
@click.option(
    "--direction",
    type=click.Choice(["fwd", "bwd", "both"]),
    default="both",
    show_default=True,
    help="Forward (conv2d), backward (conv2d_backward: dx, dw, db) or both.",
)
@click.option("--repeat", default=5, show_default=True, help="Timed calls per implementation.")
@click.option(
    "--pause",
    default=0.05,
    show_default=True,
    help="Seconds of pause before every timed call (lets BLAS threads go to sleep).",
)
@click.option(
    "--burst",
    default=1,
    show_default=True,
    help="Calls back to back per timing after the pause; above 1 the timing is the median "
    "of all but the first few (the steady state of a loop over one layer).",
)
@click.option(
    "--torch/--no-torch",
    "with_torch",
    default=True,
    show_default=True,
    help="Also time PyTorch (when installed) as the reference.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the records.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Write a bar chart (PNG) of GFLOP/s; needs matplotlib.",
)
def bench(
    backends, layers, dtypes, direction, repeat, pause, burst, with_torch, json_path, plot_path
):
    """Time convolutions on the benchmark layers, side by side with PyTorch.

    \b
    Layers (NCHW, forward FLOPs = 2 x multiply-adds):
      A  N=8  C=3   227x227 F=96  11x11 stride 4   (the seed's AlexNet layer)
      B  N=8  C=64  56x56   F=64  3x3   pad 1
      C  N=8  C=256 14x14   F=256 1x1
      D  N=64 C=1   28x28   F=32  5x5   pad 2
      E  N=50 C=3   32x32   F=32  7x7   pad 3
      F  N=8  C=128 28x28   F=256 3x3   stride 2, pad 1
      G  N=8  C=128 56x56   F=128 3x3   pad 1, groups 128 (depthwise)
      H  N=4  C=16  16x16x16 F=32 3x3x3 pad 1 (3-D)

    Implementations run interleaved, after a warm-up call each; every timing is
    one call after --pause, or with --burst N the median of the last calls of N
    back to back (the steady state).  The table gives
    the median time, GFLOP/s, the fraction of this machine's GEMM peak (a
    1024^3 NumPy matmul, measured in the same run), the median per-pair ratio to
    the fastest implementation and the peak extra memory of one call
    (tracemalloc; PyTorch's allocations are not traced).  A backend that does
    not declare what a layer needs (3-D for H) is left out of that layer.
    """
    import json

    from . import _bench

    keys = _layer_keys(layers)
    dtypes = dtypes or ("float32",)
    if repeat < 1:
        raise click.BadParameter(f"must be >= 1, got {repeat}", param_hint="--repeat")
    if pause < 0:
        raise click.BadParameter(f"must be >= 0, got {pause}", param_hint="--pause")
    if burst < 1:
        raise click.BadParameter(f"must be >= 1, got {burst}", param_hint="--burst")
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError(
                "--plot needs matplotlib: pip install 'convcore[plot]'"
            ) from None
    names = _numpy_backends(backends, dtypes=dtypes)
    use_torch = with_torch and _bench.torch_available()
    if not names and not use_torch:
        raise click.UsageError("no backend to benchmark (none is available for NumPy arrays)")
    directions = _bench.DIRECTIONS if direction == "both" else (direction,)
    impls = len(names) + use_torch
    total = len(dtypes) * len(keys) * len(directions) * (repeat + 2) * impls
    click.echo(
        f"benchmarking {', '.join(names + ['torch'] * use_torch)} on layers {''.join(keys)}, "
        f"{', '.join(dtypes)}, median of {repeat}"
        + (f" (each the steady state of {burst} calls)" if burst > 1 else "")
        + ("" if use_torch or not with_torch else " (PyTorch is not installed)"),
        err=True,
    )
    with click.progressbar(length=total, label="running", file=sys.stderr) as bar:
        records, peaks = _bench.run_bench(
            keys,
            dtypes,
            names,
            torch=use_torch,
            directions=directions,
            repeat=repeat,
            pause=pause,
            burst=burst,
            progress=bar.update,
        )
    for dtype in dtypes:
        click.echo(f"\n{dtype}: GEMM peak {peaks[dtype]:.1f} GFLOP/s (1024^3 NumPy matmul)")
        rows = [("layer", "dir", "impl", "time ms", "GFLOP/s", "% peak", "x fastest", "peak MiB")]
        for r in records:
            if r.dtype != dtype:
                continue
            rows.append(
                (
                    r.layer,
                    r.direction,
                    r.impl,
                    f"{r.median_s * 1e3:.2f}",
                    f"{r.gflops:.1f}",
                    f"{100 * r.peak_fraction:.0f}%",
                    f"{r.ratio_to_fastest:.2f}",
                    "-" if r.peak_mib is None else f"{r.peak_mib:.1f}",
                )
            )
        _table(rows)
    meta = {
        "convcore": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gemm_peak_gflops": peaks,
        "repeat": repeat,
        "pause_s": pause,
        "burst": burst,
    }
    if json_path is not None:
        with open(json_path, "w") as fh:
            json.dump({"meta": meta, "records": [r.as_dict() for r in records]}, fh, indent=1)
        click.echo(f"\nrecords written to {json_path}")
    if plot_path is not None:
        title = f"convcore bench, {platform.machine()}, {os.cpu_count()} CPUs, median of {repeat}"
        _bench.plot(records, peaks, plot_path, title=title)
        click.echo(f"plot written to {plot_path}")


@main.command()
@_backends_option
@click.option(
    "--namespace",
    "namespaces",
    type=click.Choice(["numpy", "array_api_strict", "torch", "dask", "cupy", "jax"]),
    multiple=True,
    help="Array namespace to feed (repeatable; default: every installed one a backend declares).",
)
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(["float32", "float64"]),
    multiple=True,
    help="Dtype to check (repeatable; default: both).",
)
@click.option(
    "--matlab/--no-matlab",
    default=True,
    show_default=True,
    help="Also check the MATLAB adapter against the fixtures computed by GNU Octave.",
)
@click.option("--verbose", "-v", is_flag=True, help="List every mismatch, not only the worst.")
def check(backends, namespaces, dtypes, matlab, verbose):
    """Check every available backend against the naive loops and the MATLAB fixtures.

    im2col, col2im, conv and conv_backward (dx, dw, db) with per-axis stride,
    asymmetric padding, dilation, groups and depthwise; max pooling (output,
    indices, gradient) and average pooling (output, gradient) with ceil_mode,
    count_include_pad and divisor_override; the transposed convolution (output,
    dx, dw, db) with output_padding, dilation and groups.  1-D, 2-D and 3-D,
    channels-first and channels-last, each op only where the backend declares it,
    against loops over output positions that share no code with the backends;
    tolerance 1e-4 (float32) and 1e-10 (float64) relative to the largest expected
    value, indices exact.  Exit status 1 when anything differs, with the worst
    error printed.
    """
    from . import _check

    names = [_selection(b)[0] for b in backends] or [_selection(None, "numpy")[0]]
    registry = get_registry()
    if "auto" in names:
        infos = available_backends()
    else:
        infos = [registry.info(_explicit(n)) for n in dict.fromkeys(names)]
    dtypes = dtypes or ("float32", "float64")
    outcomes = list(_check.run_checks(infos, namespaces=namespaces or None, dtypes=dtypes))
    if "auto" not in names:
        for info in infos:
            if not any(o.backend == info.name for o in outcomes):
                takes = "any" if info.namespaces is None else ", ".join(sorted(info.namespaces))
                raise click.UsageError(
                    f"backend {info.name!r} takes none of the requested namespaces/dtypes "
                    f"({', '.join(namespaces or ['any'])}; {', '.join(dtypes)}); "
                    f"it takes {takes} arrays of {', '.join(sorted(info.dtypes))}"
                )
    if matlab:
        for info in infos:
            if info.available and (info.namespaces is None or "numpy" in info.namespaces):
                outcomes.append(_check.check_fixtures(info.name))
    rows = [("backend", "namespace", "dtype", "against", "checks", "worst error", "where", "")]
    for o in outcomes:
        rows.append(
            (
                o.backend,
                o.namespace,
                o.dtype,
                o.against,
                str(o.checks),
                "-" if o.skipped else f"{o.worst:.1e}",
                "-" if o.skipped else o.worst_where,
                "skipped" if o.skipped else ("ok" if o.ok else "FAIL"),
            )
        )
    _table(rows)
    skipped = {f"{o.backend} on {o.namespace} arrays": o.skipped for o in outcomes if o.skipped}
    for what, reason in skipped.items():
        click.echo(f"  skipped {what}: {reason}")
    notes = {o.backend: o.note for o in outcomes if o.note}
    for backend_name, note in notes.items():
        click.echo(f"  {backend_name}: {note}")
    failed = [o for o in outcomes if not o.skipped and not o.ok]
    checked = sum(o.checks for o in outcomes if not o.skipped)
    if not checked:
        raise click.UsageError("nothing was checked: " + "; ".join(o.skipped for o in outcomes))
    if failed:
        worst = max(failed, key=lambda o: o.worst)
        count = sum(len(o.failures) for o in failed)
        click.echo(
            f"\nFAILED: {count} mismatch(es); worst: {worst.backend} ({worst.namespace}, "
            f"{worst.dtype}, {worst.against}) {worst.worst_failure()}",
            err=True,
        )
        if verbose:
            for o in failed:
                for line in o.failures:
                    click.echo(f"  {o.backend} {o.namespace} {o.dtype}: {line}", err=True)
        raise SystemExit(1)
    click.echo(f"\nall {checked} checks passed")


@main.command()
@_backends_option
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(["float16", "float32", "float64"]),
    multiple=True,
    help="Dtype to prepare (repeatable; default: float32 and float64).",
)
def warmup(backends, dtypes):
    """Compile the backends' kernels now instead of on first use.

    Runs the warm-up that each chosen backend declares (the numba backend
    compiles its kernels: serial kernels are cached on disk by Numba, so later
    processes load them; its parallel im2col/col2im kernels are compiled for
    this process only).  Prints the time each step took.
    """
    dtypes = dtypes or ("float32", "float64")
    names = [_selection(b)[0] for b in backends] or [_selection(None, "numpy")[0]]
    registry = get_registry()
    if names == ["auto"]:
        names = [n for n in registry.names() if registry.unavailable_reason(n) is None]
    else:
        names = [_explicit(n) for n in dict.fromkeys(names) if n != "auto"]
    start = time.perf_counter()
    for name in names:
        spec = registry.spec(name)
        wanted = [d for d in dtypes if d in spec.dtypes]
        if spec.warmup is None or not wanted:
            click.echo(f"{name}: nothing to prepare")
            continue
        for step, value in spec.warmup(wanted).items():
            shown = f"{value:.2f} s" if isinstance(value, float) else str(value)
            click.echo(f"{name}: {step}: {shown}")
    click.echo(f"total: {time.perf_counter() - start:.2f} s")


def _ints(text: str, name: str, count: tuple[int, ...]):
    """``"2"`` -> 2, ``"2,1"`` -> (2, 1); the number of entries must be in ``count``."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"must be integers separated by commas, got {text!r}", param_hint=name
        ) from None
    if len(values) not in count:
        raise click.BadParameter(
            f"must have {' or '.join(map(str, count))} entries, got {text!r}", param_hint=name
        )
    return values[0] if len(values) == 1 else values


def _padding(text: str):
    if text.lower() in ("same", "valid"):
        return text.lower()
    return _ints(text, "--padding", (1, 2, 4))


def _load_npy(path: str, name: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=name) from None


@main.command("apply")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.argument("output_path", metavar="OUTPUT", type=click.Path())
@click.option(
    "--weight", "-w", required=True, type=click.Path(dir_okay=False), help="Filters (.npy)."
)
@click.option("--bias", type=click.Path(dir_okay=False), help="Bias (.npy), shape (F,).")
@click.option("--stride", default="1", show_default=True, help="S or SH,SW.")
@click.option("--padding", default="0", show_default=True, help="P, PH,PW, T,B,L,R or same.")
@click.option("--dilation", default="1", show_default=True, help="D or DH,DW.")
@click.option("--groups", default=1, show_default=True, help="Channel groups.")
@click.option("--pool", type=click.Choice(["max", "avg"]), help="Pool the convolution's output.")
@click.option("--pool-size", default="2", show_default=True, help="K or KH,KW.")
@click.option("--pool-stride", default=None, help="S or SH,SW [default: the pool size].")
@click.option("--chunk", default=32, show_default=True, help="Images per task and Zarr chunk.")
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), help="Default: the input's, or float32."
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help=f"dask.distributed scheduler, tcp://host:port [default: ${ENV_SCHEDULER}, "
    "else threads in this process].",
)
@click.option(
    "--backend",
    "-b",
    metavar="NAME",
    callback=_check_backend_flag,
    help="Backend for each chunk [default: auto, numba].",
)
def apply_command(input_path, output_path, weight, bias, scheduler, **job):
    """Convolve (and pool) an image stack on disk into a Zarr array, chunk by chunk.

    INPUT is a Zarr array (N, C, H, W) or a directory of .npy files, read in
    sorted name order, each one image (C, H, W) or a stack (n, C, H, W).
    OUTPUT is a Zarr array (N, F, Ho, Wo), written one chunk of --chunk images
    at a time with Dask.  An interrupted run resumes when run again with the
    same arguments: finished chunks are not recomputed.
    """
    # ``job``: the fields of ApplyOptions (the options named after them), as given.
    if job["chunk"] < 1:
        raise click.BadParameter(f"must be >= 1, got {job['chunk']}", param_hint="--chunk")
    parsed = {
        "stride": _ints(job["stride"], "--stride", (1, 2)),
        "padding": _padding(job["padding"]),
        "dilation": _ints(job["dilation"], "--dilation", (1, 2)),
        "pool_size": _ints(job["pool_size"], "--pool-size", (1, 2)),
    }
    if job["pool_stride"] is not None:
        parsed["pool_stride"] = _ints(job["pool_stride"], "--pool-stride", (1, 2))
    try:
        options = ApplyOptions(**{**job, **parsed})
    except (TypeError, ValueError) as exc:
        # ApplyOptions names its field first ("pool_size must be ..."): name the option.
        field = str(exc).split(" ", 1)[0]
        if field not in job:
            raise
        raise click.BadParameter(str(exc), param_hint=f"--{field.replace('_', '-')}") from None
    if options.backend is not None:
        # The chunks are NumPy arrays: a backend that cannot run them is an error
        # now, before OUTPUT is created.
        dtypes = () if options.dtype is None else (options.dtype,)
        _numpy_backends((options.backend,), op_names=("conv",), dtypes=dtypes)
    w = _load_npy(weight, "--weight")
    b = None if bias is None else _load_npy(bias, "--bias")
    with contextlib.ExitStack() as stack:
        bars = []

        def on_start(total: int, done: int) -> None:
            where = scheduler or os.environ.get(ENV_SCHEDULER) or "threads in this process"
            resumed = f", {done} already written" if done else ""
            click.echo(
                f"{total} chunks of up to {options.chunk} images{resumed}; scheduler: {where}",
                err=True,
            )
            bar = stack.enter_context(
                click.progressbar(length=total, label="writing", file=sys.stderr)
            )
            bar.update(done)
            bars.append(bar)

        try:
            report = apply_stack(
                input_path,
                output_path,
                w,
                b,
                options,
                scheduler=scheduler,
                progress=lambda _: bars[0].update(1),
                on_start=on_start,
            )
        except ImportError as exc:
            raise click.UsageError(str(exc)) from None
    shape = " x ".join(map(str, report.shape))
    click.echo(
        f"wrote {report.output}: {shape} {report.dtype}; {report.computed} chunks computed, "
        f"{report.skipped} already written; {report.seconds:.1f} s"
    )
    for who, peak in report.peak_rss_mib.items():
        click.echo(f"peak memory ({who}): {peak:.0f} MiB")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
