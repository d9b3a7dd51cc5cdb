"""``convcore check``: every backend against the loop references and the MATLAB fixtures.

The parity suite of the tests, as a command a user can run on their own machine
after installing: for every backend that is available here and every array
namespace and dtype it declares (among those installed), each of ``im2col``,
``col2im``, ``conv`` and ``conv_backward`` on a set of geometries (1-D, 2-D and 3-D
where the backend declares them; channels-first and channels-last) is compared
with the loop references of :mod:`convcore._loops`, and the MATLAB-layout
adapter with the fixtures that GNU Octave computed from the seed's MATLAB code
(``matlab_ref/fixtures``, installed with the package).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from . import _loops
from .geometry import conv_output_size

__all__ = ["CASES", "CheckCase", "Outcome", "fixture_files", "run_checks"]

#: Relative error allowed per dtype: ``max|got - want| <= tol * max(1, max|want|)``.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}

#: Namespaces ``check`` knows how to feed, and the module that must be importable.
NAMESPACES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "dask": "dask.array",
    "cupy": "cupy",
}


@dataclass(frozen=True)
class CheckCase:
    """One geometry, in resolved numbers (what the loop references take).

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

    @property
    def nd(self) -> int:
        return len(self.size)

    def arrays(self, dtype: str, seed: int = 0):
        """``x, weight, bias, grad_out`` (NumPy, channels first) for this case."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.c, *self.size)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, *self.kernel)).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        y = _loops.conv2d_forward_loops(
            x, w, None, self.stride, self.padding, self.dilation, self.groups
        )
        g = rng.standard_normal(y.shape).astype(dtype)
        return x, w, b, g

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
        if self.layout == "channels_first":
            return a
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))


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
        self.checks += 1
        got = _to_numpy(got)
        if got.shape != want.shape:
            self.failures.append(f"{where}: shape {got.shape}, expected {want.shape}")
            self.worst, self.worst_where = float("inf"), where
            return
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
        err = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
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
    return np.from_dlpack(a)


# ------------------------------------------------------------------------ runs


@functools.lru_cache(maxsize=64)
def _references(case: CheckCase, dtype: str):
    """Inputs and loop-reference results of one case (computed once per process)."""
    x, w, b, g = case.arrays(dtype)
    geo = (case.stride, case.padding, case.dilation)
    cols = _loops.im2col_loops(x, case.kernel, *geo)
    dx, dw, db = _loops.conv2d_backward_loops(g, x, w, *geo, case.groups)
    lay = case.to_layout
    return {
        "inputs": (lay(x), w, b, lay(g), cols),
        "im2col": cols,
        "col2im": lay(_loops.col2im_loops(cols, case.size, case.kernel, *geo)),
        "conv": lay(_loops.conv2d_forward_loops(x, w, b, *geo, case.groups)),
        "conv_backward": (lay(dx), dw, db),
    }


def _backend_case(
    out: Outcome, name: str, case: CheckCase, conv: Callable, tol: float, ops: Sequence[str]
) -> None:
    import convcore

    ref = _references(case, out.dtype)
    opts, grp = case.options, {"groups": case.groups}
    xs, ws, bs, gs, cs = (conv(a) for a in ref["inputs"])
    if "im2col" in ops:
        got = convcore.im2col(xs, case.kernel, **opts, backend=name)
        out.record(f"{case.name} im2col", got, ref["im2col"], tol)
    if "col2im" in ops:
        got = convcore.col2im(cs, case.size, case.kernel, **opts, backend=name)
        out.record(f"{case.name} col2im", got, ref["col2im"], tol)
    if "conv" in ops:
        got = convcore.conv(xs, ws, bs, **opts, **grp, backend=name)
        out.record(f"{case.name} conv", got, ref["conv"], tol)
    if "conv_backward" in ops:
        grads = convcore.conv_backward(gs, xs, ws, **opts, **grp, backend=name)
        for label, got, want in zip(("dx", "dw", "db"), grads, ref["conv_backward"]):
            out.record(f"{case.name} conv_backward {label}", got, want, tol)


#: The ops ``check`` runs on each case.
OPS = ("im2col", "col2im", "conv", "conv_backward")


def _declared_ops(info, ns: str, dtype: str, nd: int | None = None) -> list[str]:
    """The ops of :data:`OPS` that ``info`` declares for these arrays."""
    return [op for op in OPS if info.supports(op, namespace=ns, dtype=dtype, nd=nd)]


def _combinations(infos, namespaces: Sequence[str] | None, dtypes: Sequence[str]):
    for info in infos:
        wanted = [ns for ns in NAMESPACES if namespaces is None or ns in namespaces]
        for ns in wanted:
            for dtype in dtypes:
                if _declared_ops(info, ns, dtype):
                    yield info, ns, dtype


def run_checks(
    infos,
    *,
    namespaces: Sequence[str] | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    cases: Sequence[CheckCase] = CASES,
) -> Iterator[Outcome]:
    """Yield one :class:`Outcome` per (backend, namespace, dtype) combination.

    ``infos`` are :class:`convcore.BackendInfo` records (``available_backends()``);
    unavailable backends and namespaces that are not installed give an outcome
    with ``skipped`` set to the reason.  ``namespaces=None`` means every
    namespace the backend declares (numpy for NumPy-only backends, all installed
    ones for namespace-agnostic backends).
    """
    for info, ns, dtype in _combinations(infos, namespaces, dtypes):
        out = Outcome(info.name, ns, dtype)
        if not info.available:
            out.skipped = f"backend unavailable: {info.reason}"
        elif (problem := _namespace_problem(ns)) is not None:
            out.skipped = problem
        else:
            conv = _converter(ns)
            undeclared = sorted({c.nd for c in cases if not _declared_ops(info, ns, dtype, c.nd)})
            if undeclared:
                out.note = (
                    f"{', '.join(f'{d}-D' for d in undeclared)} cases left out: "
                    "not declared by the backend"
                )
            for case in cases:
                ops = _declared_ops(info, ns, dtype, case.nd)
                if not ops:
                    continue
                try:
                    _backend_case(out, info.name, case, conv, TOLERANCE[dtype], ops)
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
