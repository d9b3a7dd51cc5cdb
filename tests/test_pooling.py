"""convcore.pooling: N-d max / average pooling, every backend and layout, against two oracles.

* The naive N-d loop oracle (``tests/naive.py``, pure NumPy, independent of
  convcore) for the forward pass, the indices and both backward passes: a
  parity table of 1-D, 2-D and 3-D cases (ceil_mode False / True /
  ``"cover_all"``, symmetric, asymmetric and per-axis-pair padding, strides
  other than the kernel, dilation, ``count_include_pad=False``,
  ``divisor_override``, ties, NaN, -inf) in channels-first, channels-last and
  one mixed axis order per rank, on every backend x dtype the backend declares
  for NumPy input; a selection of those cases on every backend x namespace
  (array-api-strict, PyTorch, Dask, ...; Dask in float64 only, it is slow).
* PyTorch (``torch.nn.functional.max_pool1d/2d/3d``, ``avg_pool1d/2d/3d`` and
  autograd) as a second oracle over grids of geometries, on NumPy arrays through
  the default backend, and on torch tensors.
* float16 / bfloat16: computed in float32 and rounded once where the backend does
  not declare them; the output keeps the input's dtype.
* Layouts (channels-last results are the channels-first results permuted, indices
  too), the seed's pooling windows (``matlab_ref/fixtures/pool_*.mat``, written by
  Octave) against ``ceil_mode="cover_all"`` in NCHW and MATLAB's HWCN order,
  determinism (bitwise equal backward twice), inputs unchanged, empty batches,
  backend selection, the layer classes, error messages.
"""

from __future__ import annotations

import ast
import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import array_api_compat
import naive
import numpy as np
import pytest
from helpers import (
    HALF_TOL,
    assert_unchanged,
    check_output,
    from_layout,
    half_array,
    half_to_float64,
    index_dtype,
    noncontiguous,
    to_layout,
    torch_or_skip,
)

import convcore
from conftest import NAMESPACES, namespace_dtype_problem
from convcore import pooling
from convcore.layers import AvgPool1D, AvgPool2D, AvgPool3D, MaxPool1D, MaxPool2D, MaxPool3D
from convcore.pooling import (
    avg_pool,
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    avg_pool_backward,
    max_pool,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool3d,
    max_pool3d_backward,
    max_pool_backward,
    pool_output_size,
)

ROOT = Path(__file__).resolve().parents[1]
POOL_FIXTURES = sorted((ROOT / "matlab_ref" / "fixtures").glob("pool_*.mat"))

#: The rank-checked functions: nd -> (max, max_backward, avg, avg_backward).
RANKED = {
    1: (max_pool1d, max_pool1d_backward, avg_pool1d, avg_pool1d_backward),
    2: (max_pool2d, max_pool2d_backward, avg_pool2d, avg_pool2d_backward),
    3: (max_pool3d, max_pool3d_backward, avg_pool3d, avg_pool3d_backward),
}
LAYERS = {1: (MaxPool1D, AvgPool1D), 2: (MaxPool2D, AvgPool2D), 3: (MaxPool3D, AvgPool3D)}
ALL_OPS = ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")
FIRST, LAST = "channels_first", "channels_last"


# --------------------------------------------------------------------------
# Cases and their oracle results
# --------------------------------------------------------------------------


def per_axis(value, nd: int) -> tuple[int, ...]:
    """``nd`` ints from an int or a sequence of ``nd`` ints.

    Parameters
    ----------
    value : int or sequence of int
    nd : int
        Number of spatial axes.

    Returns
    -------
    tuple of int
    """
    return (value,) * nd if isinstance(value, int) else tuple(value)


def pad_pairs(padding, nd: int) -> tuple[int, ...]:
    """``(before0, after0, before1, ...)`` from any padding form the cases use.

    Parameters
    ----------
    padding : int, nd ints (symmetric per axis), 2*nd ints or nd (before, after) pairs
    nd : int
        Number of spatial axes.

    Returns
    -------
    tuple of int
        ``2 * nd`` ints, as :mod:`naive` takes them.
    """
    if isinstance(padding, int):
        return (padding,) * (2 * nd)
    items = list(padding)
    if all(isinstance(p, tuple) for p in items):
        return tuple(v for pair in items for v in pair)
    if len(items) == nd:
        return tuple(p for p in items for _ in range(2))
    assert len(items) == 2 * nd, padding
    return tuple(items)


@dataclass(frozen=True)
class Case:
    """One pooling problem: the options exactly as passed to convcore.

    ``shape`` is channels-first ``(N, C, *spatial)``; ``data`` says how the input is
    drawn (``normal``, ``negative``, ``ties``, ``nan``, ``neginf``).
    """

    id: str
    shape: tuple[int, ...]
    kernel: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: object = False
    data: str = "normal"
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def nd(self) -> int:
        return len(self.shape) - 2

    def oracle_geometry(self):
        """``(kernel, stride, padding, dilation)`` resolved for :mod:`naive`."""
        kernel = per_axis(self.kernel, self.nd)
        stride = kernel if self.stride is None else per_axis(self.stride, self.nd)
        return kernel, stride, pad_pairs(self.padding, self.nd), per_axis(self.dilation, self.nd)

    def max_kwargs(self) -> dict:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def avg_kwargs(self) -> dict:
        return dict(
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )


def make_input(case: Case, dtype, seed: int = 0) -> np.ndarray:
    """The input of ``case`` in ``dtype``, drawn reproducibly from the case id.

    Parameters
    ----------
    case : Case
    dtype : dtype or str
    seed : int, optional

    Returns
    -------
    ndarray, shape ``case.shape``
    """
    rng = np.random.default_rng([seed, sum(map(ord, case.id))])
    shape = case.shape
    if case.data == "normal":
        x = rng.standard_normal(shape)
    elif case.data == "negative":
        x = -rng.uniform(1, 5, shape)
    else:
        x = rng.integers(-3, 3, shape).astype(np.float64)  # many ties
        if case.data == "nan":
            x[rng.random(shape) < 0.2] = np.nan
        if case.data == "neginf":
            x[rng.random(shape) < 0.3] = -np.inf
            x[0, 0] = -np.inf  # a whole plane of -inf: every window picks its first cell
    return x.astype(dtype)


def _frozen(*arrays):
    for a in arrays:
        a.flags.writeable = False  # cached: shared between tests
    return arrays


@functools.cache
def max_expected(case: Case, dtype_name: str):
    """``(x, g, out, indices, dx)`` of the loop oracle for a max-pooling case (cached)."""
    x = make_input(case, dtype_name)
    kernel, stride, padding, dilation = case.oracle_geometry()
    out, idx = naive.max_pool(x, kernel, stride, padding, dilation, case.ceil_mode)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(dtype_name)
    dx = naive.max_pool_backward(g, x, kernel, stride, padding, dilation, case.ceil_mode)
    return _frozen(x, g, out, idx, dx)


@functools.cache
def avg_expected(case: Case, dtype_name: str):
    """``(x, g, out, dx)`` of the loop oracle for an average-pooling case (cached)."""
    x = make_input(case, dtype_name)
    kernel, stride, padding, _ = case.oracle_geometry()
    rules = (case.ceil_mode, case.count_include_pad, case.divisor_override)
    out = naive.avg_pool(x, kernel, stride, padding, *rules)
    g = np.random.default_rng(8).standard_normal(out.shape).astype(dtype_name)
    dx = naive.avg_pool_backward(g, case.shape[2:], kernel, stride, padding, *rules)
    return _frozen(x, g, out, dx)


C = Case
MAX_CASES = [
    C("1d-k2", (2, 3, 9), 2),
    C("1d-k3s2p1-ties", (2, 2, 10), 3, 2, 1, data="ties"),
    C("1d-overlap-s1-ties", (1, 2, 7), 3, 1, 1, data="ties"),
    C("1d-asym-pad-ceil", (1, 2, 8), 3, 2, (1, 0), ceil_mode=True, data="negative"),
    C("1d-dilation3", (1, 2, 11), 3, 2, 1, 3),
    C("1d-ceil-drops-window", (1, 2, 5), 2, 2, 1, ceil_mode=True, data="negative"),
    C("1d-cover-all-empty", (1, 2, 5), 1, 3, ceil_mode="cover_all", data="negative"),
    C("1d-cover-all-pad", (1, 2, 5), 2, 2, (1, 1), ceil_mode="cover_all", data="ties"),
    C("1d-nan", (2, 2, 9), 3, 1, 1, data="nan"),
    C("1d-neginf", (2, 2, 8), 2, 1, 1, ceil_mode=True, data="neginf"),
    C("2d-k2-default-stride", (2, 3, 6, 6), 2),
    C("2d-k3s2p1-ties", (2, 2, 7, 6), 3, 2, 1, data="ties"),
    C("2d-overlap-s1-ties", (1, 2, 5, 5), 3, 1, 1, data="ties"),
    C("2d-rect", (1, 2, 7, 8), (2, 3), (2, 1), (1, 0), data="ties"),
    C("2d-dilation2", (1, 2, 9, 8), 3, 2, 1, 2),
    C("2d-dilation-rect", (1, 1, 8, 9), (2, 3), (1, 2), (1, 1), (3, 2), True, "ties"),
    C("2d-asym-pad4", (1, 2, 6, 5), 3, 2, (1, 0, 0, 1), ceil_mode=True),
    C("2d-negative-padded", (1, 2, 5, 5), 3, 2, 1, data="negative"),
    C("2d-ceil-drops-window", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True, data="negative"),
    C("2d-ceil-overhang", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True, data="negative"),
    C("2d-ceil-kernel-gt-input", (1, 1, 2, 2), 3, 2, 0, ceil_mode=True),
    C("2d-cover-all-window-in-padding", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all",
      data="ties"),
    C("2d-cover-all-kernel-lt-stride", (1, 1, 5, 4), 1, 3, ceil_mode="cover_all",
      data="negative"),
    C("2d-dilation-skips-input", (1, 2, 1, 8), (2, 3), 2, 1, (2, 1), data="negative"),
    C("2d-nan", (2, 2, 6, 6), 3, 1, 1, data="nan"),
    C("2d-neginf", (2, 2, 5, 6), 2, 1, 1, ceil_mode=True, data="neginf"),
    C("3d-k2", (2, 2, 4, 4, 4), 2),
    C("3d-k3s2p1-ties", (1, 2, 5, 6, 5), 3, 2, 1, data="ties"),
    C("3d-rect-ceil", (1, 2, 5, 4, 6), (2, 3, 2), (2, 1, 3), (1, 1, 0), ceil_mode=True,
      data="negative"),
    C("3d-pairs-ceil", (1, 1, 4, 5, 6), (3, 2, 3), 2, ((1, 0), (0, 1), (1, 1)),
      ceil_mode=True, data="ties"),
    C("3d-dilation", (1, 2, 6, 5, 7), (2, 2, 3), (1, 2, 2), 1, (2, 1, 2)),
    C("3d-cover-all", (1, 2, 5, 5, 4), (2, 1, 2), (2, 3, 2), (1, 0, 0, 0, 0, 1),
      ceil_mode="cover_all", data="ties"),
    C("3d-nan", (1, 2, 4, 5, 4), 2, 1, 1, data="nan"),
    C("3d-neginf", (2, 1, 3, 4, 4), 2, 2, 1, ceil_mode=True, data="neginf"),
]  # fmt: skip

EXCL = dict(count_include_pad=False)
AVG_CASES = [
    C("1d-k2", (2, 3, 9), 2),
    C("1d-k3s2p1-incl", (2, 2, 10), 3, 2, 1),
    C("1d-k3s2p1-excl", (2, 2, 10), 3, 2, 1, **EXCL),
    C("1d-asym-ceil-excl", (1, 2, 8), 3, 2, (1, 0), ceil_mode=True, **EXCL),
    C("1d-asym-ceil-incl", (1, 2, 8), 4, 3, (2, 1), ceil_mode=True),
    C("1d-divisor", (1, 2, 9), 3, 2, 1, ceil_mode=True, divisor_override=2),
    C("1d-cover-all-pad-incl", (1, 2, 5), 2, 2, 1, ceil_mode="cover_all"),
    C("1d-cover-all-empty-excl", (1, 1, 5), 1, 3, ceil_mode="cover_all", **EXCL),
    C("1d-nan", (2, 2, 9), 3, 1, 1, data="nan"),
    C("2d-k2-default-stride", (2, 3, 6, 6), 2),
    C("2d-k3s2p1-incl", (2, 2, 7, 6), 3, 2, 1),
    C("2d-k3s2p1-excl", (2, 2, 7, 6), 3, 2, 1, **EXCL),
    C("2d-rect-pad", (1, 2, 6, 7), (2, 3), (1, 2), (1, 1)),
    C("2d-asym-pad4-ceil-excl", (1, 2, 6, 5), 3, 2, (1, 0, 0, 1), ceil_mode=True, **EXCL),
    C("2d-ceil-drops-window-incl", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True),
    C("2d-ceil-drops-window-excl", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True, **EXCL),
    C("2d-ceil-overhang-incl", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True),
    C("2d-ceil-overhang-excl", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True, **EXCL),
    C("2d-divisor-override-ceil", (1, 2, 7, 7), 3, 2, 1, ceil_mode=True, divisor_override=5),
    C("2d-divisor-negative", (1, 1, 6, 6), 2, divisor_override=-2),
    C("2d-cover-all-window-in-padding-incl", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all"),
    C("2d-cover-all-window-in-padding-excl", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all",
      **EXCL),
    C("2d-cover-all-kernel-lt-stride", (1, 1, 5, 4), 1, 3, ceil_mode="cover_all", **EXCL),
    C("2d-nan", (2, 2, 6, 6), 3, 1, 1, data="nan"),
    C("3d-k2", (2, 2, 4, 4, 4), 2),
    C("3d-k3s2p1-excl", (1, 2, 5, 6, 5), 3, 2, 1, **EXCL),
    C("3d-rect-ceil-incl", (1, 2, 5, 4, 6), (2, 3, 2), (2, 1, 3), (1, 1, 0), ceil_mode=True),
    C("3d-pairs-ceil-excl", (1, 1, 4, 5, 6), (3, 2, 3), 2, ((1, 0), (0, 1), (1, 1)),
      ceil_mode=True, **EXCL),
    C("3d-divisor-ceil", (1, 2, 5, 5, 5), 3, 2, 1, ceil_mode=True, divisor_override=7),
    C("3d-cover-all-incl", (1, 2, 5, 5, 4), (2, 1, 2), (2, 3, 2), (1, 0, 0, 0, 0, 1),
      ceil_mode="cover_all"),
    C("3d-cover-all-excl", (1, 2, 5, 5, 4), (2, 1, 2), (2, 3, 2), (1, 0, 0, 0, 0, 1),
      ceil_mode="cover_all", **EXCL),
]  # fmt: skip

#: One case per rank also runs in an axis order that is neither channels-first nor
#: channels-last (the spatial letters keep their order).
MIXED = {
    "1d-asym-pad-ceil": "CWN",
    "2d-asym-pad4": "HWNC",
    "3d-cover-all": "DHWCN",
    "1d-asym-ceil-excl": "WNC",
    "2d-asym-pad4-ceil-excl": "CNHW",
    "3d-cover-all-excl": "CDHWN",
}


def table(cases):
    """``(case, layout)`` params: every case channels-first and channels-last, plus MIXED."""
    rows = []
    for case in cases:
        for layout in (FIRST, LAST, *([MIXED[case.id]] if case.id in MIXED else [])):
            rows.append(pytest.param(case, layout, id=f"{case.id}-{layout}"))
    return rows


def by_id(cases, name):
    (case,) = [c for c in cases if c.id == name]
    return case


def compute(ns, *arrays):
    """NumPy copies of the ``ns`` arrays; Dask computes them in one pass (one graph).

    Parameters
    ----------
    ns : conftest.Namespace
    *arrays : arrays of ``ns``

    Returns
    -------
    list of ndarray
    """
    if ns.name == "dask":
        import dask

        return [np.asarray(a) for a in dask.compute(*arrays)]
    return [ns.to_numpy(a) for a in arrays]


def layout_shape(shape, layout):
    """The shape a channels-first ``shape`` has in ``layout``."""
    return to_layout(np.empty(shape, dtype=np.int8), layout).shape


# --------------------------------------------------------------------------
# Parity with the loop oracle: every backend x dtype (NumPy input) x layout
# --------------------------------------------------------------------------


def run_max(case, layout, ns, backend_name, x, g):
    """convcore's max pooling of ``case`` on channels-first ``x`` / ``g`` given in ``layout``.

    Returns
    -------
    dict
        ``xa``, ``ga`` (the arrays passed in), ``out``, ``idx`` (rank-checked
        function), ``out_nd`` (the N-d :func:`max_pool`) and ``dx``, in ``layout``.
    """
    fwd, bwd, _, _ = RANKED[case.nd]
    xa, ga = ns.asarray(to_layout(x, layout)), ns.asarray(to_layout(g, layout))
    kw = dict(case.max_kwargs(), layout=layout, backend=backend_name)
    out, idx = fwd(xa, case.kernel, return_indices=True, **kw)
    out_nd = max_pool(xa, case.kernel, **kw)
    dx = bwd(ga, xa, case.kernel, **kw)
    dx_idx = bwd(ga, xa, case.kernel, indices=idx, **kw)  # the winners from the forward
    return dict(xa=xa, ga=ga, out=out, idx=idx, out_nd=out_nd, dx=dx, dx_idx=dx_idx)


def check_max(case, layout, ns, res, expected, assert_close):
    """Compare :func:`run_max` results with the oracle's ``(x, g, out, idx, dx)``."""
    x, g, ref_out, ref_idx, ref_dx = expected
    out_shape = layout_shape(ref_out.shape, layout)
    for name in ("out", "out_nd"):
        check_output(ns, res[name], res["xa"], out_shape)
    check_output(ns, res["dx"], res["xa"], res["xa"].shape)
    check_output(ns, res["dx_idx"], res["xa"], res["xa"].shape)
    assert ns.is_native(res["idx"]) and tuple(res["idx"].shape) == out_shape
    out, out_nd, idx, dx, dx_idx = (
        from_layout(a, layout)
        for a in compute(ns, *(res[k] for k in ("out", "out_nd", "idx", "dx", "dx_idx")))
    )
    where = f"{case.id} in {layout}"
    np.testing.assert_array_equal(out, ref_out, err_msg=where)  # exact, NaN included
    np.testing.assert_array_equal(out_nd, ref_out, err_msg=where)
    assert idx.dtype == index_dtype(ns)
    np.testing.assert_array_equal(idx, ref_idx, err_msg=where)
    assert_close(dx, ref_dx, err_msg=where)
    assert_close(dx_idx, ref_dx, err_msg=f"{where}, from indices")
    assert_unchanged(ns, (res["xa"], res["ga"]), (to_layout(x, layout), to_layout(g, layout)))


def run_avg(case, layout, ns, backend_name, x, g):
    """convcore's average pooling of ``case``; ``dx`` from the full shape, ``dx_size``
    from the spatial size (the N-d :func:`avg_pool_backward`)."""
    _, _, fwd, bwd = RANKED[case.nd]
    xa, ga = ns.asarray(to_layout(x, layout)), ns.asarray(to_layout(g, layout))
    kw = dict(case.avg_kwargs(), layout=layout, backend=backend_name)
    out = fwd(xa, case.kernel, **kw)
    out_nd = avg_pool(xa, case.kernel, **kw)
    dx = bwd(ga, tuple(xa.shape), case.kernel, **kw)  # the shape, in layout order
    dx_size = avg_pool_backward(ga, case.shape[2:], case.kernel, **kw)  # or the spatial size
    return dict(xa=xa, ga=ga, out=out, out_nd=out_nd, dx=dx, dx_size=dx_size)


def check_avg(case, layout, ns, res, expected, assert_close):
    """Compare :func:`run_avg` results with the oracle's ``(x, g, out, dx)``."""
    x, g, ref_out, ref_dx = expected
    check_output(ns, res["out"], res["xa"], layout_shape(ref_out.shape, layout))
    check_output(ns, res["dx"], res["xa"], res["xa"].shape)
    check_output(ns, res["dx_size"], res["xa"], res["xa"].shape)
    out, out_nd, dx, dx_size = (
        from_layout(a, layout)
        for a in compute(ns, *(res[k] for k in ("out", "out_nd", "dx", "dx_size")))
    )
    where = f"{case.id} in {layout}"
    assert_close(out, ref_out, err_msg=where)
    np.testing.assert_array_equal(out_nd, out, err_msg=where)
    assert_close(dx, ref_dx, err_msg=where)
    np.testing.assert_array_equal(dx_size, dx, err_msg=where)
    assert_unchanged(ns, (res["xa"], res["ga"]), (to_layout(x, layout), to_layout(g, layout)))


@pytest.mark.declares("max_pool", "max_pool_backward")
@pytest.mark.parametrize(("case", "layout"), table(MAX_CASES))
def test_max_pool(case, layout, backend, np_ns, dtype, assert_close):
    """Values (NaN exact), indices and gradient against the loop oracle."""
    backend.require("max_pool", "max_pool_backward", ns=np_ns, dtype=dtype, nd=case.nd)
    expected = max_expected(case, dtype.name)
    res = run_max(case, layout, np_ns, backend.name, *expected[:2])
    check_max(case, layout, np_ns, res, expected, assert_close)


@pytest.mark.declares("avg_pool", "avg_pool_backward")
@pytest.mark.parametrize(("case", "layout"), table(AVG_CASES))
def test_avg_pool(case, layout, backend, np_ns, dtype, assert_close):
    """Values and gradient (input_size as the shape or the spatial size) against the oracle."""
    backend.require("avg_pool", "avg_pool_backward", ns=np_ns, dtype=dtype, nd=case.nd)
    expected = avg_expected(case, dtype.name)
    res = run_avg(case, layout, np_ns, backend.name, *expected[:2])
    check_avg(case, layout, np_ns, res, expected, assert_close)


#: (kind, case id, layout) run on every namespace: one of each rank and rule.
NS_CASES = [
    ("max", "1d-asym-pad-ceil", LAST),
    ("max", "2d-k3s2p1-ties", FIRST),
    ("max", "2d-nan", LAST),
    ("max", "3d-cover-all", "DHWCN"),
    ("avg", "1d-cover-all-empty-excl", FIRST),
    ("avg", "2d-asym-pad4-ceil-excl", "CNHW"),
    ("avg", "3d-divisor-ceil", LAST),
]


#: The NS_CASES JAX is fed (why: ``conftest.JAX_SUBSET_REASON``; tests/test_jax.py
#: differentiates, batches and compiles pooling): ties, and the excluding divisor.
JAX_CASES = {"jax": ("2d-k3s2p1-ties", "2d-asym-pad4-ceil-excl")}
#: The namespaces of the float16 and determinism tests: all but JAX, where a test costs
#: half a minute of compiling (float16 pooling under jit: tests/test_jax.py; the
#: backward is the portable backend's, the same code as on every other namespace).
NOT_JAX = [name for name, _ in NAMESPACES if name != "jax"]


@pytest.mark.declares(*ALL_OPS, cases=JAX_CASES)
@pytest.mark.parametrize(
    ("kind", "name", "layout"), NS_CASES, ids=[f"{k}-{n}-{lay}" for k, n, lay in NS_CASES]
)
def test_namespaces(kind, name, layout, backend, ns, assert_close):
    """A selection of the table on every backend x namespace it declares.

    Results are arrays of the input's namespace and dtype.  Dask runs float64
    only (a graph per call makes it the slowest namespace by far), JAX float32
    only (it has float64 only with ``jax_enable_x64``; see conftest).
    """
    case = by_id(MAX_CASES if kind == "max" else AVG_CASES, name)
    backend.require(*ALL_OPS, ns=ns, nd=case.nd)
    dtypes = ["float64"] if ns.name == "dask" else ["float32", "float64"]
    dtypes = [d for d in dtypes if namespace_dtype_problem(ns.name, d) is None]
    dtypes = [d for d in dtypes if backend.supports(*ALL_OPS, ns=ns, dtype=d) is None]
    assert dtypes, f"backend {backend.name!r} declares neither float32 nor float64"
    for dtype in dtypes:
        if kind == "max":
            expected = max_expected(case, dtype)
            res = run_max(case, layout, ns, backend.name, *expected[:2])
            check_max(case, layout, ns, res, expected, assert_close)
        else:
            expected = avg_expected(case, dtype)
            res = run_avg(case, layout, ns, backend.name, *expected[:2])
            check_avg(case, layout, ns, res, expected, assert_close)


@pytest.mark.declares(*ALL_OPS)
def test_noncontiguous_input(backend, np_ns):
    """Strided views give the results of contiguous copies."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 3, (2, 3, 7, 6)).astype(np.float64)
    kw = dict(stride=2, padding=1, ceil_mode=True, backend=backend.name)
    g = rng.standard_normal(max_pool2d(x, 3, **kw).shape)
    xs, gs = noncontiguous(x), noncontiguous(g)
    assert not xs.flags.c_contiguous and not gs.flags.c_contiguous
    for got, want in [
        (max_pool2d(xs, 3, return_indices=True, **kw), max_pool2d(x, 3, return_indices=True, **kw)),
        (max_pool2d_backward(gs, xs, 3, **kw), max_pool2d_backward(g, x, 3, **kw)),
        (avg_pool2d(xs, 3, **kw), avg_pool2d(x, 3, **kw)),
        (avg_pool2d_backward(gs, x.shape, 3, **kw), avg_pool2d_backward(g, x.shape, 3, **kw)),
    ]:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# --------------------------------------------------------------------------
# PyTorch's rules, by hand
# --------------------------------------------------------------------------


def test_hand_values():
    """Values worked out by hand, for convcore and the oracle alike."""
    x = np.array([[[[1.0, np.nan, 2], [np.nan, 7, np.nan], [0, 0, 0]]]])
    out, idx = max_pool2d(x, 3, return_indices=True)
    assert np.isnan(out).all() and idx.item() == 5  # the last NaN
    assert naive.max_pool(x, (3, 3), (3, 3), (0,) * 4, (1, 1), False)[1].item() == 5
    x = np.array([[[[-1.0, -2], [-3, -4]]]])
    out, idx = max_pool2d(x, 2, 2, padding=1, return_indices=True)  # one input cell each
    np.testing.assert_array_equal(out[0, 0], [[-1, -2], [-3, -4]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [2, 3]])
    # 3x3 ones, 2x2 windows, stride 2, padding 1, ceil: divisors 4 (corner, padding counted)
    np.testing.assert_allclose(
        avg_pool2d(np.ones((1, 1, 3, 3)), 2, 2, 1, True, True)[0, 0], [[0.25, 0.5], [0.5, 1]]
    )
    # 1-D: [1, 3, 2, 5, 4], k=2, ceil: the last window holds one cell, divided by 1
    np.testing.assert_array_equal(
        avg_pool1d(np.array([[[1.0, 3, 2, 5, 4]]]), 2, ceil_mode=True), [[[2, 3.5, 4]]]
    )
    # 3-D: the flat index runs over (D, H, W) in C order
    x = np.zeros((1, 1, 2, 2, 2))
    x[0, 0, 1, 0, 1] = 9
    assert max_pool3d(x, 2, return_indices=True)[1].item() == 1 * 4 + 0 * 2 + 1


def test_max_pool_padding_is_minus_inf():
    """All-negative input with padding: zero padding would give 0 at the borders."""
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out, idx = max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert (out < 0).all()
    np.testing.assert_array_equal(out[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    out = max_pool1d(-np.arange(1.0, 4.0).reshape(1, 1, 3), 3, 1, 1)
    np.testing.assert_array_equal(out[0, 0], [-1, -1, -2])
    out = max_pool3d(-np.ones((1, 2, 2, 2, 1)), 3, 1, 1, layout="NDHWC")
    np.testing.assert_array_equal(out, -np.ones((1, 2, 2, 2, 1)))


def test_cover_all_window_outside_the_image():
    """ceil_mode="cover_all" keeps a window with no input cell: max -inf, index -1, avg 0,
    and its gradient goes nowhere."""
    x = np.arange(1.0, 21.0).reshape(1, 1, 5, 4)
    kw = dict(stride=3, ceil_mode="cover_all")
    out, idx = max_pool2d(x, 1, return_indices=True, **kw)
    assert out.shape == (1, 1, 3, 2)  # ceil((5-1)/3)+1 = 3 rows; the third starts at row 6
    np.testing.assert_array_equal(out[0, 0, 2], [-np.inf, -np.inf])
    np.testing.assert_array_equal(idx[0, 0, 2], [-1, -1])
    for include in (True, False):
        avg = avg_pool2d(x, 1, count_include_pad=include, **kw)
        np.testing.assert_array_equal(avg[0, 0, 2], [0, 0])
        dxa = avg_pool2d_backward(
            np.ones((1, 1, 3, 2)), x.shape, 1, count_include_pad=include, **kw
        )
        assert dxa.sum() == 4
    dx = max_pool2d_backward(np.ones((1, 1, 3, 2)), x, 1, **kw)
    assert dx.sum() == 4  # the two empty windows send their gradient nowhere
    # 1-D and 3-D (channels-last): the same rule
    out, idx = max_pool1d(np.arange(1.0, 6.0)[None, None], 1, return_indices=True, **kw)
    np.testing.assert_array_equal(out[0, 0], [1, 4, -np.inf])
    np.testing.assert_array_equal(idx[0, 0], [0, 3, -1])
    x = np.ones((1, 4, 2, 2, 1))  # NDHWC: D = 4
    out, idx = max_pool3d(x, 1, (3, 1, 1), ceil_mode="cover_all", return_indices=True,
                          layout="NDHWC")  # fmt: skip
    assert out.shape == (1, 2, 2, 2, 1)
    np.testing.assert_array_equal(out[0, :, :, :, 0], [[[1, 1], [1, 1]]] * 2)
    out, idx = max_pool3d(np.ones((1, 1, 5, 2, 2)), 1, (3, 1, 1), ceil_mode="cover_all",
                          return_indices=True)  # fmt: skip
    np.testing.assert_array_equal(out[0, 0, 2], -np.inf)
    np.testing.assert_array_equal(idx[0, 0, 2], -1)
    np.testing.assert_array_equal(
        avg_pool3d(np.ones((1, 1, 5, 2, 2)), 1, (3, 1, 1), ceil_mode="cover_all")[0, 0, 2], 0
    )


# --------------------------------------------------------------------------
# PyTorch as a second oracle
# --------------------------------------------------------------------------


@pytest.fixture
def torch1():
    """``torch`` running on one thread (its thread pool costs more than these tiny
    problems on a busy machine); the previous setting is restored."""
    torch = torch_or_skip()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


TORCH_SIZES = {1: [(5,), (8,)], 2: [(5, 7), (6, 4)], 3: [(4, 5, 6)]}
#: Per-axis geometries the scalar grid does not reach: (size, kernel, stride, padding, dilation)
TORCH_RECT = {
    1: [((9,), (4,), (3,), (2,), (2,))],
    2: [((7, 8), (2, 3), (1, 2), (1, 0), (2, 1)), ((6, 9), (3, 2), (3, 1), (1, 1), (1, 3))],
    3: [((5, 4, 6), (3, 1, 2), (2, 1, 1), (1, 0, 1), (1, 2, 1)),
        ((4, 6, 5), (2, 3, 3), (1, 2, 3), (0, 1, 1), (2, 1, 1))],
}  # fmt: skip


def torch_grid(nd):
    """``(size, kernel, stride, padding, dilation, ceil_mode)``: ceil windows dropped,
    overhangs, windows starting in the padding, kernels larger than the input."""
    for size, k, s, d, cm in itertools.product(
        TORCH_SIZES[nd], [1, 2, 3], [1, 2, 3], [1, 2], [False, True]
    ):
        for p in range(k // 2 + 1):
            yield size, k, s, p, d, cm
    for (size, k, s, p, d), cm in itertools.product(TORCH_RECT[nd], [False, True]):
        yield size, k, s, p, d, cm


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_against_torch(nd, torch1):
    """``max_pool{nd}d`` (return_indices, ceil_mode, padding, dilation) and autograd,
    float64 with ties, on NumPy arrays through the default backend."""
    F = torch1.nn.functional
    fwd, bwd, _, _ = RANKED[nd]
    torch_fwd = getattr(F, f"max_pool{nd}d")
    rng = np.random.default_rng(3)
    checked = 0
    for size, k, s, p, d, cm in torch_grid(nd):
        where = f"size={size} k={k} s={s} p={p} d={d} ceil_mode={cm}"
        x = rng.integers(-3, 3, (2, 2, *size)).astype(np.float64)
        xt = torch1.tensor(x, requires_grad=True)
        try:
            yt, it = torch_fwd(xt, k, s, p, d, ceil_mode=cm, return_indices=True)
        except RuntimeError:  # torch: "Output size is too small"
            with pytest.raises(ValueError, match="no window fits"):
                fwd(x, k, s, p, d, cm)
            continue
        g = rng.standard_normal(tuple(yt.shape))
        (dxt,) = torch1.autograd.grad(yt, xt, torch1.tensor(g))
        y, i = fwd(x, k, s, p, d, cm, return_indices=True)
        np.testing.assert_array_equal(y, yt.detach().numpy(), err_msg=where)
        np.testing.assert_array_equal(i, it.numpy(), err_msg=where)
        dx = bwd(g, x, k, s, p, d, cm)
        np.testing.assert_allclose(dx, dxt.numpy(), rtol=1e-12, atol=1e-12, err_msg=where)
        assert pool_output_size(size, k, s, p, d, cm) == tuple(yt.shape[2:]), where
        checked += 1
    assert checked > 50, checked


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool_against_torch(nd, torch1):
    """``avg_pool{nd}d`` (ceil_mode, count_include_pad, divisor_override for 2-D and 3-D)
    and autograd, float64, on NumPy arrays through the default backend."""
    F = torch1.nn.functional
    _, _, fwd, bwd = RANKED[nd]
    torch_fwd = getattr(F, f"avg_pool{nd}d")
    variants = [{"count_include_pad": True}, {"count_include_pad": False}]
    if nd > 1:  # avg_pool1d has no divisor_override
        variants += [{"divisor_override": 3}, {"divisor_override": -2, "count_include_pad": False}]
    rng = np.random.default_rng(5)
    checked = 0
    for size, k, s, p, d, cm in torch_grid(nd):
        if d != 1:
            continue
        x = rng.standard_normal((2, 2, *size))
        for extra in variants:
            where = f"size={size} k={k} s={s} p={p} ceil_mode={cm} {extra}"
            xt = torch1.tensor(x, requires_grad=True)
            try:
                yt = torch_fwd(xt, k, s, p, cm, **extra)
            except RuntimeError:
                with pytest.raises(ValueError, match="no window fits"):
                    fwd(x, k, s, p, cm, **extra)
                continue
            g = rng.standard_normal(tuple(yt.shape))
            (dxt,) = torch1.autograd.grad(yt, xt, torch1.tensor(g))
            y = fwd(x, k, s, p, cm, **extra)
            dx = bwd(g, x.shape, k, s, p, cm, **extra)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=where)  # fmt: skip
            np.testing.assert_allclose(dx, dxt.numpy(), rtol=1e-12, atol=1e-12, err_msg=where)
            checked += 1
    assert checked > 50, checked


def test_torch_nan_and_tie_rules(torch1):
    """What PyTorch's CPU kernel does, pinned: first maximum, last NaN, first input
    cell of an all -inf window; and convcore agrees."""
    F = torch1.nn.functional
    nan, inf = np.nan, np.inf
    for x in (
        [[2.0, 2.0], [2.0, 1.0]],  # tie: first
        [[1.0, 2.0], [2.0, 2.0]],
        [[nan, 1.0], [nan, 3.0]],  # NaNs: last
        [[5.0, nan], [9.0, nan]],
        [[-inf, -inf], [-inf, -inf]],
    ):
        x = np.array(x)[None, None]
        xt = torch1.tensor(x, requires_grad=True)
        yt, it = F.max_pool2d(xt, 2, padding=1, return_indices=True)
        yt.sum().backward()
        y, i = max_pool2d(x, 2, padding=1, return_indices=True)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(i, it.numpy())
        np.testing.assert_array_equal(
            max_pool2d_backward(np.ones(y.shape), x, 2, padding=1), xt.grad
        )
        # the same values along one axis (1-D) and along the depth (3-D)
        x1 = x.reshape(1, 1, 4)
        yt, it = F.max_pool1d(torch1.tensor(x1), 4, return_indices=True)
        y, i = max_pool1d(x1, 4, return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(i, it.numpy())
        x3 = x.reshape(1, 1, 4, 1, 1)
        yt, it = F.max_pool3d(torch1.tensor(x3), (2, 1, 1), return_indices=True)
        y, i = max_pool3d(x3, (2, 1, 1), return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(i, it.numpy())
    x = np.array([[[[2.0, 2.0], [2.0, 1.0]]]])
    assert max_pool2d(x, 2, return_indices=True)[1].item() == 0
    x = np.array([[[[1.0, nan, 2], [nan, 7, nan], [0, 0, 0]]]])
    assert max_pool2d(x, 3, return_indices=True)[1].item() == 5
    assert F.max_pool2d(torch1.tensor(x), 3, return_indices=True)[1].item() == 5


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_torch_tensors_against_torch(nd, torch1):
    """Torch tensors in (through a backend that takes them), channels-first and -last,
    PyTorch's own pooling as the oracle; results are torch tensors."""
    F = torch1.nn.functional
    fwd, _, afwd, _ = RANKED[nd]
    shape = {1: (2, 3, 9), 2: (2, 3, 7, 6), 3: (1, 2, 5, 4, 6)}[nd]
    x = torch1.tensor(np.random.default_rng(5).integers(-3, 3, shape), dtype=torch1.float32)
    last = x.permute(0, *range(2, nd + 2), 1)  # channels-last view
    for k, s, p, cm in [(3, 2, 1, True), (2, 2, 1, True), (3, 1, 0, False)]:
        yt, it = getattr(F, f"max_pool{nd}d")(x, k, s, p, ceil_mode=cm, return_indices=True)
        y, i = fwd(x, k, s, p, ceil_mode=cm, return_indices=True)
        assert torch1.equal(y, yt) and torch1.equal(i, it)
        y, i = fwd(last, k, s, p, ceil_mode=cm, return_indices=True, layout=LAST)
        assert torch1.equal(y, yt.permute(0, *range(2, nd + 2), 1))
        assert torch1.equal(i, it.permute(0, *range(2, nd + 2), 1))
        for cip in (True, False):
            y = afwd(x, k, s, p, ceil_mode=cm, count_include_pad=cip)
            assert isinstance(y, torch1.Tensor) and y.dtype == torch1.float32
            torch1.testing.assert_close(y, getattr(F, f"avg_pool{nd}d")(x, k, s, p, cm, cip))


# --------------------------------------------------------------------------
# float16 / bfloat16: computed in float32, rounded once
# --------------------------------------------------------------------------

#: (case, layout) for the half-precision checks; max and average pooling both run.
HALF_CASES = [
    (C("1d-half", (2, 3, 9), 3, 2, 1, ceil_mode=True), FIRST),
    (C("2d-half", (2, 3, 6, 7), 3, 2, (1, 0, 1, 1), ceil_mode=True, count_include_pad=False),
     LAST),
    (C("3d-half", (1, 2, 5, 4, 6), (2, 3, 2), (2, 1, 3), (1, 1, 0), ceil_mode="cover_all"),
     LAST),
]  # fmt: skip


def assert_half_close(actual, expected, half, where):
    """``actual`` within :data:`helpers.HALF_TOL` of ``expected``, relative to its largest value."""
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=HALF_TOL[half] * scale, err_msg=where)


def check_half(ns, backend_name, half, case, layout):
    """The four operators on ``half`` input of ``ns``: dtype kept, the float64 oracle
    within tolerance, and, where the backend computes the half type in float32, the
    float32 result rounded once, bit for bit.

    Parameters
    ----------
    ns : conftest.Namespace
    backend_name : str
    half : {"float16", "bfloat16"}
    case : Case
    layout : str
    """
    info = {i.name: i for i in convcore.available_backends()}[backend_name]
    rng = np.random.default_rng(9)
    kernel, stride, padding, dilation = case.oracle_geometry()
    xh = half_array(ns, to_layout(3 * rng.standard_normal(case.shape), layout), half)
    x = from_layout(half_to_float64(ns, xh), layout)  # the rounded values, channels-first
    xp = array_api_compat.array_namespace(xh)

    def to32(a):
        return xp.astype(a, xp.float32)

    rules = (case.ceil_mode, case.count_include_pad, case.divisor_override)
    ref_max, ref_idx = naive.max_pool(x, kernel, stride, padding, dilation, case.ceil_mode)
    ref_avg = naive.avg_pool(x, kernel, stride, padding, *rules)
    gh = half_array(ns, to_layout(rng.standard_normal(ref_max.shape), layout), half)
    g = from_layout(half_to_float64(ns, gh), layout)
    ref_dmax = naive.max_pool_backward(g, x, kernel, stride, padding, dilation, case.ceil_mode)
    ref_davg = naive.avg_pool_backward(g, case.shape[2:], kernel, stride, padding, *rules)

    mkw = dict(case.max_kwargs(), layout=layout, backend=backend_name)
    akw = dict(case.avg_kwargs(), layout=layout, backend=backend_name)
    fwd, bwd, afwd, abwd = RANKED[case.nd]
    runs = {
        "max_pool": lambda a, b: fwd(a, case.kernel, return_indices=True, **mkw),
        "max_pool_backward": lambda a, b: bwd(b, a, case.kernel, **mkw),
        "avg_pool": lambda a, b: afwd(a, case.kernel, **akw),
        "avg_pool_backward": lambda a, b: abwd(b, tuple(a.shape), case.kernel, **akw),
    }
    expected = {
        "max_pool": ref_max, "max_pool_backward": ref_dmax,
        "avg_pool": ref_avg, "avg_pool_backward": ref_davg,
    }  # fmt: skip
    for op, run in runs.items():
        where = f"{op} {case.id} {half} {layout} on {backend_name}"
        result = run(xh, gh)
        out, idx = result if op == "max_pool" else (result, None)
        check_output(ns, out, xh, layout_shape(expected[op].shape, layout))
        got = from_layout(half_to_float64(ns, out), layout)
        if op == "max_pool":
            np.testing.assert_array_equal(got, ref_max, err_msg=where)  # a maximum is exact
            np.testing.assert_array_equal(from_layout(ns.to_numpy(idx), layout), ref_idx)
        else:
            assert_half_close(got, expected[op], half, where)
        if info.supports(op, namespace=ns.name, dtype=half).compute_dtype == "float32":
            r32 = run(to32(xh), to32(gh))
            r32 = r32[0] if op == "max_pool" else r32
            once = half_to_float64(ns, xp.astype(r32, xh.dtype))
            np.testing.assert_array_equal(half_to_float64(ns, out), once, err_msg=where)


@pytest.mark.declares(*ALL_OPS, namespaces=NOT_JAX)
def test_float16(backend, ns):
    """float16 on every backend x namespace (numba and numpy: computed in float32
    instead of refused; Dask declares float16 and runs its blocks on NumPy)."""
    ran = 0
    for case, layout in HALF_CASES:
        if backend.supports(*ALL_OPS, ns=ns, dtype="float16", nd=case.nd) is None:
            check_half(ns, backend.name, "float16", case, layout)
            ran += 1
    assert ran, f"backend {backend.name!r} runs none of the float16 cases"


def test_bfloat16_torch_tensors(make_ns):
    """bfloat16 torch tensors on every backend that takes them (in float32: none declares it)."""
    torch_or_skip()
    ns = make_ns("torch")
    names = [
        info.name
        for info in convcore.available_backends()
        if info.available and all(info.supports(op, namespace="torch", dtype="bfloat16")
                                  for op in ALL_OPS)
    ]  # fmt: skip
    assert names, "no backend takes bfloat16 torch tensors"
    for name in names:
        for case, layout in HALF_CASES:
            check_half(ns, name, "bfloat16", case, layout)


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------

LAYOUTS = {
    1: ["channels_last", "NWC", "NCW", "WNC", "CWN"],
    2: ["channels_last", "NHWC", "NCHW", "HWCN", "HWNC", "CNHW"],
    3: ["channels_last", "NDHWC", "NCDHW", "DHWCN", "CDHWN"],
}


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_layouts_permute_the_channels_first_result(nd):
    """Every layout gives the channels-first results permuted, indices included, bitwise."""
    rng = np.random.default_rng(6)
    shape = {1: (2, 3, 10), 2: (2, 3, 7, 6), 3: (2, 2, 5, 4, 6)}[nd]
    x = rng.integers(-3, 3, shape).astype(np.float64)
    fwd, bwd, afwd, abwd = RANKED[nd]
    kw = dict(stride=2, padding=1, ceil_mode=True)
    out, idx = fwd(x, 3, return_indices=True, **kw)
    g = rng.standard_normal(out.shape)
    dx = bwd(g, x, 3, **kw)
    avg = afwd(x, 3, count_include_pad=False, **kw)
    davg = abwd(g, x.shape, 3, count_include_pad=False, **kw)
    for layout in LAYOUTS[nd]:
        xl, gl = to_layout(x, layout), to_layout(g, layout)
        out_l, idx_l = fwd(xl, 3, return_indices=True, layout=layout, **kw)
        for got, want in [
            (out_l, out),
            (idx_l, idx),
            (bwd(gl, xl, 3, layout=layout, **kw), dx),
            (afwd(xl, 3, count_include_pad=False, layout=layout, **kw), avg),
            (abwd(gl, xl.shape, 3, count_include_pad=False, layout=layout, **kw), davg),
        ]:
            assert got.shape == to_layout(want, layout).shape, layout
            np.testing.assert_array_equal(got, to_layout(want, layout), err_msg=layout)


def test_wrong_rank_names_x_and_the_axes():
    """A 4-D array for a 3-D pooling is refused, naming x and the axes the layout expects."""
    with pytest.raises(
        ValueError, match=r"x must be 5-D \(N, C, D, H, W\), got shape \(2, 3, 4, 4\)"
    ):
        max_pool3d(np.ones((2, 3, 4, 4)), 2)
    with pytest.raises(
        ValueError, match=r"x must be 5-D \(N, D, H, W, C\), got shape \(2, 4, 4, 3\)"
    ):
        max_pool3d(np.ones((2, 4, 4, 3)), 2, layout="channels_last")
    with pytest.raises(ValueError, match=r"x must be 5-D \(D, H, W, C, N\)"):
        max_pool3d_backward(np.ones((1, 1, 1, 1, 1)), np.ones((4, 4, 3, 2)), 2, layout="DHWCN")
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, C, W\), got shape \(1, 1, 4, 4\)"):
        max_pool1d(np.ones((1, 1, 4, 4)), 2)


# --------------------------------------------------------------------------
# The seed's pooling windows (Octave fixtures)
# --------------------------------------------------------------------------


def _load_pool_fixture(path):
    sio = pytest.importorskip("scipy.io", reason="scipy is needed to read the .mat fixtures")
    d = sio.loadmat(path)
    H, W, C, N = (int(v) for v in d["size_x"].ravel())
    HH, WW = (int(v) for v in d["size_w"].ravel()[:2])
    sy, sx = (int(v) for v in np.broadcast_to(d["stride"].ravel(), (2,)))
    pad = int(d["pad"].item())
    assert d["is_conv"].item() == 0
    x_hwcn = d["x"].reshape(H, W, C, N)  # MATLAB's (H, W, C, N)
    K = HH * WW * C
    cols = d["cols"].reshape(K, -1, N)
    return x_hwcn, cols, (HH, WW), (sy, sx), pad


@pytest.mark.parametrize("path", POOL_FIXTURES, ids=[p.stem for p in POOL_FIXTURES])
def test_seed_pool_fixture_windows(path, backend, np_ns, assert_close):
    """``ceil_mode="cover_all"`` pools exactly the seed's im2col_ref windows (is_conv = 0).

    The seed's columns read zeros in the padding and the overhang; the sum of a
    column is ``avg_pool2d(..., divisor_override=1)``, the maximum over the cells
    that lie in the image is ``max_pool2d``, and the column mean is the divisor
    ``HH*WW``.  The fixture's own array, in MATLAB's HWCN order, pools with
    ``layout="HWCN"`` to the same numbers.
    """
    backend.require(*ALL_OPS, ns=np_ns, dtype=np.float64)
    x_hwcn, cols, (HH, WW), (sy, sx), pad = _load_pool_fixture(path)
    x = x_hwcn.transpose(3, 2, 0, 1)  # NCHW
    N, C, H, W = x.shape
    Ho = math.ceil((H + 2 * pad - HH) / sy) + 1  # the seed's formula
    Wo = math.ceil((W + 2 * pad - WW) / sx) + 1
    assert cols.shape[1] == Ho * Wo
    kw = dict(stride=(sy, sx), padding=pad, ceil_mode="cover_all", backend=backend.name)
    assert pool_output_size((H, W), (HH, WW), (sy, sx), pad, 1, "cover_all") == (Ho, Wo)
    # MATLAB patch(:) order: row i + HH*j + HH*WW*ch; column r*Wo + c
    seed = cols.reshape(C, WW, HH, Ho, Wo, N).transpose(5, 0, 2, 1, 3, 4)  # N C i j r c
    rows = np.arange(Ho)[None, :] * sy - pad + np.arange(HH)[:, None]  # (i, r)
    cols_ = np.arange(Wo)[None, :] * sx - pad + np.arange(WW)[:, None]  # (j, c)
    inside = ((rows >= 0) & (rows < H))[:, None, :, None] & ((cols_ >= 0) & (cols_ < W))[
        None, :, None, :
    ]
    assert (seed[:, :, ~inside] == 0).all()  # the seed's zero frame
    expected_max = np.where(inside, seed, -np.inf).max(axis=(2, 3))
    np.testing.assert_array_equal(max_pool2d(x, (HH, WW), **kw), expected_max)
    assert_close(avg_pool2d(x, (HH, WW), divisor_override=1, **kw), seed.sum(axis=(2, 3)))
    assert_close(avg_pool2d(x, (HH, WW), divisor_override=HH * WW, **kw), seed.mean(axis=(2, 3)))
    np.testing.assert_array_equal(
        max_pool2d(x_hwcn, (HH, WW), layout="HWCN", **kw), to_layout(expected_max, "HWCN")
    )
    assert_close(
        avg_pool2d(x_hwcn, (HH, WW), divisor_override=1, layout="HWCN", **kw),
        to_layout(seed.sum(axis=(2, 3)), "HWCN"),
    )


# --------------------------------------------------------------------------
# Determinism, selection, layers, misc
# --------------------------------------------------------------------------


@pytest.mark.declares("max_pool_backward", "avg_pool_backward", namespaces=NOT_JAX)
def test_backward_is_deterministic(backend, ns):
    """Overlapping windows with ties: the backward passes are bitwise reproducible
    (2-D channels-first, and 3-D channels-last where the backend declares 3-D)."""
    ops = ("max_pool_backward", "avg_pool_backward")
    backend.require(*ops, ns=ns, dtype=np.float32)
    rng = np.random.default_rng(11)
    shapes = [((2, 3, 9, 8), FIRST)]
    if backend.supports(*ops, ns=ns, dtype=np.float32, nd=3) is None:
        shapes.append(((1, 2, 5, 6, 4), LAST))
    for shape, layout in shapes:
        x = ns.asarray(to_layout(rng.integers(-2, 2, shape).astype(np.float32), layout))
        g = ns.asarray(to_layout(rng.standard_normal(shape).astype(np.float32), layout))
        kw = dict(stride=1, padding=1, layout=layout, backend=backend.name)
        runs = [max_pool_backward(g, x, 3, **kw) for _ in range(2)]
        runs += [avg_pool_backward(g, tuple(x.shape), 3, **kw) for _ in range(2)]
        max1, max2, avg1, avg2 = compute(ns, *runs)
        assert max1.tobytes() == max2.tobytes(), layout
        assert avg1.tobytes() == avg2.tobytes(), layout
        assert np.abs(max1).sum() > 0 and np.abs(avg1).sum() > 0


def test_backend_selection_applies():
    """The backend= keyword and use_backend reach the pooling operators, 1-D to 3-D."""
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(convcore.UnknownBackendError):
        max_pool2d(x, 2, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError):
        avg_pool2d_backward(np.ones((1, 1, 2, 2)), (4, 4), 2, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError):
        max_pool1d(np.ones((1, 1, 4)), 2, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError, match="use_backend"):
        with convcore.use_backend("no_such_backend"):
            avg_pool2d(x, 2)
    with pytest.raises(convcore.UnknownBackendError, match="use_backend"):
        with convcore.use_backend("no_such_backend"):
            max_pool3d_backward(np.ones((1, 1, 1, 1, 1)), np.ones((1, 1, 2, 2, 2)), 2)
    with convcore.use_backend("array_api"):
        np.testing.assert_array_equal(max_pool2d(x, 2), np.ones((1, 1, 2, 2)))
        np.testing.assert_array_equal(avg_pool3d(np.ones((1, 1, 2, 2, 2)), 2), np.ones((1,) * 5))


def test_backend_that_cannot_take_the_input_is_refused():
    """A backend chosen by name that does not accept the namespace refuses the operator."""
    torch = torch_or_skip()
    if "numba" not in {i.name for i in convcore.available_backends() if i.available}:
        pytest.skip("the numba backend is unavailable here")
    with pytest.raises(convcore.BackendCapabilityError, match=r"max_pool.*torch"):
        max_pool2d(torch.ones(1, 1, 4, 4), 2, backend="numba")
    with pytest.raises(convcore.BackendCapabilityError, match=r"avg_pool_backward.*torch"):
        avg_pool1d_backward(torch.ones(1, 1, 2), (4,), 2, backend="numba")


@pytest.mark.parametrize("layout", [FIRST, LAST])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_layers_match_functions(nd, layout):
    """MaxPool{1,2,3}D and AvgPool{1,2,3}D (with layout=) give their functions' results."""
    rng = np.random.default_rng(2)
    shape = {1: (2, 3, 9), 2: (2, 3, 7, 6), 3: (2, 2, 5, 4, 6)}[nd]
    x = to_layout(rng.standard_normal(shape), layout)
    fwd, bwd, afwd, abwd = RANKED[nd]
    max_layer, avg_layer = LAYERS[nd]
    opts = dict(ceil_mode=True, layout=layout)
    maxpool = max_layer(3, 2, 1, **opts)
    y = maxpool(x)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(y, fwd(x, 3, 2, 1, **opts))
    np.testing.assert_array_equal(maxpool.backward(g), bwd(g, x, 3, 2, 1, **opts))
    avgpool = avg_layer(3, 2, 1, count_include_pad=False, divisor_override=None, **opts)
    y = avgpool.forward(x)
    np.testing.assert_array_equal(y, afwd(x, 3, 2, 1, count_include_pad=False, **opts))
    np.testing.assert_array_equal(
        avgpool.backward(g), abwd(g, x.shape, 3, 2, 1, count_include_pad=False, **opts)
    )
    assert repr(maxpool).startswith(f"MaxPool{nd}D(kernel_size=3")
    assert "count_include_pad=False" in repr(avgpool)
    assert ("layout=" in repr(maxpool)) == (layout != FIRST)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_layer_errors(nd):
    max_layer, avg_layer = LAYERS[nd]
    g = np.ones((1, 1) + (2,) * nd)
    with pytest.raises(RuntimeError, match="before forward"):
        max_layer(2).backward(g)
    with pytest.raises(RuntimeError, match="before forward"):
        avg_layer(2).backward(g)
    with pytest.raises(ValueError, match="padding must be at most half"):
        max_layer(2, padding=2)
    with pytest.raises(ValueError, match="divisor_override"):
        avg_layer(2, divisor_override=0)
    with pytest.raises(ValueError, match=r"ceil_mode='seed' is now called 'cover_all'"):
        max_layer(2, ceil_mode="seed")
    with pytest.raises(ValueError, match=r"ceil_mode='seed' is now called 'cover_all'"):
        avg_layer(2, ceil_mode="seed")
    with pytest.raises(ValueError, match=rf"x must be {nd + 2}-D"):
        max_layer(2)(np.ones((1, 1) + (4,) * (nd + 1)))


def test_mixed_namespaces():
    strict = pytest.importorskip("array_api_strict")
    g = strict.asarray(np.ones((1, 1, 2, 2)))
    with pytest.raises(
        TypeError, match="grad_out is a array_api_strict array but x is a numpy array"
    ):
        max_pool2d_backward(g, X, 2)


@pytest.mark.parametrize("layout", [FIRST, LAST])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch(nd, layout):
    x = to_layout(np.ones((0, 2) + (5,) * nd), layout)
    out_shape = layout_shape((0, 2) + (2,) * nd, layout)
    fwd, bwd, afwd, abwd = RANKED[nd]
    out, idx = fwd(x, 2, return_indices=True, layout=layout)
    assert out.shape == idx.shape == out_shape
    assert afwd(x, 2, layout=layout).shape == out_shape
    assert bwd(np.ones(out_shape), x, 2, layout=layout).shape == x.shape
    assert abwd(np.ones(out_shape), x.shape, 2, layout=layout).shape == x.shape


def test_module_imports_no_array_library():
    """Computation goes through array-api-compat: no numpy / torch / cupy import."""
    tree = ast.parse(Path(pooling.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert "array_api_compat" in imported  # the walk sees the imports at all
    assert not imported & {"numpy", "torch", "cupy", "dask", "jax"}, imported


def test_layer_classes_still_reachable_from_pooling():
    assert pooling.MaxPool2D is MaxPool2D and pooling.AvgPool2D is AvgPool2D


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((5, 5), dict(kernel_size=2, padding=1), (3, 3)),
        ((5, 5), dict(kernel_size=2, padding=1, ceil_mode=True), (3, 3)),  # 4th dropped
        ((5, 5), dict(kernel_size=2, padding=1, ceil_mode="cover_all"), (4, 4)),
        ((6, 7), dict(kernel_size=3, stride=2, ceil_mode=True), (3, 3)),
        ((6, 7), dict(kernel_size=3, stride=2), (2, 3)),
        ((2, 2), dict(kernel_size=3, stride=2, ceil_mode=True), (1, 1)),
        ((9, 8), dict(kernel_size=3, stride=2, padding=1, dilation=2), (4, 3)),
        ((7,), dict(kernel_size=3, stride=2, ceil_mode=True), (3,)),
        ((5,), dict(kernel_size=1, stride=3, ceil_mode="cover_all"), (3,)),
        ((8,), dict(kernel_size=3, stride=2, padding=(1, 0), ceil_mode=True), (4,)),
        ((4, 5, 6), dict(kernel_size=2), (2, 2, 3)),
        ((5, 4, 6), dict(kernel_size=(2, 3, 2), stride=(2, 1, 3), padding=(1, 1, 0),
                         ceil_mode=True), (3, 4, 2)),
        ((5, 5, 4), dict(kernel_size=(2, 1, 2), stride=(2, 3, 2), padding=(1, 0, 0, 0, 0, 1),
                         ceil_mode="cover_all"), (3, 3, 3)),
    ],
)  # fmt: skip
def test_pool_output_size(size, kwargs, expected):
    assert pool_output_size(size, **kwargs) == expected
    nd = len(size)
    kernel = per_axis(kwargs["kernel_size"], nd)
    stride = per_axis(kwargs.get("stride", kwargs["kernel_size"]), nd)
    oracle = naive.pool_output_size(
        size, kernel, stride, pad_pairs(kwargs.get("padding", 0), nd),
        per_axis(kwargs.get("dilation", 1), nd), kwargs.get("ceil_mode", False),
    )  # fmt: skip
    assert oracle == expected


# --------------------------------------------------------------------------
# Errors name the parameter, the value and what was expected
# --------------------------------------------------------------------------

X = np.ones((1, 1, 4, 4))
G = np.ones((1, 1, 2, 2))
X1 = np.ones((1, 1, 6))
X3 = np.ones((1, 1, 4, 4, 4))
G3 = np.ones((1, 1, 2, 2, 2))
SEED = r"ceil_mode='seed' is now called 'cover_all' .*; pass ceil_mode='cover_all'"

ERRORS = [
    ("kernel0", max_pool2d, (X, 0), {}, ValueError, r"kernel_size must be >= 1 .* got 0"),
    ("stride0", avg_pool2d, (X, 2), dict(stride=0), ValueError, r"stride must be >= 1 .* got 0"),
    ("dilation0", max_pool2d, (X, 2), dict(dilation=0), ValueError, r"dilation must be >= 1"),
    ("kernel_float", max_pool2d, (X, 2.5), {}, TypeError, r"kernel_size must be an integer"),
    ("kernel_len_1d", max_pool1d, (X1, (2, 2)), {}, ValueError,
     r"kernel_size must be an int or a sequence of 1 ints, got \(2, 2\) with 2 entries"),
    ("pad_gt_half", max_pool2d, (X, 3), dict(padding=2), ValueError,
     r"padding must be at most half the kernel size .* got padding=2 .* kernel_size=\(3, 3\)"),
    ("pad_gt_half_avg", avg_pool2d, (X, (2, 4)), dict(padding=(1, 3)), ValueError,
     r"padding must be at most half.*width"),
    ("pad_gt_half_3d", max_pool3d, (X3, (2, 2, 3)), dict(padding=(0, 0, 0, 0, 0, 2)),
     ValueError, r"padding must be at most half.*\(3 // 2 = 1 along the width axis\)"),
    ("pad_gt_half_1d_after", avg_pool1d, (X1, 4), dict(padding=(0, 3)), ValueError,
     r"got padding=\(0, 3\) with kernel_size=\(4,\)"),
    ("pad_negative", avg_pool2d, (X, 2), dict(padding=-1), ValueError, r"padding must be >= 0"),
    ("same_ceil", max_pool2d, (X, 3), dict(padding="same", ceil_mode=True), ValueError,
     r"ceil_mode must be False with padding='same'"),
    ("pad_len_3d", avg_pool3d, (X3, 2), dict(padding=(1, 1, 1, 1)), ValueError,
     r"padding must be an int, 3 ints \(per axis\), 6 ints \(before, after per axis\), "
     r"'valid' or 'same', got \(1, 1, 1, 1\)"),
    ("x_3d", max_pool2d, (np.ones((1, 4, 4)), 2), {}, ValueError,
     r"x must be 4-D \(N, C, H, W\), got shape \(1, 4, 4\)"),
    ("x_4d_for_3d", max_pool3d, (X, 2), {}, ValueError,
     r"x must be 5-D \(N, C, D, H, W\), got shape \(1, 1, 4, 4\)"),
    ("x_4d_for_1d_avg", avg_pool1d, (X, 2), {}, ValueError, r"x must be 3-D \(N, C, W\)"),
    ("x_2d_nd", max_pool, (np.ones((1, 4)), 2), {}, ValueError,
     r"x must have a batch axis, a channel axis and at least one spatial axis"),
    ("x_int_avg", avg_pool2d, (np.ones((1, 1, 4, 4), dtype=np.int64), 2), {}, TypeError,
     r"avg_pool2d needs a real floating-point x, got dtype int64"),
    ("x_int_max", max_pool2d, (np.ones((1, 1, 4, 4), dtype=np.int32), 2), {}, TypeError,
     r"max_pool2d needs a real floating-point x, got dtype int32"),
    ("x_int_3d", avg_pool3d, (X3.astype(np.int32), 2), {}, TypeError,
     r"avg_pool3d needs a real floating-point x, got dtype int32"),
    ("x_list", max_pool2d, ([[1.0]], 1), {}, TypeError, r"x must be an array \(.*\), got list"),
    ("x_empty_hw", avg_pool2d, (np.ones((1, 1, 0, 4)), 1), {}, ValueError, r"non-empty"),
    ("x_empty_c_last", max_pool1d, (np.ones((1, 6, 0)), 2), dict(layout="NWC"), ValueError,
     r"x must have a non-empty C axis \(N, W, C\)"),
    ("too_small", max_pool2d, (np.ones((1, 1, 2, 2)), 3), {}, ValueError,
     r"kernel_size \(3, 3\) .* spans 3 along the height axis.*no window fits"),
    ("too_small_3d_depth", avg_pool3d, (np.ones((1, 1, 1, 4, 4)), 2), {}, ValueError,
     r"spans 2 along the depth axis.*no window fits"),
    ("layout_rank", max_pool3d, (X3, 2), dict(layout="NHWC"), ValueError,
     r"layout='NHWC' does not describe an array with 3 spatial axes; expected 'NCDHW', "
     r"'NDHWC'"),
    ("layout_order", max_pool2d, (X, 2), dict(layout="NCWH"), ValueError,
     r"layout='NCWH' does not describe an array with 2 spatial axes"),
    ("layout_type", avg_pool2d, (X, 2), dict(layout=None), TypeError,
     r"layout must be a string such as 'NCHW' or 'NHWC', got None"),
    ("ceil_mode_str", max_pool2d, (X, 2), dict(ceil_mode="floor"), ValueError,
     r"ceil_mode must be False, True or 'cover_all', got 'floor'"),
    ("ceil_mode_int", avg_pool2d, (X, 2), dict(ceil_mode=1), TypeError, r"ceil_mode must be"),
    ("ceil_mode_seed", max_pool1d, (X1, 2), dict(ceil_mode="seed"), ValueError, SEED),
    ("ceil_mode_seed_avg3d", avg_pool3d, (X3, 2), dict(ceil_mode="seed"), ValueError, SEED),
    ("ceil_mode_seed_size", pool_output_size, ((5, 5), 2), dict(ceil_mode="seed"), ValueError,
     SEED),
    ("return_indices", max_pool2d, (X, 2), dict(return_indices="yes"), TypeError,
     r"return_indices must be True or False, got 'yes'"),
    ("count_include_pad", avg_pool2d, (X, 2), dict(count_include_pad=None), TypeError,
     r"count_include_pad must be True or False, got None"),
    ("divisor_zero", avg_pool2d, (X, 2), dict(divisor_override=0), ValueError,
     r"divisor_override must be a nonzero integer or None, got 0"),
    ("divisor_float", avg_pool2d, (X, 2), dict(divisor_override=1.5), TypeError,
     r"divisor_override must be a nonzero integer or None, got 1.5"),
    ("divisor_bool", avg_pool1d, (X1, 2), dict(divisor_override=True), TypeError,
     r"divisor_override must be a nonzero integer or None, got True"),
    ("grad_shape_max", max_pool2d_backward, (np.ones((1, 1, 3, 3)), X, 2), {}, ValueError,
     r"grad_out must have the forward output's shape \(1, 1, 2, 2\) .* got \(1, 1, 3, 3\)"),
    ("grad_shape_avg", avg_pool2d_backward, (np.ones((1, 1, 3, 3)), (4, 4), 2), {}, ValueError,
     r"grad_out must have the forward output's shape \(1, 1, 2, 2\)"),
    ("grad_shape_layout", max_pool3d_backward, (G3, np.ones((1, 4, 4, 4, 1)), 2),
     dict(layout="NDHWC"), ValueError,
     r"grad_out must have the forward output's shape \(1, 2, 2, 2, 1\) \(N, D, H, W, C\), "
     r"got \(1, 1, 2, 2, 2\)"),
    ("grad_dtype", max_pool2d_backward, (G.astype(np.float32), X, 2), {}, TypeError,
     r"grad_out has dtype float32 but x has dtype float64"),
    ("grad_ndim_avg", avg_pool2d_backward, (np.ones((2, 2)), (4, 4), 2), {}, ValueError,
     r"grad_out must be 4-D"),
    ("grad_ndim_avg3d", avg_pool3d_backward, (G, (4, 4, 4), 2), {}, ValueError,
     r"grad_out must be 5-D \(N, C, D, H, W\)"),
    ("grad_int_avg", avg_pool2d_backward, (G.astype(np.int64), (4, 4), 2), {}, TypeError,
     r"real floating-point grad_out, got dtype int64"),
    ("input_size_array", avg_pool2d_backward, (G, X, 2), {}, TypeError, r"pass x.shape"),
    ("input_size_len", avg_pool2d_backward, (G, (1, 4, 4), 2), {}, ValueError,
     r"input_size must be the forward input's spatial size \(2 ints\) or its shape "
     r"\(N, C, H, W\), got \(1, 4, 4\)"),
    ("input_size_len_3d", avg_pool3d_backward, (G3, (4, 4), 2), {}, ValueError,
     r"input_size must be the forward input's spatial size \(3 ints\) or its shape "
     r"\(N, C, D, H, W\), got \(4, 4\)"),
    ("input_size_nc", avg_pool2d_backward, (G, (2, 1, 4, 4), 2), {}, ValueError,
     r"grad_out has \(N, C\) = \(1, 1\) but input_size .* \(2, 1\)"),
    ("input_size_nc_layout", avg_pool3d_backward, (np.ones((1, 2, 2, 2, 1)), (1, 4, 4, 4, 2), 2),
     dict(layout="NDHWC"), ValueError,
     r"avg_pool3d_backward: grad_out has \(N, C\) = \(1, 1\) but input_size "
     r"\(1, 4, 4, 4, 2\) has \(N, C\) = \(1, 2\)"),
    ("input_size_zero", avg_pool1d_backward, (np.ones((1, 1, 2)), (0,), 2), {}, ValueError,
     r"input_size must have every spatial size >= 1"),
    ("mixed_namespaces", max_pool2d_backward, (G, "x", 2), {}, TypeError, r"x must be an array"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "exc", "match"),
    [pytest.param(*e[1:], id=e[0]) for e in ERRORS],
)
def test_errors(func, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        func(*args, **kwargs)


@pytest.mark.parametrize(
    ("indices", "exc", "needle"),
    [
        ([[[[0]]]], TypeError, "indices must be the array max_pool returned"),
        (np.zeros((1, 1, 2, 2), np.float64), TypeError, "integer dtype, got float64"),
        (
            np.zeros((1, 1, 3, 3), np.int64),
            ValueError,
            r"shape of the pooling output \(1, 1, 2, 2\)",
        ),
        (np.full((1, 1, 2, 2), 16, np.int64), ValueError, r"\[-1, 16\).*from 16 to 16"),
        (np.full((1, 1, 2, 2), -2, np.int64), ValueError, "from -2 to -2"),
    ],
    ids=["list", "float", "shape", "too-large", "too-small"],
)
@pytest.mark.parametrize("backend_name", ["numba", "numpy"])
def test_max_pool_backward_checks_its_indices(indices, exc, needle, backend_name):
    pytest.importorskip("numba") if backend_name == "numba" else None
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    with pytest.raises(exc, match=needle):
        max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, indices=indices, backend=backend_name)


def test_max_pool_backward_indices_from_another_library_are_refused():
    torch = pytest.importorskip("torch")
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    _, index = max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="indices must be an array of the library of x"):
        max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, indices=torch.from_numpy(index))


def test_max_pool_backward_from_indices_ignores_the_values_of_x():
    """With indices, x gives only shape, dtype and device: what the layers rely on."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6))
    out, index = max_pool2d(x, 3, 2, 1, return_indices=True)
    g = rng.standard_normal(out.shape)
    for name in ("numpy", "array_api", convcore.resolve_backend("max_pool_backward", x)):
        want = max_pool2d_backward(g, x, 3, 2, 1, backend=name)  # the same sums, in order
        got = max_pool2d_backward(g, np.zeros_like(x), 3, 2, 1, indices=index, backend=name)
        np.testing.assert_array_equal(got, want, err_msg=name)
