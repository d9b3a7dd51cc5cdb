"""convcore.matlab against the MATLAB reference in matlab_ref/ (GNU Octave).

* Every backend against every committed fixture (``matlab_ref/fixtures/*.mat``,
  written by Octave running the fixed ``.m`` files): ``im2col_ref``,
  ``im2col_back_ref`` (both forms), ``reshape_row_major``,
  ``forward_propagation``, ``backward_propagation`` and the layer.  float64
  must agree to the suite's float64 tolerance (rtol 1e-10); float32 inputs
  (the float64 fixture inputs rounded) to the suite's float32 tolerance: rtol
  1e-4, atol 1e-5 times the largest expected magnitude (``conftest.TOLERANCES``).
* Every array namespace through the adapter (no NumPy-only calls).
* ``im2col_back_ref`` is the exact adjoint of ``im2col_ref``.
* The adapter against independent loops: the naive oracle (``tests/naive.py``) for
  the convolution, and direct MATLAB-order loops written here for the columns.
* Live, when ``octave-cli`` is on PATH: fresh random cases through the ``.m``
  files, the committed fixtures regenerated and compared, and
  ``show_seed_bugs.m`` (the seed's literal code next to the fixed code).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import naive
import numpy as np
import pytest
from cases import CASES
from hypothesis import given, settings
from hypothesis import strategies as st

import convcore
from convcore import matlab

sio = pytest.importorskip("scipy.io", reason="scipy is needed to read the .mat fixtures")

ROOT = Path(__file__).resolve().parents[1]
MATLAB_REF = ROOT / "matlab_ref"
FIXTURE_FILES = sorted((MATLAB_REF / "fixtures").glob("*.mat"))
OCTAVE = shutil.which("octave-cli")
needs_octave = pytest.mark.skipif(
    OCTAVE is None,
    reason="octave-cli (GNU Octave) is not on PATH: the live MATLAB-reference checks need it "
    "(apt-get install octave); the committed fixtures are still checked",
)


# --------------------------------------------------------------------------
# Fixtures from Octave
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """One case as Octave computed it, every array in its full MATLAB-layout shape."""

    id: str
    x: np.ndarray  # (H, W, C, N)
    w: np.ndarray  # (HH, WW, C, F)
    b: np.ndarray | None  # (F, 1) or None
    stride: np.ndarray  # as stored: 1x1 or 1x2 doubles
    pad: np.ndarray  # 1x1, 1x2 or 1x4 doubles
    is_conv: np.ndarray  # 1x1 double
    windows: tuple[int, int]  # im2col_ref's (H', W')
    cols: np.ndarray  # (K, L, N)
    dcols: np.ndarray  # (L, K, N)
    dimg_covered: np.ndarray  # (Hc, Wc, C, N)
    dimg: np.ndarray  # (H, W, C, N)
    rrm_shape: tuple[int, ...]
    x_rrm: np.ndarray
    rrm_infer: int | None  # 0-based position of rrm_shape that Octave was given as []
    x_rrm_infer: np.ndarray | None
    # whether Octave warned 'convcore:outputSize' in im2col_ref, forward, backward, pooling
    warned_im2col: bool
    warned_forward: bool
    warned_backward: bool
    warned_pool: bool | None
    y: np.ndarray  # (H', W', F, N), floor sizes
    dout: np.ndarray
    dx: np.ndarray
    dw: np.ndarray
    db: np.ndarray  # (F, 1)
    db_row: np.ndarray | None  # (1, F): the bias gradient for the bias as a 1 x F row
    # pooling cases only: the gradient and max_pool_ref / avg_pool_ref and their backward
    dpool: np.ndarray | None = None  # (H', W', C, N), im2col_ref's ceil windows
    pool_max: np.ndarray | None = None
    pool_avg: np.ndarray | None = None
    dx_pool_max: np.ndarray | None = None
    dx_pool_avg: np.ndarray | None = None

    @property
    def sizes(self):
        H, W, C, N = self.x.shape
        HH, WW, _, F = self.w.shape
        return H, W, C, N, HH, WW, F


def _full(a, shape):
    """Octave drops trailing singleton dimensions; put them back."""
    shape = tuple(int(s) for s in shape)
    assert a.size == int(np.prod(shape)), (a.shape, shape)
    return a.reshape(shape)


@functools.cache
def load_ref(path: Path) -> Ref:
    d = sio.loadmat(path)
    H, W, C, N = (int(v) for v in d["size_x"].ravel())
    HH, WW, _, F = (int(v) for v in d["size_w"].ravel())
    K = HH * WW * C
    hc, wc = d["dimg_covered"].shape[:2]
    sy, sx = (int(v) for v in np.broadcast_to(d["stride"].ravel(), (2,)))
    windows = ((hc - HH) // sy + 1, (wc - WW) // sx + 1)
    L = windows[0] * windows[1]
    y_shape = (*(*d["y"].shape, 1, 1)[:2], F, N)
    rrm_shape = tuple(int(v) for v in d["rrm_shape"].ravel())
    return Ref(
        id=str(d["case_id"][0]),
        x=_full(d["x"], (H, W, C, N)),
        w=_full(d["w"], (HH, WW, C, F)),
        b=None if d["b"].size == 0 else _full(d["b"], (F, 1)),
        stride=d["stride"],
        pad=d["pad"],
        is_conv=d["is_conv"],
        windows=windows,
        cols=_full(d["cols"], (K, L, N)),
        dcols=_full(d["dcols"], (L, K, N)),
        dimg_covered=_full(d["dimg_covered"], (hc, wc, C, N)),
        dimg=_full(d["dimg"], (H, W, C, N)),
        rrm_shape=rrm_shape,
        x_rrm=_full(d["x_rrm"], rrm_shape),
        rrm_infer=int(d["rrm_infer"].item()) - 1 if "rrm_infer" in d else None,
        x_rrm_infer=_full(d["x_rrm_infer"], rrm_shape) if "x_rrm_infer" in d else None,
        warned_im2col=bool(d["warned_im2col"].item()),
        warned_forward=bool(d["warned_forward"].item()),
        warned_backward=bool(d["warned_backward"].item()),
        warned_pool=bool(d["warned_pool"].item()) if "warned_pool" in d else None,
        y=_full(d["y"], y_shape),
        dout=_full(d["dout"], y_shape),
        dx=_full(d["dx"], (H, W, C, N)),
        dw=_full(d["dw"], (HH, WW, C, F)),
        db=_full(d["db"], (F, 1)),
        db_row=_full(d["db_row"], (1, F)) if "db_row" in d else None,
        **(
            {
                "dpool": _full(d["dpool"], (*windows, C, N)),
                "pool_max": _full(d["pool_max"], (*windows, C, N)),
                "pool_avg": _full(d["pool_avg"], (*windows, C, N)),
                "dx_pool_max": _full(d["dx_pool_max"], (H, W, C, N)),
                "dx_pool_avg": _full(d["dx_pool_avg"], (H, W, C, N)),
            }
            if "dpool" in d
            else {}
        ),
    )


def pads4(pad):
    p = np.atleast_1d(pad).ravel().astype(int).tolist()
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[0], p[1], p[1]]
    return p


def strides2(stride):
    s = np.atleast_1d(stride).ravel().astype(int).tolist()
    return (s[0], s[-1])


def fractional(size, kernel, stride, pad) -> bool:
    """Whether ``(H + T + B - HH) / SY + 1`` or the same across is not an integer."""
    (t, b, left, r), (sy, sx) = pads4(pad), strides2(stride)
    return bool((size[0] + t + b - kernel[0]) % sy or (size[1] + left + r - kernel[1]) % sx)


def size_warning(expected: bool):
    """``pytest.warns(OutputSizeWarning)`` where the sizes are fractional; else no warning at
    all may be raised (the suite turns warnings into errors)."""
    if expected:
        return pytest.warns(matlab.OutputSizeWarning, match="invalid stride or pad for the input")
    return contextlib.nullcontext()


def ref_fractional(ref) -> bool:
    H, W, _C, _N, HH, WW, _F = ref.sizes
    return fractional((H, W), (HH, WW), ref.stride, ref.pad)


fixture_params = pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])


def test_fixtures_are_committed():
    """The fixture set exists and holds the seed's three examples plus >= 20 cases."""
    names = {p.stem for p in FIXTURE_FILES}
    assert {"seed_alexnet", "seed_4x4x3_k2_f1", "seed_3x3_by_2x2"} <= names, names
    assert len(names) >= 23
    assert sum(p.stat().st_size for p in FIXTURE_FILES) < 2_000_000
    pooling = [p for p in FIXTURE_FILES if not load_ref(p).is_conv.item()]
    assert len(pooling) >= 3
    assert all(load_ref(p).pool_max is not None for p in pooling)


@fixture_params
def test_octave_warns_where_python_does(path):
    """Octave's .m files warned 'convcore:outputSize' exactly where the sizes are fractional."""
    ref = load_ref(path)
    frac = ref_fractional(ref)
    assert ref.warned_im2col == ref.warned_forward == ref.warned_backward == frac, ref.id
    assert ref.warned_pool in (None, frac), ref.id


def test_seed_alexnet_shapes():
    """The seed's numbers: X_col is 363 x 3025, the output 55 x 55 x 96."""
    ref = load_ref(MATLAB_REF / "fixtures" / "seed_alexnet.mat")
    assert ref.cols.shape == (363, 3025, 1)
    assert ref.y.shape == (55, 55, 96, 1)
    cols = matlab.im2col_ref(ref.x[:, :, :, 0], 11, 11, 4, 0)
    assert cols.shape == (363, 3025)


@fixture_params
@pytest.mark.declares("im2col", nd=2)
def test_fixture_im2col_ref(path, backend, np_ns, dtype, assert_close):
    ref = load_ref(path)
    _H, _W, _C, N, HH, WW, _F = ref.sizes
    for n in range(N):
        img = ref.x[:, :, :, n].astype(dtype)
        with size_warning(ref.warned_im2col):
            cols = matlab.im2col_ref(
                img, HH, WW, ref.stride, ref.pad, ref.is_conv, backend=backend.name
            )
        assert cols.dtype == dtype
        assert_close(cols, ref.cols[:, :, n], err_msg=f"{ref.id} image {n}")


@fixture_params
@pytest.mark.declares("col2im", nd=2)
def test_fixture_im2col_back_ref(path, backend, np_ns, dtype, assert_close):
    ref = load_ref(path)
    H, W, C, N, HH, WW, _F = ref.sizes
    ho, wo = ref.windows
    for n in range(N):
        dcols = ref.dcols[:, :, n].astype(dtype)
        covered = matlab.im2col_back_ref(dcols, ho, wo, ref.stride, HH, WW, C, backend=backend.name)
        assert_close(covered, ref.dimg_covered[:, :, :, n], err_msg=f"{ref.id} covered")
        img = matlab.im2col_back_ref(
            dcols, ho, wo, ref.stride, HH, WW, C, ref.pad, H, W, backend=backend.name
        )
        assert_close(img, ref.dimg[:, :, :, n], err_msg=f"{ref.id} image")


def check_reshape_row_major(ref):
    """reshape_row_major as Octave ran it: the shape, and the sizes with one inferred."""
    np.testing.assert_array_equal(matlab.reshape_row_major(ref.x, ref.rrm_shape), ref.x_rrm)
    assert ref.x_rrm_infer is not None, ref.id
    k = ref.rrm_infer
    for unknown in (None, -1, -1.0):  # MATLAB's []
        shape = list(ref.rrm_shape)
        shape[k] = unknown
        got = matlab.reshape_row_major(ref.x, shape)
        np.testing.assert_array_equal(got, ref.x_rrm_infer, err_msg=f"{ref.id} {shape}")
        got = matlab.reshape_row_major(ref.x, *shape)  # reshape_row_major(x, d1, [], d3)
        np.testing.assert_array_equal(got, ref.x_rrm_infer, err_msg=f"{ref.id} {shape}")


@fixture_params
def test_fixture_reshape_row_major(path):
    check_reshape_row_major(load_ref(path))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((5, -1), "not divisible by the product of the other dimensions, 5"),
        ((None, 2, None), "may infer one dimension"),
        ((-1, -1), "may infer one dimension"),
        ((0, None), "the others multiply to 0"),
        ((5, 3), r"shape \(5, 3\) has 15 elements but x has 12"),
        ((-2, 6), "shape must be >= 0"),
        ((2.5, None), "shape must be an integer"),
    ],
)
def test_reshape_row_major_inference_errors(shape, match):
    with pytest.raises(ValueError, match=match):
        matlab.reshape_row_major(np.arange(12.0), shape)


def test_reshape_row_major_inference_namespaces(make_ns):
    """The inferred size works on every namespace (through 1-D, as the plain shape)."""
    x = np.arange(24.0).reshape(2, 3, 4)
    for name in ("numpy", "array_api_strict", "torch", "dask"):
        try:
            ns = make_ns(name)
        except pytest.skip.Exception:
            continue
        got = matlab.reshape_row_major(ns.asarray(x), (4, None, 2))
        assert ns.is_native(got)
        np.testing.assert_array_equal(ns.to_numpy(got), x.reshape(4, 3, 2))


@fixture_params
@pytest.mark.declares("conv", nd=2)
def test_fixture_forward(path, backend, np_ns, dtype, assert_close):
    ref = load_ref(path)
    b = None if ref.b is None else ref.b.astype(dtype)
    with size_warning(ref.warned_forward):
        y = matlab.forward_propagation(
            ref.x.astype(dtype), ref.w.astype(dtype), b, ref.stride, ref.pad, backend=backend.name
        )
    assert y.dtype == dtype
    assert_close(y, ref.y, err_msg=ref.id)


@fixture_params
@pytest.mark.declares("conv_backward", nd=2)
def test_fixture_backward(path, backend, np_ns, dtype, assert_close):
    ref = load_ref(path)
    b = None if ref.b is None else ref.b.astype(dtype)
    with size_warning(ref.warned_backward):
        g = matlab.backward_propagation(
            ref.dout.astype(dtype),
            ref.x.astype(dtype),
            ref.w.astype(dtype),
            b,
            ref.stride,
            ref.pad,
            backend=backend.name,
        )
    assert_close(g.input, ref.dx, err_msg=f"{ref.id} input")
    assert_close(g.weight, ref.dw, err_msg=f"{ref.id} weight")
    # Octave's shape: F x 1 for an F x 1 bias and for none
    assert_close(g.bias, ref.db, err_msg=f"{ref.id} bias")


@fixture_params
@pytest.mark.declares("conv", "conv_backward", nd=2)
def test_fixture_bias_shapes(path, backend, np_ns, dtype, assert_close):
    """A 1 x F bias works as in Octave, and every bias gradient has the shape of its bias."""
    ref = load_ref(path)
    if ref.b is None:
        assert ref.db_row is None
        pytest.skip(f"{ref.id} has no bias")
    x, w, dout = (a.astype(dtype) for a in (ref.x, ref.w, ref.dout))
    kw = {"backend": backend.name}
    F = ref.w.shape[3]
    for bias, want in [
        (ref.b.reshape(1, F), ref.db_row),  # Octave: 1 x F in, 1 x F out
        (ref.b.reshape(F), ref.db.reshape(F)),  # Python's (F,): no MATLAB twin
    ]:
        bias = bias.astype(dtype)
        with size_warning(ref.warned_forward):
            y = matlab.forward_propagation(x, w, bias, ref.stride, ref.pad, **kw)
        assert_close(y, ref.y, err_msg=f"{ref.id} bias {bias.shape}")
        with size_warning(ref.warned_backward):
            g = matlab.backward_propagation(dout, x, w, bias, ref.stride, ref.pad, **kw)
        assert g.bias.shape == bias.shape
        assert_close(g.bias, want, err_msg=f"{ref.id} bias {bias.shape}")
        # the seed's update step keeps the shape
        assert (bias - 0.1 * g.bias).shape == bias.shape


def check_pooling(ref, dtype, kw, assert_close):
    """max_pool / avg_pool and their backward passes against Octave's *_pool_ref.m."""
    _H, _W, C, _N, HH, WW, _F = ref.sizes
    x, dpool = ref.x.astype(dtype), ref.dpool.astype(dtype)
    args = (HH, WW, ref.stride, ref.pad)
    got = matlab.max_pool(x, *args, **kw)
    assert got.dtype == dtype and got.shape == ref.pool_max.shape
    assert_close(got, ref.pool_max, err_msg=f"{ref.id} max_pool")
    assert_close(matlab.avg_pool(x, *args, **kw), ref.pool_avg, err_msg=f"{ref.id} avg_pool")
    dx = matlab.max_pool_backward(dpool, x, *args, **kw)
    assert dx.dtype == dtype
    assert_close(dx, ref.dx_pool_max, err_msg=f"{ref.id} max_pool_backward")
    for size in (x, x.shape, list(x.shape)):  # the input or its MATLAB size
        dx = matlab.avg_pool_backward(dpool, size, *args, **kw)
        assert_close(dx, ref.dx_pool_avg, err_msg=f"{ref.id} avg_pool_backward")
    # the seed's definitions: max and mean over each channel's rows of im2col_ref(..., 0)
    cols = ref.cols[:, :, 0].reshape(C, HH * WW, -1)  # rows ch*HH*WW + tap
    ho, wo = ref.windows
    np.testing.assert_array_equal(cols.max(axis=1).T.reshape(ho, wo, C), ref.pool_max[..., 0])


POOL_FILES = [p for p in FIXTURE_FILES if p.stem.startswith("pool_")]


@pytest.mark.parametrize("path", POOL_FILES, ids=[p.stem for p in POOL_FILES])
@pytest.mark.declares("im2col", "col2im", nd=2)
def test_fixture_pooling(path, backend, np_ns, dtype, assert_close):
    ref = load_ref(path)
    assert ref.pool_max is not None, ref.id
    assert ref.warned_pool == ref_fractional(ref)
    with size_warning(ref.warned_pool):
        check_pooling(ref, dtype, {"backend": backend.name}, assert_close)


def test_fixture_pool_ties_has_ties_and_padding_maxima():
    """pool_ties really tests the tie rule: windows with equal maxima, maxima in the padding."""
    ref = load_ref(MATLAB_REF / "fixtures" / "pool_ties.mat")
    _H, _W, C, N, HH, WW, _F = ref.sizes
    cols = ref.cols.reshape(C, HH * WW, -1, N)
    peak = cols.max(axis=1, keepdims=True)
    assert ((cols == peak).sum(axis=1) > 1).mean() > 0.5
    assert (peak == 0).any() and set(np.unique(ref.x)) <= {-2.0, -1.0, 0.0, 1.0}
    # the first maximum down the columns wins: not the row-major first one of convcore
    with size_warning(True):
        ours = matlab.max_pool_backward(ref.dpool, ref.x, HH, WW, ref.stride, ref.pad)
    core = convcore.max_pool2d_backward(
        ref.dpool, ref.x, (HH, WW), 2, 1, ceil_mode="cover_all", layout="HWCN"
    )
    np.testing.assert_allclose(ours, ref.dx_pool_max, rtol=1e-12, atol=1e-12)
    assert not np.allclose(core, ref.dx_pool_max)


@pytest.mark.parametrize("name", ["pad_tblr_stride_yx", "pool_ceil_padded", "seed_4x4x3_k2_f1"])
@pytest.mark.declares("im2col", "col2im", "conv", "conv_backward", nd=2, dtypes=["float64"])
def test_fixture_every_namespace(name, backend, ns, dtype, assert_close):
    """The adapter only uses the array API: each namespace in, the same namespace out."""
    ref = load_ref(MATLAB_REF / "fixtures" / f"{name}.mat")
    kw = {"backend": backend.name}
    b = None if ref.b is None else ns.asarray(ref.b)
    with size_warning(ref_fractional(ref)):
        outs = _every_namespace_outputs(ref, ns, b, kw)
    for key, (got, want) in outs.items():
        assert ns.is_native(got), f"{key}: {type(got)} is not a {ns.name} array"
        assert_close(ns.to_numpy(got), want, err_msg=key)


def _every_namespace_outputs(ref, ns, b, kw):
    H, W, C, _N, HH, WW, _F = ref.sizes
    ho, wo = ref.windows
    outs = {
        "cols": (
            matlab.im2col_ref(
                ns.asarray(ref.x[:, :, :, 0]), HH, WW, ref.stride, ref.pad, ref.is_conv, **kw
            ),
            ref.cols[:, :, 0],
        ),
        "dimg": (
            matlab.im2col_back_ref(
                ns.asarray(ref.dcols[:, :, 0]), ho, wo, ref.stride, HH, WW, C, ref.pad, H, W, **kw
            ),
            ref.dimg[:, :, :, 0],
        ),
        "rrm": (matlab.reshape_row_major(ns.asarray(ref.x), ref.rrm_shape), ref.x_rrm),
        "y": (
            matlab.forward_propagation(
                ns.asarray(ref.x), ns.asarray(ref.w), b, ref.stride, ref.pad, **kw
            ),
            ref.y,
        ),
    }
    g = matlab.backward_propagation(
        ns.asarray(ref.dout), ns.asarray(ref.x), ns.asarray(ref.w), b, ref.stride, ref.pad, **kw
    )
    outs.update(input=(g.input, ref.dx), weight=(g.weight, ref.dw))
    if ref.pool_max is not None:
        x = ns.asarray(ref.x)
        stride, pad = ref.stride, ref.pad
        dpool = ns.asarray(ref.dpool)
        outs.update(
            pool_max=(matlab.max_pool(x, HH, WW, stride, pad, **kw), ref.pool_max),
            pool_avg=(matlab.avg_pool(x, HH, WW, stride, pad, **kw), ref.pool_avg),
            dx_pool_max=(
                matlab.max_pool_backward(dpool, x, HH, WW, stride, pad, **kw),
                ref.dx_pool_max,
            ),
            dx_pool_avg=(
                matlab.avg_pool_backward(dpool, x, HH, WW, stride, pad, **kw),
                ref.dx_pool_avg,
            ),
        )
    return outs


@pytest.mark.parametrize("path", FIXTURE_FILES[:6], ids=[p.stem for p in FIXTURE_FILES[:6]])
def test_fixture_layer(path, assert_close):
    """ConvolutionLayer caches like the seed's object; the seed's method names work too."""
    ref = load_ref(path)
    layer = matlab.ConvolutionLayer(ref.stride, ref.pad)
    with size_warning(ref.warned_forward):
        y = layer.ForwardPropagation(ref.x, ref.w, ref.b)
    assert layer.previous_input is ref.x and layer.weights is ref.w and layer.activations is y
    assert_close(y, ref.y)
    with size_warning(ref.warned_backward):  # the next layer's struct
        g = layer.BackwardPropagation(matlab.Gradient(ref.dout, None, None))
    assert_close(g.input, ref.dx)
    assert_close(g.weight, ref.dw)


# --------------------------------------------------------------------------
# Independent oracles: direct loops
# --------------------------------------------------------------------------


def im2col_matlab_loops(img, kh, kw, stride, pad, is_conv=True):
    """MATLAB's im2col_ref by definition: each window read pixel by pixel into patch(:)."""
    img = img.reshape(img.shape[0], img.shape[1], -1)
    H, W, C = img.shape
    (sy, sx), (t, b, left, r) = stride, pads4(pad)
    rnd = np.floor if is_conv else np.ceil
    ho = int(rnd((H + t + b - kh) / sy)) + 1
    wo = int(rnd((W + left + r - kw) / sx)) + 1
    cols = np.zeros((kh * kw * C, ho * wo))
    for oh in range(ho):
        for ow in range(wo):
            col = []
            for c in range(C):  # patch(:): i fastest, then j, then channel
                for j in range(kw):
                    for i in range(kh):
                        ih, iw = oh * sy + i - t, ow * sx + j - left
                        inside = 0 <= ih < H and 0 <= iw < W
                        col.append(img[ih, iw, c] if inside else 0.0)
            cols[:, oh * wo + ow] = col
    return cols


def im2col_back_matlab_loops(dcols, ho, wo, stride, kh, kw, C, pad=None, H=None, W=None):
    """The adjoint by definition: every entry added onto the pixel its window read."""
    (sy, sx) = stride
    t, _, left, _ = pads4(0 if pad is None else pad)
    if H is None:
        H, W = (ho - 1) * sy + kh, (wo - 1) * sx + kw
    out = np.zeros((H, W, C))
    for row in range(ho * wo):
        oh, ow = divmod(row, wo)
        k = 0
        for c in range(C):
            for j in range(kw):
                for i in range(kh):
                    ih, iw = oh * sy + i - t, ow * sx + j - left
                    if 0 <= ih < H and 0 <= iw < W:
                        out[ih, iw, c] += dcols[row, k]
                    k += 1
    return out


# cases.CASES without groups, dilation or "same" padding, in MATLAB form
ORACLE_CASES = [
    c for c in CASES if c.groups == 1 and c.dilation == 1 and not isinstance(c.padding, str)
]


@pytest.mark.parametrize("case", ORACLE_CASES, ids=[c.id for c in ORACLE_CASES])
@pytest.mark.declares("im2col", "col2im", "conv", "conv_backward", nd=2, dtypes=["float64"])
def test_against_loop_oracle(case, backend, np_ns, dtype, assert_close):
    rng = np.random.default_rng(sum(map(ord, case.id)))
    stride = case.stride if isinstance(case.stride, tuple) else (case.stride,) * 2
    pad = list(case.padding4)  # MATLAB [T B L R]
    x = rng.standard_normal((case.H, case.W, case.C, case.N))
    w = rng.standard_normal((*case.kernel, case.C, case.F))
    b = rng.standard_normal((case.F, 1))
    ho, wo = case.out_size
    dout = rng.standard_normal((ho, wo, case.F, case.N))
    kw = {"backend": backend.name}
    # forward and backward: the naive oracle in NCHW
    to_nchw, to_matlab = (3, 2, 0, 1), (2, 3, 1, 0)
    geo = (stride, tuple(pad), (1, 1))
    frac = fractional((case.H, case.W), case.kernel, stride, pad)
    with size_warning(frac):
        y = matlab.forward_propagation(x, w, b, list(stride), pad, **kw)
    want = naive.conv(x.transpose(to_nchw), w.transpose(to_nchw), b.ravel(), *geo, groups=1)
    assert_close(y, want.transpose(to_matlab))
    with size_warning(frac):
        g = matlab.backward_propagation(dout, x, w, b, list(stride), pad, **kw)
    dx, dw, db = naive.conv_backward(
        dout.transpose(to_nchw), x.transpose(to_nchw), w.transpose(to_nchw), *geo, groups=1
    )
    assert_close(g.input, dx.transpose(to_matlab))
    assert_close(g.weight, dw.transpose(to_matlab))
    assert_close(g.bias, db.reshape(-1, 1))
    # columns and their adjoint: direct loops, convolution and pooling windows
    kh, kwd = case.kernel
    for is_conv in (True, False):
        with size_warning(frac):
            cols = matlab.im2col_ref(x[:, :, :, 0], kh, kwd, stride, pad, is_conv, **kw)
        want_cols = im2col_matlab_loops(x[:, :, :, 0], kh, kwd, stride, pad, is_conv)
        np.testing.assert_array_equal(cols, want_cols)
        t, bb, left, r = pad
        rnd = np.floor if is_conv else np.ceil
        wh = int(rnd((case.H + t + bb - kh) / stride[0])) + 1
        ww = int(rnd((case.W + left + r - kwd) / stride[1])) + 1
        d = rng.standard_normal(cols.T.shape)
        got = matlab.im2col_back_ref(d, wh, ww, stride, kh, kwd, case.C, pad, case.H, case.W, **kw)
        want_img = im2col_back_matlab_loops(d, wh, ww, stride, kh, kwd, case.C, pad, case.H, case.W)
        assert_close(got, want_img)
        got = matlab.im2col_back_ref(d, wh, ww, stride, kh, kwd, case.C, **kw)
        assert_close(got, im2col_back_matlab_loops(d, wh, ww, stride, kh, kwd, case.C))


@st.composite
def window_geometries(draw):
    """Random windows: kernel, stride (may exceed the kernel), [T B L R], conv or pooling."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pad = [draw(st.integers(0, 3)) for _ in range(4)]
    is_conv = draw(st.booleans())
    H = draw(st.integers(max(1, kh - pad[0] - pad[1]), 7))
    W = draw(st.integers(max(1, kw - pad[2] - pad[3]), 7))
    C = draw(st.integers(1, 3))
    return H, W, C, kh, kw, stride, pad, is_conv


@settings(max_examples=60, deadline=None)
@given(geom=window_geometries(), seed=st.integers(0, 2**32 - 1))
@pytest.mark.declares("im2col", "col2im", nd=2, dtypes=["float64"])
def test_im2col_back_ref_is_exact_adjoint(backend, np_ns, dtype, geom, seed):
    """<im2col_ref(z), D'> == <z, im2col_back_ref(D)>, for the image and the covered forms."""
    H, W, C, kh, kw, stride, pad, is_conv = geom
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((H, W, C))
    with size_warning(fractional((H, W), (kh, kw), stride, pad)):
        cols = matlab.im2col_ref(z, kh, kw, stride, pad, is_conv, backend=backend.name)
    np.testing.assert_array_equal(cols, im2col_matlab_loops(z, kh, kw, stride, pad, is_conv))
    d = rng.standard_normal(cols.T.shape)
    (t, b, left, r), (sy, sx) = pad, stride
    rnd = np.floor if is_conv else np.ceil
    ho = int(rnd((H + t + b - kh) / sy)) + 1
    wo = int(rnd((W + left + r - kw) / sx)) + 1
    back = matlab.im2col_back_ref(d, ho, wo, stride, kh, kw, C, pad, H, W, backend=backend.name)
    lhs, rhs = np.vdot(cols, d.T), np.vdot(z, back)
    assert abs(lhs - rhs) <= 1e-12 * (np.vdot(np.abs(cols), np.abs(d.T)) + 1.0), (lhs, rhs)
    # the seed's 7-argument form: adjoint of im2col_ref on the covered region, unpadded
    zc = rng.standard_normal(((ho - 1) * sy + kh, (wo - 1) * sx + kw, C))
    cols_c = matlab.im2col_ref(zc, kh, kw, stride, 0, True, backend=backend.name)
    back_c = matlab.im2col_back_ref(d, ho, wo, stride, kh, kw, C, backend=backend.name)
    lhs, rhs = np.vdot(cols_c, d.T), np.vdot(zc, back_c)
    assert abs(lhs - rhs) <= 1e-12 * (np.vdot(np.abs(cols_c), np.abs(d.T)) + 1.0), (lhs, rhs)


# --------------------------------------------------------------------------
# Layout, ordering and option forms
# --------------------------------------------------------------------------


def test_matlab_order_is_not_unfold_order():
    """im2col_ref's rows are patch(:) (down columns); convcore.im2col's are unfold order."""
    img = np.arange(12.0).reshape(3, 4)  # img[h, w]
    ours = matlab.im2col_ref(img, 2, 3, 1, 0)
    unfold = convcore.im2col(img[None, None], (2, 3))[0]
    assert not np.array_equal(ours, unfold)
    # row i + 2*j of ours is tap (i, j); row i*3 + j of unfold is tap (i, j)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(ours[i + 2 * j], unfold[i * 3 + j])
    # columns: window (r, c) at r*W' + c in both
    np.testing.assert_array_equal(ours[:, 1], img[0:2, 1:4].ravel(order="F"))


def test_outputs_keep_four_dimensions():
    """MATLAB would drop trailing singletons; the adapter always returns (H', W', F, N)."""
    x = np.ones((4, 5))  # C = N = 1, given the MATLAB way
    w = np.ones((3, 3))  # C = F = 1
    y = matlab.forward_propagation(x, w, None, 1, 1)
    assert y.shape == (4, 5, 1, 1)
    g = matlab.backward_propagation(y, x, w, None, 1, 1)
    assert g.input.shape == (4, 5, 1, 1) and g.weight.shape == (3, 3, 1, 1)
    assert g.bias.shape == (1, 1)  # no bias: F x 1, as Octave
    g = matlab.backward_propagation(y, x, w, np.zeros((1, 1)), 1, 1)
    assert g.bias.shape == (1, 1)
    g = matlab.backward_propagation(y, x, w, np.zeros(1), 1, 1)
    assert g.bias.shape == (1,)


@pytest.mark.parametrize("shape", [None, (0, 0), (3,), (3, 1), (1, 3)])
def test_bias_gradient_has_the_shape_of_the_bias(shape):
    """(F,), F x 1 and 1 x F keep their shape; none (None or MATLAB's []) gives F x 1."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((4, 5, 2, 2)), rng.standard_normal((2, 2, 2, 3))
    bias = None if shape is None else np.arange(float(np.prod(shape))).reshape(shape)
    y = matlab.forward_propagation(x, w, bias, 1, 0)
    g = matlab.backward_propagation(np.ones_like(y), x, w, bias, 1, 0)
    want = (3, 1) if shape in (None, (0, 0)) else shape
    assert g.bias.shape == want
    np.testing.assert_allclose(g.bias.ravel(), np.full(3, 3 * 4 * 2))
    layer = matlab.ConvolutionLayer(1, 0)
    layer.forward_propagation(x, w, bias)
    assert layer.backward_propagation(np.ones_like(y)).bias.shape == want
    assert matlab.im2col_back_ref(np.ones((1, 9)), 1, 1, 1, 3, 3, 1).shape == (3, 3, 1)


def test_bias_is_added_per_filter():
    x = np.zeros((2, 2, 1, 1))
    w = np.zeros((1, 1, 1, 3))
    for bias in (np.array([1.0, 2, 3]), np.array([[1.0], [2], [3]]), np.array([[1.0, 2, 3]])):
        y = matlab.forward_propagation(x, w, bias, 1, 0)
        np.testing.assert_array_equal(y[0, 0, :, 0], [1, 2, 3])
    assert not matlab.forward_propagation(x, w, np.zeros((0, 0)), 1, 0).any()  # MATLAB's []


@pytest.mark.parametrize(
    ("stride", "pad", "same_as"),
    [
        ([2, 2], [1, 1, 1, 1], (2, 1)),
        (np.array([[2.0, 2.0]]), np.array([[1.0]]), (2, 1)),  # as scipy.io.loadmat returns them
        (2.0, (1, 1), (2, 1)),
        (np.int64(2), np.array(1), (2, 1)),
        ((2, 1), [0, 1, 2, 0], ((2, 1), (0, 1, 2, 0))),
    ],
)
def test_matlab_option_forms(stride, pad, same_as):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((6, 7, 2, 2)), rng.standard_normal((3, 2, 2, 3))
    with size_warning(fractional((6, 7), (3, 2), stride, pad)):  # e.g. (6 + 2 - 3) / 2 + 1
        y = matlab.forward_propagation(x, w, None, stride, pad)
        np.testing.assert_array_equal(y, matlab.forward_propagation(x, w, None, *same_as))


def test_layer_backward_before_forward():
    layer = matlab.ConvolutionLayer(1, 0)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward_propagation(np.ones((2, 2, 1, 1)))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((5, 6, 2, 2)), rng.standard_normal((3, 3, 2, 4)), np.ones(4)
    copies = [a.copy() for a in (x, w, b)]
    with size_warning(True):  # (5 + 1 - 3) / 2 + 1 = 2.5
        y = matlab.forward_propagation(x, w, b, 2, [1, 0, 0, 1])
        matlab.backward_propagation(y, x, w, b, 2, [1, 0, 0, 1])
        matlab.im2col_ref(x[:, :, :, 0], 3, 3, 2, 1)
        pooled = matlab.max_pool(x, 3, 3, 2, 1)
        matlab.max_pool_backward(np.ones_like(pooled), x, 3, 3, 2, 1)
        matlab.avg_pool(x, 3, 3, 2, 1)
        matlab.avg_pool_backward(np.ones_like(pooled), x, 3, 3, 2, 1)
    for a, c in zip((x, w, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------
# Errors name the parameter
# --------------------------------------------------------------------------

X = np.ones((5, 6, 2, 1))
WGT = np.ones((3, 3, 2, 4))
IMG = np.ones((5, 6, 2))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: matlab.im2col_ref([[1.0]], 1, 1), TypeError, "img must be an array"),
        (lambda: matlab.im2col_ref(X, 2, 2), ValueError, "img must be one image"),
        (lambda: matlab.im2col_ref(IMG, 0, 2), ValueError, "k_height must be >= 1"),
        (lambda: matlab.im2col_ref(IMG, 2, 2.5), ValueError, "k_width must be an integer"),
        (lambda: matlab.im2col_ref(IMG, 2, "2"), TypeError, "k_width must be an integer"),
        (lambda: matlab.im2col_ref(IMG, 2, 2, True), TypeError, "stride must be an integer"),
        (lambda: matlab.im2col_ref(IMG, 2, 2, 0), ValueError, "stride must be >= 1"),
        (
            lambda: matlab.im2col_ref(IMG, 2, 2, [1, 2, 3]),
            ValueError,
            r"stride must be .*\[SY SX\]",
        ),
        (lambda: matlab.im2col_ref(IMG, 2, 2, 1, -1), ValueError, "pad must be >= 0"),
        (lambda: matlab.im2col_ref(IMG, 2, 2, 1, [1, 2, 3]), ValueError, r"\[T B L R\]"),
        (lambda: matlab.im2col_ref(IMG, 2, 2, 1, 0, 2), ValueError, "is_conv must be"),
        (lambda: matlab.im2col_ref(IMG, 7, 2), ValueError, r"window \(k_height, k_width\)"),
        (
            lambda: matlab.im2col_back_ref(np.ones((4, 3)), 2, 2, 1, 2, 2, 1),
            ValueError,
            r"dcols must have shape \(dout_h\*dout_w, hh\*ww\*c\) = \(4, 4\)",
        ),
        (
            lambda: matlab.im2col_back_ref(np.ones((4, 4)), 2, 2, 1, 2, 2, 1, 1),
            ValueError,
            "pad needs img_h and img_w",
        ),
        (
            lambda: matlab.im2col_back_ref(np.ones((4, 4)), 2, 2, 1, 2, 2, 1, 0, 3),
            ValueError,
            "img_h and img_w must be given together",
        ),
        (
            lambda: matlab.im2col_back_ref(np.ones((4, 4)), 2, 2, 1, 2, 2, 1, 0, 5, 3),
            ValueError,
            "dout_h=2 windows do not fit",
        ),
        (lambda: matlab.forward_propagation(X, np.ones((3, 3, 3, 4))), ValueError, "C=2 channels"),
        (
            lambda: matlab.forward_propagation(X, WGT, np.ones(3)),
            ValueError,
            r"bias must have shape \(4,\)",
        ),
        (
            lambda: matlab.forward_propagation(X, WGT, np.ones((2, 2))),
            ValueError,
            r"bias must have shape \(4,\), \(4, 1\) or \(1, 4\)",
        ),
        (
            lambda: matlab.backward_propagation(np.ones((3, 4, 4, 1)), X, WGT, np.ones((1, 1, 4))),
            ValueError,
            "bias must have",
        ),
        (lambda: matlab.forward_propagation(X[None], WGT), ValueError, r"x must be \(H, W, C, N\)"),
        (lambda: matlab.forward_propagation(X, np.ones(3)), ValueError, "weights must be"),
        (
            lambda: matlab.forward_propagation(X, WGT.astype(np.float32)),
            TypeError,
            "weights has dtype",
        ),
        (
            lambda: matlab.forward_propagation(X, np.ones((7, 3, 2, 1))),
            ValueError,
            r"filters \(weights\) of size \(HH, WW\) \(7, 3\) spans 7",
        ),
        (lambda: matlab.forward_propagation(X, "w"), TypeError, "weights must be an array"),
        (
            lambda: matlab.backward_propagation(np.ones((4, 4, 4, 1)), X, WGT),
            ValueError,
            r"dout must have shape \(H', W', F, N\) = \(3, 4, 4, 1\)",
        ),
        (lambda: matlab.reshape_row_major(X, (7, 9)), ValueError, "shape"),
        (lambda: matlab.ConvolutionLayer(stride=[1, 1, 1]), ValueError, "stride"),
    ],
)
def test_errors_name_the_parameter(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mixed_namespaces_are_rejected(make_ns):
    torch = make_ns("torch")
    with pytest.raises(TypeError, match="weights is a torch array but x is a numpy array"):
        matlab.forward_propagation(X, torch.asarray(WGT))


# --------------------------------------------------------------------------
# Live: GNU Octave runs the .m files
# --------------------------------------------------------------------------


def _make_fixtures_module():
    """matlab_ref/make_fixtures.py (not a package), imported by path."""
    if "convcore_make_fixtures" in sys.modules:
        return sys.modules["convcore_make_fixtures"]
    spec = importlib.util.spec_from_file_location(
        "convcore_make_fixtures", MATLAB_REF / "make_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _random_cases(mf, seed, count=8):
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(count):
        kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        pad = tuple(int(v) for v in rng.integers(0, 3, size=4))
        H = int(rng.integers(max(1, kh - pad[0] - pad[1]), 9))
        W = int(rng.integers(max(1, kw - pad[2] - pad[3]), 9))
        form = k % 3  # exercise every MATLAB option form
        stride_opt = stride if form else stride[0]
        pad_opt = pad if form == 2 else (pad[0], pad[2]) if form == 1 else pad[0]
        case = mf.Case(
            f"random_{k}",
            N=int(rng.integers(1, 3)),
            C=int(rng.integers(1, 4)),
            H=H,
            W=W,
            F=int(rng.integers(1, 4)),
            kernel=(kh, kw),
            stride=stride_opt,
            pad=pad_opt,
            is_conv=bool(k % 2),
            bias=bool(k % 4),
            pattern="ties" if k % 4 == 2 else None,  # pooling with many equal maxima
        )
        t, b, left, r = case.pads
        if kh <= H + t + b and kw <= W + left + r:
            cases.append(case)
    return cases


@pytest.fixture(scope="module")
def live_cases(tmp_path_factory):
    """Fresh random cases run through the .m files now: ``(seed, [Ref, ...])``."""
    if OCTAVE is None:
        pytest.skip("octave-cli (GNU Octave) is not on PATH")
    mf = _make_fixtures_module()
    seed = int(np.random.SeedSequence().entropy % 2**32)
    cases = _random_cases(mf, seed)
    in_dir, out_dir = tmp_path_factory.mktemp("octave_in"), tmp_path_factory.mktemp("octave_out")
    mf.write_cases(cases, in_dir)
    mf.run_octave(in_dir, out_dir, OCTAVE)
    return seed, [load_ref(out_dir / f"{c.id}.mat") for c in cases]


@needs_octave
@pytest.mark.declares("im2col", "col2im", "conv", "conv_backward", nd=2, dtypes=["float64"])
def test_live_octave_random_cases(live_cases, backend, np_ns, dtype, assert_close):
    seed, refs = live_cases
    kw = {"backend": backend.name}
    assert refs, "no valid random case"
    for ref in refs:
        msg = f"{ref.id} (random seed {seed}; stride {ref.stride}, pad {ref.pad})"
        frac = ref_fractional(ref)
        assert ref.warned_im2col == ref.warned_forward == ref.warned_backward == frac, msg
        assert ref.warned_pool in (None, frac), msg
        with size_warning(frac):
            _check_live_ref(ref, kw, msg, assert_close)
        if ref.pool_max is not None:
            with size_warning(frac):
                check_pooling(ref, np.float64, kw, assert_close)


def _check_live_ref(ref, kw, msg, assert_close):
    if True:
        H, W, C, N, HH, WW, _F = ref.sizes
        ho, wo = ref.windows
        for n in range(N):
            cols = matlab.im2col_ref(
                ref.x[:, :, :, n], HH, WW, ref.stride, ref.pad, ref.is_conv, **kw
            )
            assert_close(cols, ref.cols[:, :, n], err_msg=msg)
            img = matlab.im2col_back_ref(
                ref.dcols[:, :, n], ho, wo, ref.stride, HH, WW, C, ref.pad, H, W, **kw
            )
            assert_close(img, ref.dimg[:, :, :, n], err_msg=msg)
            covered = matlab.im2col_back_ref(
                ref.dcols[:, :, n], ho, wo, ref.stride, HH, WW, C, **kw
            )
            assert_close(covered, ref.dimg_covered[:, :, :, n], err_msg=msg)
        y = matlab.forward_propagation(ref.x, ref.w, ref.b, ref.stride, ref.pad, **kw)
        assert_close(y, ref.y, err_msg=msg)
        g = matlab.backward_propagation(ref.dout, ref.x, ref.w, ref.b, ref.stride, ref.pad, **kw)
        assert_close(g.input, ref.dx, err_msg=msg)
        assert_close(g.weight, ref.dw, err_msg=msg)
        assert_close(g.bias, ref.db, err_msg=msg)
        if ref.b is not None:
            g_row = matlab.backward_propagation(
                ref.dout, ref.x, ref.w, ref.b.reshape(1, -1), ref.stride, ref.pad, **kw
            )
            assert_close(g_row.bias, ref.db_row, err_msg=msg)
        check_reshape_row_major(ref)


@needs_octave
def test_live_committed_fixtures_are_current():
    """Regenerating the fixtures with the current .m files gives the committed numbers."""
    mf = _make_fixtures_module()
    with tempfile.TemporaryDirectory() as tmp:
        with tempfile.TemporaryDirectory() as inputs:
            mf.write_cases(mf.CASES, Path(inputs))
            mf.run_octave(Path(inputs), Path(tmp), OCTAVE)
        fresh = sorted(p.name for p in Path(tmp).glob("*.mat"))
        assert fresh == [p.name for p in FIXTURE_FILES], "fixture set differs from CASES"
        for name in fresh:
            new, old = sio.loadmat(Path(tmp) / name), sio.loadmat(MATLAB_REF / "fixtures" / name)
            for key in new:
                if key.startswith("__") or key == "octave_version":
                    continue
                if new[key].dtype.kind == "U":
                    assert new[key] == old[key], (name, key)
                    continue
                np.testing.assert_allclose(
                    new[key], old[key], rtol=1e-12, atol=1e-12, err_msg=f"{name}: {key}"
                )


SEED_BUGS = [
    "missing_ends",
    "missing_else_pad",
    "missing_else_conv",
    "pool_overhang_skipped",
    "bias_overwritten",
    "size_not_floored",
    "reshape_uses_HW",
    "start_row_stride",
    "pad_removal_is_1",
    "back_ref_ignores_pad",
    "reshape_row_major_undefined",
    "forward_reshape_F",
    "backward_reshape_F",
    "back_ref_patch_order",
]


@needs_octave
def test_live_seed_literal_code_shows_each_bug():
    """show_seed_bugs.m: the seed's literal code shows every bug, the fixed code passes."""
    proc = subprocess.run(
        [OCTAVE, "--no-gui", "--norc", "--quiet", str(MATLAB_REF / "show_seed_bugs.m")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("BUG ", "FIX "))]
    status = {tuple(line.split()[:2]): line.split()[2].rstrip(":") for line in lines}
    for name in SEED_BUGS:
        assert status.get(("BUG", name)) == "CONFIRMED", (name, proc.stdout)
        assert status.get(("FIX", name)) == "OK", (name, proc.stdout)
    assert len(status) == 2 * len(SEED_BUGS), proc.stdout


# --------------------------------------------------------------------------
# The output-size warning and strict()
# --------------------------------------------------------------------------

X5 = np.ones((5, 6, 2, 3))  # (5 + 0 - 2) / 2 + 1 = 2.5: fractional down, integral across
W2 = np.ones((2, 2, 2, 4))

WARNING_CALLS = {
    "im2col_ref": (lambda: matlab.im2col_ref(X5[:, :, :, 0], 2, 2, 2), "ceil", "2 x 3"),
    "im2col_ref pooling": (
        lambda: matlab.im2col_ref(X5[:, :, :, 0], 2, 2, 2, 0, False),
        "ceil",
        "3 x 3",
    ),
    "forward_propagation": (lambda: matlab.forward_propagation(X5, W2, None, 2), "floor", "2 x 3"),
    "backward_propagation": (
        lambda: matlab.backward_propagation(np.ones((2, 3, 4, 3)), X5, W2, None, 2),
        "floor",
        "2 x 3",
    ),
    "ConvolutionLayer": (
        lambda: matlab.ConvolutionLayer(2).forward_propagation(X5, W2),
        "floor",
        "2 x 3",
    ),
    "max_pool": (lambda: matlab.max_pool(X5, 2, 2), "ceil", "3 x 3"),
    "avg_pool": (lambda: matlab.avg_pool(X5, 2, 2), "ceil", "3 x 3"),
    "max_pool_backward": (
        lambda: matlab.max_pool_backward(np.ones((3, 3, 2, 3)), X5, 2, 2),
        "ceil",
        "3 x 3",
    ),
    "avg_pool_backward": (
        lambda: matlab.avg_pool_backward(np.ones((3, 3, 2, 3)), X5.shape, 2, 2),
        "ceil",
        "3 x 3",
    ),
}
WARNING_CALLS["im2col_ref"] = (WARNING_CALLS["im2col_ref"][0], "floor", "2 x 3")


@pytest.mark.parametrize("name", list(WARNING_CALLS))
def test_fractional_sizes_warn_naming_the_sizes(name):
    call, rule, size = WARNING_CALLS[name]
    with pytest.warns(matlab.OutputSizeWarning) as record:
        call()
    assert len(record) == 1, [str(w.message) for w in record]  # once per call
    message = str(record[0].message)
    assert "(H + T + B - HH) / SY + 1 = (5 + 0 + 0 - 2) / 2 + 1 = 2.5 is not an integer" in message
    assert "(W + L + R - WW)" not in message  # (6 - 2) / 2 + 1 = 3 is fine
    assert f"takes the {rule}: H' x W' = {size}" in message
    assert record[0].filename == __file__  # it points at the caller, not into convcore
    assert issubclass(matlab.OutputSizeWarning, UserWarning)


@pytest.mark.parametrize("name", list(WARNING_CALLS))
def test_strict_raises_instead(name):
    call, rule, size = WARNING_CALLS[name]
    with matlab.strict():
        with pytest.raises(ValueError, match=r"= 2\.5 is not an integer \(strict\(\) is on") as e:
            call()
        assert f"would take the {rule}: H' x W' = {size}" in str(e.value)
        with matlab.strict(False), pytest.warns(matlab.OutputSizeWarning):
            call()
        with pytest.raises(ValueError):  # restored on exit
            call()
    with pytest.warns(matlab.OutputSizeWarning):  # off again
        call()


def test_strict_leaves_integral_sizes_alone_and_is_thread_local():
    import threading

    with matlab.strict() as on:
        assert on is True
        y = matlab.forward_propagation(np.ones((4, 6)), np.ones((2, 2)), None, 2)
        assert y.shape == (2, 3, 1, 1)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(matlab._strict.get()))
        thread.start()
        thread.join()
        assert seen == [False]
    with pytest.raises(ValueError, match="enabled must be"):
        with matlab.strict(2):
            pass


def test_both_axes_named():
    with pytest.warns(matlab.OutputSizeWarning) as record:
        matlab.forward_propagation(np.ones((5, 7)), np.ones((2, 2)), None, [2, 3], [0, 0, 0, 0])
    message = str(record[0].message)
    assert "(5 + 0 + 0 - 2) / 2 + 1 = 2.5 is not an integer, nor" in message
    assert "nor (W + L + R - WW) / SX + 1 = (7 + 0 + 0 - 2) / 3 + 1 = 2.66667;" in message
    assert "the last 1 row and 2 columns of the padded input unread" in message
    with pytest.warns(matlab.OutputSizeWarning) as record:  # only across
        matlab.forward_propagation(np.ones((5, 7)), np.ones((2, 2)), None, [2, 3], [0, 1, 0, 0])
    message = str(record[0].message)
    assert "(H + T + B - HH)" not in message and " nor " not in message
    assert "(W + L + R - WW) / SX + 1 = (7 + 0 + 0 - 2) / 3 + 1 = 2.66667 is not an" in message


# --------------------------------------------------------------------------
# Pooling: direct loops, NaN, forms and errors
# --------------------------------------------------------------------------


def pool_loops(x, kh, kw, stride, pad):
    """The seed's pooling by definition: each window read pixel by pixel, zeros outside.

    Returns the maxima, the means, and for each window the (ih, iw) of MATLAB's first
    maximum over patch(:) (i fastest), or None when it is padding/overhang.
    """
    H, W, C, N = x.shape
    (sy, sx), (t, b, left, r) = stride, pads4(pad)
    ho = -(-(H + t + b - kh) // sy) + 1
    wo = -(-(W + left + r - kw) // sx) + 1
    mx, av = np.zeros((ho, wo, C, N)), np.zeros((ho, wo, C, N))
    where = {}
    for n in range(N):
        for c in range(C):
            for oh in range(ho):
                for ow in range(wo):
                    vals, cells = [], []
                    for j in range(kw):
                        for i in range(kh):  # patch(:): down the columns
                            ih, iw = oh * sy + i - t, ow * sx + j - left
                            inside = 0 <= ih < H and 0 <= iw < W
                            vals.append(x[ih, iw, c, n] if inside else 0.0)
                            cells.append((ih, iw) if inside else None)
                    v = np.array(vals)
                    ok = ~np.isnan(v)
                    k = int(np.argmax(np.where(ok, v, -np.inf))) if ok.any() else 0
                    mx[oh, ow, c, n] = v[k] if ok.any() else np.nan
                    av[oh, ow, c, n] = v.sum() / (kh * kw)
                    where[oh, ow, c, n] = cells[k]
    return mx, av, where


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pad = [draw(st.integers(0, 3)) for _ in range(4)]
    H = draw(st.integers(max(1, kh - pad[0] - pad[1]), 6))
    W = draw(st.integers(max(1, kw - pad[2] - pad[3]), 6))
    C, N = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ties = draw(st.booleans())
    return H, W, C, N, kh, kw, stride, pad, ties


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), seed=st.integers(0, 2**32 - 1))
@pytest.mark.declares("im2col", "col2im", nd=2, dtypes=["float64"])
def test_pooling_against_loops(backend, np_ns, dtype, case, seed):
    H, W, C, N, kh, kw, stride, pad, ties = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((H, W, C, N))
    if ties:
        x = np.clip(np.floor(x), -2, 1)
    mx, av, where = pool_loops(x, kh, kw, stride, pad)
    dout = rng.standard_normal(mx.shape)
    want_dx = np.zeros_like(x)
    for (oh, ow, c, n), cell in where.items():
        if cell is not None:
            want_dx[cell[0], cell[1], c, n] += dout[oh, ow, c, n]
    want_da = np.zeros_like(x)
    (sy, sx), (t, _b, left, _r) = stride, pads4(pad)
    for (oh, ow, c, n), _ in where.items():
        for i in range(kh):
            for j in range(kw):
                ih, iw = oh * sy + i - t, ow * sx + j - left
                if 0 <= ih < H and 0 <= iw < W:
                    want_da[ih, iw, c, n] += dout[oh, ow, c, n] / (kh * kw)
    kwargs = {"backend": backend.name}
    with size_warning(fractional((H, W), (kh, kw), stride, pad)):
        np.testing.assert_array_equal(matlab.max_pool(x, kh, kw, stride, pad, **kwargs), mx)
        np.testing.assert_allclose(matlab.avg_pool(x, kh, kw, stride, pad, **kwargs), av)
        dx = matlab.max_pool_backward(dout, x, kh, kw, stride, pad, **kwargs)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)
        da = matlab.avg_pool_backward(dout, x, kh, kw, stride, pad, **kwargs)
        np.testing.assert_allclose(da, want_da, rtol=1e-12, atol=1e-12)


def test_max_pool_nan_is_skipped_as_matlab_max():
    x = np.array([[np.nan, 1.0], [np.nan, -np.inf]])  # one window
    assert matlab.max_pool(x, 2, 2)[0, 0, 0, 0] == 1.0
    dx = matlab.max_pool_backward(np.ones((1, 1)), x, 2, 2)[:, :, 0, 0]
    np.testing.assert_array_equal(dx, [[0, 1], [0, 0]])
    x = np.array([[np.nan, -np.inf], [np.nan, np.nan]])  # [m, i] = max: -Inf, its index
    dx = matlab.max_pool_backward(np.ones((1, 1)), x, 2, 2)[:, :, 0, 0]
    np.testing.assert_array_equal(dx, [[0, 1], [0, 0]])
    x = np.full((2, 2), np.nan)  # all NaN: NaN, first tap
    assert np.isnan(matlab.max_pool(x, 2, 2)[0, 0, 0, 0])
    dx = matlab.max_pool_backward(np.ones((1, 1)), x, 2, 2)[:, :, 0, 0]
    np.testing.assert_array_equal(dx, [[1, 0], [0, 0]])


def test_pooling_forms():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 4, 3, 2))
    y = matlab.max_pool(x, 2, 2)  # stride defaults to the window
    np.testing.assert_array_equal(y, matlab.max_pool(x, 2, 2, [2, 2], 0))
    assert y.shape == (3, 2, 3, 2)
    assert matlab.avg_pool(x[:, :, 0, 0], 3, 2, [3, 2]).shape == (2, 2, 1, 1)  # 2-D in, 4-D
    g = matlab.Gradient(np.ones_like(y), None, None)  # the next layer's struct
    np.testing.assert_array_equal(
        matlab.max_pool_backward(g, x, 2, 2), matlab.max_pool_backward(np.ones_like(y), x, 2, 2)
    )
    a = matlab.avg_pool_backward(np.ones_like(y), x, 2, 2)
    for size in (x.shape, [6, 4, 3, 2], (6.0, 4.0, 3, 2)):  # an array is the input itself
        np.testing.assert_array_equal(matlab.avg_pool_backward(g, size, 2, 2), a)
    one = np.ones((4, 4))
    assert matlab.avg_pool_backward(np.ones((2, 2)), (4, 4), 2, 2).shape == (4, 4, 1, 1)
    assert matlab.max_pool(one.astype(np.float32), 2, 2).dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: matlab.max_pool(np.ones((4, 4), dtype=np.int64), 2, 2), TypeError, "floating"),
        (lambda: matlab.max_pool(np.ones((4, 4)), 0, 2), ValueError, "k_height must be >= 1"),
        (lambda: matlab.avg_pool(np.ones((4, 4)), 2, 2, 0), ValueError, "stride must be >= 1"),
        (lambda: matlab.avg_pool(np.ones((4, 4)), 2, 2, 2, -1), ValueError, "pad must be >= 0"),
        (lambda: matlab.max_pool(np.ones((0, 2)), 1, 1), ValueError, "x must be non-empty"),
        (lambda: matlab.max_pool(np.ones((2, 2, 1, 1, 1)), 2, 2), ValueError, "x must be"),
        (
            lambda: matlab.max_pool_backward(np.ones((3, 2)), np.ones((4, 4)), 2, 2),
            ValueError,
            r"dout must have shape \(H', W', C, N\) = \(2, 2, 1, 1\)",
        ),
        (
            lambda: matlab.avg_pool_backward(np.ones((2, 2)), (4, 4, 2), 2, 2),
            ValueError,
            r"= \(2, 2, 2, 1\)",
        ),
        (
            lambda: matlab.avg_pool_backward(np.ones((2, 2)), (4,), 2, 2),
            ValueError,
            r"x must be the forward input or its size",
        ),
        (lambda: matlab.avg_pool_backward(np.ones((2, 2)), None, 2, 2), TypeError, "x must be"),
        (
            lambda: matlab.max_pool_backward(np.ones((2, 2), np.float32), np.ones((4, 4)), 2, 2),
            TypeError,
            "dout has dtype",
        ),
    ],
)
def test_pooling_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@needs_octave
def test_live_octave_warns_once_per_call_and_skips_nan():
    """forward_propagation.m warns once for a batch of 3 (not once per image); max_pool_ref.m
    skips NaN as convcore.matlab.max_pool does, and strict mode is warning('error', ...)."""
    script = (
        f"addpath('{MATLAB_REF}');"
        "x = ones(5, 6, 1, 3); forward_propagation(x, ones(2, 2), [], 2, 0);"
        "p = max_pool_ref([NaN 1; NaN -Inf], 2, 2); printf('MAX %g\\n', p);"
        "d = max_pool_back_ref(1, [NaN -Inf; NaN NaN], 2, 2); printf('D %g\\n', d);"
        "warning('error', 'convcore:outputSize');"
        "try, max_pool_ref(x, 2, 2); catch e, printf('ID %s\\n', e.identifier); end"
    )
    proc = subprocess.run(
        [OCTAVE, "--no-gui", "--norc", "--quiet", "--no-history", "--eval", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert out.count("warning: forward_propagation: invalid stride or pad") == 1, out
    assert "MAX 1" in out, out
    assert [line for line in proc.stdout.splitlines() if line.startswith("D ")] == [
        "D 0",
        "D 0",
        "D 1",
        "D 0",
    ], out  # column-major: x(1, 2) = -Inf is the third element
    assert "ID convcore:outputSize" in out, out
