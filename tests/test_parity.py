"""Every backend x namespace x dtype against the naive loop oracle (``tests/naive.py``)."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from cases import CASES, case_inputs, expected, expected_conv, resolve_padding
from helpers import assert_unchanged, check_output, noncontiguous

import convcore
from conftest import NAMESPACES

case_param = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)

#: The cases JAX is fed by the tests over every case (why: ``conftest.JAX_SUBSET_REASON``):
#: per-axis strides, padding as pairs and as four numbers beyond the kernel, "same" with
#: a stride and a dilation, groups, and a depthwise multiplier.
JAX_CASES = {
    "jax": (
        "asym_pad_pairs",
        "pad_ge_kernel_per_axis",
        "same_s2_dilated",
        "groups3_strided",
        "depthwise_multiplier2",
    )
}


# --------------------------------------------------------------------------
# Parity: conv2d, conv2d_backward, im2col, col2im
# --------------------------------------------------------------------------


@case_param
@pytest.mark.declares("conv", nd=2, cases=JAX_CASES)
def test_conv2d(case, backend, ns, dtype, assert_close):
    x, w, b, _, _ = case_inputs(case, dtype)
    xa, wa, ba = ns.asarray(x), ns.asarray(w), ns.asarray(b)
    out = convcore.conv2d(xa, wa, ba, groups=case.groups, backend=backend.name, **case.api_kwargs())
    check_output(ns, out, xa, case.out_shape)
    assert_close(ns.to_numpy(out), expected(case, dtype.name)["conv"])
    assert_unchanged(ns, (xa, wa, ba), (x, w, b))


@case_param
@pytest.mark.declares("conv", nd=2, dtypes=["float64"], cases=JAX_CASES)
def test_conv2d_without_bias(case, backend, ns, dtype, assert_close):
    x, w, _, _, _ = case_inputs(case, dtype)
    out = convcore.conv2d(
        ns.asarray(x),
        ns.asarray(w),
        groups=case.groups,
        backend=backend.name,
        **case.api_kwargs(),
    )
    assert_close(ns.to_numpy(out), expected(case, dtype.name)["conv_nobias"])


@case_param
@pytest.mark.declares("conv_backward", nd=2, cases=JAX_CASES)
def test_conv2d_backward(case, backend, ns, dtype, assert_close):
    x, w, _, g, _ = case_inputs(case, dtype)
    ga, xa, wa = ns.asarray(g), ns.asarray(x), ns.asarray(w)
    dx, dw, db = convcore.conv2d_backward(
        ga, xa, wa, groups=case.groups, backend=backend.name, **case.api_kwargs()
    )
    check_output(ns, dx, xa, x.shape)
    check_output(ns, dw, xa, w.shape)
    check_output(ns, db, xa, (case.F,))
    ref = expected(case, dtype.name)
    assert_close(ns.to_numpy(dx), ref["dx"], err_msg="dx")
    assert_close(ns.to_numpy(dw), ref["dw"], err_msg="dw")
    assert_close(ns.to_numpy(db), ref["db"], err_msg="db")
    assert_unchanged(ns, (ga, xa, wa), (g, x, w))


@case_param
@pytest.mark.declares("im2col", nd=2, cases=JAX_CASES)
def test_im2col(case, backend, ns, dtype):
    x, _, _, _, _ = case_inputs(case, dtype)
    xa = ns.asarray(x)
    cols = convcore.im2col(xa, case.kernel, backend=backend.name, **case.api_kwargs())
    check_output(ns, cols, xa, case.cols_shape)
    # im2col only copies values: exact in any dtype.
    np.testing.assert_array_equal(ns.to_numpy(cols), expected(case, dtype.name)["im2col"])
    assert_unchanged(ns, (xa,), (x,))


@case_param
@pytest.mark.declares("col2im", nd=2, cases=JAX_CASES)
def test_col2im(case, backend, ns, dtype, assert_close):
    _, _, _, _, cols = case_inputs(case, dtype)
    ca = ns.asarray(cols)
    img = convcore.col2im(
        ca, (case.H, case.W), case.kernel, backend=backend.name, **case.api_kwargs()
    )
    check_output(ns, img, ca, case.x_shape)
    assert_close(ns.to_numpy(img), expected(case, dtype.name)["col2im"])
    assert_unchanged(ns, (ca,), (cols,))


@case_param
@pytest.mark.declares("im2col", nd=2, dtypes=["float64"])
def test_conv2d_is_im2col_gemm(case, backend, np_ns, dtype, assert_close):
    """conv2d == reshape(W_mat @ im2col(x)) per group: the identity the package is named for."""
    x, w, b, _, _ = case_inputs(case, dtype)
    cols = convcore.im2col(x, case.kernel, backend=backend.name, **case.api_kwargs())
    G, F, N = case.groups, case.F, case.N
    Ho, Wo = case.out_size
    cols_g = cols.reshape(N, G, -1, Ho * Wo)
    w_g = w.reshape(G, F // G, -1)
    y = np.einsum("gfk,ngkl->ngfl", w_g, cols_g).reshape(N, F, Ho * Wo) + b[:, None]
    out = convcore.reshape_gemm_output(y, (Ho, Wo))
    assert_close(out, expected(case, dtype.name)["conv"])


# --------------------------------------------------------------------------
# "same" padding: TensorFlow / JAX split, also with stride > 1
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4, 5, 7, 8, 10])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_output_size_is_ceil(size, kernel, stride, dilation):
    expected_size = (math.ceil(size / stride), math.ceil((size + 1) / stride))
    got = convcore.conv_output_size(
        (size, size + 1), kernel, stride=stride, padding="same", dilation=dilation
    )
    assert tuple(got) == expected_size


@pytest.mark.declares("conv", nd=2, dtypes=["float64"])
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "split"),
    [
        ((4, 5), (2, 2), 1, (0, 1, 0, 1)),
        ((7, 6), (4, 3), 1, (1, 2, 1, 1)),
        ((8, 7), (3, 3), 2, (0, 1, 1, 1)),
        ((10, 12), (3, 4), 3, (1, 1, 0, 1)),
        ((6, 6), (3, 3), 2, (0, 1, 0, 1)),
    ],
    ids=["k2s1", "k4x3s1", "k3s2", "k3x4s3", "k3s2_even"],
)
def test_same_puts_extra_padding_bottom_right(
    size, kernel, stride, split, backend, np_ns, dtype, assert_close
):
    """Odd total padding goes after (bottom/right), as in TensorFlow / JAX."""
    assert resolve_padding("same", size, kernel, stride) == split
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, *size))
    w = rng.standard_normal((2, 2, *kernel))
    out = convcore.conv2d(x, w, stride=stride, padding="same", backend=backend.name)
    assert out.shape[2:] == tuple(math.ceil(s / stride) for s in size)
    assert_close(out, expected_conv(x, w, stride=stride, padding=split))
    # The mirrored split (extra on top/left) gives different numbers.
    mirrored = (split[1], split[0], split[3], split[2])
    assert not np.allclose(out, expected_conv(x, w, stride=stride, padding=mirrored))


# --------------------------------------------------------------------------
# Layout, empties, reshape
# --------------------------------------------------------------------------


def _declared(backend, ns, dtype):
    """The ops of the four that ``backend`` declares for 2-D ``dtype`` arrays of ``ns``."""
    ops = ("conv", "conv_backward", "im2col", "col2im")
    declared = {op for op in ops if backend.supports(op, ns=ns, dtype=dtype, nd=2) is None}
    assert declared, f"{backend.name} was generated but declares none of {ops}"
    return declared


@case_param
@pytest.mark.declares(nd=2, dtypes=["float64"])
def test_noncontiguous_numpy_inputs(case, backend, np_ns, dtype, assert_close):
    x, w, b, g, cols = case_inputs(case, dtype)
    ref = expected(case, dtype.name)
    xn, wn, bn, gn, cn = map(noncontiguous, (x, w, b, g, cols))
    kw = dict(backend=backend.name, **case.api_kwargs())
    ops = _declared(backend, np_ns, dtype)
    if "conv" in ops:
        assert_close(convcore.conv2d(xn, wn, bn, groups=case.groups, **kw), ref["conv"])
    if "conv_backward" in ops:
        dx, dw, db = convcore.conv2d_backward(gn, xn, wn, groups=case.groups, **kw)
        assert_close(dx, ref["dx"])
        assert_close(dw, ref["dw"])
        assert_close(db, ref["db"])
    if "im2col" in ops:
        np.testing.assert_array_equal(convcore.im2col(xn, case.kernel, **kw), ref["im2col"])
    if "col2im" in ops:
        assert_close(convcore.col2im(cn, (case.H, case.W), case.kernel, **kw), ref["col2im"])


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in ("asym_pad_4", "groups2", "same_s2_dilated")],
    ids=lambda c: c.id,
)
@pytest.mark.declares(
    "conv", "conv_backward", "im2col", "col2im", nd=2, namespaces=["torch"], dtypes=["float64"]
)
def test_noncontiguous_torch_inputs(case, backend, ns, dtype, assert_close):
    x, w, b, g, cols = case_inputs(case, dtype)
    ref = expected(case, dtype.name)

    def nc(a):
        t = ns.asarray(a)
        if t.ndim == 1:
            return t.repeat_interleave(2)[::2]
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)

    xn, wn, bn, gn, cn = map(nc, (x, w, b, g, cols))
    assert not xn.is_contiguous() and not bn.is_contiguous()
    kw = dict(backend=backend.name, **case.api_kwargs())
    assert_close(ns.to_numpy(convcore.conv2d(xn, wn, bn, groups=case.groups, **kw)), ref["conv"])
    grads = convcore.conv2d_backward(gn, xn, wn, groups=case.groups, **kw)
    for got, name in zip(grads, ("dx", "dw", "db"), strict=True):
        assert_close(ns.to_numpy(got), ref[name], err_msg=name)
    np.testing.assert_array_equal(
        ns.to_numpy(convcore.im2col(xn, case.kernel, **kw)), ref["im2col"]
    )
    assert_close(
        ns.to_numpy(convcore.col2im(cn, (case.H, case.W), case.kernel, **kw)), ref["col2im"]
    )


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in ("basic3x3", "same_s2", "groups3_strided")],
    ids=lambda c: c.id,
)
@pytest.mark.declares(nd=2)
def test_empty_batch(case, backend, ns, dtype):
    x, w, b, g, cols = case_inputs(case, dtype)
    x0, g0, c0 = ns.asarray(x[:0]), ns.asarray(g[:0]), ns.asarray(cols[:0])
    wa, ba = ns.asarray(w), ns.asarray(b)
    kw = dict(backend=backend.name, **case.api_kwargs())
    ops = _declared(backend, ns, dtype)
    if "conv" in ops:
        out = convcore.conv2d(x0, wa, ba, groups=case.groups, **kw)
        check_output(ns, out, x0, (0, *case.out_shape[1:]))
    if "conv_backward" in ops:
        dx, dw, db = convcore.conv2d_backward(g0, x0, wa, groups=case.groups, **kw)
        check_output(ns, dx, x0, (0, *case.x_shape[1:]))
        check_output(ns, dw, x0, case.w_shape)
        check_output(ns, db, x0, (case.F,))
        # No samples: the parameter gradients are zero.
        np.testing.assert_array_equal(ns.to_numpy(dw), 0)
        np.testing.assert_array_equal(ns.to_numpy(db), 0)
    if "im2col" in ops:
        out = convcore.im2col(x0, case.kernel, **kw)
        check_output(ns, out, x0, (0, *case.cols_shape[1:]))
    if "col2im" in ops:
        out = convcore.col2im(c0, (case.H, case.W), case.kernel, **kw)
        check_output(ns, out, c0, (0, *case.x_shape[1:]))


@pytest.mark.parametrize(("N", "F", "out_size"), [(1, 1, (1, 1)), (2, 3, (4, 5)), (3, 2, (1, 7))])
def test_reshape_gemm_output_is_plain_reshape(N, F, out_size, ns, dtype):
    y = np.random.default_rng(0).standard_normal((N, F, math.prod(out_size))).astype(dtype)
    ya = ns.asarray(y)
    out = convcore.reshape_gemm_output(ya, out_size)
    check_output(ns, out, ya, (N, F, *out_size))
    np.testing.assert_array_equal(ns.to_numpy(out), y.reshape(N, F, *out_size))
    assert_unchanged(ns, (ya,), (y,))


# --------------------------------------------------------------------------
# The seed document's worked examples
# --------------------------------------------------------------------------


@pytest.mark.declares("conv", "im2col", nd=2)
def test_alexnet_conv1(backend, dtype, np_ns, assert_close):
    """227x227x3 image, 96 filters of 11x11, stride 4: columns 363 x 3025, output 55x55."""
    rng = np.random.default_rng(227)
    x = rng.standard_normal((1, 3, 227, 227)).astype(dtype)
    w = rng.standard_normal((96, 3, 11, 11)).astype(dtype)
    b = rng.standard_normal(96).astype(dtype)
    assert convcore.conv_output_size((227, 227), 11, stride=4) == (55, 55)
    cols = convcore.im2col(x, 11, stride=4, backend=backend.name)
    assert cols.shape == (1, 363, 3025) and cols.dtype == dtype
    out = convcore.conv2d(x, w, b, stride=4, backend=backend.name)
    assert out.shape == (1, 96, 55, 55) and out.dtype == dtype
    # The oracle is a slow loop: check corners, edges and a random sample of positions,
    # each on its receptive field alone (rows 4*oh to 4*oh + 10, columns likewise).
    positions = {(0, 0), (0, 54), (54, 0), (54, 54), (27, 13)}
    positions |= {tuple(p) for p in rng.integers(0, 55, size=(40, 2))}
    one = ((1, 1), (0, 0, 0, 0), (1, 1))  # stride, padding, dilation of the cropped problem
    for oh, ow in sorted(positions):
        field = x[:, :, 4 * oh : 4 * oh + 11, 4 * ow : 4 * ow + 11]
        np.testing.assert_array_equal(
            cols[0, :, oh * 55 + ow], naive.im2col(field, (11, 11), *one)[0, :, 0]
        )
        assert_close(
            out[0, :, oh, ow],
            naive.conv(field, w, b, *one, groups=1)[0, :, 0, 0],
            err_msg=f"position {(oh, ow)}",
        )
    # The GEMM view of the same computation.
    gemm = (w.reshape(96, 363).astype(np.float64) @ cols[0].astype(np.float64)) + b[:, None]
    assert_close(out, convcore.reshape_gemm_output(gemm[None], (55, 55)), dtype)


@pytest.mark.declares("conv", "im2col", nd=2)
def test_seed_4x4x3_k2_s1_p0_f1(backend, np_ns, dtype):
    """4x4x3 image, one 2x2x3 filter of ones: a 3x3 output and 12 x 9 columns."""
    x = np.arange(48, dtype=dtype).reshape(1, 3, 4, 4)  # x[c, r, s] = 16c + 4r + s
    w = np.ones((1, 3, 2, 2), dtype=dtype)
    out = convcore.conv2d(x, w, stride=1, padding=0, backend=backend.name)
    i, j = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    # sum over c, di, dj of 16c + 4(i+di) + (j+dj) = 222 + 48 i + 12 j
    np.testing.assert_array_equal(out, (222 + 48 * i + 12 * j)[None, None].astype(dtype))
    cols = convcore.im2col(x, 2, backend=backend.name)
    assert cols.shape == (1, 12, 9)
    np.testing.assert_array_equal(cols, naive.im2col(x, (2, 2), (1, 1), (0,) * 4, (1, 1)))


@pytest.mark.declares("conv", "im2col", "col2im", nd=2)
def test_seed_3x3_image_2x2_kernel(backend, np_ns, dtype):
    """3x3 image, 2x2 kernel: four 4-entry columns, a 2x2 output, overlap counts."""
    x = np.arange(9, dtype=dtype).reshape(1, 1, 3, 3)
    cols = convcore.im2col(x, 2, backend=backend.name)
    np.testing.assert_array_equal(
        cols[0],
        np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=dtype),
    )
    w = np.array([[[[1, 2], [3, 4]]]], dtype=dtype)
    out = convcore.conv2d(x, w, backend=backend.name)
    np.testing.assert_array_equal(out, np.array([[[[27, 37], [57, 67]]]], dtype=dtype))
    # col2im of all-ones columns counts how many windows cover each pixel.
    counts = convcore.col2im(np.ones((1, 4, 4), dtype=dtype), (3, 3), 2, backend=backend.name)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


# --------------------------------------------------------------------------
# Backends refuse what they do not declare (no silent fallback)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("ns_name", [name for name, _ in NAMESPACES])
def test_namespace_declaration_is_enforced(backend, ns_name, make_ns, dtype):
    """A backend runs exactly the namespaces it declares; others raise BackendCapabilityError.

    ``BackendInfo.namespaces`` (None = any) drives the expectation, so e.g. the
    "numpy" backend given torch tensors must raise (a TypeError saying why) instead
    of silently falling back to another backend.  Every namespace is fed to every
    backend here, declared or not (the ``backend`` fixture alone would generate
    only the declared ones).
    """
    ns = make_ns(ns_name)
    case = CASES[0]
    x, w, _, g, cols = case_inputs(case, dtype)
    xa, wa, ga, ca = map(ns.asarray, (x, w, g, cols))
    name = backend.name
    calls = {
        "conv": lambda: convcore.conv2d(xa, wa, backend=name),
        "conv_backward": lambda: convcore.conv2d_backward(ga, xa, wa, backend=name),
        "im2col": lambda: convcore.im2col(xa, case.kernel, backend=name),
        "col2im": lambda: convcore.col2im(ca, (case.H, case.W), case.kernel, backend=name),
    }
    for op, call in calls.items():
        if op not in backend.info.ops:
            continue
        if backend.supports(ns=ns) is None:
            out = call()
            assert ns.is_native(out[0] if isinstance(out, tuple) else out), op
        else:
            with pytest.raises(convcore.BackendCapabilityError, match=name) as info:
                call()
            assert isinstance(info.value, TypeError), op
            assert ns.name in str(info.value), op
