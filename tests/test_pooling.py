"""convcore.pooling: max / average pooling through im2col, against independent oracles.

* A naive loop oracle written here (per output pixel, per kernel tap, bounds
  checks, no im2col, nothing from convcore), for the forward pass, the indices
  and the backward pass of both poolings, on every backend x namespace x dtype.
* PyTorch (``torch.nn.functional.max_pool2d`` / ``avg_pool2d`` and autograd)
  as a second oracle over a grid of geometries, ceil edge cases included.
* The seed's pooling windows (``matlab_ref/fixtures/pool_*.mat``, written by
  Octave) against ``ceil_mode="cover_all"``.
* Determinism (bitwise equal backward twice), inputs unchanged, float16
  capability errors, backend selection, layers, error messages.
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import convcore
from convcore import pooling
from convcore.pooling import (
    AvgPool2D,
    MaxPool2D,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    pool_output_size,
)

ROOT = Path(__file__).resolve().parents[1]
POOL_FIXTURES = sorted((ROOT / "matlab_ref" / "fixtures").glob("pool_*.mat"))


# --------------------------------------------------------------------------
# Naive oracle: loops over output pixels and kernel taps
# --------------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad4(padding):
    """(top, bottom, left, right) from an int, a pair or four numbers."""
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def ref_out_len(size, k, s, before, after, d, ceil_mode):
    """Windows along one axis: floor, PyTorch's ceil (drop a window starting in the
    bottom/right padding) or the seed's ceil (keep it)."""
    extent = d * (k - 1) + 1
    span = size + before + after - extent
    if ceil_mode is False:
        return math.floor(span / s) + 1
    out = math.ceil(span / s) + 1
    if ceil_mode is True and (out - 1) * s >= size + before:
        out -= 1
    return out


def ref_windows(shape, kernel, stride, padding, dilation, ceil_mode):
    """Yield ``(oh, ow, taps)`` with taps = [(ih, iw), ...] in row-major kernel order."""
    H, W = shape[2:]
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel), _pair(stride), _pair(dilation)
    t, b, left, r = _pad4(padding)
    Ho = ref_out_len(H, kh, sh, t, b, dh, ceil_mode)
    Wo = ref_out_len(W, kw, sw, left, r, dw, ceil_mode)
    for oh in range(Ho):
        for ow in range(Wo):
            taps = [
                (oh * sh - t + i * dh, ow * sw - left + j * dw)
                for i in range(kh)
                for j in range(kw)
            ]
            yield oh, ow, taps


def ref_out_size(shape, kernel, stride, padding, dilation, ceil_mode):
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel), _pair(stride), _pair(dilation)
    t, b, left, r = _pad4(padding)
    return (
        ref_out_len(shape[2], kh, sh, t, b, dh, ceil_mode),
        ref_out_len(shape[3], kw, sw, left, r, dw, ceil_mode),
    )


def max_pool_ref(x, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    """``(out, indices)``: PyTorch's CPU scan.  Start at -inf with the first input
    cell of the window, then take a tap if it is greater than the best so far or NaN."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    Ho, Wo = ref_out_size(x.shape, kernel, stride, padding, dilation, ceil_mode)
    out = np.full((N, C, Ho, Wo), -np.inf)
    idx = np.full((N, C, Ho, Wo), -1, dtype=np.int64)
    for n, c in itertools.product(range(N), range(C)):
        for oh, ow, taps in ref_windows(x.shape, kernel, stride, padding, dilation, ceil_mode):
            best, arg = -np.inf, -1
            for ih, iw in taps:
                if not (0 <= ih < H and 0 <= iw < W):
                    continue  # padding and ceil overhang: never chosen
                v = x[n, c, ih, iw]
                if arg == -1:
                    arg = ih * W + iw
                if v > best or np.isnan(v):
                    best, arg = v, ih * W + iw
            out[n, c, oh, ow], idx[n, c, oh, ow] = best, arg
    return out, idx


def max_pool_backward_ref(g, x, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    N, C, H, W = x.shape
    _, idx = max_pool_ref(x, kernel, stride, padding, dilation, ceil_mode)
    dx = np.zeros((N, C, H * W))
    g = np.asarray(g, dtype=np.float64)
    for n, c, oh, ow in itertools.product(*(range(s) for s in idx.shape)):
        if idx[n, c, oh, ow] >= 0:
            dx[n, c, idx[n, c, oh, ow]] += g[n, c, oh, ow]
    return dx.reshape(N, C, H, W)


def avg_divisor_ref(taps, H, W, padding, count_include_pad, divisor_override):
    """Count the taps: inside the padded frame (count_include_pad) or inside the image."""
    if divisor_override is not None:
        return divisor_override
    t, b, left, r = _pad4(padding)
    if count_include_pad:
        inside = [(ih, iw) for ih, iw in taps if -t <= ih < H + b and -left <= iw < W + r]
    else:
        inside = [(ih, iw) for ih, iw in taps if 0 <= ih < H and 0 <= iw < W]
    return len(inside)


def avg_pool_ref(x, kernel, stride, padding=0, ceil_mode=False, cip=True, dov=None):
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    Ho, Wo = ref_out_size(x.shape, kernel, stride, padding, 1, ceil_mode)
    out = np.zeros((N, C, Ho, Wo))
    for oh, ow, taps in ref_windows(x.shape, kernel, stride, padding, 1, ceil_mode):
        total = np.zeros((N, C))
        for ih, iw in taps:
            if 0 <= ih < H and 0 <= iw < W:
                total += x[:, :, ih, iw]
        div = avg_divisor_ref(taps, H, W, padding, cip, dov)
        out[:, :, oh, ow] = total / div if div else 0.0
    return out


def avg_pool_backward_ref(g, shape, kernel, stride, padding=0, ceil_mode=False, cip=True, dov=None):
    H, W = shape[2:]
    g = np.asarray(g, dtype=np.float64)
    dx = np.zeros(shape)
    for oh, ow, taps in ref_windows(shape, kernel, stride, padding, 1, ceil_mode):
        div = avg_divisor_ref(taps, H, W, padding, cip, dov)
        for ih, iw in taps:
            if div and 0 <= ih < H and 0 <= iw < W:
                dx[:, :, ih, iw] += g[:, :, oh, ow] / div
    return dx


def test_oracle_hand_values():
    """The oracle itself, on values worked out by hand."""
    x = np.array([[[[1.0, np.nan, 2], [np.nan, 7, np.nan], [0, 0, 0]]]])
    out, idx = max_pool_ref(x, 3, 3)
    assert np.isnan(out).all() and idx.item() == 5  # the last NaN
    x = np.array([[[[-1.0, -2], [-3, -4]]]])
    out, idx = max_pool_ref(x, 2, 2, padding=1)  # 2x2 windows, one input cell each
    np.testing.assert_array_equal(out[0, 0], [[-1, -2], [-3, -4]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [2, 3]])
    assert ref_out_size((1, 1, 5, 5), 2, 2, 1, 1, True) == (3, 3)
    assert ref_out_size((1, 1, 5, 5), 2, 2, 1, 1, "cover_all") == (4, 4)
    # 3x3 ones, 2x2 windows, stride 2, padding 1, ceil: divisors 4 (corner, padding counted)
    np.testing.assert_allclose(
        avg_pool_ref(np.ones((1, 1, 3, 3)), 2, 2, 1, True, True)[0, 0], [[0.25, 0.5], [0.5, 1]]
    )


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolCase:
    id: str
    shape: tuple[int, int, int, int]
    kernel: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: object = False
    data: str = "normal"  # normal | ties | negative | nan | neginf
    extra: dict = field(default_factory=dict)  # count_include_pad, divisor_override

    @property
    def ref_stride(self):
        return self.kernel if self.stride is None else self.stride


def make_input(case, dtype, seed=0):
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


MAX_CASES = [
    PoolCase("k2_default_stride", (2, 3, 6, 6), 2),
    PoolCase("k3s2_pad1_ties", (2, 2, 7, 6), 3, 2, 1, data="ties"),
    PoolCase("overlap_s1_ties", (1, 2, 5, 5), 3, 1, 1, data="ties"),
    PoolCase("rect", (1, 2, 7, 8), (2, 3), (2, 1), (1, 0), data="ties"),
    PoolCase("dilation2", (1, 2, 9, 8), 3, 2, 1, 2),
    PoolCase("dilation_rect", (1, 1, 8, 9), (2, 3), (1, 2), (1, 1), (3, 2), True, "ties"),
    PoolCase("asym_pad4", (1, 2, 6, 5), 3, 2, (1, 0, 0, 1), ceil_mode=True),
    PoolCase("negative_padded", (1, 2, 5, 5), 3, 2, 1, data="negative"),
    PoolCase("ceil_drops_window", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True, data="negative"),
    PoolCase("ceil_overhang", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True, data="negative"),
    PoolCase("ceil_kernel_gt_input", (1, 1, 2, 2), 3, 2, 0, ceil_mode=True),
    PoolCase("seed_window_in_padding", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all", data="ties"),
    PoolCase("seed_kernel_lt_stride", (1, 1, 5, 4), 1, 3, ceil_mode="cover_all", data="negative"),
    PoolCase("dilation_skips_input", (1, 2, 1, 8), (2, 3), 2, 1, (2, 1), data="negative"),
    PoolCase("nan", (2, 2, 6, 6), 3, 1, 1, data="nan"),
    PoolCase("neginf", (2, 2, 5, 6), 2, 1, 1, ceil_mode=True, data="neginf"),
]

EXCL = {"count_include_pad": False}
AVG_CASES = [
    PoolCase("k2_default_stride", (2, 3, 6, 6), 2),
    PoolCase("k3s2_pad1_incl", (2, 2, 7, 6), 3, 2, 1),
    PoolCase("k3s2_pad1_excl", (2, 2, 7, 6), 3, 2, 1, extra=EXCL),
    PoolCase("rect_pad", (1, 2, 6, 7), (2, 3), (1, 2), (1, 1)),
    PoolCase("asym_pad4_excl", (1, 2, 6, 5), 3, 2, (1, 0, 0, 1), True, extra=EXCL),
    PoolCase("ceil_drops_window_incl", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True),
    PoolCase("ceil_drops_window_excl", (1, 2, 5, 5), 2, 2, 1, ceil_mode=True, extra=EXCL),
    PoolCase("ceil_overhang_incl", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True),
    PoolCase("ceil_overhang_excl", (2, 2, 6, 7), 3, 2, 1, ceil_mode=True, extra=EXCL),
    PoolCase("divisor_override", (1, 2, 7, 7), 3, 2, 1, True, extra={"divisor_override": 5}),
    PoolCase("divisor_negative", (1, 1, 6, 6), 2, extra={"divisor_override": -2}),
    PoolCase("seed_window_in_padding_incl", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all"),
    PoolCase("seed_window_in_padding_excl", (1, 2, 5, 5), 2, 2, 1, ceil_mode="cover_all",
             extra=EXCL),
    PoolCase("seed_kernel_lt_stride", (1, 1, 5, 4), 1, 3, ceil_mode="cover_all", extra=EXCL),
    PoolCase("nan", (2, 2, 6, 6), 3, 1, 1, data="nan"),
]  # fmt: skip


def _api_kwargs(case, avg=False):
    kw = dict(stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode)
    if avg:
        return dict(kw, **case.extra)
    return dict(kw, dilation=case.dilation)


def _avg_ref_kwargs(case):
    return dict(
        cip=case.extra.get("count_include_pad", True), dov=case.extra.get("divisor_override")
    )


def to_numpy(ns, *arrays):
    """NumPy copies of ``arrays``; Dask computes them in one go (one graph, one pass)."""
    if ns.name == "dask":
        import dask

        return [np.asarray(a) for a in dask.compute(*arrays)]
    return [ns.to_numpy(a) for a in arrays]


def check_native(ns, out, like_dtype, shape):
    assert ns.is_native(out), f"expected a {ns.name} array, got {type(out).__name__}"
    assert out.dtype == like_dtype, (out.dtype, like_dtype)
    assert tuple(out.shape) == tuple(shape)


# --------------------------------------------------------------------------
# Every backend x namespace x dtype against the loop oracle
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", MAX_CASES, ids=lambda c: c.id)
def test_max_pool2d(case, backend, ns, dtype, assert_close):
    backend.require("im2col", "col2im", ns=ns, dtype=dtype)
    x = make_input(case, dtype)
    rng = np.random.default_rng(7)
    ref_out, ref_idx = max_pool_ref(
        x, case.kernel, case.ref_stride, case.padding, case.dilation, case.ceil_mode
    )
    g = rng.standard_normal(ref_out.shape).astype(dtype)
    xa, ga = ns.asarray(x), ns.asarray(g)
    kw = dict(backend=backend.name, **_api_kwargs(case))

    out, idx = max_pool2d(xa, case.kernel, return_indices=True, **kw)
    out_only = max_pool2d(xa, case.kernel, **kw)
    dx = max_pool2d_backward(ga, xa, case.kernel, **kw)
    check_native(ns, out, xa.dtype, ref_out.shape)
    check_native(ns, dx, xa.dtype, x.shape)
    out, idx, out_only, dx, x_after, g_after = to_numpy(ns, out, idx, out_only, dx, xa, ga)
    np.testing.assert_array_equal(out, ref_out.astype(dtype))  # exact, NaN included
    np.testing.assert_array_equal(out_only, ref_out.astype(dtype))
    np.testing.assert_array_equal(idx, ref_idx)
    assert idx.dtype == np.int64
    expected = max_pool_backward_ref(
        g, x, case.kernel, case.ref_stride, case.padding, case.dilation, case.ceil_mode
    )
    assert_close(dx, expected)
    np.testing.assert_array_equal(x_after, x)  # inputs unchanged
    np.testing.assert_array_equal(g_after, g)


@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: c.id)
def test_avg_pool2d(case, backend, ns, dtype, assert_close):
    backend.require("im2col", "col2im", ns=ns, dtype=dtype)
    x = make_input(case, dtype)
    rng = np.random.default_rng(8)
    ref = avg_pool_ref(
        x, case.kernel, case.ref_stride, case.padding, case.ceil_mode, **_avg_ref_kwargs(case)
    )
    g = rng.standard_normal(ref.shape).astype(dtype)
    xa, ga = ns.asarray(x), ns.asarray(g)
    kw = dict(backend=backend.name, **_api_kwargs(case, avg=True))

    out = avg_pool2d(xa, case.kernel, **kw)
    dx_full = avg_pool2d_backward(ga, x.shape, case.kernel, **kw)  # input_size = x.shape
    dx_hw = avg_pool2d_backward(ga, x.shape[2:], case.kernel, **kw)  # or (H, W)
    check_native(ns, out, xa.dtype, ref.shape)
    check_native(ns, dx_full, xa.dtype, x.shape)
    out, dx_full, dx_hw, x_after, g_after = to_numpy(ns, out, dx_full, dx_hw, xa, ga)
    assert_close(out, ref)
    expected = avg_pool_backward_ref(
        g,
        x.shape,
        case.kernel,
        case.ref_stride,
        case.padding,
        case.ceil_mode,
        **_avg_ref_kwargs(case),
    )
    assert_close(dx_full, expected)
    np.testing.assert_array_equal(dx_hw, dx_full)
    np.testing.assert_array_equal(x_after, x)
    np.testing.assert_array_equal(g_after, g)


def test_max_pool_padding_is_minus_inf():
    """All-negative input with padding: zero padding would give 0 at the borders."""
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out, idx = max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert (out < 0).all()
    np.testing.assert_array_equal(out[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_seed_mode_window_outside_the_image():
    """ceil_mode="cover_all" keeps a window with no input cell: max -inf, index -1, avg 0."""
    x = np.arange(1.0, 21.0).reshape(1, 1, 5, 4)
    out, idx = max_pool2d(x, 1, stride=3, ceil_mode="cover_all", return_indices=True)
    assert out.shape == (1, 1, 3, 2)  # ceil((5-1)/3)+1 = 3 rows; the third starts at row 6
    np.testing.assert_array_equal(out[0, 0, 2], [-np.inf, -np.inf])
    np.testing.assert_array_equal(idx[0, 0, 2], [-1, -1])
    np.testing.assert_array_equal(
        avg_pool2d(x, 1, stride=3, ceil_mode="cover_all", count_include_pad=False)[0, 0, 2], [0, 0]
    )
    dx = max_pool2d_backward(np.ones((1, 1, 3, 2)), x, 1, stride=3, ceil_mode="cover_all")
    assert dx.sum() == 4  # the two empty windows send their gradient nowhere


# --------------------------------------------------------------------------
# PyTorch as a second oracle
# --------------------------------------------------------------------------


def _torch_grid():
    for (H, W), k, s, d, cm in itertools.product(
        [(5, 7), (6, 4)], [1, 2, 3], [1, 2, 3], [1, 2], [False, True]
    ):
        for p in range(k // 2 + 1):
            yield H, W, k, s, p, d, cm


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_against_torch(pool):
    """A grid of geometries (ceil windows dropped, overhangs, windows starting in the
    padding, kernels larger than the input) against PyTorch, float64, with ties.

    The rules checked here live in convcore.pooling, not in the backends (which the
    loop-oracle tests cover case by case), so one backend, the portable one, runs it.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    checked = 0
    for H, W, k, s, p, d, cm in _torch_grid():
        if pool == "avg" and d > 1:
            continue
        where = f"H={H} W={W} k={k} s={s} p={p} d={d} ceil_mode={cm}"
        x = rng.integers(-3, 3, (2, 2, H, W)).astype(np.float64)
        xt = torch.tensor(x, requires_grad=True)
        variants = [{}] if pool == "max" else [
            {"count_include_pad": True},
            {"count_include_pad": False},
            {"divisor_override": 3},
        ]  # fmt: skip
        for extra in variants:
            xt.grad = None
            try:
                if pool == "max":
                    yt, it = F.max_pool2d(xt, k, s, p, d, ceil_mode=cm, return_indices=True)
                else:
                    yt = F.avg_pool2d(xt, k, s, p, ceil_mode=cm, **extra)
            except RuntimeError:  # torch: "Output size is too small"
                with pytest.raises(ValueError, match="no window fits"):
                    pool_output_size((H, W), k, s, p, d, cm)
                continue
            g = rng.standard_normal(tuple(yt.shape))
            yt.backward(torch.tensor(g))
            kw = dict(backend="array_api", ceil_mode=cm)
            if pool == "max":
                y, i = max_pool2d(x, k, s, p, d, return_indices=True, **kw)
                dx = max_pool2d_backward(g, x, k, s, p, d, **kw)
                np.testing.assert_array_equal(y, yt.detach().numpy(), err_msg=where)
                np.testing.assert_array_equal(i, it.numpy(), err_msg=where)
            else:
                y = avg_pool2d(x, k, s, p, **extra, **kw)
                dx = avg_pool2d_backward(g, x.shape, k, s, p, **extra, **kw)
                np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, err_msg=where)
            np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=where)
            assert pool_output_size((H, W), k, s, p, d, cm) == tuple(yt.shape[2:])
            checked += 1
    assert checked > 50


def test_torch_nan_and_tie_rules():
    """What PyTorch's CPU kernel does, pinned: first maximum, last NaN, first input
    cell of an all -inf window; and convcore agrees."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    nan, inf = np.nan, np.inf
    for x in (
        [[2.0, 2.0], [2.0, 1.0]],  # tie: first
        [[1.0, 2.0], [2.0, 2.0]],
        [[nan, 1.0], [nan, 3.0]],  # NaNs: last
        [[5.0, nan], [9.0, nan]],
        [[-inf, -inf], [-inf, -inf]],
    ):
        x = np.array(x)[None, None]
        xt = torch.tensor(x, requires_grad=True)
        yt, it = F.max_pool2d(xt, 2, padding=1, return_indices=True)
        yt.sum().backward()
        y, i = max_pool2d(x, 2, padding=1, return_indices=True)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(i, it.numpy())
        np.testing.assert_array_equal(
            max_pool2d_backward(np.ones(y.shape), x, 2, padding=1), xt.grad
        )
    x = np.array([[[[2.0, 2.0], [2.0, 1.0]]]])
    assert max_pool2d(x, 2, return_indices=True)[1].item() == 0
    x = np.array([[[[1.0, nan, 2], [nan, 7, nan], [0, 0, 0]]]])
    assert max_pool2d(x, 3, return_indices=True)[1].item() == 5
    assert F.max_pool2d(torch.tensor(x), 3, return_indices=True)[1].item() == 5


def test_torch_namespace_against_torch():
    """Torch tensors in (through a backend that takes them), PyTorch's own pooling as oracle."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.tensor(np.random.default_rng(5).integers(-3, 3, (2, 3, 7, 6)), dtype=torch.float32)
    for k, s, p, cm in [(3, 2, 1, True), (2, 2, 1, True), (3, 1, 0, False)]:
        y, i = max_pool2d(x, k, s, p, ceil_mode=cm, return_indices=True)
        yt, it = F.max_pool2d(x, k, s, p, ceil_mode=cm, return_indices=True)
        assert torch.equal(y, yt) and torch.equal(i, it)
        for cip in (True, False):
            y = avg_pool2d(x, k, s, p, ceil_mode=cm, count_include_pad=cip)
            torch.testing.assert_close(y, F.avg_pool2d(x, k, s, p, cm, cip))


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
    x = d["x"].reshape(H, W, C, N).transpose(3, 2, 0, 1)  # MATLAB (H, W, C, N) -> NCHW
    K = HH * WW * C
    cols = d["cols"].reshape(K, -1, N)
    return x, cols, (HH, WW), (sy, sx), pad


@pytest.mark.parametrize("path", POOL_FIXTURES, ids=[p.stem for p in POOL_FIXTURES])
def test_seed_pool_fixture_windows(path, backend, np_ns, assert_close):
    """``ceil_mode="cover_all"`` pools exactly the seed's im2col_ref windows (is_conv = 0).

    The seed's columns read zeros in the padding and the overhang; the sum of a
    column is ``avg_pool2d(..., divisor_override=1)``, the maximum over the cells
    that lie in the image is ``max_pool2d``, and the column mean is the divisor
    ``HH*WW``.
    """
    backend.require("im2col", "col2im", ns=np_ns, dtype=np.float64)
    x, cols, (HH, WW), (sy, sx), pad = _load_pool_fixture(path)
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


# --------------------------------------------------------------------------
# Determinism, float16, selection, layers, misc
# --------------------------------------------------------------------------


def test_backward_is_deterministic(backend, ns):
    """Overlapping windows with ties: the backward passes are bitwise reproducible."""
    backend.require("im2col", "col2im", ns=ns, dtype=np.float32)
    rng = np.random.default_rng(11)
    x = ns.asarray(rng.integers(-2, 2, (2, 3, 9, 8)).astype(np.float32))
    g = ns.asarray(rng.standard_normal((2, 3, 9, 8)).astype(np.float32))
    kw = dict(stride=1, padding=1, backend=backend.name)
    runs = [max_pool2d_backward(g, x, 3, **kw) for _ in range(2)]
    runs += [avg_pool2d_backward(g, x.shape, 3, **kw) for _ in range(2)]
    max1, max2, avg1, avg2 = to_numpy(ns, *runs)
    assert max1.tobytes() == max2.tobytes()
    assert avg1.tobytes() == avg2.tobytes()


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_float16_follows_backend_capabilities(pool, backend, np_ns):
    """float16 runs where the backend declares it; elsewhere im2col's
    BackendCapabilityError surfaces (no silent conversion)."""
    backend.require("im2col", "col2im", ns=np_ns)
    x = make_input(PoolCase("f16", (1, 2, 6, 6), 2), np.float16)
    func = max_pool2d if pool == "max" else avg_pool2d
    if backend.supports("im2col", ns=np_ns, dtype=np.float16) is not None:
        with pytest.raises(convcore.BackendCapabilityError, match="float16"):
            func(x, 3, 2, 1, backend=backend.name)
        return
    out = func(x, 3, 2, 1, backend=backend.name)
    assert out.dtype == np.float16
    ref = max_pool_ref(x, 3, 2, 1)[0] if pool == "max" else avg_pool_ref(x, 3, 2, 1)
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)


def test_backend_selection_applies():
    """The backend= keyword and use_backend reach im2col / col2im."""
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(convcore.UnknownBackendError):
        max_pool2d(x, 2, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError):
        avg_pool2d_backward(np.ones((1, 1, 2, 2)), (4, 4), 2, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError, match="use_backend"):
        with convcore.use_backend("no_such_backend"):
            avg_pool2d(x, 2)
    with convcore.use_backend("array_api"):
        np.testing.assert_array_equal(max_pool2d(x, 2), np.ones((1, 1, 2, 2)))


def test_layers_match_functions(assert_close):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    maxpool = MaxPool2D(3, 2, 1, ceil_mode=True)
    y = maxpool(x)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(y, max_pool2d(x, 3, 2, 1, ceil_mode=True))
    np.testing.assert_array_equal(
        maxpool.backward(g), max_pool2d_backward(g, x, 3, 2, 1, ceil_mode=True)
    )
    avgpool = AvgPool2D(3, 2, 1, ceil_mode=True, count_include_pad=False)
    y = avgpool.forward(x)
    np.testing.assert_array_equal(y, avg_pool2d(x, 3, 2, 1, True, False))
    assert_close(avgpool.backward(g), avg_pool2d_backward(g, x.shape, 3, 2, 1, True, False))
    assert "MaxPool2D(kernel_size=3" in repr(maxpool)
    assert "count_include_pad=False" in repr(avgpool)
    with pytest.raises(RuntimeError, match="before forward"):
        MaxPool2D(2).backward(g)
    with pytest.raises(RuntimeError, match="before forward"):
        AvgPool2D(2).backward(g)
    with pytest.raises(ValueError, match="padding"):
        MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match="divisor_override"):
        AvgPool2D(2, divisor_override=0)


def test_mixed_namespaces():
    strict = pytest.importorskip("array_api_strict")
    g = strict.asarray(np.ones((1, 1, 2, 2)))
    with pytest.raises(
        TypeError, match="grad_out is a array_api_strict array but x is a numpy array"
    ):
        max_pool2d_backward(g, X, 2)


def test_empty_batch():
    x = np.ones((0, 2, 5, 5))
    out, idx = max_pool2d(x, 2, return_indices=True)
    assert out.shape == idx.shape == (0, 2, 2, 2)
    assert avg_pool2d(x, 2).shape == (0, 2, 2, 2)
    assert max_pool2d_backward(np.ones((0, 2, 2, 2)), x, 2).shape == x.shape
    assert avg_pool2d_backward(np.ones((0, 2, 2, 2)), x.shape, 2).shape == x.shape


def test_module_imports_no_array_library():
    """Computation goes through array-api-compat: no numpy / torch / cupy import."""
    tree = ast.parse(Path(pooling.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & {"numpy", "torch", "cupy", "dask", "jax"}, imported


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
    ],
)
def test_pool_output_size(size, kwargs, expected):
    assert pool_output_size(size, **kwargs) == expected


# --------------------------------------------------------------------------
# Errors name the parameter, the value and what was expected
# --------------------------------------------------------------------------

X = np.ones((1, 1, 4, 4))
G = np.ones((1, 1, 2, 2))

ERRORS = [
    ("kernel0", max_pool2d, (X, 0), {}, ValueError, r"kernel_size must be >= 1 .* got 0"),
    ("stride0", avg_pool2d, (X, 2), dict(stride=0), ValueError, r"stride must be >= 1 .* got 0"),
    ("dilation0", max_pool2d, (X, 2), dict(dilation=0), ValueError, r"dilation must be >= 1"),
    ("kernel_float", max_pool2d, (X, 2.5), {}, TypeError, r"kernel_size must be an integer"),
    ("pad_gt_half", max_pool2d, (X, 3), dict(padding=2), ValueError,
     r"padding must be at most half the kernel size .* got padding=2 .* kernel_size=\(3, 3\)"),
    ("pad_gt_half_avg", avg_pool2d, (X, (2, 4)), dict(padding=(1, 3)), ValueError,
     r"padding must be at most half.*width"),
    ("pad_negative", avg_pool2d, (X, 2), dict(padding=-1), ValueError, r"padding must be >= 0"),
    ("pad_same", max_pool2d, (X, 3), dict(padding="same"), ValueError, r"padding must be .*'same'"),
    ("x_3d", max_pool2d, (np.ones((1, 4, 4)), 2), {}, ValueError,
     r"x must be 4-D \(N, C, H, W\), got shape \(1, 4, 4\)"),
    ("x_int_avg", avg_pool2d, (np.ones((1, 1, 4, 4), dtype=np.int64), 2), {}, TypeError,
     r"avg_pool2d needs a real floating-point x, got dtype int64"),
    ("x_int_max", max_pool2d, (np.ones((1, 1, 4, 4), dtype=np.int32), 2), {}, TypeError,
     r"max_pool2d needs a real floating-point x, got dtype int32"),
    ("x_list", max_pool2d, ([[1.0]], 1), {}, TypeError, r"x must be an array \(.*\), got list"),
    ("x_empty_hw", avg_pool2d, (np.ones((1, 1, 0, 4)), 1), {}, ValueError, r"non-empty"),
    ("too_small", max_pool2d, (np.ones((1, 1, 2, 2)), 3), {}, ValueError,
     r"kernel_size \(3, 3\) .* spans 3 along the height axis.*no window fits"),
    ("ceil_mode_str", max_pool2d, (X, 2), dict(ceil_mode="floor"), ValueError,
     r"ceil_mode must be False, True or 'cover_all', got 'floor'"),
    ("ceil_mode_int", avg_pool2d, (X, 2), dict(ceil_mode=1), TypeError, r"ceil_mode must be"),
    ("return_indices", max_pool2d, (X, 2), dict(return_indices="yes"), TypeError,
     r"return_indices must be True or False, got 'yes'"),
    ("count_include_pad", avg_pool2d, (X, 2), dict(count_include_pad=None), TypeError,
     r"count_include_pad must be True or False, got None"),
    ("divisor_zero", avg_pool2d, (X, 2), dict(divisor_override=0), ValueError,
     r"divisor_override must be a nonzero integer or None, got 0"),
    ("divisor_float", avg_pool2d, (X, 2), dict(divisor_override=1.5), TypeError,
     r"divisor_override must be a nonzero integer or None, got 1.5"),
    ("grad_shape_max", max_pool2d_backward, (np.ones((1, 1, 3, 3)), X, 2), {}, ValueError,
     r"grad_out must have the forward output's shape \(1, 1, 2, 2\) .* got \(1, 1, 3, 3\)"),
    ("grad_shape_avg", avg_pool2d_backward, (np.ones((1, 1, 3, 3)), (4, 4), 2), {}, ValueError,
     r"grad_out must have the forward output's shape \(1, 1, 2, 2\)"),
    ("grad_dtype", max_pool2d_backward, (G.astype(np.float32), X, 2), {}, TypeError,
     r"grad_out has dtype float32 but x has dtype float64"),
    ("grad_ndim_avg", avg_pool2d_backward, (np.ones((2, 2)), (4, 4), 2), {}, ValueError,
     r"grad_out must be 4-D"),
    ("grad_int_avg", avg_pool2d_backward, (G.astype(np.int64), (4, 4), 2), {}, TypeError,
     r"real floating-point grad_out, got dtype int64"),
    ("input_size_array", avg_pool2d_backward, (G, X, 2), {}, TypeError, r"pass x.shape"),
    ("input_size_len", avg_pool2d_backward, (G, (1, 4, 4), 2), {}, ValueError,
     r"input_size must be the forward input's spatial size \(2 ints\) or its shape "
     r"\(N, C, H, W\), got \(1, 4, 4\)"),
    ("input_size_nc", avg_pool2d_backward, (G, (2, 1, 4, 4), 2), {}, ValueError,
     r"grad_out has \(N, C\) = \(1, 1\) but input_size .* \(2, 1\)"),
    ("mixed_namespaces", max_pool2d_backward, (G, "x", 2), {}, TypeError, r"x must be an array"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "exc", "match"),
    [pytest.param(*e[1:], id=e[0]) for e in ERRORS],
)
def test_errors(func, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        func(*args, **kwargs)
