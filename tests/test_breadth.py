"""1-D and 3-D, channels-last layouts, half precision and integer im2col, on every backend.

The oracle is the naive N-d loop oracle (``tests/naive.py``), sharing no code with
convcore, and PyTorch's ``conv1d``/``conv3d`` when torch is installed.  What a
backend is run on comes from its declaration (``spatial_dims``, ``op_dtypes``,
``dtypes``, through ``@pytest.mark.declares``); where a backend declares no
support, an explicit request must raise ``BackendCapabilityError`` and ``auto``
must pick another backend (checked on backends registered for the test, which
declare less than the built-in ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import naive
import numpy as np
import pytest
from helpers import HALF_TOL, col2im_in_dtype, half_array, half_to_float64, torch_or_skip

import convcore
from convcore import BackendCapabilityError, BackendSpec
from convcore._registry import ALL_OPS, get_registry, reload_registry

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

    @property
    def kw(self):
        """``stride``, ``padding``, ``dilation``: for convcore and :mod:`naive` alike."""
        return {"stride": self.stride, "padding": self.pad, "dilation": self.dil}

    def arrays(self, dtype, seed=0):
        rng = np.random.default_rng([seed, sum(map(ord, self.id))])
        x = rng.standard_normal((self.n, self.c, *self.size)).astype(dtype)
        w = rng.standard_normal((self.f, self.c // self.groups, *self.kernel)).astype(dtype)
        b = rng.standard_normal(self.f).astype(dtype)
        out = naive.conv_output_size(self.size, self.kernel, self.stride, self.pad, self.dil)
        g = rng.standard_normal((self.n, self.f, *out)).astype(dtype)
        return x, w, b, g

    def conv(self, x, w, b):
        return naive.conv(x, w, b, groups=self.groups, **self.kw)

    def conv_backward(self, g, x, w):
        return naive.conv_backward(g, x, w, groups=self.groups, **self.kw)

    def im2col(self, x):
        return naive.im2col(x, self.kernel, **self.kw)

    def col2im(self, cols):
        return naive.col2im(cols, self.size, self.kernel, **self.kw)


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


#: The ND_CASES JAX is fed (why: ``conftest.JAX_SUBSET_REASON``): stride, padding and
#: dilation together, and groups, at each rank.
JAX_CASES = {"jax": ("1d_stride_pad_dil", "1d_groups", "3d_dilated", "3d_groups")}


def cases_of_rank(nd):
    return pytest.mark.parametrize("case", [c for c in ND_CASES if c.nd == nd], ids=lambda c: c.id)


CONV = {1: convcore.conv1d, 2: convcore.conv2d, 3: convcore.conv3d}
CONV_BACKWARD = {
    1: convcore.conv1d_backward,
    2: convcore.conv2d_backward,
    3: convcore.conv3d_backward,
}
ALL = ("conv", "conv_backward", "im2col", "col2im")


@pytest.fixture
def fresh_registry():
    """Backends registered by a test are dropped afterwards."""
    reload_registry()
    yield get_registry()
    reload_registry()


def _numpy_kernels_as(name, **declaration):
    """The numpy backend's kernels under another name, declaring ``declaration``."""
    kernels = get_registry().kernels("numpy")
    return BackendSpec(
        name=name, load=lambda: kernels, ops=ALL_OPS, namespaces={"numpy"}, **declaration
    )


# ---------------------------------------------------------------- 1-D and 3-D


def _check_conv(case, backend, ns, dtype, assert_close):
    x, w, b, g = case.arrays(dtype)
    kw = {**case.kw, "groups": case.groups, "backend": backend.name}
    y = CONV[case.nd](ns.asarray(x), ns.asarray(w), ns.asarray(b), **kw)
    assert ns.is_native(y)
    assert_close(ns.to_numpy(y), case.conv(x, w, b))
    y_generic = convcore.conv(ns.asarray(x), ns.asarray(w), ns.asarray(b), **kw)
    assert_close(ns.to_numpy(y_generic), ns.to_numpy(y))
    got = CONV_BACKWARD[case.nd](ns.asarray(g), ns.asarray(x), ns.asarray(w), **kw)
    for name, a, e in zip(("dx", "dw", "db"), got, case.conv_backward(g, x, w)):
        assert ns.is_native(a), name
        assert_close(ns.to_numpy(a), e, dtype=dtype, err_msg=name)


@cases_of_rank(1)
@pytest.mark.declares("conv", "conv_backward", nd=1, cases=JAX_CASES)
def test_1d_conv_forward_backward(case, backend, ns, dtype, assert_close):
    _check_conv(case, backend, ns, dtype, assert_close)


@cases_of_rank(3)
@pytest.mark.declares("conv", "conv_backward", nd=3, cases=JAX_CASES)
def test_3d_conv_forward_backward(case, backend, ns, dtype, assert_close):
    _check_conv(case, backend, ns, dtype, assert_close)


def _check_im2col_col2im(case, backend, ns, dtype, assert_close):
    x, *_ = case.arrays(dtype)
    kw = {**case.kw, "backend": backend.name}
    cols = convcore.im2col(ns.asarray(x), case.kernel, **kw)
    want = case.im2col(x)
    assert_close(ns.to_numpy(cols), want)
    back = convcore.col2im(ns.asarray(want), case.size, case.kernel, **kw)
    assert_close(ns.to_numpy(back), case.col2im(want))


@cases_of_rank(1)
@pytest.mark.declares("im2col", "col2im", nd=1, cases=JAX_CASES)
def test_1d_im2col_col2im(case, backend, ns, dtype, assert_close):
    _check_im2col_col2im(case, backend, ns, dtype, assert_close)


@cases_of_rank(3)
@pytest.mark.declares("im2col", "col2im", nd=3, cases=JAX_CASES)
def test_3d_im2col_col2im(case, backend, ns, dtype, assert_close):
    _check_im2col_col2im(case, backend, ns, dtype, assert_close)


@pytest.mark.parametrize("nd", [1, 3])
def test_nd_against_torch(nd, assert_close):
    torch = torch_or_skip()
    fn = {1: torch.nn.functional.conv1d, 3: torch.nn.functional.conv3d}[nd]
    checked = 0
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
        checked += 1
    assert checked >= 3


def test_undeclared_rank_is_a_capability_error_and_auto_passes_over_it(fresh_registry):
    """A backend that does not declare 3-D refuses it by name; auto passes over it for 3-D.

    The backend (the numpy kernels declaring 2-D only, at the highest priority) is
    auto's choice for 2-D, so passing over it for 3-D is the declaration at work.
    """
    fresh_registry.register(_numpy_kernels_as("flat_only", spatial_dims={2}, priority=1000))
    x, w = np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 2, 2, 2))
    with pytest.raises(BackendCapabilityError, match="3 spatial axes"):
        convcore.conv3d(x, w, backend="flat_only")
    assert convcore.resolve_backend("conv", x[:, :, 0]) == "flat_only"
    assert convcore.resolve_backend("conv", x) != "flat_only"
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

LAYOUTS = {
    # nd: [(layout, permutation from channels-first to the layout)]
    1: [("NWC", (0, 2, 1))],
    2: [("NHWC", (0, 2, 3, 1)), ("channels_last", (0, 2, 3, 1)), ("HWCN", (2, 3, 1, 0))],
    3: [("NDHWC", (0, 2, 3, 4, 1))],
}
LAYOUT_CASE = {
    1: ND_CASES[1],
    2: NdCase("2d", 2, 3, (6, 5), 4, (3, 2), (2, 1), (1, 0, 1, 1), (1, 2), groups=1),
    3: ND_CASES[6],
}


def layouts_of_rank(nd):
    return pytest.mark.parametrize(
        ("layout", "perm"), LAYOUTS[nd], ids=[layout for layout, _ in LAYOUTS[nd]]
    )


def _check_layout(nd, layout, perm, backend, ns, dtype, assert_close):
    case = LAYOUT_CASE[nd]
    x, w, b, g = case.arrays(dtype)
    inverse = tuple(np.argsort(perm))
    xl, gl = (np.ascontiguousarray(a.transpose(perm)) for a in (x, g))
    kw = {**case.kw, "groups": case.groups, "layout": layout, "backend": backend.name}
    x_in, g_in = ns.asarray(xl), ns.asarray(gl)

    y = ns.to_numpy(convcore.conv(x_in, ns.asarray(w), ns.asarray(b), **kw))
    assert_close(y, case.conv(x, w, b).transpose(perm), dtype=dtype)

    dx, dw, db = convcore.conv_backward(g_in, x_in, ns.asarray(w), **kw)
    rdx, rdw, rdb = case.conv_backward(g, x, w)
    assert_close(ns.to_numpy(dx), rdx.transpose(perm), dtype=dtype)
    assert_close(ns.to_numpy(dw), rdw, dtype=dtype)
    assert_close(ns.to_numpy(db), rdb, dtype=dtype)

    kw.pop("groups")
    cols = ns.to_numpy(convcore.im2col(x_in, case.kernel, **kw))
    assert_close(cols, case.im2col(x))
    img = ns.to_numpy(convcore.col2im(ns.asarray(cols), case.size, case.kernel, **kw))
    assert_close(img, case.col2im(cols).transpose(perm))
    assert img.transpose(inverse).shape == x.shape
    np.testing.assert_array_equal(ns.to_numpy(x_in), xl)  # inputs are not modified


@layouts_of_rank(1)
@pytest.mark.declares(*ALL, nd=1)
def test_1d_layouts(layout, perm, backend, ns, dtype, assert_close):
    _check_layout(1, layout, perm, backend, ns, dtype, assert_close)


@layouts_of_rank(2)
@pytest.mark.declares(*ALL, nd=2)
def test_2d_layouts(layout, perm, backend, ns, dtype, assert_close):
    _check_layout(2, layout, perm, backend, ns, dtype, assert_close)


@layouts_of_rank(3)
@pytest.mark.declares(*ALL, nd=3)
def test_3d_layouts(layout, perm, backend, ns, dtype, assert_close):
    _check_layout(3, layout, perm, backend, ns, dtype, assert_close)


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

HALF_CASES = {1: ND_CASES[1], 2: LAYOUT_CASE[2], 3: ND_CASES[6]}
#: The namespaces the suite has float16 arrays of; bfloat16 is on torch and JAX only.
FLOAT16_NAMESPACES = ("numpy", "torch", "dask", "jax")
BFLOAT16_NAMESPACES = ("torch", "jax")


def _check_half(nd, backend, ns, dtype):
    case = HALF_CASES[nd]
    half = getattr(dtype, "name", dtype)
    x, w, b, g = case.arrays(np.float32)
    hx, hw, hb, hg = (half_array(ns, a, half) for a in (x, w, b, g))
    # the oracle sees exactly the rounded inputs
    rx, rw, rb, rg = (half_to_float64(ns, a) for a in (hx, hw, hb, hg))
    kw = {**case.kw, "groups": case.groups, "backend": backend.name}
    tol = HALF_TOL[half]

    def check(got, want, what):
        assert str(got.dtype).endswith(half), (what, got.dtype)
        got = half_to_float64(ns, got)
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)

    check(convcore.conv(hx, hw, hb, **kw), case.conv(rx, rw, rb), "y")
    got = convcore.conv_backward(hg, hx, hw, **kw)
    for name, a, e in zip(("dx", "dw", "db"), got, case.conv_backward(rg, rx, rw)):
        check(a, e, name)
    kw.pop("groups")
    cols = convcore.im2col(hx, case.kernel, **kw)
    # im2col moves data: exact
    np.testing.assert_array_equal(half_to_float64(ns, cols), case.im2col(rx))


@pytest.mark.declares(*ALL, nd=1, dtypes=["float16"], namespaces=FLOAT16_NAMESPACES)
def test_1d_float16_accumulates_in_float32(backend, ns, dtype):
    _check_half(1, backend, ns, dtype)


@pytest.mark.declares(*ALL, nd=2, dtypes=["float16"], namespaces=FLOAT16_NAMESPACES)
def test_2d_float16_accumulates_in_float32(backend, ns, dtype):
    _check_half(2, backend, ns, dtype)


@pytest.mark.declares(*ALL, nd=3, dtypes=["float16"], namespaces=FLOAT16_NAMESPACES)
def test_3d_float16_accumulates_in_float32(backend, ns, dtype):
    _check_half(3, backend, ns, dtype)


@pytest.mark.declares(*ALL, nd=1, dtypes=["bfloat16"], namespaces=BFLOAT16_NAMESPACES)
def test_1d_bfloat16_accumulates_in_float32(backend, ns, dtype):
    _check_half(1, backend, ns, dtype)


@pytest.mark.declares(*ALL, nd=2, dtypes=["bfloat16"], namespaces=BFLOAT16_NAMESPACES)
def test_2d_bfloat16_accumulates_in_float32(backend, ns, dtype):
    _check_half(2, backend, ns, dtype)


@pytest.mark.declares(*ALL, nd=3, dtypes=["bfloat16"], namespaces=BFLOAT16_NAMESPACES)
def test_3d_bfloat16_accumulates_in_float32(backend, ns, dtype):
    _check_half(3, backend, ns, dtype)


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

INTS = ["int8", "int32", "int64", "uint8", "uint16"]


def _check_integers(backend, ns, dtype):
    case = LAYOUT_CASE[2]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (case.n, case.c, *case.size)).astype(dtype)
    kw = {**case.kw, "backend": backend.name}
    cols = convcore.im2col(ns.asarray(x), case.kernel, **kw)
    want = case.im2col(x)
    got = ns.to_numpy(cols)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    # summed in the namespace's sum dtype (int64 / uint64; torch: int64; JAX without
    # x64: int32 / uint32): no wraparound of these sums
    cols_ns = ns.asarray(want)
    img = ns.to_numpy(convcore.col2im(cols_ns, case.size, case.kernel, **kw))
    wide = np.int64 if ns.name == "torch" or np.dtype(dtype).kind == "i" else np.uint64
    if ns.name == "jax":
        wide = np.dtype(ns.to_numpy(ns.module.sum(cols_ns[:0])).dtype)
    assert img.dtype == wide
    exact = col2im_in_dtype(want.astype(np.int64), case.size, case.kernel, **case.kw)
    np.testing.assert_array_equal(img, exact)
    # summed in the columns' own dtype when asked (integers wrap around)
    img = convcore.col2im(ns.asarray(want), case.size, case.kernel, dtype=dtype.name, **kw)
    img = ns.to_numpy(img)
    assert img.dtype == dtype
    np.testing.assert_array_equal(img, col2im_in_dtype(want, case.size, case.kernel, **case.kw))


@pytest.mark.declares("im2col", "col2im", nd=2, dtypes=[d for d in INTS if d != "uint16"])
def test_integer_im2col_col2im(backend, ns, dtype):
    _check_integers(backend, ns, dtype)


@pytest.mark.declares(
    "im2col",
    "col2im",
    nd=2,
    dtypes=["uint16"],
    namespaces=["numpy", "array_api_strict", "dask", "cupy"],  # torch's uint16 is limited
)
def test_uint16_im2col_col2im(backend, ns, dtype):
    _check_integers(backend, ns, dtype)


def test_integer_im2col_where_undeclared_is_a_capability_error(fresh_registry):
    """A backend declaring float im2col only refuses int32 by name; auto passes over it."""
    fresh_registry.register(_numpy_kernels_as("floats_only", priority=1000))
    x = np.arange(16, dtype=np.int32).reshape(1, 1, 4, 4)
    with pytest.raises(BackendCapabilityError, match="int32"):
        convcore.im2col(x, 2, backend="floats_only")
    assert convcore.resolve_backend("im2col", x.astype(np.float64)) == "floats_only"
    assert convcore.resolve_backend("im2col", x) != "floats_only"
    np.testing.assert_array_equal(convcore.im2col(x, 4)[0, :, 0], np.arange(16))


def test_convolution_of_integers_is_a_clear_error():
    x = np.ones((1, 1, 4, 4), np.int32)
    with pytest.raises(TypeError, match="real floating-point x, got dtype int32"):
        convcore.conv2d(x, np.ones((1, 1, 2, 2), np.int32))
