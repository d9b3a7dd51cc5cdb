"""conv_transpose2d and its gradients: a naive scatter loop, the adjoint identity and torch.

The oracle below shares no code with im2col / col2im nor with convcore: it scatters
every input pixel through every kernel tap onto the output pixel it lands on,

    out[n, g*cog + co, i*s - top + kh*d, j*s - left + kw*d] += x[n, ci, i, j] * w[ci, co, kh, kw]

(``ci`` in group ``g``), and its gradients are the same loops read the other way.
The loop gradients are checked by finite differences, the oracle by the adjoint
identity against ``tests/reference.py``'s direct conv2d and, when PyTorch is
installed, against ``torch.nn.functional.conv_transpose2d`` and autograd.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from reference import conv2d_ref

import convcore
from convcore.transpose import (
    ConvTranspose2D,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose_output_size,
)


@pytest.fixture(autouse=True)
def no_selection_state(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    convcore.set_backend(None)


# --------------------------------------------------------------------------
# The naive oracle: scatter per input pixel and kernel tap
# --------------------------------------------------------------------------


def pair(value):
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def padding4(padding):
    """Any accepted padding form as ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        assert padding == "valid", padding
        return (0, 0, 0, 0)
    if isinstance(padding, int):
        return (padding,) * 4
    padding = list(padding)
    if len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        return (*padding[0], *padding[1])
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    assert len(padding) == 4, padding
    return tuple(padding)


def ref_output_size(input_size, kernel, stride, pad4, output_padding, dilation):
    """``(H - 1)*s - top - bottom + d*(K - 1) + output_padding + 1`` per axis."""
    sizes = []
    for axis in range(2):
        size, k = input_size[axis], kernel[axis]
        s, d, op = pair(stride)[axis], pair(dilation)[axis], pair(output_padding)[axis]
        sizes.append((size - 1) * s - pad4[2 * axis] - pad4[2 * axis + 1] + d * (k - 1) + op + 1)
    return tuple(sizes)


def _scatter_taps(input_size, kernel, stride, pad4, out_size, dilation):
    """Yield ``(i, j, kh, kw, oi, oj)`` for every input pixel and tap landing in the output."""
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    for i in range(input_size[0]):
        for j in range(input_size[1]):
            for kh in range(kernel[0]):
                for kw in range(kernel[1]):
                    oi, oj = i * sh - pad4[0] + kh * dh, j * sw - pad4[2] + kw * dw
                    if 0 <= oi < out_size[0] and 0 <= oj < out_size[1]:
                        yield i, j, kh, kw, oi, oj


def conv_transpose2d_ref(
    x, w, b=None, stride=1, pad4=(0, 0, 0, 0), output_padding=0, dilation=1, groups=1
):
    """PyTorch ``conv_transpose2d`` by direct scatter, float64 (batch and channels vectorised)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C_in, H, W = x.shape
    _, cog, KH, KW = w.shape
    cig = C_in // groups
    out_size = ref_output_size((H, W), (KH, KW), stride, pad4, output_padding, dilation)
    out = np.zeros((N, groups, cog, *out_size))
    xg = x.reshape(N, groups, cig, H, W)
    wg = w.reshape(groups, cig, cog, KH, KW)
    for i, j, kh, kw, oi, oj in _scatter_taps((H, W), (KH, KW), stride, pad4, out_size, dilation):
        out[:, :, :, oi, oj] += np.einsum("ngc,gco->ngo", xg[:, :, :, i, j], wg[:, :, :, kh, kw])
    out = out.reshape(N, groups * cog, *out_size)
    if b is not None:
        out += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return out


def conv_transpose2d_backward_ref(
    g, x, w, stride=1, pad4=(0, 0, 0, 0), output_padding=0, dilation=1, groups=1
):
    """``(dx, dw, db)`` of ``sum(conv_transpose2d_ref(x, w, b) * g)`` by the same loops."""
    g = np.asarray(g, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C_in, H, W = x.shape
    _, cog, KH, KW = w.shape
    cig = C_in // groups
    out_size = g.shape[2:]
    gg = g.reshape(N, groups, cog, *out_size)
    xg = x.reshape(N, groups, cig, H, W)
    wg = w.reshape(groups, cig, cog, KH, KW)
    dx = np.zeros_like(xg)
    dwg = np.zeros_like(wg)
    for i, j, kh, kw, oi, oj in _scatter_taps((H, W), (KH, KW), stride, pad4, out_size, dilation):
        dx[:, :, :, i, j] += np.einsum("ngo,gco->ngc", gg[:, :, :, oi, oj], wg[:, :, :, kh, kw])
        dwg[:, :, :, kh, kw] += np.einsum("ngc,ngo->gco", xg[:, :, :, i, j], gg[:, :, :, oi, oj])
    return dx.reshape(x.shape), dwg.reshape(w.shape), g.sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TCase:
    """One transposed-convolution problem; options as passed to convcore."""

    id: str
    N: int
    C_in: int
    H: int
    W: int
    C_out: int
    kernel: tuple[int, int]
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    dilation: object = 1
    groups: int = 1

    @property
    def pad4(self):
        return padding4(self.padding)

    @property
    def out_size(self):
        return ref_output_size(
            (self.H, self.W),
            self.kernel,
            self.stride,
            self.pad4,
            self.output_padding,
            self.dilation,
        )

    @property
    def x_shape(self):
        return (self.N, self.C_in, self.H, self.W)

    @property
    def w_shape(self):
        return (self.C_in, self.C_out // self.groups, *self.kernel)

    @property
    def out_shape(self):
        return (self.N, self.C_out, *self.out_size)

    @property
    def extra_rows(self):
        """Whether output_padding reaches past what stride allows (dilation's allowance)."""
        return any(op >= s for op, s in zip(pair(self.output_padding), pair(self.stride)))

    def ref_kwargs(self):
        return dict(
            stride=self.stride,
            pad4=self.pad4,
            output_padding=self.output_padding,
            dilation=self.dilation,
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


CASES = [
    TCase("basic3x3", 2, 3, 4, 5, 2, (3, 3)),
    TCase("s2_p1_op1", 2, 2, 3, 4, 3, (3, 3), stride=2, padding=1, output_padding=1),
    TCase("s3_op2", 1, 2, 3, 3, 2, (3, 3), stride=3, output_padding=2),
    TCase("s2_k2_no_overlap", 2, 2, 3, 2, 2, (2, 2), stride=2),
    TCase("stride_gt_kernel", 1, 2, 3, 4, 2, (2, 2), stride=3, output_padding=(2, 1)),
    TCase(
        "per_axis_stride",
        2,
        2,
        3,
        4,
        3,
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
        output_padding=(1, 2),
    ),
    TCase("asym_pad_4", 2, 2, 4, 3, 2, (3, 3), stride=2, padding=(0, 2, 1, 3), output_padding=1),
    TCase("asym_pad_pairs", 1, 2, 4, 3, 2, (2, 3), stride=(1, 2), padding=((1, 0), (2, 1))),
    TCase("valid", 1, 2, 3, 4, 2, (2, 3), stride=2, padding="valid"),
    TCase("dilation2", 2, 2, 4, 4, 2, (3, 3), padding=1, dilation=2),
    TCase("op_ge_stride_by_dilation", 1, 2, 3, 4, 2, (3, 2), dilation=2, output_padding=1),
    TCase(
        "dilation_rect_op",
        2,
        2,
        3,
        4,
        2,
        (2, 3),
        stride=(1, 2),
        padding=(1, 0, 2, 1),
        output_padding=(1, 2),
        dilation=(2, 3),
    ),
    TCase("dilation3_op2", 1, 1, 3, 3, 2, (2, 2), dilation=3, output_padding=2),
    TCase("groups2", 2, 4, 3, 4, 6, (3, 3), stride=2, padding=1, groups=2),
    TCase(
        "groups3_strided",
        1,
        6,
        3,
        3,
        3,
        (2, 3),
        stride=2,
        padding=(1, 0),
        output_padding=1,
        groups=3,
    ),
    TCase("depthwise", 2, 3, 4, 4, 3, (3, 3), padding=1, groups=3),
    TCase(
        "depthwise_multiplier2",
        1,
        4,
        3,
        3,
        8,
        (3, 2),
        stride=2,
        padding=(0, 1, 1, 0),
        output_padding=1,
        groups=4,
    ),
    TCase("pointwise_1x1", 2, 3, 3, 4, 4, (1, 1)),
    TCase("1x1_s2_op1", 1, 2, 3, 3, 2, (1, 1), stride=2, output_padding=1),
    TCase("padding_crops", 1, 2, 5, 6, 2, (3, 3), padding=2),
    TCase("single_pixel", 2, 2, 1, 1, 3, (3, 4)),
    TCase("kernel_larger_than_input", 1, 2, 2, 3, 2, (4, 5), stride=2, padding=1),
]

case_param = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def case_inputs(case, dtype, seed=0):
    """Deterministic ``(x, w, b, g)`` for ``case``; ``g`` has the output's shape."""
    rng = np.random.default_rng([seed, sum(map(ord, case.id))])
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.C_out).astype(dtype)
    g = rng.standard_normal(case.out_shape).astype(dtype)
    return x, w, b, g


@functools.cache
def expected(case, dtype_name):
    x, w, b, g = case_inputs(case, np.dtype(dtype_name))
    dx, dw, db = conv_transpose2d_backward_ref(g, x, w, **case.ref_kwargs())
    return {
        "out": conv_transpose2d_ref(x, w, b, **case.ref_kwargs()),
        "out_nobias": conv_transpose2d_ref(x, w, None, **case.ref_kwargs()),
        "dx": dx,
        "dw": dw,
        "db": db,
    }


def skip_slow_dask(ns, dtype):
    """Dask builds a task graph per slice-add: run it in float64 only (float32 runs elsewhere)."""
    if ns.name == "dask" and dtype != np.float64:
        pytest.skip("dask runs the cases in float64 only, to keep this file fast")


def check_output(ns, out, like, shape):
    assert ns.is_native(out), f"expected a {ns.name} array, got {type(out).__name__}"
    assert out.dtype == like.dtype, (out.dtype, like.dtype)
    assert tuple(out.shape) == tuple(shape)


def assert_unchanged(ns, arrays, originals):
    for arr, orig in zip(arrays, originals, strict=True):
        np.testing.assert_array_equal(ns.to_numpy(arr), orig)


# --------------------------------------------------------------------------
# The oracle itself: finite differences and the adjoint of the direct conv2d
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in ("s2_p1_op1", "dilation_rect_op", "groups3_strided")],
    ids=lambda c: c.id,
)
def test_reference_gradients_by_finite_differences(case):
    x, w, b, g = case_inputs(case, np.float64)
    kw = case.ref_kwargs()

    def loss(x, w, b):
        return float(np.vdot(conv_transpose2d_ref(x, w, b, **kw), g))

    dx, dw, db = conv_transpose2d_backward_ref(g, x, w, **kw)
    rng = np.random.default_rng(5)
    # The loss is linear in each argument: a central difference is exact up to rounding.
    eps = 0.5
    for grad, arg in ((dx, 0), (dw, 1), (db, 2)):
        args = [x, w, b]
        for flat in rng.choice(args[arg].size, size=min(6, args[arg].size), replace=False):
            idx = np.unravel_index(flat, args[arg].shape)
            plus, minus = args[arg].copy(), args[arg].copy()
            plus[idx] += eps
            minus[idx] -= eps
            up = loss(*[plus if k == arg else a for k, a in enumerate(args)])
            down = loss(*[minus if k == arg else a for k, a in enumerate(args)])
            assert (up - down) / (2 * eps) == pytest.approx(grad[idx], rel=1e-9, abs=1e-9)


@case_param
def test_reference_is_adjoint_of_direct_conv2d(case):
    """<conv_transpose(x), y> == <x, conv2d(y)>: the oracle against reference.conv2d_ref."""
    x, w, _, g = case_inputs(case, np.float64)
    lhs = np.vdot(conv_transpose2d_ref(x, w, **case.ref_kwargs()), g)
    conv = conv2d_ref(
        g, w, stride=case.stride, padding=case.pad4, dilation=case.dilation, groups=case.groups
    )
    # With output_padding >= stride the convolution has extra output rows/columns:
    # they pair with no pixel of x.
    rhs = np.vdot(x, conv[:, :, : case.H, : case.W])
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------
# convcore against the oracle: every backend x namespace x dtype
# --------------------------------------------------------------------------


@case_param
def test_forward(case, backend, ns, dtype, assert_close):
    backend.require("col2im", ns=ns, dtype=dtype)
    skip_slow_dask(ns, dtype)
    x, w, b, _ = case_inputs(case, dtype)
    xa, wa, ba = ns.asarray(x), ns.asarray(w), ns.asarray(b)
    out = conv_transpose2d(xa, wa, ba, backend=backend.name, **case.api_kwargs())
    check_output(ns, out, xa, case.out_shape)
    assert_close(ns.to_numpy(out), expected(case, dtype.name)["out"])
    assert_unchanged(ns, (xa, wa, ba), (x, w, b))


@case_param
def test_forward_without_bias(case, backend, np_ns, assert_close):
    backend.require("col2im", ns=np_ns, dtype=np.float64)
    x, w, _, _ = case_inputs(case, np.float64)
    out = conv_transpose2d(x, w, backend=backend.name, **case.api_kwargs())
    assert_close(out, expected(case, "float64")["out_nobias"])


@case_param
def test_backward(case, backend, ns, dtype, assert_close):
    backend.require("conv", "im2col", ns=ns, dtype=dtype)
    skip_slow_dask(ns, dtype)
    x, w, _, g = case_inputs(case, dtype)
    ga, xa, wa = ns.asarray(g), ns.asarray(x), ns.asarray(w)
    dx, dw, db = conv_transpose2d_backward(ga, xa, wa, backend=backend.name, **case.api_kwargs())
    check_output(ns, dx, xa, case.x_shape)
    check_output(ns, dw, xa, case.w_shape)
    check_output(ns, db, xa, (case.C_out,))
    ref = expected(case, dtype.name)
    assert_close(ns.to_numpy(dx), ref["dx"], err_msg="dx")
    assert_close(ns.to_numpy(dw), ref["dw"], err_msg="dw")
    assert_close(ns.to_numpy(db), ref["db"], err_msg="db")
    assert_unchanged(ns, (ga, xa, wa), (g, x, w))


@case_param
def test_adjoint_identity(case, backend, ns):
    """<conv_transpose2d(x), y> == <x, conv2d(y)> with the same weight and options."""
    dtype = np.dtype(np.float64)
    backend.require("col2im", "conv", ns=ns, dtype=dtype)
    x, w, _, g = case_inputs(case, dtype, seed=3)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation)
    wa = ns.asarray(w)
    out = ns.to_numpy(
        conv_transpose2d(
            ns.asarray(x),
            wa,
            output_padding=case.output_padding,
            groups=case.groups,
            backend=backend.name,
            **kw,
        )
    )
    conv = ns.to_numpy(
        convcore.conv2d(ns.asarray(g), wa, groups=case.groups, backend=backend.name, **kw)
    )
    # With output_padding >= stride the convolution has extra output rows/columns
    # (they pair with no pixel of x); otherwise it gives back x's shape exactly.
    assert conv.shape[:2] == x.shape[:2]
    assert conv.shape[2] >= case.H and conv.shape[3] >= case.W
    assert (conv.shape == x.shape) == (not case.extra_rows)
    lhs = np.vdot(out, g)
    rhs = np.vdot(x, conv[:, :, : case.H, : case.W])
    scale = np.vdot(np.abs(out), np.abs(g)) + 1.0
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


@case_param
def test_forward_is_the_input_gradient_of_conv2d(case, backend, np_ns, assert_close):
    """conv_transpose2d(y, w) == conv2d_backward(y, x, w)[0] for x of the output's size."""
    if case.extra_rows:
        pytest.skip("output_padding >= stride: no conv2d of the output's size gives back (H, W)")
    backend.require("col2im", "conv_backward", ns=np_ns, dtype=np.float64)
    x, w, _, _ = case_inputs(case, np.float64)
    out = conv_transpose2d(x, w, backend=backend.name, **case.api_kwargs())
    dx, _, _ = convcore.conv2d_backward(
        x,
        np.zeros(out.shape),
        w,
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
        backend=backend.name,
    )
    assert_close(out, dx)


def test_output_padding_rows_hold_the_bias_and_are_not_read_back(backend, np_ns):
    """Rows/columns that output_padding adds past the reach of every tap: bias only.

    Their entries of ``grad_out`` change ``db`` but neither ``dx`` nor ``dw``: the
    forward conv2d that computes ``dx`` never reads them.
    """
    backend.require("col2im", "conv", "im2col", ns=np_ns, dtype=np.float64)
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


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.id in ("s2_p1_op1", "dilation_rect_op")], ids=lambda c: c.id
)
def test_empty_batch(case, backend, ns, dtype):
    backend.require("col2im", "conv", "im2col", ns=ns, dtype=dtype)
    x, w, b, g = case_inputs(case, dtype)
    x0, g0, wa, ba = ns.asarray(x[:0]), ns.asarray(g[:0]), ns.asarray(w), ns.asarray(b)
    kw = dict(backend=backend.name, **case.api_kwargs())
    out = conv_transpose2d(x0, wa, ba, **kw)
    check_output(ns, out, x0, (0, *case.out_shape[1:]))
    dx, dw, db = conv_transpose2d_backward(g0, x0, wa, **kw)
    check_output(ns, dx, x0, (0, *case.x_shape[1:]))
    check_output(ns, dw, x0, case.w_shape)
    check_output(ns, db, x0, (case.C_out,))
    np.testing.assert_array_equal(ns.to_numpy(dw), 0)
    np.testing.assert_array_equal(ns.to_numpy(db), 0)


@pytest.mark.parametrize("ns_name", ["numpy", "torch"])
def test_noncontiguous_inputs(ns_name, backend, make_ns, assert_close):
    """Views with swapped strides (and a strided bias) give the same results."""
    ns = make_ns(ns_name)
    backend.require("col2im", "conv", "im2col", ns=ns, dtype=np.float64)
    case = next(c for c in CASES if c.id == "dilation_rect_op")
    x, w, b, g = case_inputs(case, np.float64)
    ref = expected(case, "float64")

    def nc(a):
        t = ns.asarray(a)
        if a.ndim == 1:
            return t.repeat_interleave(2)[::2] if ns_name == "torch" else np.repeat(t, 2)[::2]
        if ns_name == "torch":
            return t.transpose(-1, -2).contiguous().transpose(-1, -2)
        return np.ascontiguousarray(np.swapaxes(t, -1, -2)).swapaxes(-1, -2)

    xn, wn, bn, gn = map(nc, (x, w, b, g))
    kw = dict(backend=backend.name, **case.api_kwargs())
    assert_close(ns.to_numpy(conv_transpose2d(xn, wn, bn, **kw)), ref["out"])
    grads = conv_transpose2d_backward(gn, xn, wn, **kw)
    for got, name in zip(grads, ("dx", "dw", "db"), strict=True):
        assert_close(ns.to_numpy(got), ref[name], err_msg=name)


@pytest.mark.parametrize(
    ("input_size", "kernel", "options", "size"),
    [
        ((4, 4), 3, dict(stride=2, padding=1, output_padding=1), (8, 8)),
        ((5, 6), (3, 2), dict(stride=(2, 3), padding=(1, 2, 0, 1)), (8, 16)),
        ((3, 3), 2, dict(dilation=3, output_padding=2), (8, 8)),
        ((2, 2), 1, dict(padding="valid"), (2, 2)),
        ((3, 4), 4, dict(padding=((1, 0), (0, 2))), (5, 5)),
    ],
)
def test_output_size(input_size, kernel, options, size):
    assert conv_transpose_output_size(input_size, kernel, **options) == size


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in ("s2_p1_op1", "dilation_rect_op", "groups3_strided")],
    ids=lambda c: c.id,
)
def test_cupy_arrays(case, dtype, assert_close):
    """CuPy arrays through the cupy backend's col2im, conv and im2col (needs a GPU)."""
    info = {i.name: i for i in convcore.available_backends()}.get("cupy")
    if info is None or not info.available:
        pytest.skip(f"cupy backend unavailable: {info.reason if info else 'not installed'}")
    cp = pytest.importorskip("cupy")
    x, w, b, g = case_inputs(case, dtype)
    xa, wa, ba, ga = (cp.asarray(a) for a in (x, w, b, g))
    kw = dict(backend="cupy", **case.api_kwargs())
    out = conv_transpose2d(xa, wa, ba, **kw)
    assert isinstance(out, cp.ndarray) and out.dtype == xa.dtype
    ref = expected(case, dtype.name)
    assert_close(cp.asnumpy(out), ref["out"])
    grads = conv_transpose2d_backward(ga, xa, wa, **kw)
    for got, name in zip(grads, ("dx", "dw", "db"), strict=True):
        assert isinstance(got, cp.ndarray) and got.dtype == xa.dtype, name
        assert_close(cp.asnumpy(got), ref[name], err_msg=name)


# --------------------------------------------------------------------------
# Backend selection: the keyword is honoured, no silent fallback
# --------------------------------------------------------------------------


def test_backend_that_cannot_take_the_namespace_raises(backend, make_ns):
    strict = make_ns("array_api_strict")
    if backend.supports(ns=strict) is None:
        pytest.skip(f"backend {backend.name!r} accepts array_api_strict arrays")
    case = CASES[1]
    x, w, b, g = (strict.asarray(a) for a in case_inputs(case, np.float64))
    kw = dict(backend=backend.name, **case.api_kwargs())
    with pytest.raises(convcore.BackendCapabilityError, match=backend.name):
        conv_transpose2d(x, w, b, **kw)
    with pytest.raises(convcore.BackendCapabilityError, match=backend.name):
        conv_transpose2d_backward(g, x, w, **kw)


def test_unknown_backend_keyword():
    x, w, b, g = case_inputs(CASES[0], np.float64)
    with pytest.raises(convcore.UnknownBackendError, match="no_such_backend"):
        conv_transpose2d(x, w, b, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError, match="no_such_backend"):
        conv_transpose2d_backward(g, x, w, backend="no_such_backend")


def test_context_backend_is_used(monkeypatch):
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
    case = CASES[1]
    x, w, b, g = case_inputs(case, np.float64)
    with convcore.use_backend("array_api"):
        conv_transpose2d(x, w, b, **case.api_kwargs())
        conv_transpose2d_backward(g, x, w, **case.api_kwargs())
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
        {"groups": 2, "weight": np.zeros((4, 3, 3, 3)), "bias": np.zeros(3)},
        ValueError,
        r"\bbias\b.*\(6,\)",
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
        r"\boutput_padding\b",
        id="output_padding-ge-both",
    ),
    pytest.param({"output_padding": -1}, ValueError, r"\boutput_padding\b", id="op-negative"),
    pytest.param({"output_padding": 0.5}, TypeError, r"\boutput_padding\b", id="op-float"),
    pytest.param(
        {"output_padding": (0, 0, 0)}, ValueError, r"\boutput_padding\b", id="op-length-3"
    ),
    pytest.param({"padding": "same"}, ValueError, r"\bpadding\b.*'same'", id="padding-same"),
    pytest.param({"padding": -1}, ValueError, r"\bpadding\b.*-1", id="padding-negative"),
    pytest.param(
        {"padding": (3, 0)}, ValueError, r"\bpadding\b.*height.*-1", id="padding-crops-all"
    ),
    pytest.param({"padding": (1, 2, 3)}, ValueError, r"\bpadding\b", id="padding-length-3"),
    pytest.param({"stride": 0}, ValueError, r"\bstride\b.*0", id="stride-0"),
    pytest.param({"dilation": (1, 0)}, ValueError, r"\bdilation\b", id="dilation-0"),
    pytest.param({"stride": "2"}, TypeError, r"\bstride\b", id="stride-str"),
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


def _strict_weight():
    xps = pytest.importorskip("array_api_strict")
    return xps.zeros((4, 3, 3, 3), dtype=xps.float64)


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


def test_namespace_mismatch():
    a = _arrays()
    with pytest.raises(TypeError, match=r"\bweight\b.*array_api_strict.*numpy"):
        conv_transpose2d(a["x"], _strict_weight(), None)


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


# --------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------

LAYER_OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"stride": 2, "padding": 1, "output_padding": 1}, id="upsample"),
    pytest.param(
        {"stride": (1, 2), "padding": (1, 0, 0, 2), "dilation": 2, "output_padding": 1},
        id="asymmetric-dilated",
    ),
    pytest.param({"groups": 2, "stride": 2}, id="grouped"),
]


def _layer_arrays(groups=1, n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 4, 3))
    w = rng.standard_normal((4, 6 // groups, 3, 2))
    b = rng.standard_normal(6)
    return x, w, b


def _ref_options(options):
    return {
        "stride": options.get("stride", 1),
        "pad4": padding4(options.get("padding", 0)),
        "output_padding": options.get("output_padding", 0),
        "dilation": options.get("dilation", 1),
        "groups": options.get("groups", 1),
    }


@pytest.mark.parametrize("options", LAYER_OPTIONS)
def test_layer_forward_backward(options, assert_close):
    x, w, b = _layer_arrays(options.get("groups", 1))
    layer = ConvTranspose2D(w, b, **options)
    y = layer.forward(x)
    assert layer.input is x
    np.testing.assert_array_equal(y, conv_transpose2d(x, w, b, **options))
    np.testing.assert_array_equal(layer(x), y)  # __call__ is forward
    assert_close(y, conv_transpose2d_ref(x, w, b, **_ref_options(options)))
    g = np.random.default_rng(1).standard_normal(y.shape)
    grads = layer.backward(g)
    for got, want, ref, name in zip(
        grads,
        conv_transpose2d_backward(g, x, w, **options),
        conv_transpose2d_backward_ref(g, x, w, **_ref_options(options)),
        ("dx", "dw", "db"),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert_close(got, ref, err_msg=name)


def test_layer_backward_before_forward_raises():
    _, w, b = _layer_arrays()
    layer = ConvTranspose2D(w, b)
    with pytest.raises(RuntimeError, match=r"ConvTranspose2D\.backward.*forward"):
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
    assert layer.input is x2
    g = np.ones_like(y2)
    dx, dw, db = layer.backward(g)
    for got, ref in zip(
        (dx, dw, db), conv_transpose2d_backward_ref(g, x2, w, stride=2), strict=True
    ):
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


# --------------------------------------------------------------------------
# PyTorch as a second oracle
# --------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def torch_conv_transpose_and_grads(case, x, w, b, g):
    """torch forward and autograd ``(dx, dw, db)``; asymmetric padding by cropping.

    torch takes one padding per axis, so the transposed convolution runs with
    ``padding=0`` and the result is cropped by ``(top, bottom, left, right)``.
    """
    torch = _torch()
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    full = torch.nn.functional.conv_transpose2d(
        xt,
        wt,
        bt,
        stride=case.stride,
        output_padding=case.output_padding,
        groups=case.groups,
        dilation=case.dilation,
    )
    top, bottom, left, right = case.pad4
    y = full[:, :, top : full.shape[2] - bottom, left : full.shape[3] - right]
    (y * torch.tensor(g)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@case_param
def test_reference_agrees_with_torch(case, assert_close):
    x, w, b, g = case_inputs(case, np.float64)
    y, dx, dw, db = torch_conv_transpose_and_grads(case, x, w, b, g)
    ref = expected(case, "float64")
    assert_close(ref["out"], y)
    for name, want in (("dx", dx), ("dw", dw), ("db", db)):
        assert_close(ref[name], want, err_msg=name)


#: Symmetric-padding cases torch takes as they are (the oracle covers all of CASES).
TORCH_DIRECT = [
    c
    for c in CASES
    if c.id
    in (
        "basic3x3",
        "s2_p1_op1",
        "s3_op2",
        "op_ge_stride_by_dilation",
        "dilation3_op2",
        "groups2",
        "depthwise",
        "padding_crops",
    )
]


@pytest.mark.parametrize("case", TORCH_DIRECT, ids=lambda c: c.id)
@pytest.mark.parametrize("ns_name", ["numpy", "torch"])
def test_matches_torch_directly(case, ns_name, backend, dtype, make_ns, assert_close):
    """Against torch's own padding argument (symmetric padding), forward and autograd."""
    torch = _torch()
    ns = make_ns(ns_name)
    backend.require("col2im", "conv", "im2col", ns=ns, dtype=dtype)
    x, w, b, g = case_inputs(case, dtype, seed=1)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, **case.api_kwargs())
    (yt * torch.tensor(g)).sum().backward()
    xa, wa, ba, ga = map(ns.asarray, (x, w, b, g))
    kw = dict(backend=backend.name, **case.api_kwargs())
    out = conv_transpose2d(xa, wa, ba, **kw)
    check_output(ns, out, xa, tuple(yt.shape))
    assert_close(ns.to_numpy(out), yt.detach().numpy(), dtype)
    grads = conv_transpose2d_backward(ga, xa, wa, **kw)
    for got, want, name in zip(grads, (xt.grad, wt.grad, bt.grad), ("dx", "dw", "db"), strict=True):
        assert ns.is_native(got) and got.dtype == xa.dtype, name
        assert_close(ns.to_numpy(got), want.numpy(), dtype, err_msg=name)


@pytest.mark.parametrize(
    ("stride", "output_padding", "dilation"), [(2, 2, 1), (1, 1, 1), (2, (0, 2), 2)]
)
def test_output_padding_rule_matches_torch(stride, output_padding, dilation):
    torch = _torch()
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


@pytest.mark.parametrize("be", ["numpy", "array_api", "numba"])
def test_float16_is_computed_in_float32_and_rounded_once(be, monkeypatch):
    """float16 runs in float32 where the backend does not declare it (as for conv)."""
    from convcore._dispatch import Plan

    seen = []
    real_col2im = Plan.col2im

    def spy(self, xp, cols, geom):
        seen.append(cols.dtype)
        return real_col2im(self, xp, cols, geom)

    monkeypatch.setattr(Plan, "col2im", spy)
    # one output pixel sums 4097 products: float16 accumulation would stall at 2048 + 2048
    x = np.ones((1, 4097, 1, 1), np.float16)
    x[0, 0] = 2048
    w = np.ones((4097, 1, 1, 1), np.float16)
    y = conv_transpose2d(x, w, backend=be)
    assert y.dtype == np.float16
    assert seen == [np.float32]  # the columns (the GEMM's result) are float32
    assert float(y[0, 0, 0, 0]) == float(np.float16(2048 + 4096))
    dx, dw, db = conv_transpose2d_backward(np.ones_like(y), x, w, backend=be)
    assert (dx.dtype, dw.dtype, db.dtype) == (np.float16,) * 3
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    y = conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, backend=be)
    want = conv_transpose2d(
        x.astype(np.float64), w.astype(np.float64), stride=2, padding=1, output_padding=1
    )
    np.testing.assert_allclose(
        y.astype(np.float64), want, rtol=1e-3, atol=1e-3 * np.abs(want).max()
    )
