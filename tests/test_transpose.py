"""The transposed convolution in 1-, 2- and 3-D: the parity suite's conv_transpose part.

Oracles: the N-d loop oracle :mod:`naive` (``naive.conv_transpose`` scatters
every input cell through every kernel tap; its gradients are the same loops
read backwards) and, when PyTorch is installed,
``torch.nn.functional.conv_transpose1d/2d/3d`` with autograd.

* The parity table (:data:`CASES`: stride, dilation, groups and depthwise,
  ``output_padding`` up to ``>= stride`` where dilation allows it, asymmetric
  ``(before, after)`` padding, with and without bias) runs forward and backward
  (``dx``, ``dw``, ``db``) per rank in channels-first, channels-last and one
  MATLAB-style order.  Every case runs on the backends that take NumPy arrays;
  the cases marked ``everywhere`` also on every other backend x namespace x
  dtype the backends declare (dask's task graphs keep that list short).  The
  ranks are the classes :class:`TestRank1D` / ``2D`` / ``3D``, so a backend is
  run only at the ranks it declares.
* Transposes of conv: ``<conv(y), x> == <y, conv_transpose(x)>`` and
  ``conv_transpose(x) == conv_backward(...)[0]``.
* float16 / bfloat16 computed in float32 and rounded once where the backend
  does not declare them; the layers ``ConvTranspose1D/2D/3D``; the output size;
  errors naming the parameter; inputs never modified; backend selection.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

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
    noncontiguous,
    to_layout,
    torch_or_skip,
)

import convcore
from convcore import ConvTranspose1D, ConvTranspose3D
from convcore.transpose import (
    ConvTranspose2D,
    conv_transpose,
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
    conv_transpose_backward,
    conv_transpose_output_size,
)

FORWARD = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}
BACKWARD = {
    1: conv_transpose1d_backward,
    2: conv_transpose2d_backward,
    3: conv_transpose3d_backward,
}
LAYERS = {1: ConvTranspose1D, 2: ConvTranspose2D, 3: ConvTranspose3D}
#: The operators as backends declare them (forward: col2im; backward: conv and im2col).
BOTH = ("conv_transpose", "conv_transpose_backward")

#: The axis orders of the table: both standard ones and a MATLAB-style one per rank.
MIXED = {1: "WCN", 2: "HWCN", 3: "DHWCN"}
LAYOUTS = ("channels_first", "channels_last", "mixed")


@pytest.fixture(autouse=True)
def no_selection_state(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    convcore.set_backend(None)


# --------------------------------------------------------------------------
# Cases: options as convcore takes them, resolved for naive
# --------------------------------------------------------------------------


def per_axis(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def sides(padding, nd):
    """Any padding form convcore takes as ``(before, after)`` per axis, for naive."""
    if padding == "valid":
        return (0,) * (2 * nd)
    if isinstance(padding, int):
        return (padding,) * (2 * nd)
    items = list(padding)
    if all(isinstance(p, tuple) for p in items):
        return tuple(v for p in items for v in p)
    if len(items) == nd:
        return tuple(v for v in items for _ in (0, 1))
    assert len(items) == 2 * nd, padding
    return tuple(items)


def layout_letters(layout, nd):
    return MIXED[nd] if layout == "mixed" else layout


def layout_shape(shape, layout):
    """The shape, in ``layout``, of a channels-first array of ``shape``."""
    return to_layout(np.empty(shape, np.int8), layout).shape


@dataclass(frozen=True)
class TCase:
    """One transposed convolution; ``x_shape`` channels-first ``(N, C_in, *size)``."""

    id: str
    x_shape: tuple
    C_out: int
    kernel: tuple
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True
    everywhere: bool = False  # also on every other backend x namespace x dtype

    def __str__(self):
        return self.id

    @property
    def nd(self):
        return len(self.kernel)

    @property
    def size(self):
        return self.x_shape[2:]

    def resolved(self):
        """The geometry as naive takes it (tuples; padding ``(before, after)`` per axis)."""
        nd = self.nd
        return dict(
            stride=per_axis(self.stride, nd),
            padding=sides(self.padding, nd),
            output_padding=per_axis(self.output_padding, nd),
            dilation=per_axis(self.dilation, nd),
            groups=self.groups,
        )

    def api_kwargs(self):
        return dict(
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    @property
    def out_size(self):
        r = self.resolved()
        return naive.conv_transpose_output_size(
            self.size, self.kernel, r["stride"], r["padding"], r["output_padding"], r["dilation"]
        )

    @property
    def windows(self):
        """Windows of the convolution being transposed (``size``, or more: extra windows)."""
        r = self.resolved()
        return naive.conv_output_size(
            self.out_size, self.kernel, r["stride"], r["padding"], r["dilation"]
        )

    @property
    def extra_windows(self):
        """Whether ``output_padding >= stride`` gives that convolution windows beyond x."""
        return self.windows != tuple(self.size)

    @property
    def w_shape(self):
        return (self.x_shape[1], self.C_out // self.groups, *self.kernel)

    @property
    def out_shape(self):
        return (self.x_shape[0], self.C_out, *self.out_size)


T = TCase

CASES_1D = [
    T("1d_basic", (2, 3, 5), 2, (3,)),
    T("1d_s2_p1_op1", (2, 2, 4), 3, (3,), stride=2, padding=1, output_padding=1, bias=False),
    T("1d_asym_s3_op2", (1, 2, 4), 2, (4,), stride=3, padding=(2, 0), output_padding=2),
    T("1d_dil2_op1_ge_stride", (2, 2, 4), 2, (3,), dilation=2, output_padding=1),
    T(
        "1d_s2_dil3_op2_asym",
        (2, 2, 3),
        3,
        (2,),
        stride=2,
        padding=((0, 1),),
        output_padding=2,
        dilation=3,
        everywhere=True,
    ),
    T("1d_dil3_op2_two_extra", (1, 1, 3), 2, (2,), dilation=3, output_padding=2),
    T(
        "1d_groups2_asym",
        (2, 4, 3),
        6,
        (3,),
        stride=2,
        padding=(1, 2),
        groups=2,
        bias=False,
        everywhere=True,
    ),
    T(
        "1d_depthwise_x2",
        (1, 3, 5),
        6,
        (2,),
        stride=2,
        output_padding=1,
        groups=3,
        everywhere=True,
    ),
    T("1d_kernel_gt_input", (2, 2, 2), 2, (5,), stride=2, padding=1),
    T("1d_valid_pointwise", (2, 3, 4), 2, (1,), stride=3, padding="valid", output_padding=1),
]

CASES_2D = [
    T("basic3x3", (2, 3, 4, 5), 2, (3, 3)),
    T("s2_p1_op1", (2, 2, 3, 4), 3, (3, 3), stride=2, padding=1, output_padding=1, everywhere=True),
    T("s3_op2", (1, 2, 3, 3), 2, (3, 3), stride=3, output_padding=2, bias=False),
    T("s2_k2_no_overlap", (2, 2, 3, 2), 2, (2, 2), stride=2),
    T("stride_gt_kernel", (1, 2, 3, 4), 2, (2, 2), stride=3, output_padding=(2, 1)),
    T(
        "per_axis_stride",
        (2, 2, 3, 4),
        3,
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
        output_padding=(1, 2),
        bias=False,
    ),
    T("asym_pad_4", (2, 2, 4, 3), 2, (3, 3), stride=2, padding=(0, 2, 1, 3), output_padding=1),
    T("asym_pad_pairs", (1, 2, 4, 3), 2, (2, 3), stride=(1, 2), padding=((1, 0), (2, 1))),
    T("valid", (1, 2, 3, 4), 2, (2, 3), stride=2, padding="valid"),
    T("dilation2", (2, 2, 4, 4), 2, (3, 3), padding=1, dilation=2),
    T("op_ge_stride_by_dilation", (1, 2, 3, 4), 2, (3, 2), dilation=2, output_padding=1),
    T(
        "dilation_rect_op",
        (2, 2, 3, 4),
        2,
        (2, 3),
        stride=(1, 2),
        padding=(1, 0, 2, 1),
        output_padding=(1, 2),
        dilation=(2, 3),
        everywhere=True,
    ),
    T("dilation3_op2", (1, 1, 3, 3), 2, (2, 2), dilation=3, output_padding=2),
    T("groups2", (2, 4, 3, 4), 6, (3, 3), stride=2, padding=1, groups=2, bias=False),
    T(
        "groups3_strided",
        (1, 6, 3, 3),
        3,
        (2, 3),
        stride=2,
        padding=(1, 0),
        output_padding=1,
        groups=3,
        everywhere=True,
    ),
    T("depthwise", (2, 3, 4, 4), 3, (3, 3), padding=1, groups=3),
    T(
        "depthwise_multiplier2",
        (1, 4, 3, 3),
        8,
        (3, 2),
        stride=2,
        padding=(0, 1, 1, 0),
        output_padding=1,
        groups=4,
        bias=False,
        everywhere=True,
    ),
    T("pointwise_1x1", (2, 3, 3, 4), 4, (1, 1)),
    T("1x1_s2_op1", (1, 2, 3, 3), 2, (1, 1), stride=2, output_padding=1),
    T("padding_crops", (1, 2, 5, 6), 2, (3, 3), padding=2),
    T("single_pixel", (2, 2, 1, 1), 3, (3, 4)),
    T("kernel_larger_than_input", (1, 2, 2, 3), 2, (4, 5), stride=2, padding=1),
]

CASES_3D = [
    T("3d_basic", (1, 2, 3, 3, 3), 2, (2, 2, 2)),
    T(
        "3d_s2_p1_op1",
        (2, 2, 2, 3, 2),
        3,
        (3, 3, 3),
        stride=2,
        padding=1,
        output_padding=1,
        bias=False,
    ),
    T(
        "3d_per_axis_asym",
        (2, 2, 3, 2, 3),
        2,
        (2, 3, 2),
        stride=(1, 2, 3),
        padding=((1, 0), (0, 2), (1, 1)),
        output_padding=(0, 1, 2),
        dilation=(2, 1, 1),
        everywhere=True,
    ),
    T(
        "3d_groups2_dil_op_ge_stride",
        (1, 4, 2, 3, 2),
        4,
        (2, 2, 3),
        padding=(0, 1, 0, 0, 1, 0),
        output_padding=(1, 0, 1),
        dilation=(2, 1, 2),
        groups=2,
        bias=False,
        everywhere=True,
    ),
    T(
        "3d_depthwise",
        (2, 3, 3, 2, 3),
        3,
        (3, 2, 2),
        stride=2,
        padding=(1, 0, 1),
        output_padding=(1, 1, 0),
        groups=3,
        everywhere=True,
    ),
    T("3d_pointwise_s2", (1, 3, 2, 2, 2), 2, (1, 1, 1), stride=2, output_padding=1, bias=False),
    T("3d_valid_rect", (1, 2, 2, 3, 2), 3, (2, 1, 3), stride=(2, 1, 3), padding="valid"),
]

CASES = {1: CASES_1D, 2: CASES_2D, 3: CASES_3D}
ALL_CASES = [c for nd in (1, 2, 3) for c in CASES[nd]]


def named(*ids):
    """The cases called ``ids``, in that order."""
    by_id = {c.id: c for c in ALL_CASES}
    return [by_id[i] for i in ids]


#: One case per rank with output_padding >= stride / asymmetric padding, groups, dilation.
ONE_PER_RANK = named("1d_s2_dil3_op2_asym", "dilation_rect_op", "3d_per_axis_asym")


def case_inputs(case, dtype, seed=0):
    """Deterministic ``(x, w, b, g)`` for ``case``, channels-first; ``g`` has the output's shape."""
    rng = np.random.default_rng([seed, sum(map(ord, case.id))])
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.C_out).astype(dtype)
    g = rng.standard_normal(case.out_shape).astype(dtype)
    return x, w, b, g


@functools.cache
def expected(case, dtype_name):
    """naive's forward (with the case's bias or none) and ``(dx, dw, db)``, channels-first."""
    x, w, b, g = case_inputs(case, np.dtype(dtype_name))
    r = case.resolved()
    geometry = (r["stride"], r["padding"], r["output_padding"], r["dilation"], r["groups"])
    dx, dw, db = naive.conv_transpose_backward(g, x, w, *geometry)
    out = naive.conv_transpose(x, w, b if case.bias else None, *geometry)
    return {"out": out, "dx": dx, "dw": dw, "db": db}


def torch_results(case, dtype_name, *, direct, seed=0):
    """torch's output and autograd ``(dx, dw, db)`` for :func:`case_inputs` in ``dtype_name``.

    Computed in float64 from the inputs rounded to ``dtype_name``.  ``direct``:
    torch's own (symmetric) ``padding`` argument; otherwise ``padding=0`` and
    the full output cropped by ``(before, after)`` per axis.
    """
    torch_or_skip()
    return _torch_results(case, dtype_name, direct, seed)


@functools.cache
def _torch_results(case, dtype_name, direct, seed):
    import torch

    x, w, b, g = case_inputs(case, np.dtype(dtype_name), seed=seed)
    r = case.resolved()
    xt, wt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w))
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True) if case.bias else None
    fn = getattr(torch.nn.functional, f"conv_transpose{case.nd}d")
    pads = r["padding"]
    kw = dict(
        stride=r["stride"],
        output_padding=r["output_padding"],
        groups=case.groups,
        dilation=r["dilation"],
    )
    if direct:
        assert pads[::2] == pads[1::2], "torch pads both sides alike"
        y = fn(xt, wt, bt, padding=pads[::2], **kw)
    else:
        full = fn(xt, wt, bt, padding=0, **kw)
        crop = [slice(pads[2 * i], full.shape[2 + i] - pads[2 * i + 1]) for i in range(case.nd)]
        y = full[(slice(None), slice(None), *crop)]
    (y * torch.tensor(g)).sum().backward()
    db = bt.grad.numpy() if case.bias else g.sum(axis=(0, *range(2, g.ndim)))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


def symmetric(case):
    pads = sides(case.padding, case.nd)
    return pads[::2] == pads[1::2]


# --------------------------------------------------------------------------
# The parity table, per rank
# --------------------------------------------------------------------------


def _tables(nd):
    """The ``(cases, layouts)`` each test of a rank class runs."""
    everywhere = [c for c in CASES[nd] if c.everywhere]
    return {
        "test_parity_numpy_arrays": (CASES[nd], LAYOUTS),
        "test_parity_every_namespace": (everywhere, ("channels_first", "channels_last")),
        "test_mixed_order_every_namespace": (everywhere[:1], ("mixed",)),
        "test_adjoint_of_conv": (everywhere, ("channels_first", "channels_last")),
        "test_equals_conv_backward_dx": (CASES[nd], ("channels_first", "mixed")),
        "test_matches_torch": (CASES[nd], ("channels_first", "channels_last")),
        "test_empty_batch": (everywhere[:1], ("channels_first", "channels_last")),
    }


def pytest_generate_tests(metafunc):
    """``case`` and ``layout`` for the tests of a rank class (its ``nd``, :func:`_tables`).

    The backend, namespace and dtype come from conftest.py, for the rank the
    class's ``declares`` marker names.
    """
    cls = metafunc.cls
    if cls is None or not issubclass(cls, _RankTests):
        return
    cases, layouts = _tables(cls.nd)[metafunc.function.__name__]
    metafunc.parametrize("case", cases, ids=str)
    metafunc.parametrize("layout", layouts)


def _check_parity(case, layout, backend, ns, dtype, assert_close, *, generic):
    """Forward and backward of ``case`` in ``layout`` against naive; inputs unchanged."""
    letters = layout_letters(layout, case.nd)
    x, w, b, g = case_inputs(case, dtype)
    b = b if case.bias else None
    xl, gl = to_layout(x, letters), to_layout(g, letters)
    xa, wa, ga = ns.asarray(xl), ns.asarray(w), ns.asarray(gl)
    ba = None if b is None else ns.asarray(b)
    kw = dict(layout=letters, backend=backend.name, **case.api_kwargs())
    forward = conv_transpose if generic else FORWARD[case.nd]
    backward = conv_transpose_backward if generic else BACKWARD[case.nd]
    want = expected(case, dtype.name)

    out = forward(xa, wa, ba, **kw)
    check_output(ns, out, xa, layout_shape(case.out_shape, letters))
    assert_close(from_layout(ns.to_numpy(out), letters), want["out"], err_msg="out")

    dx, dw, db = backward(ga, xa, wa, **kw)
    check_output(ns, dx, xa, xl.shape)
    check_output(ns, dw, xa, case.w_shape)
    check_output(ns, db, xa, (case.C_out,))
    assert_close(from_layout(ns.to_numpy(dx), letters), want["dx"], err_msg="dx")
    assert_close(ns.to_numpy(dw), want["dw"], err_msg="dw")
    assert_close(ns.to_numpy(db), want["db"], err_msg="db")
    arrays, originals = [xa, wa, ga], [xl, w, gl]
    if b is not None:
        arrays.append(ba)
        originals.append(b)
    assert_unchanged(ns, arrays, originals)


class _RankTests:
    """The transposed convolution at one rank; a subclass sets ``nd`` and ``declares``."""

    nd = 0

    def test_parity_numpy_arrays(self, case, layout, backend, np_ns, dtype, assert_close):
        """Every case of the rank on the backends that take NumPy arrays (N-d entry point)."""
        _check_parity(case, layout, backend, np_ns, dtype, assert_close, generic=True)

    def test_parity_every_namespace(self, case, layout, backend, ns, dtype, assert_close):
        """The ``everywhere`` cases on every backend x namespace x dtype (rank entry point)."""
        _check_parity(case, layout, backend, ns, dtype, assert_close, generic=False)

    def test_mixed_order_every_namespace(self, case, layout, backend, ns, dtype, assert_close):
        """A MATLAB-style axis order (spatial, C, N) on every backend x namespace x dtype."""
        _check_parity(case, layout, backend, ns, dtype, assert_close, generic=True)

    def test_adjoint_of_conv(self, case, layout, backend, ns):
        """<conv_transpose(x), y> == <x, conv(y)> with the same weight and options.

        With ``output_padding >= stride`` the convolution has windows beyond x's
        size (they pair with no cell of x); otherwise it gives back x's shape.
        """
        letters = layout_letters(layout, case.nd)
        x, w, _, g = case_inputs(case, np.float64, seed=3)
        wa = ns.asarray(w)
        kw = dict(
            stride=case.stride,
            padding=case.padding,
            dilation=case.dilation,
            groups=case.groups,
            layout=letters,
            backend=backend.name,
        )
        out = conv_transpose(
            ns.asarray(to_layout(x, letters)), wa, output_padding=case.output_padding, **kw
        )
        out = from_layout(ns.to_numpy(out), letters)
        conv = convcore.conv(ns.asarray(to_layout(g, letters)), wa, **kw)
        conv = from_layout(ns.to_numpy(conv), letters)
        assert conv.shape == (*x.shape[:2], *case.windows)
        assert (conv.shape == x.shape) == (not case.extra_windows)
        lhs = np.vdot(out, g)
        rhs = np.vdot(x, conv[(slice(None), slice(None), *(slice(0, s) for s in case.size))])
        scale = np.vdot(np.abs(out), np.abs(g)) + 1.0
        assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)

    def test_equals_conv_backward_dx(self, case, layout, backend, np_ns, assert_close):
        """conv_transpose(x, w) == conv_backward(x, zeros of the output's shape, w)[0].

        With ``output_padding >= stride`` the convolution of the output's size
        has more windows than x has cells: its grad_out is x with zeros appended.
        """
        backend.require("conv_backward", ns=np_ns, dtype="float64", nd=case.nd)
        letters = layout_letters(layout, case.nd)
        x, w, _, _ = case_inputs(case, np.float64)
        pad = [(0, 0), (0, 0)] + [(0, n - s) for n, s in zip(case.windows, case.size)]
        grad = np.pad(x, pad)
        out = conv_transpose(
            to_layout(x, letters), w, layout=letters, backend=backend.name, **case.api_kwargs()
        )
        dx, _, _ = convcore.conv_backward(
            to_layout(grad, letters),
            np.zeros(out.shape),
            w,
            stride=case.stride,
            padding=case.padding,
            dilation=case.dilation,
            groups=case.groups,
            layout=letters,
            backend=backend.name,
        )
        assert_close(out, dx)
        assert_close(from_layout(out, letters), naive.conv_transpose(x, w, None, **case.resolved()))

    def test_matches_torch(self, case, layout, backend, np_ns, dtype, assert_close):
        """Against torch and autograd: its own padding where symmetric, cropped otherwise."""
        x, w, b, g = case_inputs(case, dtype, seed=1)
        y, *grads = torch_results(case, dtype.name, direct=symmetric(case), seed=1)
        kw = dict(layout=layout, backend=backend.name, **case.api_kwargs())
        xl = to_layout(x, layout)
        out = FORWARD[case.nd](xl, w, b if case.bias else None, **kw)
        assert out.dtype == dtype
        assert_close(from_layout(out, layout), y, dtype, err_msg="out")
        got = BACKWARD[case.nd](to_layout(g, layout), xl, w, **kw)
        got = (from_layout(got[0], layout), *got[1:])
        for a, want, name in zip(got, grads, ("dx", "dw", "db"), strict=True):
            assert a.dtype == dtype, name
            assert_close(a, want, dtype, err_msg=name)

    def test_empty_batch(self, case, layout, backend, ns, dtype):
        x, w, b, g = case_inputs(case, dtype)
        x0 = ns.asarray(to_layout(x[:0], layout))
        g0 = ns.asarray(to_layout(g[:0], layout))
        wa, ba = ns.asarray(w), ns.asarray(b)
        kw = dict(layout=layout, backend=backend.name, **case.api_kwargs())
        out = FORWARD[case.nd](x0, wa, ba, **kw)
        check_output(ns, out, x0, layout_shape((0, *case.out_shape[1:]), layout))
        dx, dw, db = BACKWARD[case.nd](g0, x0, wa, **kw)
        check_output(ns, dx, x0, tuple(x0.shape))
        check_output(ns, dw, x0, case.w_shape)
        check_output(ns, db, x0, (case.C_out,))
        np.testing.assert_array_equal(ns.to_numpy(dw), 0)
        np.testing.assert_array_equal(ns.to_numpy(db), 0)


#: The ``everywhere`` cases JAX is fed, one per rank (why: ``conftest.JAX_SUBSET_REASON``):
#: the first of each rank, which the mixed-order and empty-batch tests use too.
JAX_CASES = {"jax": ("1d_s2_dil3_op2_asym", "s2_p1_op1", "3d_per_axis_asym")}


@pytest.mark.declares(*BOTH, nd=1, cases=JAX_CASES)
class TestRank1D(_RankTests):
    nd = 1


@pytest.mark.declares(*BOTH, nd=2, cases=JAX_CASES)
class TestRank2D(_RankTests):
    nd = 2


@pytest.mark.declares(*BOTH, nd=3, cases=JAX_CASES)
class TestRank3D(_RankTests):
    nd = 3


def test_the_table_covers_what_the_parity_suite_promises():
    """Each rank has stride, dilation, groups, depthwise, output_padding >= stride
    (allowed by dilation), asymmetric padding, and cases with and without bias,
    both among all cases and among the ``everywhere`` ones."""
    for nd in (1, 2, 3):
        for table in (CASES[nd], [c for c in CASES[nd] if c.everywhere]):
            features = set()
            for c in table:
                r = c.resolved()
                features |= {
                    "stride" if max(r["stride"]) > 1 else None,
                    "dilation" if max(r["dilation"]) > 1 else None,
                    "groups" if c.groups > 1 else None,
                    "depthwise" if c.groups == c.x_shape[1] > 1 else None,
                    "op_ge_stride" if c.extra_windows else None,
                    "asymmetric" if not symmetric(c) else None,
                    "bias" if c.bias else "no_bias",
                }
            want = {"stride", "dilation", "groups", "op_ge_stride", "asymmetric", "bias"}
            want |= {"no_bias", "depthwise"}
            assert want <= features, (nd, want - features)


def test_generic_entry_point_equals_the_rank_ones():
    for case in ONE_PER_RANK:
        nd = case.nd
        x, w, b, g = case_inputs(case, np.float64)
        kw = case.api_kwargs()
        np.testing.assert_array_equal(conv_transpose(x, w, b, **kw), FORWARD[nd](x, w, b, **kw))
        for a, e in zip(
            conv_transpose_backward(g, x, w, **kw), BACKWARD[nd](g, x, w, **kw), strict=True
        ):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_naive_agrees_with_torch_on_the_table(case, assert_close):
    """The oracle behind every parity test, against torch (cropping asymmetric padding)."""
    y, dx, dw, db = torch_results(case, "float64", direct=False)
    want = expected(case, "float64")
    for name, got in (("out", y), ("dx", dx), ("dw", dw), ("db", db)):
        assert_close(want[name], got, err_msg=name)


# --------------------------------------------------------------------------
# output_padding, output size, non-contiguous input
# --------------------------------------------------------------------------


@pytest.mark.declares(*BOTH, nd=2)
def test_output_padding_rows_hold_the_bias_and_are_not_read_back(backend, np_ns):
    """Rows/columns that output_padding adds past the reach of every tap: bias only.

    Their entries of ``grad_out`` change ``db`` but neither ``dx`` nor ``dw``: the
    forward conv that computes ``dx`` never reads them.
    """
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 4, 3))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(2)
    kw = dict(stride=(2, 3), output_padding=(1, 2), backend=backend.name)
    y = conv_transpose2d(x, w, b, **kw)
    assert y.shape == (2, 2, 3 * 2 + 3 + 1, 2 * 3 + 2 + 2)
    np.testing.assert_array_equal(y[:, :, -1, :], np.broadcast_to(b[:, None], (2, 2, 10)))
    np.testing.assert_array_equal(y[:, :, :, -2:], np.broadcast_to(b[:, None, None], (2, 2, 10, 2)))
    g = rng.standard_normal(y.shape)
    g2 = g.copy()
    g2[:, :, -1, :] += 7.0
    g2[:, :, :, -2:] -= 3.0
    dx, dw, db = conv_transpose2d_backward(g, x, w, **kw)
    dx2, dw2, db2 = conv_transpose2d_backward(g2, x, w, **kw)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)
    assert not np.allclose(db2, db)


@pytest.mark.declares(*BOTH, nd=1)
def test_output_padding_past_stride_by_dilation_1d(backend, np_ns, assert_close):
    """stride 1, dilation 3, output_padding 2: two cells past the last tap, bias only."""
    x = np.arange(1.0, 4.0).reshape(1, 1, 3)
    w = np.array([[[1.0, 10.0]]])
    kw = dict(dilation=3, output_padding=2, backend=backend.name)
    y = conv_transpose1d(x, w, np.array([0.5]), **kw)
    # taps land at i and i + 3: x = 1, 2, 3, 10, 20, 30, then two output_padding cells
    np.testing.assert_array_equal(y[0, 0], [1.5, 2.5, 3.5, 10.5, 20.5, 30.5, 0.5, 0.5])
    g = np.arange(8.0).reshape(1, 1, 8)
    dx, dw, db = conv_transpose1d_backward(g, x, w, **kw)
    assert_close(dx[0, 0], [0 + 30, 1 + 40, 2 + 50])
    assert_close(dw[0, 0], [0 * 1 + 1 * 2 + 2 * 3, 3 * 1 + 4 * 2 + 5 * 3])
    assert_close(db, [28.0])


@pytest.mark.parametrize(
    ("input_size", "kernel", "options", "size"),
    [
        ((4, 4), 3, dict(stride=2, padding=1, output_padding=1), (8, 8)),
        ((5, 6), (3, 2), dict(stride=(2, 3), padding=(1, 2, 0, 1)), (8, 16)),
        ((3, 3), 2, dict(dilation=3, output_padding=2), (8, 8)),
        ((2, 2), 1, dict(padding="valid"), (2, 2)),
        ((3, 4), 4, dict(padding=((1, 0), (0, 2))), (5, 5)),
        ((10,), 4, dict(stride=2, padding=1), (20,)),
        ((3,), 2, dict(stride=3, padding=(0, 2), output_padding=1, dilation=2), (8,)),
        ((2, 3, 4), (3, 1, 2), dict(stride=(1, 2, 3), padding=(1, 0, 0, 0, 0, 2)), (3, 5, 9)),
        ((2, 2, 2), 3, dict(stride=2, dilation=(1, 2, 3), output_padding=(1, 1, 2)), (6, 8, 11)),
    ],
)
def test_output_size(input_size, kernel, options, size):
    assert conv_transpose_output_size(input_size, kernel, **options) == size
    nd = len(input_size)
    resolved = naive.conv_transpose_output_size(
        input_size,
        per_axis(kernel, nd),
        per_axis(options.get("stride", 1), nd),
        sides(options.get("padding", 0), nd),
        per_axis(options.get("output_padding", 0), nd),
        per_axis(options.get("dilation", 1), nd),
    )
    assert resolved == size
    # and the operators make outputs of that size
    x = np.ones((1, 1, *input_size))
    assert conv_transpose(x, np.ones((1, 1, *per_axis(kernel, nd))), **options).shape[2:] == size


def _torch_noncontiguous(a):
    torch = torch_or_skip()
    t = torch.from_numpy(noncontiguous(a))
    assert not t.is_contiguous()
    return t


def _declaring(namespace):
    """Names of the backends that declare both operators on ``namespace`` arrays."""
    return [
        pytest.param(
            info.name,
            marks=() if info.available else pytest.mark.skip(reason=f"unavailable: {info.reason}"),
        )
        for info in convcore.available_backends()
        if all(info.supports(op, namespace=namespace) for op in BOTH)
    ]


@pytest.mark.parametrize("be", _declaring("numpy"))
@pytest.mark.parametrize("case", ONE_PER_RANK, ids=str)
def test_noncontiguous_numpy_inputs(case, be, assert_close):
    """Views with swapped strides (and a strided bias) give the same results."""
    _check_noncontiguous(case, be, noncontiguous, np.asarray, assert_close)


@pytest.mark.parametrize("be", _declaring("torch"))
@pytest.mark.parametrize("case", ONE_PER_RANK, ids=str)
def test_noncontiguous_torch_tensors(case, be, assert_close):
    _check_noncontiguous(case, be, _torch_noncontiguous, lambda t: t.numpy(), assert_close)


def _check_noncontiguous(case, be, make, to_numpy, assert_close):
    x, w, b, g = case_inputs(case, np.float64)
    want = expected(case, "float64")
    xn, wn, bn, gn = map(make, (x, w, b, g))
    kw = dict(backend=be, **case.api_kwargs())
    out = conv_transpose(xn, wn, bn if case.bias else None, **kw)
    assert_close(to_numpy(out), want["out"])
    grads = conv_transpose_backward(gn, xn, wn, **kw)
    for got, name in zip(grads, ("dx", "dw", "db"), strict=True):
        assert_close(to_numpy(got), want[name], err_msg=name)
    np.testing.assert_array_equal(to_numpy(xn), x)


# --------------------------------------------------------------------------
# Half precision: float32 inside, rounded once
# --------------------------------------------------------------------------

#: Namespaces that hold each half type in this suite (bfloat16: torch and JAX; JAX's
#: float16 is checked in test_breadth and test_jax: a case costs it seconds of compiling).
HALF_NAMESPACES = {"float16": ("numpy", "dask", "torch"), "bfloat16": ("torch", "jax")}
HALF_CASES = named("1d_groups2_asym", "groups3_strided", "3d_depthwise")


def _half_combinations():
    """``(backend, namespace, half, case)`` where the backend declares both operators.

    ``compute`` is the backend's answer: ``"float32"`` where it does not declare
    the half type itself (computed in float32, rounded once), None where it does.
    """
    for info in convcore.available_backends():
        for half, spaces in HALF_NAMESPACES.items():
            for ns_name in spaces:
                for case in HALF_CASES:
                    support = [
                        info.supports(op, namespace=ns_name, dtype=half, nd=case.nd) for op in BOTH
                    ]
                    if not all(support):
                        continue
                    compute = {s.compute_dtype for s in support}
                    assert len(compute) == 1, (info.name, half, compute)
                    marks = () if info.available else pytest.mark.skip(reason=str(info.reason))
                    yield pytest.param(
                        info.name,
                        ns_name,
                        half,
                        case,
                        compute.pop(),
                        id=f"{info.name}-{ns_name}-{half}-{case.id}",
                        marks=marks,
                    )


@pytest.mark.parametrize(("be", "ns_name", "half", "case", "compute"), list(_half_combinations()))
def test_half_precision(be, ns_name, half, case, compute, make_ns, assert_close):
    """float16 / bfloat16 in, the same dtype out, within a few roundings of the float64 oracle.

    Where the backend does not declare the half type (``compute == "float32"``)
    the result is the float32 computation rounded once: within ``HALF_TOL``.
    """
    ns = make_ns(ns_name)
    x, w, b, g = case_inputs(case, np.float32)
    hx, hw, hb, hg = (half_array(ns, a, half) for a in (x, w, b, g))
    rx, rw, rb, rg = (half_to_float64(ns, a) for a in (hx, hw, hb, hg))  # what convcore sees
    r = case.resolved()
    geometry = (r["stride"], r["padding"], r["output_padding"], r["dilation"], r["groups"])
    # declared natively: the backend's own half arithmetic, a few roundings more
    tol = HALF_TOL[half] if compute == "float32" else 4 * HALF_TOL[half]
    kw = dict(backend=be, **case.api_kwargs())

    def check(got, want, what):
        assert ns.is_native(got), what
        assert str(got.dtype).endswith(half), (what, got.dtype)
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(
            half_to_float64(ns, got), want, rtol=tol, atol=tol * scale, err_msg=what
        )

    check(FORWARD[case.nd](hx, hw, hb, **kw), naive.conv_transpose(rx, rw, rb, *geometry), "out")
    got = BACKWARD[case.nd](hg, hx, hw, **kw)
    want = naive.conv_transpose_backward(rg, rx, rw, *geometry)
    for a, e, name in zip(got, want, ("dx", "dw", "db"), strict=True):
        check(a, e, name)


def _float32_inside_on_numpy():
    return [
        pytest.param(
            info.name,
            marks=() if info.available else pytest.mark.skip(reason=str(info.reason)),
        )
        for info in convcore.available_backends()
        if all(
            getattr(info.supports(op, namespace="numpy", dtype="float16"), "compute_dtype", None)
            == "float32"
            for op in BOTH
        )
    ]


@pytest.mark.parametrize("be", _float32_inside_on_numpy())
def test_float16_is_computed_in_float32_and_rounded_once(be, monkeypatch):
    """float16 runs in float32 where the backend does not declare it (as for conv)."""
    from convcore._dispatch import Plan

    seen = []
    for op in ("col2im", "conv", "im2col"):
        real = getattr(Plan, op)

        def spy(self, xp, a, *args, _real=real, _op=op):
            seen.append((_op, a.dtype))
            return _real(self, xp, a, *args)

        monkeypatch.setattr(Plan, op, spy)
    # one output pixel sums 4097 products: float16 accumulation would stall at 2048 + 2048
    x = np.ones((1, 4097, 1, 1), np.float16)
    x[0, 0] = 2048
    w = np.ones((4097, 1, 1, 1), np.float16)
    y = conv_transpose2d(x, w, backend=be)
    assert y.dtype == np.float16
    assert seen == [("col2im", np.float32)]  # the columns (the GEMM's result) are float32
    assert float(y[0, 0, 0, 0]) == float(np.float16(2048 + 4096))
    seen.clear()
    # the backward's sums over a batch of 4097: dw (x * grad_out) and db (grad_out)
    xs = np.ones((4097, 1, 1), np.float16)
    gs = np.ones((4097, 1, 1), np.float16)
    gs[0] = 2048
    dx, dw, db = conv_transpose1d_backward(gs, xs, np.ones((1, 1, 1), np.float16), backend=be)
    assert (dx.dtype, dw.dtype, db.dtype) == (np.float16,) * 3
    assert sorted(seen) == [("conv", np.float32), ("im2col", np.float32)]
    assert float(dw[0, 0, 0]) == float(np.float16(2048 + 4096))
    assert float(db[0]) == float(np.float16(2048 + 4096))


# --------------------------------------------------------------------------
# Backend selection: the keyword is honoured, no silent fallback
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "be",
    [
        pytest.param(
            info.name,
            marks=() if info.available else pytest.mark.skip(reason=str(info.reason)),
        )
        for info in convcore.available_backends()
        if not info.supports("conv_transpose", namespace="array_api_strict")
    ],
)
def test_backend_that_cannot_take_the_namespace_raises(be, make_ns):
    strict = make_ns("array_api_strict")
    (case,) = named("s2_p1_op1")
    x, w, b, g = (strict.asarray(a) for a in case_inputs(case, np.float64))
    kw = dict(backend=be, **case.api_kwargs())
    with pytest.raises(convcore.BackendCapabilityError, match=rf"{be}.*array_api_strict"):
        conv_transpose2d(x, w, b, **kw)
    with pytest.raises(convcore.BackendCapabilityError, match=rf"{be}.*array_api_strict"):
        conv_transpose2d_backward(g, x, w, **kw)


def test_unknown_backend_keyword():
    x, w, b, g = case_inputs(CASES_2D[0], np.float64)  # basic3x3
    with pytest.raises(convcore.UnknownBackendError, match="no_such_backend"):
        conv_transpose2d(x, w, b, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError, match="no_such_backend"):
        conv_transpose2d_backward(g, x, w, backend="no_such_backend")


@pytest.mark.parametrize("case", named("1d_s2_p1_op1", "s2_p1_op1", "3d_s2_p1_op1"), ids=str)
def test_context_backend_is_used(case, monkeypatch):
    from convcore import _registry as registry_module

    monkeypatch.setattr(registry_module, "_registry", None)  # fresh registry, restored after
    kernels = registry_module.get_registry().kernels("array_api")
    calls = []
    for op in ("col2im", "conv", "im2col"):
        original = kernels[op]

        def counting(*args, _op=op, _original=original, **kwargs):
            calls.append(_op)
            return _original(*args, **kwargs)

        monkeypatch.setitem(kernels, op, counting)
    x, w, b, g = case_inputs(case, np.float64)
    with convcore.use_backend("array_api"):
        conv_transpose(x, w, b, **case.api_kwargs())
        conv_transpose_backward(g, x, w, **case.api_kwargs())
    assert calls == ["col2im", "conv", "im2col"]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _arrays(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((2, 4, 3, 4)).astype(dtype),
        "weight": rng.standard_normal((4, 3, 3, 3)).astype(dtype),
        "bias": rng.standard_normal(3).astype(dtype),
    }


ERROR_CASES = [
    # shapes
    pytest.param({"x": np.zeros((4, 3, 4))}, ValueError, r"\bx\b.*\(4, 3, 4\)", id="x-3d"),
    pytest.param({"weight": np.zeros((4, 3, 9))}, ValueError, r"\bweight\b", id="weight-3d"),
    pytest.param({"x": np.zeros((2, 4, 0, 4))}, ValueError, r"\bx\b.*H", id="x-empty-height"),
    pytest.param(
        {"weight": np.zeros((3, 3, 3, 3))}, ValueError, r"\bx has C_in=4\b.*C_in=3", id="C_in"
    ),
    pytest.param({"weight": np.zeros((4, 0, 3, 3))}, ValueError, r"\bweight\b", id="C_out-0"),
    pytest.param({"groups": 3}, ValueError, r"C_in=4.*groups=3", id="groups-not-dividing"),
    pytest.param({"groups": 0}, ValueError, r"\bgroups\b.*0", id="groups-0"),
    pytest.param({"groups": 1.5}, TypeError, r"\bgroups\b.*1\.5", id="groups-float"),
    pytest.param({"groups": True}, TypeError, r"\bgroups\b.*True", id="groups-bool"),
    pytest.param({"bias": np.zeros(4)}, ValueError, r"\bbias\b.*\(3,\).*\(4,\)", id="bias-shape"),
    pytest.param(
        {"bias": np.zeros((3, 1))}, ValueError, r"\bbias\b.*\(3,\).*\(3, 1\)", id="bias-2d"
    ),
    pytest.param(
        {"groups": 2, "weight": np.zeros((4, 3, 3, 3)), "bias": np.zeros(3)},
        ValueError,
        r"\bbias\b.*\(6,\).*3 \* 2 = 6",
        id="bias-shape-grouped",
    ),
    # geometry
    pytest.param(
        {"stride": 2, "output_padding": 2},
        ValueError,
        r"\boutput_padding\b.*stride.*dilation",
        id="output_padding-ge-stride",
    ),
    pytest.param(
        {"output_padding": (0, 1)},
        ValueError,
        r"\boutput_padding\b.*\(0, 1\)",
        id="output_padding-stride-1",
    ),
    pytest.param(
        {"stride": 2, "dilation": 3, "output_padding": 3},
        ValueError,
        r"\boutput_padding\b.*stride \(2, 2\) and dilation \(3, 3\)",
        id="output_padding-ge-both",
    ),
    pytest.param({"output_padding": -1}, ValueError, r"\boutput_padding\b", id="op-negative"),
    pytest.param({"output_padding": 0.5}, TypeError, r"\boutput_padding\b", id="op-float"),
    pytest.param(
        {"output_padding": (0, 0, 0)},
        ValueError,
        r"\boutput_padding\b.*2 ints.*3 entries",
        id="op-length-3",
    ),
    pytest.param(
        {"padding": "same", "output_padding": 1},
        ValueError,
        r"\boutput_padding\b must be 0 with padding='same'",
        id="same-with-output-padding",
    ),
    pytest.param({"padding": -1}, ValueError, r"\bpadding\b.*-1", id="padding-negative"),
    pytest.param(
        {"padding": (3, 0)}, ValueError, r"\bpadding\b.*height.*= -1", id="padding-crops-all"
    ),
    pytest.param({"padding": (1, 2, 3)}, ValueError, r"\bpadding\b", id="padding-length-3"),
    pytest.param({"stride": 0}, ValueError, r"\bstride\b.*0", id="stride-0"),
    pytest.param({"dilation": (1, 0)}, ValueError, r"\bdilation\b", id="dilation-0"),
    pytest.param({"stride": "2"}, TypeError, r"\bstride\b", id="stride-str"),
    # layout
    pytest.param({"layout": "NCW"}, ValueError, r"layout='NCW'.*2 spatial axes", id="layout-1d"),
    pytest.param({"layout": "NWHC"}, ValueError, r"layout='NWHC'", id="layout-spatial-order"),
    pytest.param({"layout": 4}, TypeError, r"\blayout\b.*4", id="layout-int"),
    # dtypes and namespaces
    pytest.param(
        {"weight": np.zeros((4, 3, 3, 3), np.float32)},
        TypeError,
        r"\bweight\b.*float32",
        id="weight-float32",
    ),
    pytest.param(
        {"bias": np.zeros(3, np.float32)}, TypeError, r"\bbias\b.*float32", id="bias-float32"
    ),
    pytest.param(
        {"x": np.zeros((2, 4, 3, 4), np.int64), "weight": np.zeros((4, 3, 3, 3), np.int64)},
        TypeError,
        r"real floating-point x.*int64",
        id="integer-dtype",
    ),
    pytest.param({"x": [[[[1.0]]]]}, TypeError, r"\bx must be an array\b", id="x-list"),
]


@pytest.mark.parametrize(("overrides", "exc", "pattern"), ERROR_CASES)
def test_errors(overrides, exc, pattern):
    a = _arrays()
    originals = {k: v.copy() for k, v in a.items()}
    args = {**a, **{k: v for k, v in overrides.items() if k in a}}
    options = {k: v for k, v in overrides.items() if k not in a}
    with pytest.raises(exc, match=pattern):
        conv_transpose2d(args["x"], args["weight"], args["bias"], **options)
    if "bias" not in overrides:  # the backward takes no bias
        grad_out = np.ones((2, 3, 5, 6))  # the output's shape under the default options
        with pytest.raises(exc, match=pattern):
            conv_transpose2d_backward(grad_out, args["x"], args["weight"], **options)
    for name, before in originals.items():
        np.testing.assert_array_equal(a[name], before)


ND_ERROR_CASES = [
    pytest.param(
        conv_transpose1d,
        (2, 4, 3, 4),
        (4, 3, 3),
        {},
        r"x must be 3-D \(N, C_in, W\), got shape \(2, 4, 3, 4\)",
        id="1d-rank-of-x",
    ),
    pytest.param(
        conv_transpose3d,
        (2, 4, 3, 4),
        (4, 3, 3, 3, 3),
        {},
        r"x must be 5-D \(N, C_in, D, H, W\), got shape \(2, 4, 3, 4\)",
        id="3d-rank-of-x",
    ),
    pytest.param(
        conv_transpose,
        (2, 4),
        (4, 3, 3),
        {},
        r"\bx must have a batch axis, a channel axis and at least one spatial axis.*\(2, 4\)",
        id="nd-no-spatial-axis",
    ),
    pytest.param(
        conv_transpose,
        (2, 4, 3, 3, 3),
        (4, 3, 3, 3),
        {},
        r"weight must be 5-D \(C_in, C_out/groups, KD, KH, KW\), got shape \(4, 3, 3, 3\)",
        id="nd-weight-rank",
    ),
    pytest.param(
        conv_transpose1d,
        (2, 4, 3),
        (4, 3, 3),
        {"layout": "NHWC"},
        r"layout='NHWC' does not describe an array with 1 spatial axis",
        id="1d-layout",
    ),
    pytest.param(
        conv_transpose1d,
        (2, 4, 3),
        (4, 3, 3),
        {"stride": 2, "dilation": 2, "output_padding": 2},
        r"output_padding.*stride \(2,\) and dilation \(2,\)",
        id="1d-op-ge-both",
    ),
    pytest.param(
        conv_transpose1d,
        (2, 4, 3),
        (4, 3, 3),
        {"padding": (1, 2, 3)},
        r"padding must be an int, \(before, after\), 'valid' or 'same', got \(1, 2, 3\)",
        id="1d-padding-length",
    ),
    pytest.param(
        conv_transpose3d,
        (2, 4, 2, 2, 2),
        (4, 3, 2, 2, 2),
        {"output_padding": (0, 0)},
        r"output_padding must be an int or a sequence of 3 ints, got \(0, 0\)",
        id="3d-op-length",
    ),
    pytest.param(
        conv_transpose3d,
        (2, 4, 2, 2, 2),
        (4, 3, 2, 2, 2),
        {"padding": (0, 0, 0, 0, 0)},
        r"padding must be an int, 3 ints \(per axis\), 6 ints \(before, after per axis\), 'valid'",
        id="3d-padding-length",
    ),
    pytest.param(
        conv_transpose3d,
        (2, 4, 2, 2, 2),
        (4, 3, 2, 2, 2),
        {"padding": (0, 0, 2, 2, 0, 0)},
        r"padding .* leaves no output along the height axis",
        id="3d-padding-crops-all",
    ),
    pytest.param(
        conv_transpose3d,
        (2, 2, 2, 3, 3),
        (4, 3, 2, 2, 2),
        {"layout": "NDHWC"},
        r"x has C_in=3 channels but weight \(C_in, C_out/groups, KD, KH, KW\) has C_in=4",
        id="3d-layout-channels",
    ),
]


@pytest.mark.parametrize(("func", "x_shape", "w_shape", "options", "pattern"), ND_ERROR_CASES)
def test_errors_nd(func, x_shape, w_shape, options, pattern):
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    with pytest.raises(ValueError, match=pattern):
        func(x, w, **options)


def test_errors_name_channels_in_the_callers_layout():
    """x in NHWC with C_in=3 against a weight with C_in=4; grad_out's shape in NHWC."""
    a = _arrays()
    x_nhwc = np.moveaxis(a["x"], 1, -1)[..., :3]
    with pytest.raises(ValueError, match=r"x has C_in=3 channels but weight .* has C_in=4"):
        conv_transpose2d(x_nhwc, a["weight"], layout="NHWC")
    x = to_layout(a["x"], "NHWC")
    y = conv_transpose2d(x, a["weight"], a["bias"], layout="NHWC")
    assert y.shape == (2, 5, 6, 3)
    with pytest.raises(
        ValueError, match=r"grad_out must have shape \(2, 5, 6, 3\) \(N, H, W, C_out"
    ):
        conv_transpose2d_backward(np.ones((2, 3, 5, 6)), x, a["weight"], layout="NHWC")
    with pytest.raises(ValueError, match=r"\bbias\b.*\(3,\).*\(1, 1, 1, 3\)"):
        conv_transpose2d(x, a["weight"], np.zeros((1, 1, 1, 3)), layout="NHWC")


def test_namespace_mismatch():
    xps = pytest.importorskip("array_api_strict")
    a = _arrays()
    with pytest.raises(TypeError, match=r"\bweight\b.*array_api_strict.*numpy"):
        conv_transpose2d(a["x"], xps.zeros((4, 3, 3, 3), dtype=xps.float64), None)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((2, 3, 5, 5), r"grad_out must have shape \(2, 3, 5, 6\).*\(2, 3, 5, 5\)"),
        ((2, 4, 5, 6), r"grad_out must have shape \(2, 3, 5, 6\)"),
        ((1, 3, 5, 6), r"grad_out must have shape \(2, 3, 5, 6\)"),
        ((3, 5, 6), r"grad_out must have shape"),
    ],
)
def test_grad_out_shape(shape, pattern):
    a = _arrays()
    with pytest.raises(ValueError, match=pattern):
        conv_transpose2d_backward(np.ones(shape), a["x"], a["weight"])
    with pytest.raises(TypeError, match=r"\bgrad_out\b.*float32"):
        conv_transpose2d_backward(np.ones((2, 3, 5, 6), np.float32), a["x"], a["weight"])


@pytest.mark.parametrize(
    ("stride", "output_padding", "dilation"),
    [(2, 2, 1), (1, 1, 1), (2, (0, 2), 2), (3, (1, 3), (1, 3))],
)
def test_output_padding_rule_matches_torch(stride, output_padding, dilation):
    torch = torch_or_skip()
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    with pytest.raises(RuntimeError, match="output padding"):
        torch.nn.functional.conv_transpose2d(
            torch.tensor(x),
            torch.tensor(w),
            stride=stride,
            output_padding=output_padding,
            dilation=dilation,
        )
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose2d(x, w, stride=stride, output_padding=output_padding, dilation=dilation)


# --------------------------------------------------------------------------
# The layers
# --------------------------------------------------------------------------

LAYER_OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"stride": 2, "padding": 1, "output_padding": 1}, id="upsample"),
    pytest.param(
        {"stride": (1, 2), "padding": (1, 0, 0, 2), "dilation": 2, "output_padding": 1},
        id="asymmetric-dilated",
    ),
    pytest.param({"groups": 2, "stride": 2}, id="grouped"),
    pytest.param({"stride": 2, "padding": 1, "layout": "NHWC"}, id="nhwc"),
    pytest.param({"dilation": 2, "output_padding": 1, "layout": "HWCN"}, id="matlab-order"),
]


def _layer_arrays(groups=1, n=2, seed=0, size=(4, 3), kernel=(3, 2)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, *size))
    w = rng.standard_normal((4, 6 // groups, *kernel))
    b = rng.standard_normal(6)
    return x, w, b


def _naive_options(options, nd):
    return dict(
        stride=per_axis(options.get("stride", 1), nd),
        padding=sides(options.get("padding", 0), nd),
        output_padding=per_axis(options.get("output_padding", 0), nd),
        dilation=per_axis(options.get("dilation", 1), nd),
        groups=options.get("groups", 1),
    )


def _check_layer(layer_cls, options, x, w, b, assert_close):
    """Layer forward/backward == the functions (bitwise) and naive; ``x`` channels-first."""
    nd = w.ndim - 2
    letters = options.get("layout", "channels_first")
    xl = to_layout(x, letters)
    layer = layer_cls(w, b, **options)
    y = layer.forward(xl)
    assert layer.input is not xl  # the layer caches a copy
    np.testing.assert_array_equal(layer.input, xl)
    np.testing.assert_array_equal(y, FORWARD[nd](xl, w, b, **options))
    np.testing.assert_array_equal(layer(xl), y)  # __call__ is forward
    assert_close(
        from_layout(y, letters), naive.conv_transpose(x, w, b, **_naive_options(options, nd))
    )
    g = np.random.default_rng(1).standard_normal(y.shape)
    grads = layer.backward(g)
    want = naive.conv_transpose_backward(
        from_layout(g, letters), x, w, **_naive_options(options, nd)
    )
    for got, fn, ref, name in zip(
        grads, BACKWARD[nd](g, xl, w, **options), want, ("dx", "dw", "db"), strict=True
    ):
        np.testing.assert_array_equal(got, fn, err_msg=name)
        if name == "dx":
            got = from_layout(got, letters)
        assert_close(got, ref, err_msg=name)


@pytest.mark.parametrize("options", LAYER_OPTIONS)
def test_layer_forward_backward(options, assert_close):
    x, w, b = _layer_arrays(options.get("groups", 1))
    _check_layer(ConvTranspose2D, options, x, w, b, assert_close)


@pytest.mark.parametrize(
    ("nd", "options"),
    [
        (1, {}),
        (1, {"stride": 3, "padding": (2, 0), "output_padding": 2, "groups": 2}),
        (1, {"dilation": 3, "output_padding": 2, "layout": "NWC"}),
        (1, {"stride": 2, "layout": "channels_last"}),
        (3, {}),
        (
            3,
            {"stride": (2, 1, 2), "padding": ((1, 0), (0, 1), (1, 1)), "output_padding": (1, 0, 1)},
        ),
        (3, {"dilation": 2, "output_padding": (1, 0, 1), "groups": 2, "layout": "NDHWC"}),
        (3, {"stride": 2, "layout": "DHWCN"}),
    ],
)
def test_layers_1d_3d(nd, options, assert_close):
    size, kernel = {1: ((5,), (3,)), 3: ((3, 2, 3), (2, 3, 2))}[nd]
    x, w, b = _layer_arrays(options.get("groups", 1), size=size, kernel=kernel)
    _check_layer(LAYERS[nd], options, x, w, b, assert_close)


def test_layer_rank_is_checked():
    x, w, b = _layer_arrays()
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, C_in, W\)"):
        ConvTranspose1D(w[..., 0], b)(x)
    with pytest.raises(ValueError, match=r"x must be 5-D \(N, C_in, D, H, W\)"):
        ConvTranspose3D(w[..., None], b)(x)


def test_layer_backward_before_forward_raises():
    _, w, b = _layer_arrays()
    for layer in (ConvTranspose2D(w, b), ConvTranspose1D(w[..., 0], b)):
        name = type(layer).__name__
        with pytest.raises(RuntimeError, match=rf"{name}\.backward.*forward"):
            layer.backward(np.ones((2, 6, 6, 4)))


def test_layer_failed_forward_caches_nothing():
    x, w, b = _layer_arrays()
    layer = ConvTranspose2D(w, b)
    with pytest.raises(ValueError, match=r"\bx\b"):
        layer.forward(x[:, :3])
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 6, 6, 4)))


def test_layer_second_forward_replaces_the_cache(assert_close):
    x1, w, _ = _layer_arrays(seed=0)
    x2, _, _ = _layer_arrays(seed=7, n=1)
    layer = ConvTranspose2D(w, None, stride=2)
    layer.forward(x1)
    y2 = layer.forward(x2)
    np.testing.assert_array_equal(layer.input, x2)  # a copy of x2
    g = np.ones_like(y2)
    dx, dw, db = layer.backward(g)
    want = naive.conv_transpose_backward(g, x2, w, (2, 2), (0,) * 4, (0, 0), (1, 1), 1)
    for got, ref in zip((dx, dw, db), want, strict=True):
        assert_close(got, ref)
    with pytest.raises(ValueError, match="grad_out"):
        layer.backward(np.ones((2, *y2.shape[1:])))


def test_layer_float32_and_repr():
    x, w, b = (a.astype(np.float32) for a in _layer_arrays())
    layer = ConvTranspose2D(w, b, stride=2, output_padding=1, backend="array_api")
    y = layer(x)
    assert y.dtype == np.float32
    assert all(a.dtype == np.float32 for a in layer.backward(np.ones_like(y)))
    assert repr(layer) == (
        "ConvTranspose2D(weight_shape=(4, 6, 3, 2), bias=True, stride=2, padding=0, "
        "output_padding=1, groups=1, dilation=1)"
    )
    assert repr(ConvTranspose1D(w[..., 0], None, layout="NWC")) == (
        "ConvTranspose1D(weight_shape=(4, 6, 3), bias=False, stride=1, padding=0, "
        "output_padding=0, groups=1, dilation=1, layout='NWC')"
    )
    assert repr(ConvTranspose3D(w[..., None], b, dilation=(1, 2, 1))).startswith(
        "ConvTranspose3D(weight_shape=(4, 6, 3, 2, 1), bias=True, stride=1,"
    )


def test_table_geometry():
    """The table's geometry: out_size from PyTorch's formula, windows >= input size."""
    for case in ALL_CASES:
        r = case.resolved()
        for i in range(case.nd):
            s, d, k, op = r["stride"][i], r["dilation"][i], case.kernel[i], r["output_padding"][i]
            before, after = r["padding"][2 * i], r["padding"][2 * i + 1]
            size = (case.size[i] - 1) * s - before - after + d * (k - 1) + op + 1
            assert case.out_size[i] == size, case.id
            assert case.windows[i] == case.size[i] + op // s, case.id
            assert op < s or op < d, case.id
        assert math.prod(case.out_size) > 0
