"""``convcore check``: every backend against the naive loop oracle and the MATLAB fixtures.

The parity suite of the tests, as a command a user can run on their own machine
after installing: for every backend that is available here and every array
namespace and dtype it declares (among those installed), each op is compared
with the naive loop oracle :mod:`convcore._naive` (plain loops over output
positions, sharing no code with :mod:`convcore.geometry` or any backend) on a few
geometries, 1-D, 2-D and 3-D where the backend declares them, channels-first and
channels-last:

* :data:`CASES`: ``im2col``, ``col2im``, ``conv`` and ``conv_backward`` (dx, dw, db),
  with per-axis stride, asymmetric padding, dilation, groups and depthwise;
* :data:`POOL_CASES`: ``max_pool`` (output and indices), ``max_pool_backward``,
  ``avg_pool`` and ``avg_pool_backward``, with ``ceil_mode`` (PyTorch's and
  ``"cover_all"``), ``count_include_pad`` and ``divisor_override``;
* :data:`TRANSPOSE_CASES`: ``conv_transpose`` and ``conv_transpose_backward``
  (dx, dw, db), with ``output_padding``, dilation and groups.

An op is run only where the backend declares it (:meth:`BackendSpec.supports`
for the op, namespace, dtype and rank).  The MATLAB-layout adapter is checked
against the fixtures that GNU Octave computed from the seed's MATLAB code
(``matlab_ref/fixtures``, installed with the package).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import ClassVar

import numpy as np

from . import _naive as naive
from .geometry import conv_output_size

__all__ = [
    "ALL_CASES",
    "CASES",
    "OPS",
    "POOL_CASES",
    "TRANSPOSE_CASES",
    "CheckCase",
    "Outcome",
    "PoolCase",
    "TransposeCase",
    "fixture_files",
    "run_checks",
]

#: Relative error allowed per dtype: ``max|got - want| <= tol * max(1, max|want|)``.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}

#: Namespaces ``check`` knows how to feed, and the module that must be importable.
NAMESPACES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "dask": "dask.array",
    "cupy": "cupy",
    "jax": "jax.numpy",
}

#: The ops of each kind of case, and all the ops ``check`` runs.
CONV_OPS = ("im2col", "col2im", "conv", "conv_backward")
POOL_OPS = ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")
TRANSPOSE_OPS = ("conv_transpose", "conv_transpose_backward")
OPS = CONV_OPS + POOL_OPS + TRANSPOSE_OPS


def _to_layout(layout: str, a: np.ndarray) -> np.ndarray:
    """A channels-first array in ``layout`` (a copy, C-contiguous)."""
    if layout == "channels_first":
        return a
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _rng(name: str, seed: int = 0):
    return np.random.default_rng([seed, sum(map(ord, name))])


@dataclass(frozen=True)
class CheckCase:
    """One convolution geometry, in resolved numbers (what the oracle takes).

    ``size`` has one entry per spatial axis (1, 2 or 3); ``padding`` is
    ``(before, after)`` per axis.  ``layout="channels_last"`` feeds the backend
    ``(N, *spatial, C)`` arrays and expects results in that layout.
    """

    name: str
    n: int
    c: int
    size: tuple[int, ...]
    f: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] = (0, 0, 0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    layout: str = "channels_first"

    ops: ClassVar[tuple[str, ...]] = CONV_OPS

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def geo(self) -> tuple:
        return (self.stride, self.padding, self.dilation)

    def arrays(self, dtype: str, seed: int = 0):
        """``x, weight, bias, grad_out, cols`` (NumPy, channels first) for this case."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.c, *self.size)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, *self.kernel)).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        out = naive.conv_output_size(self.size, self.kernel, *self.geo)
        g = rng.standard_normal((self.n, self.f, *out)).astype(dtype)
        rows, length = self.c * int(np.prod(self.kernel)), int(np.prod(out))
        cols = rng.standard_normal((self.n, rows, length)).astype(dtype)
        return x, w, b, g, cols

    @property
    def options(self) -> dict:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "layout": self.layout,
        }

    def to_layout(self, a: np.ndarray) -> np.ndarray:
        """A channels-first array in this case's layout (a copy, C-contiguous)."""
        return _to_layout(self.layout, a)

    def references(self, dtype: str) -> dict:
        """Inputs (in the case's layout) and the oracle's results."""
        x, w, b, g, cols = self.arrays(dtype)
        geo, lay = self.geo, self.to_layout
        dx, dw, db = naive.conv_backward(g, x, w, *geo, self.groups)
        return {
            "inputs": (lay(x), w, b, lay(g), cols),
            "im2col": naive.im2col(x, self.kernel, *geo),
            "col2im": lay(naive.col2im(cols, self.size, self.kernel, *geo)),
            "conv": lay(naive.conv(x, w, b, *geo, self.groups)),
            "conv_backward": (lay(dx), dw, db),
        }

    def run(self, out: Outcome, backend: str, conv: Callable, tol: float, ops) -> None:
        import convcore

        ref = _references(self, out.dtype)
        opts, grp = self.options, {"groups": self.groups}
        xs, ws, bs, gs, cs = (conv(a) for a in ref["inputs"])
        if "im2col" in ops:
            got = convcore.im2col(xs, self.kernel, **opts, backend=backend)
            out.record(f"{self.name} im2col", got, ref["im2col"], tol)
        if "col2im" in ops:
            got = convcore.col2im(cs, self.size, self.kernel, **opts, backend=backend)
            out.record(f"{self.name} col2im", got, ref["col2im"], tol)
        if "conv" in ops:
            got = convcore.conv(xs, ws, bs, **opts, **grp, backend=backend)
            out.record(f"{self.name} conv", got, ref["conv"], tol)
        if "conv_backward" in ops:
            grads = convcore.conv_backward(gs, xs, ws, **opts, **grp, backend=backend)
            for label, got, want in zip(("dx", "dw", "db"), grads, ref["conv_backward"]):
                out.record(f"{self.name} conv_backward {label}", got, want, tol)


@dataclass(frozen=True)
class PoolCase:
    """One pooling geometry: max pooling with indices and average pooling, and gradients.

    ``padding`` is ``(before, after)`` per axis (at most ``kernel // 2``, PyTorch's
    rule); ``dilation`` applies to max pooling only (average pooling has none);
    ``ceil_mode``, ``count_include_pad`` and ``divisor_override`` as in
    :func:`convcore.max_pool` / :func:`convcore.avg_pool`.
    """

    name: str
    n: int
    c: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool | str = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    layout: str = "channels_first"

    ops: ClassVar[tuple[str, ...]] = POOL_OPS

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def max_args(self) -> tuple:
        return (self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    @property
    def avg_args(self) -> tuple:
        return (
            self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
            self.divisor_override,
        )  # fmt: skip

    def references(self, dtype: str) -> dict:
        """Inputs (in the case's layout) and the oracle's results."""
        rng = _rng(self.name)
        x = rng.standard_normal((self.n, self.c, *self.size)).astype(dtype)
        y, idx = naive.max_pool(x, *self.max_args)
        g_max = rng.standard_normal(y.shape).astype(dtype)
        avg = naive.avg_pool(x, *self.avg_args)
        g_avg = rng.standard_normal(avg.shape).astype(dtype)
        lay = functools.partial(_to_layout, self.layout)
        return {
            "inputs": (lay(x), lay(g_max), lay(g_avg)),
            "max_pool": (lay(y), lay(idx)),
            "max_pool_backward": lay(naive.max_pool_backward(g_max, x, *self.max_args)),
            "avg_pool": lay(avg),
            "avg_pool_backward": lay(naive.avg_pool_backward(g_avg, self.size, *self.avg_args)),
        }

    def run(self, out: Outcome, backend: str, conv: Callable, tol: float, ops) -> None:
        import convcore

        ref = _references(self, out.dtype)
        xs, g_max, g_avg = (conv(a) for a in ref["inputs"])
        kw = {"layout": self.layout, "backend": backend}
        if "max_pool" in ops:
            got, idx = convcore.max_pool(xs, *self.max_args, True, **kw)
            out.record(f"{self.name} max_pool", got, ref["max_pool"][0], tol)
            out.record(f"{self.name} max_pool indices", idx, ref["max_pool"][1], 0.0)
        if "max_pool_backward" in ops:
            got = convcore.max_pool_backward(g_max, xs, *self.max_args, **kw)
            out.record(f"{self.name} max_pool_backward", got, ref["max_pool_backward"], tol)
        if "avg_pool" in ops:
            got = convcore.avg_pool(xs, *self.avg_args, **kw)
            out.record(f"{self.name} avg_pool", got, ref["avg_pool"], tol)
        if "avg_pool_backward" in ops:
            got = convcore.avg_pool_backward(g_avg, self.size, *self.avg_args, **kw)
            out.record(f"{self.name} avg_pool_backward", got, ref["avg_pool_backward"], tol)


@dataclass(frozen=True)
class TransposeCase:
    """One transposed-convolution geometry, in resolved numbers.

    ``weight`` is ``(c_in, c_out // groups, *kernel)``; ``padding`` is ``(before,
    after)`` per axis, cropped from the full output; ``output_padding`` is smaller
    than the stride or the dilation on every axis.
    """

    name: str
    n: int
    c_in: int
    size: tuple[int, ...]
    c_out: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    layout: str = "channels_first"

    ops: ClassVar[tuple[str, ...]] = TRANSPOSE_OPS

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def geo(self) -> tuple:
        return (self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    @property
    def options(self) -> dict:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "layout": self.layout,
        }

    def references(self, dtype: str) -> dict:
        """Inputs (in the case's layout) and the oracle's results."""
        rng = _rng(self.name)
        x = rng.standard_normal((self.n, self.c_in, *self.size)).astype(dtype)
        shape = (self.c_in, self.c_out // self.groups, *self.kernel)
        w = rng.standard_normal(shape).astype(dtype)
        b = rng.standard_normal(self.c_out).astype(dtype)
        y = naive.conv_transpose(x, w, b, *self.geo)
        g = rng.standard_normal(y.shape).astype(dtype)
        dx, dw, db = naive.conv_transpose_backward(g, x, w, *self.geo)
        lay = functools.partial(_to_layout, self.layout)
        return {
            "inputs": (lay(x), w, b, lay(g)),
            "conv_transpose": lay(y),
            "conv_transpose_backward": (lay(dx), dw, db),
        }

    def run(self, out: Outcome, backend: str, conv: Callable, tol: float, ops) -> None:
        import convcore

        ref = _references(self, out.dtype)
        xs, ws, bs, gs = (conv(a) for a in ref["inputs"])
        if "conv_transpose" in ops:
            got = convcore.conv_transpose(xs, ws, bs, **self.options, backend=backend)
            out.record(f"{self.name} conv_transpose", got, ref["conv_transpose"], tol)
        if "conv_transpose_backward" in ops:
            grads = convcore.conv_transpose_backward(gs, xs, ws, **self.options, backend=backend)
            for label, got, want in zip(("dx", "dw", "db"), grads, ref["conv_transpose_backward"]):
                out.record(f"{self.name} conv_transpose_backward {label}", got, want, tol)


def _c2(name, n, c, h, w, f, kernel, **kw) -> CheckCase:
    return CheckCase(name, n, c, (h, w), f, kernel, **kw)


CASES: tuple[CheckCase, ...] = (
    _c2("basic", 2, 3, 6, 5, 4, (3, 3)),
    _c2("rect_kernel_padded", 1, 2, 6, 7, 3, (2, 4), padding=(1, 1, 1, 1)),
    _c2("stride_per_axis", 2, 2, 9, 8, 2, (2, 3), stride=(3, 2)),
    _c2("asymmetric_padding", 2, 2, 5, 6, 3, (3, 3), padding=(0, 2, 1, 3)),
    _c2("padding_ge_kernel", 1, 2, 4, 5, 2, (2, 2), stride=(2, 2), padding=(3, 3, 3, 3)),
    _c2("dilation", 2, 2, 8, 7, 2, (3, 3), padding=(2, 2, 2, 2), dilation=(2, 2)),
    _c2("dilation_per_axis", 1, 2, 9, 9, 2, (3, 2), stride=(2, 1), dilation=(1, 3)),
    _c2("groups", 2, 4, 5, 6, 6, (3, 3), padding=(1, 1, 1, 1), groups=2),
    _c2("depthwise", 2, 3, 6, 5, 3, (3, 3), padding=(1, 1, 1, 1), groups=3),
    _c2("depthwise_x2", 1, 4, 5, 5, 8, (3, 2), stride=(2, 2), padding=(0, 1, 1, 0), groups=4),
    _c2("pointwise", 2, 5, 4, 5, 4, (1, 1)),
    _c2("floor_division", 2, 1, 8, 10, 2, (3, 3), stride=(2, 3)),
    _c2("kernel_equals_input", 1, 2, 3, 4, 2, (3, 4)),
    _c2("seed_4x4x3_k2", 1, 3, 4, 4, 1, (2, 2)),
    _c2("channels_last", 2, 3, 6, 5, 4, (3, 2), stride=(2, 1), padding=(1, 0, 1, 1),
        layout="channels_last"),
    CheckCase("1d", 2, 3, (11,), 4, (3,), stride=(2,), padding=(2, 1), dilation=(2,)),
    CheckCase("1d_depthwise", 2, 3, (9,), 3, (3,), padding=(1, 1), dilation=(1,), stride=(1,),
              groups=3),
    CheckCase("3d", 1, 2, (5, 6, 4), 3, (3, 2, 2), stride=(2, 1, 1),
              padding=(1, 0, 0, 1, 1, 1), dilation=(1, 2, 1)),
    CheckCase("3d_groups_channels_last", 2, 4, (3, 4, 5), 4, (2, 2, 2), stride=(1, 1, 1),
              padding=(1, 1, 0, 0, 1, 0), dilation=(1, 1, 1), groups=2,
              layout="channels_last"),
)  # fmt: skip

POOL_CASES: tuple[PoolCase, ...] = (
    PoolCase("pool_1d_ceil", 2, 3, (11,), (3,), (2,), (1, 0), (2,), ceil_mode=True,
             count_include_pad=False),
    PoolCase("pool_2d", 2, 3, (7, 8), (3, 2), (2, 2), (1, 0, 1, 1), (1, 1)),
    PoolCase("pool_2d_ceil_channels_last", 1, 4, (9, 7), (3, 3), (2, 3), (1, 1, 0, 1), (1, 2),
             ceil_mode=True, count_include_pad=False, layout="channels_last"),
    PoolCase("pool_2d_cover_all_divisor", 2, 2, (6, 7), (2, 3), (3, 2), (0, 1, 1, 0), (2, 1),
             ceil_mode="cover_all", divisor_override=4),
    PoolCase("pool_3d_ceil", 1, 2, (5, 4, 6), (2, 2, 3), (2, 1, 2), (1, 0, 0, 1, 1, 1),
             (1, 1, 1), ceil_mode=True),
)  # fmt: skip

TRANSPOSE_CASES: tuple[TransposeCase, ...] = (
    TransposeCase("transpose_1d_groups", 2, 4, (7,), 6, (3,), (2,), (1, 0), (1,), (1,),
                  groups=2),
    TransposeCase("transpose_2d", 2, 3, (4, 5), 4, (3, 2), (2, 3), (1, 1, 0, 2), (1, 2), (1, 1)),
    TransposeCase("transpose_2d_dilated_channels_last", 1, 4, (5, 4), 4, (2, 3), (1, 2),
                  (0, 1, 1, 1), (1, 1), (2, 1), groups=2, layout="channels_last"),
    TransposeCase("transpose_3d", 1, 2, (3, 4, 3), 3, (2, 3, 2), (2, 1, 2), (1, 0, 0, 1, 1, 1),
                  (1, 0, 1), (1, 1, 2)),
)  # fmt: skip

#: Every case ``check`` runs.
ALL_CASES: tuple[CheckCase | PoolCase | TransposeCase, ...] = CASES + POOL_CASES + TRANSPOSE_CASES


@dataclass
class Outcome:
    """The worst error of one (backend, namespace, dtype) or of the MATLAB fixtures."""

    backend: str
    namespace: str
    dtype: str
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    worst: float = 0.0
    worst_where: str = "-"
    skipped: str | None = None
    against: str = "loops"
    note: str | None = None

    def record(self, where: str, got, want, tol: float) -> None:
        """One comparison: the error relative to the largest finite expected value.

        Equal entries count as no error, also where both are the same infinity or
        both NaN (a max-pooling window with no input cell gives ``-inf``).
        """
        self.checks += 1
        got = _to_numpy(got)
        if got.shape != want.shape:
            self.failures.append(f"{where}: shape {got.shape}, expected {want.shape}")
            self.worst, self.worst_where = float("inf"), where
            return
        got = got.astype(np.float64)
        want = np.asarray(want, dtype=np.float64)
        finite = want[np.isfinite(want)]
        scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(got - want))
        err = float(np.max(diff)) / scale if want.size else 0.0
        if not np.isfinite(err):
            err = float("inf")
        if err > self.worst or self.worst_where == "-":
            self.worst, self.worst_where = err, where
        if err > tol:
            self.failures.append(f"{where}: relative error {err:.2e} > {tol:.0e}")

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst_failure(self) -> str:
        """The failure message of the worst error (crashes and wrong shapes first)."""
        for line in self.failures:
            if line.startswith(f"{self.worst_where}:"):
                return line
        return self.failures[0] if self.failures else ""


# ------------------------------------------------------------------- namespaces


def _namespace_problem(name: str) -> str | None:
    """None when arrays of namespace ``name`` can be made here, else the reason."""
    if importlib.util.find_spec(NAMESPACES[name].split(".")[0]) is None:
        return f"{NAMESPACES[name]} is not installed"
    try:
        _converter(name)(np.zeros((1, 1), np.float32))
    except Exception as exc:  # e.g. CuPy installed on a machine without a GPU
        return f"cannot create {name} arrays here: {type(exc).__name__}: {exc}"
    return None


def _dtype_problem(name: str, dtype: str) -> str | None:
    """None when namespace ``name`` has ``dtype`` arrays here: JAX has float64 only with x64."""
    if name != "jax" or dtype != "float64":
        return None
    import jax

    if jax.config.jax_enable_x64:
        return None
    return "JAX makes float64 arrays only with jax_enable_x64 (set JAX_ENABLE_X64=1 to check them)"


def _converter(name: str) -> Callable[[np.ndarray], object]:
    mod = importlib.import_module(NAMESPACES[name])
    if name == "numpy":
        return np.asarray
    if name == "torch":
        return lambda a: mod.from_numpy(np.ascontiguousarray(a))
    if name == "dask":
        return lambda a: mod.from_array(a, chunks=(max(1, a.shape[0] // 2), *a.shape[1:]))
    return mod.asarray


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        return a.detach().cpu().numpy()
    if mod == "cupy":
        return a.get()
    if mod == "dask":
        return np.asarray(a.compute())
    if mod in ("jax", "jaxlib"):
        return np.asarray(a)
    return np.from_dlpack(a)


# ------------------------------------------------------------------------ runs


@functools.lru_cache(maxsize=128)
def _references(case, dtype: str) -> dict:
    """Inputs and oracle results of one case (computed once per process)."""
    return case.references(dtype)


def _declared_ops(info, ns: str, dtype: str, nd: int | None = None, ops=OPS) -> list[str]:
    """The ops of ``ops`` that ``info`` declares for these arrays."""
    return [op for op in ops if info.supports(op, namespace=ns, dtype=dtype, nd=nd)]


def _combinations(infos, namespaces: Sequence[str] | None, dtypes: Sequence[str]):
    for info in infos:
        wanted = [ns for ns in NAMESPACES if namespaces is None or ns in namespaces]
        for ns in wanted:
            for dtype in dtypes:
                if _declared_ops(info, ns, dtype):
                    yield info, ns, dtype


def _left_out(info, ns: str, dtype: str, cases) -> str | None:
    """What of ``cases`` the backend does not declare, in words (None: nothing)."""
    ranks = sorted({c.nd for c in cases if not _declared_ops(info, ns, dtype, c.nd, c.ops)})
    wanted = sorted({op for c in cases for op in c.ops}, key=OPS.index)
    ops = [op for op in wanted if not _declared_ops(info, ns, dtype, ops=(op,))]
    parts = []
    if ranks:
        parts.append(f"{', '.join(f'{d}-D' for d in ranks)} cases left out")
    if ops:
        parts.append(f"{', '.join(ops)} left out")
    return f"{'; '.join(parts)}: not declared by the backend" if parts else None


def run_checks(
    infos,
    *,
    namespaces: Sequence[str] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    cases: Sequence = ALL_CASES,
) -> Iterator[Outcome]:
    """Yield one :class:`Outcome` per (backend, namespace, dtype) combination.

    ``infos`` are :class:`convcore.BackendInfo` records (``available_backends()``);
    unavailable backends and namespaces that are not installed give an outcome
    with ``skipped`` set to the reason.  ``namespaces=None`` means every
    namespace the backend declares (numpy for NumPy-only backends, all installed
    ones for namespace-agnostic backends).  ``cases`` defaults to
    :data:`ALL_CASES`; each op of a case runs where the backend declares it for
    the case's rank.
    """
    for info, ns, dtype in _combinations(infos, namespaces, dtypes):
        out = Outcome(info.name, ns, dtype)
        if not info.available:
            out.skipped = f"backend unavailable: {info.reason}"
        elif (problem := _namespace_problem(ns) or _dtype_problem(ns, dtype)) is not None:
            out.skipped = problem
        else:
            conv = _converter(ns)
            out.note = _left_out(info, ns, dtype, cases)
            for case in cases:
                ops = _declared_ops(info, ns, dtype, case.nd, case.ops)
                if not ops:
                    continue
                try:
                    case.run(out, info.name, conv, TOLERANCE[dtype], ops)
                except Exception as exc:  # a crash is a failure to report, not to hide
                    out.checks += 1
                    out.failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
                    out.worst, out.worst_where = float("inf"), case.name
        yield out


# ---------------------------------------------------------------- MATLAB fixtures


def fixture_files() -> list:
    """The MATLAB fixtures installed with the package (``matlab_ref/fixtures/*.mat``)."""
    try:
        root = resources.files("convcore._matlab_fixtures")
    except ModuleNotFoundError:
        return []
    return sorted((p for p in root.iterdir() if p.name.endswith(".mat")), key=lambda p: p.name)


def _full(a, shape):
    """Octave drops trailing singleton dimensions; put them back."""
    return np.asarray(a, dtype=np.float64).reshape(tuple(int(s) for s in shape), order="F")


def check_fixtures(backend: str) -> Outcome:
    """The MATLAB adapter on ``backend`` against every installed fixture (float64)."""
    from . import matlab

    out = Outcome(backend, "numpy", "float64", against="MATLAB fixtures")
    files = fixture_files()
    if not files:
        out.skipped = "the MATLAB fixtures are not installed with this copy of convcore"
        return out
    try:
        from scipy.io import loadmat
    except ImportError:
        out.skipped = "scipy is needed to read the .mat fixtures (pip install scipy)"
        return out
    tol = TOLERANCE["float64"]
    for path in files:
        with resources.as_file(path) as real:
            d = loadmat(real)
        case = str(d["case_id"][0])
        try:
            with warnings.catch_warnings():  # several fixtures have fractional sizes on purpose
                warnings.simplefilter("ignore", matlab.OutputSizeWarning)
                _fixture_case(out, matlab, d, case, backend, tol)
        except Exception as exc:
            out.checks += 1
            out.failures.append(f"{case}: {type(exc).__name__}: {exc}")
            out.worst, out.worst_where = float("inf"), case
    return out


def _fixture_case(out: Outcome, matlab, d, case: str, backend: str, tol: float) -> None:
    h, w, c, n = (int(v) for v in d["size_x"].ravel())
    kh, kw, _, f = (int(v) for v in d["size_w"].ravel())
    x = _full(d["x"], (h, w, c, n))
    stride, pad, is_conv = d["stride"], d["pad"], d["is_conv"]
    cols = matlab.im2col_ref(x[:, :, :, 0], kh, kw, stride, pad, is_conv, backend=backend)
    want = np.asarray(d["cols"], dtype=np.float64)
    out.record(f"{case} im2col_ref", cols, want.reshape(want.shape[0], -1, n)[:, :, 0], tol)
    hc, wc = d["dimg_covered"].shape[:2]
    sy, sx = (int(v) for v in np.broadcast_to(np.asarray(stride).ravel(), (2,)))
    ho, wo = conv_output_size((hc, wc), (kh, kw), stride=(sy, sx))
    dcols = np.asarray(d["dcols"], dtype=np.float64)
    dcols = dcols.reshape(dcols.shape[0], dcols.shape[1], -1)[:, :, 0]
    dimg = matlab.im2col_back_ref(dcols, ho, wo, stride, kh, kw, c, pad, h, w, backend=backend)
    want = _full(d["dimg"], (h, w, c, n))[:, :, :, 0]
    out.record(f"{case} im2col_back_ref", dimg, want, tol)
    if not bool(np.asarray(is_conv).ravel()[0]):
        return  # pooling fixtures: the column layouts only
    wt = _full(d["w"], (kh, kw, c, f))
    b = None if d["b"].size == 0 else _full(d["b"], (f, 1))
    y = matlab.forward_propagation(x, wt, b, stride, pad, backend=backend)
    out.record(f"{case} forward_propagation", np.reshape(y, -1, order="F"), d["y"].ravel("F"), tol)
    dout = np.reshape(d["dout"].ravel("F"), np.shape(y), order="F")
    grads = matlab.backward_propagation(dout, x, wt, b, stride, pad, backend=backend)
    out.record(f"{case} backward_propagation dx", grads.input, _full(d["dx"], (h, w, c, n)), tol)
    out.record(f"{case} backward_propagation dw", grads.weight, _full(d["dw"], (kh, kw, c, f)), tol)
    db = np.reshape(_to_numpy(grads.bias), -1)
    out.record(f"{case} backward_propagation db", db, np.ravel(d["db"]), tol)
