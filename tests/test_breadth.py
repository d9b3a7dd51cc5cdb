"""1-D and 3-D, channels-last layouts, half precision and integer im2col, on every backend.

The oracle is an N-d loop reference written here (one receptive field per output
position, taps enumerated with ``itertools.product``), sharing no code with
convcore, and PyTorch's ``conv1d``/``conv3d`` when torch is installed.  What a
backend is expected to run comes from its declaration (``spatial_dims``,
``op_dtypes``, ``dtypes``); where it declares no support, an explicit request
must raise ``BackendCapabilityError`` and ``auto`` must pick another backend.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

import convcore
from convcore import BackendCapabilityError

# ------------------------------------------------------------------ N-d oracle


def _out_size(size, k, s, before, after, d):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _window(pos, kernel, stride, dil):
    """Padded-input index of every tap of the window at output position ``pos``."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield tap, tuple(o * s + t * d for o, s, t, d in zip(pos, stride, tap, dil))


def _padded(x, pad):
    nd = x.ndim - 2
    pairs = [(0, 0), (0, 0)] + [(pad[2 * i], pad[2 * i + 1]) for i in range(nd)]
    return np.pad(x, pairs)


def ref_im2col(x, kernel, stride, pad, dil):
    nd = x.ndim - 2
    xp = _padded(x, pad)
    out = [
        _out_size(x.shape[2 + i], kernel[i], stride[i], pad[2 * i], pad[2 * i + 1], dil[i])
        for i in range(nd)
    ]
    n, c = x.shape[:2]
    cols = np.zeros((n, c, *kernel, *out), x.dtype)
    for pos in itertools.product(*(range(o) for o in out)):
        for tap, idx in _window(pos, kernel, stride, dil):
            cols[(slice(None), slice(None), *tap, *pos)] = xp[(slice(None), slice(None), *idx)]
    return cols.reshape(n, c * int(np.prod(kernel)), int(np.prod(out)))


def ref_col2im(cols, size, kernel, stride, pad, dil):
    nd = len(size)
    out = [
        _out_size(size[i], kernel[i], stride[i], pad[2 * i], pad[2 * i + 1], dil[i])
        for i in range(nd)
    ]
    n = cols.shape[0]
    c = cols.shape[1] // int(np.prod(kernel))
    cols = cols.reshape(n, c, *kernel, *out)
    acc = np.zeros((n, c, *(s + pad[2 * i] + pad[2 * i + 1] for i, s in enumerate(size))))
    acc = acc.astype(cols.dtype)
    for pos in itertools.product(*(range(o) for o in out)):
        for tap, idx in _window(pos, kernel, stride, dil):
            acc[(slice(None), slice(None), *idx)] += cols[(slice(None), slice(None), *tap, *pos)]
    crop = tuple(slice(pad[2 * i], pad[2 * i] + s) for i, s in enumerate(size))
    return acc[(slice(None), slice(None), *crop)]


def ref_conv(x, w, b, stride, pad, dil, groups):
    """Grouped cross-correlation in float64, one dot product per output value."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c = x.shape[:2]
    f = w.shape[0]
    cg, fg = c // groups, f // groups
    cols = ref_im2col(x, w.shape[2:], stride, pad, dil)  # (N, C*K, L)
    k = int(np.prod(w.shape[2:]))
    out = np.zeros((n, f, cols.shape[2]))
    for g in range(groups):
        wg = w[g * fg : (g + 1) * fg].reshape(fg, cg * k)
        out[:, g * fg : (g + 1) * fg] = np.einsum(
            "fk,nkl->nfl", wg, cols[:, g * cg * k : (g + 1) * cg * k]
        )
    if b is not None:
        out += b.astype(np.float64)[None, :, None]
    size = x.shape[2:]
    o = [
        _out_size(size[i], w.shape[2 + i], stride[i], pad[2 * i], pad[2 * i + 1], dil[i])
        for i in range(len(size))
    ]
    return out.reshape(n, f, *o)


def ref_conv_backward(g, x, w, stride, pad, dil, groups):
    g, x, w = (a.astype(np.float64) for a in (g, x, w))
    n, c = x.shape[:2]
    f = w.shape[0]
    cg, fg = c // groups, f // groups
    kernel = w.shape[2:]
    k = int(np.prod(kernel))
    cols = ref_im2col(x, kernel, stride, pad, dil)
    g3 = g.reshape(n, f, -1)
    dw = np.zeros_like(w)
    dcols = np.zeros_like(cols)
    for gi in range(groups):
        fs, cs = slice(gi * fg, (gi + 1) * fg), slice(gi * cg * k, (gi + 1) * cg * k)
        dw[fs] = np.einsum("nfl,nkl->fk", g3[:, fs], cols[:, cs]).reshape(dw[fs].shape)
        dcols[:, cs] = np.einsum("fk,nfl->nkl", w[fs].reshape(fg, cg * k), g3[:, fs])
    dx = ref_col2im(dcols, x.shape[2:], kernel, stride, pad, dil)
    return dx, dw, g.sum(axis=tuple(i for i in range(g.ndim) if i != 1))


# ---------------------------------------------------------------------- cases


@dataclass(frozen=True)
class NdCase:
    id: str
    n: int
    c: int
    size: tuple[int, ...]
    f: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]  # (before, after) per axis
    dil: tuple[int, ...]
    groups: int = 1

    @property
    def nd(self):
        return len(self.size)

    def arrays(self, dtype, seed=0):
        rng = np.random.default_rng([seed, sum(map(ord, self.id))])
        x = rng.standard_normal((self.n, self.c, *self.size)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, *self.kernel)).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        y = ref_conv(x, w, None, self.stride, self.pad, self.dil, self.groups)
        g = rng.standard_normal(y.shape).astype(dtype)
        return x, w, b, g

    @property
    def kw(self):
        return {"stride": self.stride, "padding": self.pad, "dilation": self.dil}


ND_CASES = [
    NdCase("1d_basic", 2, 3, (9,), 4, (3,), (1,), (0, 0), (1,)),
    NdCase("1d_stride_pad_dil", 2, 2, (11,), 3, (3,), (2,), (2, 1), (2,)),
    NdCase("1d_groups", 1, 4, (8,), 6, (2,), (1,), (1, 0), (1,), groups=2),
    NdCase("1d_depthwise", 2, 3, (7,), 3, (3,), (2,), (1, 1), (1,), groups=3),
    NdCase("1d_pointwise", 2, 3, (6,), 2, (1,), (1,), (0, 0), (1,)),
    NdCase("3d_basic", 2, 2, (4, 5, 6), 3, (2, 3, 2), (1, 1, 1), (0, 0, 0, 0, 0, 0), (1, 1, 1)),
    NdCase(
        "3d_stride_pad", 1, 2, (5, 6, 7), 2, (3, 2, 3), (2, 1, 3), (1, 0, 0, 2, 1, 1), (1, 1, 1)
    ),
    NdCase("3d_dilated", 1, 1, (7, 5, 6), 2, (2, 2, 2), (1, 2, 1), (1, 1, 0, 1, 2, 0), (2, 1, 2)),
    NdCase("3d_groups", 2, 4, (3, 4, 5), 4, (2, 2, 2), (1, 1, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1), 2),
    NdCase("3d_pointwise", 1, 3, (3, 3, 4), 2, (1, 1, 1), (1, 1, 1), (0,) * 6, (1, 1, 1)),
]

CONV = {1: convcore.conv1d, 2: convcore.conv2d, 3: convcore.conv3d}
CONV_BACKWARD = {
    1: convcore.conv1d_backward,
    2: convcore.conv2d_backward,
    3: convcore.conv3d_backward,
}


@pytest.mark.parametrize("case", ND_CASES, ids=lambda c: c.id)
def test_nd_conv_forward_backward(case, backend, ns, dtype, assert_close):
    backend.require("conv", "conv_backward", ns=ns, dtype=dtype, nd=case.nd)
    x, w, b, g = case.arrays(dtype)
    kw = {**case.kw, "groups": case.groups, "backend": backend.name}
    y = CONV[case.nd](ns.asarray(x), ns.asarray(w), ns.asarray(b), **kw)
    assert ns.is_native(y)
    assert_close(ns.to_numpy(y), ref_conv(x, w, b, case.stride, case.pad, case.dil, case.groups))
    y_generic = convcore.conv(ns.asarray(x), ns.asarray(w), ns.asarray(b), **kw)
    assert_close(ns.to_numpy(y_generic), ns.to_numpy(y))
    got = CONV_BACKWARD[case.nd](ns.asarray(g), ns.asarray(x), ns.asarray(w), **kw)
    want = ref_conv_backward(g, x, w, case.stride, case.pad, case.dil, case.groups)
    for name, a, e in zip(("dx", "dw", "db"), got, want):
        assert ns.is_native(a), name
        assert_close(ns.to_numpy(a), e, dtype=dtype, err_msg=name)


@pytest.mark.parametrize("case", ND_CASES, ids=lambda c: c.id)
def test_nd_im2col_col2im(case, backend, ns, dtype, assert_close):
    backend.require("im2col", "col2im", ns=ns, dtype=dtype, nd=case.nd)
    x, *_ = case.arrays(dtype)
    kw = {**case.kw, "backend": backend.name}
    cols = convcore.im2col(ns.asarray(x), case.kernel, **kw)
    want = ref_im2col(x, case.kernel, case.stride, case.pad, case.dil)
    assert_close(ns.to_numpy(cols), want)
    back = convcore.col2im(ns.asarray(want), case.size, case.kernel, **kw)
    assert_close(
        ns.to_numpy(back), ref_col2im(want, case.size, case.kernel, case.stride, case.pad, case.dil)
    )


@pytest.mark.parametrize("nd", [1, 3])
def test_nd_against_torch(nd, assert_close):
    torch = pytest.importorskip("torch")
    fn = {1: torch.nn.functional.conv1d, 3: torch.nn.functional.conv3d}[nd]
    for case in (c for c in ND_CASES if c.nd == nd):
        sym = all(case.pad[2 * i] == case.pad[2 * i + 1] for i in range(nd))
        if not sym:
            continue
        x, w, b, _ = case.arrays(np.float64)
        want = fn(
            torch.from_numpy(x),
            torch.from_numpy(w),
            torch.from_numpy(b),
            stride=case.stride,
            padding=case.pad[::2],
            dilation=case.dil,
            groups=case.groups,
        ).numpy()
        got = convcore.conv(x, w, b, **case.kw, groups=case.groups)
        assert_close(got, want, err_msg=case.id)


def test_undeclared_rank_is_a_capability_error_and_auto_passes_over_it(backend):
    """Every backend that does not declare 3-D refuses it by name; auto never picks it."""
    dims = backend.info.spatial_dims
    if dims is None or 3 in dims:
        pytest.skip(f"backend {backend.name!r} declares 3-D kernels")
    if backend.info.namespaces is not None and "numpy" not in backend.info.namespaces:
        pytest.skip(f"backend {backend.name!r} does not take NumPy arrays")
    x, w = np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 2, 2, 2))
    with pytest.raises(BackendCapabilityError, match="3 spatial axes"):
        convcore.conv3d(x, w, backend=backend.name)
    assert convcore.resolve_backend("conv", x) != backend.name
    assert float(convcore.conv3d(x, w)[0, 0, 0, 0, 0]) == 8.0


def test_rank_mismatch_errors():
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, C, W\)"):
        convcore.conv1d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2)))
    with pytest.raises(ValueError, match=r"weight must be 5-D \(F, C/groups, KD, KH, KW\)"):
        convcore.conv3d(np.ones((1, 1, 4, 4, 4)), np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="at least one spatial axis"):
        convcore.im2col(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="input_size"):
        convcore.col2im(np.ones((1, 1, 1)), (), 1)
    with pytest.raises(ValueError, match="kernel_size"):
        convcore.im2col(np.ones((1, 1, 4, 4, 4)), (2, 2))


# -------------------------------------------------------------------- layouts

LAYOUTS = [
    # (nd, layout, permutation from channels-first to the layout)
    (1, "NWC", (0, 2, 1)),
    (2, "NHWC", (0, 2, 3, 1)),
    (2, "channels_last", (0, 2, 3, 1)),
    (2, "HWCN", (2, 3, 1, 0)),
    (3, "NDHWC", (0, 2, 3, 4, 1)),
]
LAYOUT_CASE = {
    1: ND_CASES[1],
    2: NdCase("2d", 2, 3, (6, 5), 4, (3, 2), (2, 1), (1, 0, 1, 1), (1, 2), groups=1),
    3: ND_CASES[6],
}


@pytest.mark.parametrize(("nd", "layout", "perm"), LAYOUTS, ids=[lay[1] for lay in LAYOUTS])
def test_layouts(nd, layout, perm, backend, ns, dtype, assert_close):
    backend.require("conv", "conv_backward", "im2col", "col2im", ns=ns, dtype=dtype, nd=nd)
    case = LAYOUT_CASE[nd]
    x, w, b, g = case.arrays(dtype)
    inverse = tuple(np.argsort(perm))
    xl, gl = (np.ascontiguousarray(a.transpose(perm)) for a in (x, g))
    kw = {**case.kw, "groups": case.groups, "layout": layout, "backend": backend.name}
    x_in, g_in = ns.asarray(xl), ns.asarray(gl)

    y = ns.to_numpy(convcore.conv(x_in, ns.asarray(w), ns.asarray(b), **kw))
    want = ref_conv(x, w, b, case.stride, case.pad, case.dil, case.groups)
    assert_close(y, want.transpose(perm), dtype=dtype)

    dx, dw, db = convcore.conv_backward(g_in, x_in, ns.asarray(w), **kw)
    rdx, rdw, rdb = ref_conv_backward(g, x, w, case.stride, case.pad, case.dil, case.groups)
    assert_close(ns.to_numpy(dx), rdx.transpose(perm), dtype=dtype)
    assert_close(ns.to_numpy(dw), rdw, dtype=dtype)
    assert_close(ns.to_numpy(db), rdb, dtype=dtype)

    kw.pop("groups")
    cols = ns.to_numpy(convcore.im2col(x_in, case.kernel, **kw))
    assert_close(cols, ref_im2col(x, case.kernel, case.stride, case.pad, case.dil))
    img = ns.to_numpy(convcore.col2im(ns.asarray(cols), case.size, case.kernel, **kw))
    rimg = ref_col2im(cols, case.size, case.kernel, case.stride, case.pad, case.dil)
    assert_close(img, rimg.transpose(perm))
    assert img.transpose(inverse).shape == x.shape
    np.testing.assert_array_equal(ns.to_numpy(x_in), xl)  # inputs are not modified


@pytest.mark.parametrize(
    ("layout", "error", "match"),
    [
        ("NCWH", ValueError, "spatial"),
        ("NHW", ValueError, "NHWC"),
        ("NHWCX", ValueError, "layout='NHWCX'"),
        ("HCW", ValueError, "layout"),
        (3, TypeError, "layout must be a string"),
        ("NDHWC", ValueError, "2 spatial axes"),
    ],
)
def test_bad_layout(layout, error, match):
    with pytest.raises(error, match=match):
        convcore.conv2d(np.ones((1, 4, 4, 2)), np.ones((1, 2, 2, 2)), layout=layout)


def test_layout_shape_errors_use_the_layout_letters():
    with pytest.raises(ValueError, match=r"x has C=3 channels"):
        convcore.conv2d(np.ones((1, 4, 4, 3)), np.ones((1, 2, 2, 2)), layout="NHWC")
    with pytest.raises(ValueError, match=r"grad_out must have shape \(1, 3, 3, 1\)"):
        convcore.conv2d_backward(
            np.ones((1, 1, 3, 3)), np.ones((1, 4, 4, 2)), np.ones((1, 2, 2, 2)), layout="NHWC"
        )
    with pytest.raises(ValueError, match=r"non-empty W axis \(N, H, W, C\)"):
        convcore.conv2d(np.ones((1, 4, 0, 2)), np.ones((1, 2, 2, 2)), layout="NHWC")


def test_numpy_backend_reads_a_channels_last_view_without_copying_it(monkeypatch):
    """The kernel gets a channels-first view of the caller's buffer, not a copy."""
    from convcore._registry import get_registry

    seen = {}
    kernels = get_registry().kernels("numpy")
    original = kernels["conv"]

    def spy(xp, x, weight, bias, geom, groups):
        seen["x"] = x
        return original(xp, x, weight, bias, geom, groups)

    monkeypatch.setitem(kernels, "conv", spy)
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 3))
    y = convcore.conv2d(x, np.ones((4, 3, 3, 3)), layout="NHWC", backend="numpy")
    assert np.shares_memory(seen["x"], x)
    assert seen["x"].shape == (2, 3, 5, 6)
    assert y.shape == (2, 3, 4, 4)


# ------------------------------------------------------------- half precision

HALF_TOL = {"float16": 2e-3, "bfloat16": 1.6e-2}  # a few units of the final rounding


def _half(ns, name):
    if name == "float16":
        if ns.name not in ("numpy", "torch", "dask"):
            pytest.skip(f"{ns.name} has no float16 in this suite")
        return np.float16
    if ns.name != "torch":
        pytest.skip("bfloat16 is tested on torch tensors (NumPy has none)")
    return None


def _to_half(ns, a, name):
    if name == "bfloat16":
        import torch

        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return ns.asarray(a.astype(np.float16))


def _from_half(ns, a):
    if hasattr(a, "float"):  # torch
        return a.float().numpy().astype(np.float64)
    return ns.to_numpy(a).astype(np.float64)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", [ND_CASES[1], LAYOUT_CASE[2], ND_CASES[6]], ids=lambda c: c.id)
def test_half_precision_accumulates_in_float32(case, half, backend, ns):
    _half(ns, half)
    backend.require("conv", "conv_backward", "im2col", "col2im", ns=ns, dtype=half, nd=case.nd)
    x, w, b, g = case.arrays(np.float32)
    hx, hw, hb, hg = (_to_half(ns, a, half) for a in (x, w, b, g))
    # the oracle sees exactly the rounded inputs
    rx, rw, rb, rg = (_from_half(ns, a) for a in (hx, hw, hb, hg))
    kw = {**case.kw, "groups": case.groups, "backend": backend.name}
    tol = HALF_TOL[half]

    def check(got, want, what):
        assert str(got.dtype).endswith(half), (what, got.dtype)
        got = _from_half(ns, got)
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)

    check(
        convcore.conv(hx, hw, hb, **kw),
        ref_conv(rx, rw, rb, case.stride, case.pad, case.dil, case.groups),
        "y",
    )
    got = convcore.conv_backward(hg, hx, hw, **kw)
    want = ref_conv_backward(rg, rx, rw, case.stride, case.pad, case.dil, case.groups)
    for name, a, e in zip(("dx", "dw", "db"), got, want):
        check(a, e, name)
    kw.pop("groups")
    cols = convcore.im2col(hx, case.kernel, **kw)
    # im2col moves data: exact
    np.testing.assert_array_equal(
        _from_half(ns, cols), ref_im2col(rx, case.kernel, case.stride, case.pad, case.dil)
    )


def test_half_precision_sums_in_float32_not_float16():
    """A sum that float16 accumulation gets wrong: 4096 ones plus small terms."""
    x = np.ones((1, 1, 1, 4097), np.float16)
    w = np.ones((1, 1, 1, 4097), np.float16)
    x[..., 0] = 2048  # float16 accumulation would stop growing at 2048 + 2048
    for be in ("numpy", "array_api"):
        y = convcore.conv2d(x, w, backend=be)
        assert y.dtype == np.float16
        assert float(y[0, 0, 0, 0]) == float(np.float16(2048 + 4096)), be


# -------------------------------------------------------------------- integers

INTS = [np.int8, np.int32, np.int64, np.uint8, np.uint16]


@pytest.mark.parametrize("int_dtype", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_im2col_col2im(int_dtype, backend, ns):
    case = LAYOUT_CASE[2]
    if ns.name == "torch" and np.dtype(int_dtype).name == "uint16":
        pytest.skip("torch has limited uint16 support")
    backend.require("im2col", "col2im", ns=ns, dtype=int_dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (case.n, case.c, *case.size)).astype(int_dtype)
    kw = {**case.kw, "backend": backend.name}
    cols = convcore.im2col(ns.asarray(x), case.kernel, **kw)
    want = ref_im2col(x, case.kernel, case.stride, case.pad, case.dil)
    got = ns.to_numpy(cols)
    assert got.dtype == np.dtype(int_dtype)
    np.testing.assert_array_equal(got, want)
    img = ns.to_numpy(convcore.col2im(ns.asarray(want), case.size, case.kernel, **kw))
    assert img.dtype == np.dtype(int_dtype)
    np.testing.assert_array_equal(
        img, ref_col2im(want, case.size, case.kernel, case.stride, case.pad, case.dil)
    )


def test_integer_im2col_where_undeclared_is_a_capability_error(backend):
    info = backend.info
    if info.namespaces is not None and "numpy" not in info.namespaces:
        pytest.skip(f"backend {backend.name!r} does not take NumPy arrays")
    if "int32" in (info.op_dtypes or {}).get("im2col", info.dtypes):
        pytest.skip(f"backend {backend.name!r} declares integer im2col")
    x = np.arange(16, dtype=np.int32).reshape(1, 1, 4, 4)
    with pytest.raises(BackendCapabilityError, match="int32"):
        convcore.im2col(x, 2, backend=backend.name)
    assert convcore.resolve_backend("im2col", x) != backend.name


def test_convolution_of_integers_is_a_clear_error():
    x = np.ones((1, 1, 4, 4), np.int32)
    with pytest.raises(TypeError, match="real floating-point x, got dtype int32"):
        convcore.conv2d(x, np.ones((1, 1, 2, 2), np.int32))
