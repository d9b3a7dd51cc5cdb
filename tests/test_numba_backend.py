"""What is specific to the ``numba`` backend (the shared parity suite covers the rest).

* determinism: bitwise-equal results run to run and for 1 or 2 threads;
* workspace chunking: a tiny ``CONVCORE_WORKSPACE_MB`` gives identical results;
* every code path (im2col + GEMM, pointwise, direct for thin groups, images cut into
  bands or channel ranges) against the NumPy backend;
* the direct backward of thin groups against the loop oracle (``tests/naive.py``),
  that it is the path taken, reproducible, and falls back for non-finite values;
* 3-D convolutions (every path) against the same N-d loop oracle,
  bitwise reproducible for any thread count and workspace, and run by the numba
  kernels (not handed to another backend);
* integer im2col/col2im, exact, with NumPy's wrap-around on overflow;
* thread settings (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``) respected;
* ``import convcore`` and listing backends do not import numba (subprocess);
* ``convcore warmup`` (every kernel compiled; 3-D calls compile nothing more).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading

import naive
import numpy as np
import pytest
import threadpoolctl
from cases import expected_conv_backward
from helpers import col2im_in_dtype

import convcore

pytestmark = pytest.mark.skipif(
    not any(b.name == "numba" and b.available for b in convcore.available_backends()),
    reason="the numba backend is not available here",
)

numba = pytest.importorskip("numba")

from convcore_numba import _ops, _threads  # noqa: E402  (after the availability skip)

#: Geometries that reach the different drivers: (N, C, H, W, F, kernel, options).
GEOMETRIES = {
    "general": (3, 5, 17, 19, 7, (3, 3), {"stride": (2, 1), "padding": (1, 0, 2, 1)}),
    "dilated_groups": (2, 6, 15, 14, 4, (3, 2), {"dilation": (2, 1), "groups": 2}),
    "pointwise": (3, 16, 12, 13, 8, (1, 1), {}),
    "pointwise_groups": (2, 8, 9, 10, 6, (1, 1), {"groups": 2}),
    "one_channel": (4, 1, 20, 21, 8, (5, 5), {"padding": 2}),
    "depthwise": (2, 6, 16, 15, 6, (3, 3), {"padding": 1, "groups": 6}),
    "thin_groups": (2, 6, 13, 12, 6, (3, 2), {"stride": (2, 1), "dilation": (1, 2), "groups": 2}),
    # Taps that miss the (one pixel wide) input entirely, images side by side.
    "taps_outside": (3, 2, 2, 1, 3, (1, 3), {"padding": "same", "dilation": (1, 2)}),
    "single_image": (1, 8, 40, 37, 16, (3, 3), {"padding": 1}),
}


def _arrays(geometry, dtype, seed=0):
    n, c, h, w, f, k, opts = geometry
    groups = opts.get("groups", 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c // groups, *k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    y = convcore.conv2d(x, wt, b, backend="numpy", **opts)
    g = rng.standard_normal(y.shape).astype(dtype)
    return x, wt, b, g, opts


def _run_all(x, w, b, g, opts):
    y = convcore.conv2d(x, w, b, backend="numba", **opts)
    dx, dw, db = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    return y, dx, dw, db


def _assert_bitwise(a, b, what):
    """``a`` and ``b`` are ``(y, dx, dw, db)`` or ``(dx, dw, db)``."""
    for name, u, v in zip(("y", "dx", "dw", "db")[-len(a) :], a, b, strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape, (what, name)
        assert np.array_equal(u, v), f"{what}: {name} differs (max {np.max(np.abs(u - v))})"


@pytest.fixture
def force_parallel(monkeypatch):
    """Make every call, however small, use the worker threads, in many small items."""
    monkeypatch.setattr(_ops, "_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(_ops, "BLOCK_BYTES", 2048)


@pytest.fixture
def item_threads(monkeypatch):
    """Record, per ``run_items`` call, the thread count asked for and the threads that ran."""
    calls = []
    original = _threads.run_items

    def spy(func, count, threads):
        seen = set()

        def wrapped(worker, item):
            seen.add(threading.get_ident())
            return func(worker, item)

        original(wrapped, count, threads)
        calls.append((threads, count, seen))

    monkeypatch.setattr(_ops, "run_items", spy)
    return calls


# --------------------------------------------------------------------- every path


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_paths_match_numpy_backend(name, dtype, assert_close, force_parallel, two_threads):
    x, w, b, g, opts = _arrays(GEOMETRIES[name], dtype)
    y, dx, dw, db = _run_all(x, w, b, g, opts)
    assert_close(y, convcore.conv2d(x, w, b, backend="numpy", **opts))
    ref = convcore.conv2d_backward(g, x, w, backend="numpy", **opts)
    for got, want in zip((dx, dw, db), ref, strict=True):
        assert got.dtype == dtype
        assert_close(got, want)
    y0 = convcore.conv2d(x, w, None, backend="numba", **opts)
    assert_close(y0, convcore.conv2d(x, w, None, backend="numpy", **opts))


def test_non_contiguous_inputs(assert_close):
    x, w, b, g, opts = _arrays(GEOMETRIES["general"], np.float64)
    xs = np.asfortranarray(x)
    ws = w[:, ::-1].copy()[:, ::-1]
    gs = np.asfortranarray(g)
    y, dx, dw, db = _run_all(xs, ws, b, gs, opts)
    assert_close(y, convcore.conv2d(x, w, b, backend="numpy", **opts))
    ref = convcore.conv2d_backward(g, x, w, backend="numpy", **opts)
    for got, want in zip((dx, dw, db), ref, strict=True):
        assert_close(got, want)


def test_one_dimensional_kernels(assert_close):
    """1-D geometries run as 2-D ones with a height of 1 (kernel interface)."""
    from convcore.geometry import conv_geometry

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 17))
    w = rng.standard_normal((4, 3, 3))
    b = rng.standard_normal(4)
    geom = conv_geometry((17,), (3,), stride=2, padding=(1, 2), dilation=2)
    y = _ops.conv(None, x, w, b, geom, 1)
    ref = convcore.conv2d(
        x[:, :, None], w[:, :, None], b, stride=(1, 2), padding=(0, 0, 1, 2), dilation=(1, 2)
    )
    assert_close(y, ref[:, :, 0])
    g = rng.standard_normal(y.shape)
    dx, dw, db = _ops.conv_backward(None, g, x, w, geom, 1)
    rdx, rdw, rdb = convcore.conv2d_backward(
        g[:, :, None],
        x[:, :, None],
        w[:, :, None],
        stride=(1, 2),
        padding=(0, 0, 1, 2),
        dilation=(1, 2),
        backend="numpy",
    )
    assert_close(dx, rdx[:, :, 0])
    assert_close(dw, rdw[:, :, 0])
    assert_close(db, rdb)
    cols = _ops.im2col(None, x, geom)
    assert cols.shape == (2, 9, geom.output_numel)
    assert _ops.col2im(None, cols, geom).shape == x.shape


def test_more_than_three_spatial_axes_are_refused():
    from convcore.geometry import conv_geometry

    geom = conv_geometry((4, 4, 4, 4), 2)
    with pytest.raises(NotImplementedError, match="1-D, 2-D and 3-D"):
        _ops.im2col(None, np.zeros((1, 1, 4, 4, 4, 4)), geom)


# ---------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "name", ["general", "dilated_groups", "pointwise", "single_image", "depthwise"]
)
def test_bitwise_reproducible_across_runs_and_thread_counts(
    name, dtype, force_parallel, two_threads, item_threads
):
    x, w, b, g, opts = _arrays(GEOMETRIES[name], dtype)
    first = _run_all(x, w, b, g, opts)
    _assert_bitwise(first, _run_all(x, w, b, g, opts), "second run, 2 threads")
    assert any(t == 2 and count > 2 for t, count, _ in item_threads), item_threads
    numba.set_num_threads(1)
    item_threads.clear()
    _assert_bitwise(first, _run_all(x, w, b, g, opts), "1 thread vs 2 threads")
    assert item_threads and all(t == 1 and len(s) == 1 for t, _, s in item_threads)


@pytest.mark.parametrize("name", ["general", "taps_outside"])
def test_im2col_col2im_match_numpy_backend(name, dtype, assert_close):
    n, c, h, w, _, k, opts = GEOMETRIES[name]
    x = np.random.default_rng(5).standard_normal((n, c, h, w)).astype(dtype)
    kw = {key: v for key, v in opts.items() if key != "groups"}
    cols = convcore.im2col(x, k, backend="numba", **kw)
    np.testing.assert_array_equal(cols, convcore.im2col(x, k, backend="numpy", **kw))
    back = convcore.col2im(cols, (h, w), k, backend="numba", **kw)
    assert_close(back, convcore.col2im(cols, (h, w), k, backend="numpy", **kw))


def test_parallel_im2col_col2im_are_deterministic(dtype, two_threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 23, 21)).astype(dtype)
    kw = {"stride": (2, 1), "padding": (2, 1, 0, 3), "dilation": (1, 2)}
    cols = convcore.im2col(x, (4, 3), backend="numba", **kw)
    np.testing.assert_array_equal(cols, convcore.im2col(x, (4, 3), backend="numpy", **kw))
    back = convcore.col2im(cols, (23, 21), (4, 3), backend="numba", **kw)
    numba.set_num_threads(1)
    np.testing.assert_array_equal(
        back, convcore.col2im(cols, (23, 21), (4, 3), backend="numba", **kw)
    )
    np.testing.assert_allclose(
        back, convcore.col2im(cols, (23, 21), (4, 3), backend="numpy", **kw), rtol=1e-5
    )


@pytest.mark.parametrize("name", ["general", "dilated_groups", "pointwise", "single_image"])
def test_tiny_workspace_gives_identical_results(
    name, dtype, monkeypatch, force_parallel, two_threads, item_threads
):
    x, w, b, g, opts = _arrays(GEOMETRIES[name], dtype)
    default = _run_all(x, w, b, g, opts)
    assert any(threads == 2 for threads, _, _ in item_threads)
    item_threads.clear()
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "0.0001")
    tiny = _run_all(x, w, b, g, opts)
    _assert_bitwise(default, tiny, "CONVCORE_WORKSPACE_MB=0.0001 vs default")
    if name != "pointwise":  # pointwise convolutions have no column buffer
        # A workspace below one column block per thread leaves one worker.
        assert all(threads == 1 for threads, _, _ in item_threads), item_threads


def test_workspace_bounds_the_rounds_of_dw_partials(dtype, monkeypatch, item_threads):
    """The batch is processed in rounds whose dw partials fit the workspace."""
    monkeypatch.setattr(_ops, "BLOCK_BYTES", 2048)  # one image per range: several ranges
    x, w, _, g, opts = _arrays(GEOMETRIES["general"], dtype)
    default = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    rounds_default = len(item_threads)
    item_threads.clear()
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "0.0001")
    tiny = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    assert len(item_threads) > rounds_default  # one round (items + reduction) per image
    for u, v in zip(default, tiny, strict=True):
        np.testing.assert_array_equal(u, v)


def test_workspace_setting_is_parsed(monkeypatch):
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "2")
    assert _ops._workspace_bytes() == 2 * 2**20
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "not a number")
    assert _ops._workspace_bytes() == _ops.DEFAULT_WORKSPACE_MB * 2**20
    monkeypatch.delenv("CONVCORE_WORKSPACE_MB")
    assert _ops._workspace_bytes() == _ops.DEFAULT_WORKSPACE_MB * 2**20


# ------------------------------------------------------- direct backward (thin groups)

#: Thin-group geometries (at most DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP filters per
#: group): (N, C, H, W, F, kernel, options).  Multiplier = F / C for depthwise.
DIRECT_BACKWARD = {
    "depthwise": (2, 4, 9, 8, 4, (3, 3), {"padding": 1, "groups": 4}),
    "depthwise_stride2": (3, 3, 11, 10, 3, (3, 3), {"stride": 2, "padding": 1, "groups": 3}),
    "stride_per_axis": (2, 3, 10, 13, 3, (3, 2), {"stride": (1, 3), "groups": 3}),
    "stride_gt_kernel": (2, 2, 9, 11, 2, (2, 2), {"stride": (3, 4), "groups": 2}),
    "asym_padding": (2, 3, 7, 8, 3, (3, 3), {"padding": (0, 2, 3, 1), "groups": 3}),
    "pad_ge_kernel": (1, 2, 4, 5, 2, (2, 3), {"padding": (3, 1, 0, 4), "groups": 2}),
    "dilation": (2, 3, 12, 11, 3, (3, 2), {"dilation": (2, 3), "padding": 2, "groups": 3}),
    "dilation_stride": (
        2, 2, 13, 12, 2, (3, 3), {"stride": (2, 3), "dilation": (3, 2), "padding": 1, "groups": 2}
    ),
    "same_padding": (2, 3, 9, 7, 3, (4, 3), {"padding": "same", "groups": 3}),
    "multiplier2": (2, 3, 8, 9, 6, (3, 3), {"padding": 1, "groups": 3}),
    "multiplier3_strided": (3, 2, 9, 8, 6, (3, 2), {"stride": 2, "padding": (1, 0, 1, 1),
                                                    "groups": 2}),
    "multiplier4_dilated": (1, 3, 10, 9, 12, (2, 3), {"dilation": 2, "padding": 1, "groups": 3}),
    "three_channels_per_group": (2, 6, 8, 7, 6, (3, 2), {"stride": (2, 1), "groups": 2}),
    "pointwise_depthwise": (2, 4, 5, 6, 8, (1, 1), {"groups": 4}),
    "kernel_covers_input": (2, 2, 3, 4, 2, (3, 4), {"groups": 2}),
}  # fmt: skip


def _oracle_backward(g, x, w, opts):
    """:func:`naive.conv_backward` (shares no code with convcore) for the public options."""
    return expected_conv_backward(g, x, w, **opts)


@pytest.mark.parametrize("name", sorted(DIRECT_BACKWARD))
def test_direct_backward_matches_loop_oracle(
    name, dtype, assert_close, force_parallel, two_threads
):
    x, w, _, g, opts = _arrays(DIRECT_BACKWARD[name], dtype)
    pointwise = w.shape[2:] == (1, 1) and not opts.get("padding") and not opts.get("stride")
    assert _ops.backward_path(w.shape[0] // opts["groups"], w.shape[1], pointwise) == "direct"
    copies = [a.copy() for a in (g, x, w)]
    got = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    for original, after in zip(copies, (g, x, w), strict=True):
        np.testing.assert_array_equal(original, after)  # inputs are not modified
    for got_i, want in zip(got, _oracle_backward(g, x, w, opts), strict=True):
        assert got_i.dtype == dtype
        assert_close(got_i, want)


@pytest.mark.parametrize("groups, multiplier", [(3, 1), (3, 2), (1, 4)])
def test_direct_backward_one_dimensional(groups, multiplier, dtype, assert_close):
    """1-D geometries take the direct path as 2-D ones with a height of 1."""
    from convcore.geometry import conv_geometry

    rng = np.random.default_rng(4)
    c = 3
    f = multiplier * groups
    x = rng.standard_normal((2, c, 19)).astype(dtype)
    w = rng.standard_normal((f, c // groups, 3)).astype(dtype)
    geom = conv_geometry((19,), (3,), stride=2, padding=(3, 1), dilation=2)
    g = rng.standard_normal((2, f, geom.output_size[0])).astype(dtype)
    got = _ops.conv_backward(None, g, x, w, geom, groups)
    ref = naive.conv_backward(g, x, w, (2,), (3, 1), (2,), groups)
    assert_close(got[0], ref[0])
    assert_close(got[1], ref[1])
    assert_close(got[2], ref[2])


@pytest.fixture
def direct_calls(monkeypatch):
    """Count the calls of the direct backward kernel and of the GEMM path's im2col."""
    calls = {"direct": 0, "im2col": 0}
    for key, name in (("direct", "conv_direct_backward_block"), ("im2col", "im2col_block")):
        original = getattr(_ops.K, name)

        def spy(*args, _key=key, _original=original):
            calls[_key] += 1
            return _original(*args)

        monkeypatch.setattr(_ops.K, name, spy)
    return calls


@pytest.mark.parametrize(
    "f, groups, k, path",
    [
        (8, 8, 3, "direct"),  # depthwise
        (16, 8, 3, "direct"),  # channel multiplier 2
        (8, 2, 3, "direct"),  # 4 filters and 4 channels per group
        (4, 1, 3, "direct"),  # no groups, 4 filters
        (10, 2, 3, "im2col"),  # 5 filters per group
        (8, 1, 3, "im2col"),
        (8, 8, 1, "direct"),  # pointwise depthwise
        (3, 1, 1, "im2col"),  # pointwise, 3 filters x 8 channels: the GEMM is not thin
        (1, 1, 1, "direct"),  # pointwise, one filter
        (4, 2, 1, "direct"),  # pointwise, 2 filters x 4 channels per group
    ],
)
def test_backward_path_is_chosen_by_group_shape(f, groups, k, path, direct_calls):
    assert _ops.DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP == 4
    assert _ops.DIRECT_BACKWARD_POINTWISE_MAX_WEIGHTS == 16
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 10, 10))
    w = rng.standard_normal((f, 8 // groups, k, k))
    g = rng.standard_normal((2, f, 10, 10))
    assert _ops.backward_path(f // groups, 8 // groups, k == 1) == path
    got = convcore.conv2d_backward(g, x, w, padding=k // 2, groups=groups, backend="numba")
    assert (direct_calls["direct"] > 0) == (path == "direct"), direct_calls
    # The pointwise GEMM path needs no im2col.
    assert (direct_calls["im2col"] > 0) == (path == "im2col" and k > 1), direct_calls
    want = convcore.conv2d_backward(g, x, w, padding=k // 2, groups=groups, backend="numpy")
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_direct_backward_can_be_switched_off(monkeypatch, direct_calls, assert_close):
    x, w, _, g, opts = _arrays(DIRECT_BACKWARD["multiplier2"], np.float64)
    direct = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    monkeypatch.setattr(_ops, "DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP", 0)
    gemm = convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    assert direct_calls["direct"] > 0 and direct_calls["im2col"] > 0
    for a, b in zip(direct, gemm, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize(
    "name", ["depthwise_stride2", "multiplier3_strided", "three_channels_per_group"]
)
def test_direct_backward_bitwise_reproducible(
    name, dtype, monkeypatch, force_parallel, two_threads, item_threads, direct_calls
):
    """Same bits for 1 and 2 threads and for any workspace (rounds of partials)."""
    x, w, _, g, opts = _arrays(DIRECT_BACKWARD[name], dtype)

    def run():
        return convcore.conv2d_backward(g, x, w, backend="numba", **opts)

    first = run()
    assert direct_calls["direct"] > 2 and direct_calls["im2col"] == 0
    assert any(t == 2 and count > 2 for t, count, _ in item_threads), item_threads
    rounds_default = len(item_threads)
    numba.set_num_threads(1)
    _assert_bitwise(first, run(), "1 thread vs 2 threads")
    numba.set_num_threads(2)
    for mb in ("0.0001", "0.01", "1024"):
        monkeypatch.setenv("CONVCORE_WORKSPACE_MB", mb)
        item_threads.clear()
        _assert_bitwise(first, run(), f"CONVCORE_WORKSPACE_MB={mb} vs default")
        if mb == "0.0001":  # one image range per round: more rounds, same bits
            assert len(item_threads) > rounds_default


def _assert_same_values(got, want):
    """Equal up to the tolerance, with NaN and inf in the same places."""
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-10, atol=1e-12)


def test_direct_backward_non_finite_values_match_gemm_path(direct_calls):
    """An inf that only the kernel's extended lanes read must not become NaN in dw."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 3, 5))
    w = rng.standard_normal((2, 1, 1, 3))
    g = rng.standard_normal((2, 2, 3, 3))
    x[0, 1, 1, 4] = np.inf  # read by tap j = 2 only
    got = convcore.conv2d_backward(g, x, w, groups=2, backend="numba")
    want = convcore.conv2d_backward(g, x, w, groups=2, backend="numpy")
    assert np.isfinite(got[1][1, 0, 0, :2]).all() and not np.isfinite(got[1][1, 0, 0, 2])
    _assert_same_values(got, want)
    assert direct_calls["direct"] > 0 and direct_calls["im2col"] > 0  # recomputed
    w[1, 0, 0, 1] = np.nan
    x[0, 1, 1, 4] = 1.0
    got = convcore.conv2d_backward(g, x, w, groups=2, backend="numba")
    _assert_same_values(got, convcore.conv2d_backward(g, x, w, groups=2, backend="numpy"))


# ------------------------------------------------------------------------------- 3-D

#: 3-D geometries: (N, C, (D, H, W), F, kernel, stride, (before, after) per axis,
#: dilation, groups).  Comments name the paths they take.
GEOMETRIES_3D = {
    # im2col + GEMM, every option differing per axis
    "general": (3, 4, (5, 7, 6), 6, (3, 2, 3), (2, 1, 2), (1, 0, 2, 1, 0, 1), (1, 2, 1), 1),
    "groups_gemm": (2, 4, (4, 5, 6), 10, (2, 3, 2), (1, 1, 1), (1, 1, 0, 2, 1, 1), (2, 1, 1), 2),
    # direct forward and backward: depthwise, channel multiplier 2, thin groups
    "depthwise": (2, 3, (5, 6, 7), 3, (3, 3, 3), (1, 2, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1), 3),
    "multiplier2_strided_dilated": (
        2, 2, (7, 6, 8), 4, (2, 3, 2), (2, 1, 3), (0, 2, 1, 1, 2, 0), (2, 1, 2), 2
    ),
    "thin_groups": (2, 6, (4, 5, 5), 4, (2, 2, 3), (1, 2, 1), (1, 0, 0, 1, 1, 1), (1, 1, 1), 2),
    # pointwise: GEMMs without im2col; direct for one filter per group
    "pointwise": (3, 8, (3, 4, 5), 6, (1, 1, 1), (1, 1, 1), (0,) * 6, (1, 1, 1), 1),
    "pointwise_depthwise": (2, 4, (3, 4, 5), 4, (1, 1, 1), (1, 1, 1), (0,) * 6, (1, 1, 1), 4),
    # stride 1 with W == Wo: im2col copies whole spans of rows at once
    "same_3x3x3": (2, 3, (6, 6, 6), 8, (3, 3, 3), (1, 1, 1), (1,) * 6, (1, 1, 1), 1),
    # the same with an H stride of 2 (sh * W == Wo)
    "rows_stride2": (1, 2, (3, 5, 3), 5, (2, 2, 1), (1, 2, 1), (0, 0, 1, 0, 1, 2), (1, 1, 1), 1),
    # taps that miss the input entirely along D and W
    "taps_outside": (3, 2, (2, 1, 2), 5, (3, 1, 3), (1, 1, 1), (1, 1, 0, 0, 2, 2), (1, 1, 2), 1),
    "kernel_covers_input": (2, 2, (2, 3, 4), 6, (2, 3, 4), (1, 1, 1), (0,) * 6, (1, 1, 1), 1),
    # one image: bands of output rows (od, oh) that span depth slices
    "single_image": (1, 4, (6, 9, 10), 8, (3, 3, 3), (1, 1, 1), (1,) * 6, (1, 1, 1), 1),
}  # fmt: skip


def _arrays_3d(name, dtype, seed=0):
    n, c, size, f, k, stride, pad, dil, groups = GEOMETRIES_3D[name]
    rng = np.random.default_rng([seed, len(name)])
    x = rng.standard_normal((n, c, *size)).astype(dtype)
    w = rng.standard_normal((f, c // groups, *k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    out = naive.conv_output_size(size, k, stride, pad, dil)
    g = rng.standard_normal((n, f, *out)).astype(dtype)
    opts = {"stride": stride, "padding": pad, "dilation": dil, "groups": groups}
    return x, w, b, g, opts


def _run_3d(x, w, b, g, opts):
    y = convcore.conv3d(x, w, b, backend="numba", **opts)
    return (y, *convcore.conv3d_backward(g, x, w, backend="numba", **opts))


@pytest.mark.parametrize("block", [2048, 5000])
@pytest.mark.parametrize("name", sorted(GEOMETRIES_3D))
def test_3d_matches_loop_oracle(name, block, dtype, assert_close, monkeypatch, two_threads):
    """Forward (with and without bias), backward, im2col and col2im, many small items."""
    monkeypatch.setattr(_ops, "_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(_ops, "BLOCK_BYTES", block)
    x, w, b, g, opts = _arrays_3d(name, dtype)
    geo = (opts["stride"], opts["padding"], opts["dilation"], opts["groups"])
    copies = [a.copy() for a in (x, w, b, g)]
    y, dx, dw, db = _run_3d(x, w, b, g, opts)
    for original, after in zip(copies, (x, w, b, g), strict=True):
        np.testing.assert_array_equal(original, after)  # inputs are not modified
    assert_close(y, naive.conv(x, w, b, *geo), err_msg="y")
    y0 = convcore.conv3d(x, w, None, backend="numba", **opts)
    assert_close(y0, naive.conv(x, w, None, *geo), err_msg="y without bias")
    grads = naive.conv_backward(g, x, w, *geo)
    for got, want, what in zip((dx, dw, db), grads, ("dx", "dw", "db")):
        assert got.dtype == dtype, what
        assert_close(got, want, err_msg=what)
    kernel = w.shape[2:]
    kw = {key: v for key, v in opts.items() if key != "groups"}
    cols = convcore.im2col(x, kernel, backend="numba", **kw)
    np.testing.assert_array_equal(cols, naive.im2col(x, kernel, *geo[:3]))
    back = convcore.col2im(cols, x.shape[2:], kernel, backend="numba", **kw)
    assert_close(back, naive.col2im(cols, x.shape[2:], kernel, *geo[:3]), err_msg="col2im")


def test_3d_channels_last_and_auto_selection(assert_close):
    """``auto`` picks numba for 3-D NumPy input; an NDHWC view gives the same result."""
    x, w, b, _, opts = _arrays_3d("general", np.float64)
    assert convcore.resolve_backend("conv", x) == "numba"
    assert convcore.resolve_backend("conv_backward", x) == "numba"
    assert convcore.resolve_backend("im2col", x) == "numba"
    want = convcore.conv3d(x, w, b, backend="numba", **opts)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1))
    got = convcore.conv3d(xl, w, b, layout="NDHWC", **opts)
    assert_close(got, want.transpose(0, 2, 3, 4, 1))


@pytest.fixture
def numba_kernel_calls(monkeypatch):
    """Count calls of every numba kernel; make the numpy backend's kernels raise."""
    from convcore._registry import get_registry

    calls = {name: 0 for name in _ops.K.__all__}
    for name in _ops.K.__all__:
        original = getattr(_ops.K, name)

        def spy(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(_ops.K, name, spy)
    numpy_kernels = get_registry().kernels("numpy")
    for op in list(numpy_kernels):

        def refuse(*args, _op=op, **kwargs):
            raise AssertionError(f"the numpy backend's {_op} was called")

        monkeypatch.setitem(numpy_kernels, op, refuse)
    return calls


@pytest.mark.parametrize(
    "name, kernels",
    [
        ("general", {"im2col_block", "col2im_block", "accumulate"}),
        ("depthwise", {"conv_direct_block", "conv_direct_backward_block", "accumulate"}),
        ("pointwise", {"add_bias", "row_sums", "accumulate"}),
    ],
)
def test_3d_runs_on_the_numba_kernels(name, kernels, numba_kernel_calls):
    """3-D calls through ``auto`` run numba kernels; no other backend runs."""
    x, w, b, g, opts = _arrays_3d(name, np.float32)
    convcore.conv3d(x, w, b, **opts)
    convcore.conv3d_backward(g, x, w, **opts)
    ran = {k for k, count in numba_kernel_calls.items() if count}
    assert kernels <= ran, numba_kernel_calls
    numba_kernel_calls.update(dict.fromkeys(numba_kernel_calls, 0))
    kw = {key: v for key, v in opts.items() if key != "groups"}
    convcore.col2im(convcore.im2col(x, w.shape[2:], **kw), x.shape[2:], w.shape[2:], **kw)
    assert numba_kernel_calls["im2col_block"] and numba_kernel_calls["col2im_block"]


@pytest.mark.parametrize(
    "name", ["general", "groups_gemm", "depthwise", "thin_groups", "pointwise", "single_image"]
)
def test_3d_bitwise_reproducible_across_threads_and_workspace(
    name, dtype, monkeypatch, force_parallel, two_threads, item_threads
):
    """Same bits for 1 and 2 threads and for any ``CONVCORE_WORKSPACE_MB``."""
    x, w, b, g, opts = _arrays_3d(name, dtype)
    first = _run_3d(x, w, b, g, opts)
    assert any(t == 2 and count > 2 for t, count, _ in item_threads), item_threads
    rounds_default = len(item_threads)
    numba.set_num_threads(1)
    item_threads.clear()
    _assert_bitwise(first, _run_3d(x, w, b, g, opts), "1 thread vs 2 threads")
    assert item_threads and all(t == 1 and len(s) == 1 for t, _, s in item_threads)
    numba.set_num_threads(2)
    for mb in ("0.0001", "0.01", "1024"):
        monkeypatch.setenv("CONVCORE_WORKSPACE_MB", mb)
        item_threads.clear()
        _assert_bitwise(first, _run_3d(x, w, b, g, opts), f"CONVCORE_WORKSPACE_MB={mb}")
        if mb == "0.0001" and x.shape[0] > 1:  # rounds of one image range
            assert len(item_threads) > rounds_default


def test_3d_backward_non_finite_values_match_gemm_path():
    """The direct 3-D backward falls back like the 2-D one: NaN/inf where numpy has them."""
    x, w, _, g, opts = _arrays_3d("depthwise", np.float64)
    x[0, 1, 0, 0, 0] = np.inf
    w[2, 0, 1, 1, 1] = np.nan
    got = convcore.conv3d_backward(g, x, w, backend="numba", **opts)
    _assert_same_values(got, convcore.conv3d_backward(g, x, w, backend="numpy", **opts))


# -------------------------------------------------------------------------- integers

INTEGERS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def test_integer_declaration():
    from convcore._registry import get_registry

    spec = get_registry().spec("numba")
    for op in ("im2col", "col2im"):
        assert spec.dtypes_for(op) == {"float32", "float64", *INTEGERS}
    for op in ("conv", "conv_backward"):
        assert spec.dtypes_for(op) == {"float32", "float64"}
    assert spec.spatial_dims == {1, 2, 3}


@pytest.mark.parametrize("int_dtype", INTEGERS)
@pytest.mark.parametrize("name", ["general", "same_3x3x3", "taps_outside"])
def test_integer_im2col_col2im_3d_exact(name, int_dtype, two_threads, force_parallel):
    n, c, size, _, k, stride, pad, dil, _ = GEOMETRIES_3D[name]
    info = np.iinfo(int_dtype)
    rng = np.random.default_rng(7)
    x = rng.integers(info.min, info.max, (n, c, *size), dtype=int_dtype, endpoint=True)
    kw = {"stride": stride, "padding": pad, "dilation": dil, "backend": "numba"}
    cols = convcore.im2col(x, k, **kw)
    assert cols.dtype == x.dtype
    np.testing.assert_array_equal(cols, naive.im2col(x, k, stride, pad, dil))
    # Full-range values: overlapping sums overflow and wrap around, as in NumPy.
    back = convcore.col2im(cols, size, k, dtype=x.dtype, **kw)  # the kernels' own sums
    assert back.dtype == x.dtype
    np.testing.assert_array_equal(back, col2im_in_dtype(cols, size, k, stride, pad, dil))


def test_integer_col2im_wraps_around_like_numpy():
    cols = np.full((1, 4, 4), 100, np.int8)  # 2x2 kernel, stride 1: the centre sums 4 terms
    got = convcore.col2im(cols, (3, 3), 2, dtype="int8", backend="numba")  # asked to wrap
    assert got.dtype == np.int8
    assert got[0, 0, 1, 1] == np.int8(400 - 512)  # 400 wraps to -112
    want = convcore.col2im(cols, (3, 3), 2, dtype="int8", backend="numpy")
    np.testing.assert_array_equal(got, want)
    assert convcore.col2im(cols, (3, 3), 2, backend="numba")[0, 0, 1, 1] == 400  # int64
    cols = np.full((1, 4, 4), np.iinfo(np.uint64).max, np.uint64)
    got = convcore.col2im(cols, (3, 3), 2, backend="numba")
    np.testing.assert_array_equal(got, convcore.col2im(cols, (3, 3), 2, backend="numpy"))


def test_warmup_of_an_integer_dtype_compiles_the_data_movement_kernels():
    import convcore_numba

    times = convcore_numba.warmup(("uint16",))
    assert set(times) == {"import", "uint16", "cache_hits", "compiled"}
    for name in ("im2col_block", "col2im_block"):
        assert any("uint16" in str(sig) for sig in getattr(_ops.K, name).signatures), name
    with pytest.raises(ValueError, match="float16"):
        convcore_numba.warmup(("float16",))


# -------------------------------------------------------------------------- threads


def test_set_num_threads_is_respected(force_parallel, two_threads, item_threads):
    x, w, b, g, opts = _arrays(GEOMETRIES["general"], np.float32)
    convcore.conv2d(x, w, b, backend="numba", **opts)
    assert item_threads[-1][0] == 2
    numba.set_num_threads(1)
    item_threads.clear()
    convcore.conv2d(x, w, b, backend="numba", **opts)
    convcore.conv2d_backward(g, x, w, backend="numba", **opts)
    assert item_threads and all(len(seen) == 1 for _, _, seen in item_threads)
    assert all(seen == {threading.get_ident()} for _, _, seen in item_threads)


@pytest.mark.parametrize("cuts", [(0, 9000), (0, 1, 4095, 4096, 4097, 9000), (0, 5000, 9000)])
def test_accumulate_adds_the_parts_in_order_whatever_the_ranges(dtype, cuts):
    """``accumulate`` gives each element ``((dst + p0) + p1) + ...``, bit for bit."""
    rng = np.random.default_rng(7)
    parts = (rng.standard_normal((5, 9000)) * 10.0 ** rng.integers(-6, 6, (5, 9000))).astype(dtype)
    start = rng.standard_normal(9000).astype(dtype)
    want = start.copy()
    for p in parts:
        want = want + p
    got = start.copy()
    for a, b in itertools.pairwise(cuts):
        _ops.K.accumulate(got, parts, a, b)
    np.testing.assert_array_equal(got, want)


def test_run_items_uses_the_threads_it_is_given():
    barrier = threading.Barrier(2, timeout=30)  # both items must run at the same time
    seen = {}

    def func(worker, item):
        seen[item] = (worker, threading.get_ident())
        barrier.wait()

    _threads.run_items(func, 2, 2)
    assert {w for w, _ in seen.values()} == {0, 1}
    assert len({ident for _, ident in seen.values()}) == 2


def _affinity_checks():
    if not hasattr(os, "sched_setaffinity") or _threads._caller_cpu() is None:
        pytest.skip("no sched_setaffinity / sched_getcpu on this platform")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the test process may use one CPU only")


def _affinities_during_run_items():
    """Per worker: (its CPU set, the CPU it ran on) while both run at the same time."""
    barrier = threading.Barrier(2, timeout=30)
    seen = {}

    def func(worker, item):
        seen[worker] = (frozenset(os.sched_getaffinity(0)), _threads._caller_cpu())
        barrier.wait()

    _threads.run_items(func, 2, 2)
    return seen


def test_pool_threads_keep_off_the_callers_cpu_and_the_caller_is_restored(monkeypatch):
    """During a call the caller stays on its CPU and the pool thread runs elsewhere."""
    _affinity_checks()
    monkeypatch.delenv("CONVCORE_NUMBA_AFFINITY", raising=False)
    before = os.sched_getaffinity(0)
    seen = _affinities_during_run_items()
    (caller_set, caller_cpu), (pool_set, pool_cpu) = seen[0], seen[1]
    assert caller_set == {caller_cpu}
    assert caller_cpu not in pool_set and pool_set == before - {caller_cpu}
    assert pool_cpu != caller_cpu
    assert os.sched_getaffinity(0) == before  # the caller's own set is given back


def test_affinity_can_be_turned_off(monkeypatch):
    """``CONVCORE_NUMBA_AFFINITY=0`` leaves every thread on all the caller's CPUs."""
    _affinity_checks()
    before = frozenset(os.sched_getaffinity(0))
    monkeypatch.delenv("CONVCORE_NUMBA_AFFINITY", raising=False)
    _affinities_during_run_items()  # restricts the pool thread first
    monkeypatch.setenv("CONVCORE_NUMBA_AFFINITY", "0")
    seen = _affinities_during_run_items()
    assert seen[0][0] == before and seen[1][0] == before
    assert os.sched_getaffinity(0) == before


def test_a_concurrent_call_leaves_its_caller_free(monkeypatch):
    """While one thread's call holds its CPU, another thread's call pins nothing."""
    _affinity_checks()
    monkeypatch.delenv("CONVCORE_NUMBA_AFFINITY", raising=False)
    before = frozenset(os.sched_getaffinity(0))
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def first(worker, item):
        if worker == 0:
            seen["first"] = frozenset(os.sched_getaffinity(0))
            inside.set()
            assert release.wait(30)

    def first_caller():
        _threads.run_items(first, 2, 2)
        seen["first after"] = frozenset(os.sched_getaffinity(0))

    thread = threading.Thread(target=first_caller)
    thread.start()
    try:
        assert inside.wait(30)

        both = threading.Barrier(2, timeout=30)  # one item per thread, at the same time

        def second(worker, item):
            seen[f"second {worker}"] = frozenset(os.sched_getaffinity(0))
            both.wait()

        _threads.run_items(second, 2, 2)
    finally:
        release.set()
        thread.join(30)
    assert len(seen["first"]) == 1  # the first caller is held on its CPU
    assert seen["second 0"] == before  # the second caller is not
    assert seen["first after"] == before and os.sched_getaffinity(0) == before


def test_caller_affinity_is_restored_when_an_item_fails(monkeypatch):
    _affinity_checks()
    monkeypatch.delenv("CONVCORE_NUMBA_AFFINITY", raising=False)
    before = os.sched_getaffinity(0)

    def func(worker, item):
        raise RuntimeError(f"item {item} failed")

    with pytest.raises(RuntimeError, match="failed"):
        _threads.run_items(func, 4, 2)
    assert os.sched_getaffinity(0) == before
    assert _threads._pinned_calls == 0


def test_cores_apart_undoes_everything_when_its_body_raises(monkeypatch):
    """An exception inside the pinned block (e.g. KeyboardInterrupt) restores the caller."""
    _affinity_checks()
    monkeypatch.delenv("CONVCORE_NUMBA_AFFINITY", raising=False)
    before = os.sched_getaffinity(0)
    _threads._executor(1)  # the pool thread exists, so its CPU set is managed too
    with pytest.raises(KeyboardInterrupt):
        with _threads._cores_apart():
            assert len(os.sched_getaffinity(0)) == 1
            assert _threads._pinned_calls == 1
            raise KeyboardInterrupt
    assert os.sched_getaffinity(0) == before
    assert _threads._pinned_calls == 0


# The test forks on purpose (the child runs numba only).  Once JAX has started in this
# process (the JAX parity tests run earlier in the session), JAX warns on every fork.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called.*JAX is multithreaded:RuntimeWarning")
def test_a_forked_child_starts_its_own_pool():
    """After fork the parent's pool threads are gone; the child must not wait for them."""
    _affinity_checks()
    import multiprocessing

    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        pytest.skip("no fork on this platform")
    _threads.run_items(lambda worker, item: None, 2, 2)  # the parent has a pool
    parent_tids = set(_threads._pool_tids)
    queue = ctx.Queue()
    child = ctx.Process(target=_run_items_in_child, args=(queue,))
    child.start()
    try:
        workers, tids = queue.get(timeout=60)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert workers == {0, 1}
    assert tids and not tids & parent_tids


def _run_items_in_child(queue):
    barrier = threading.Barrier(2, timeout=30)
    workers = set()

    def func(worker, item):
        workers.add(worker)
        barrier.wait()

    _threads.run_items(func, 2, 2)
    queue.put((workers, set(_threads._pool_tids)))


def test_blas_is_single_threaded_inside_a_call(force_parallel, two_threads, monkeypatch):
    """numpy's BLAS runs one thread per worker during a call and is restored after it."""
    libs = _threads._blas_controller().lib_controllers
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS library to limit")
    observed = []
    original = _ops.K.im2col_block

    def spy(*args):
        observed.append([lib.num_threads for lib in libs])
        return original(*args)

    monkeypatch.setattr(_ops.K, "im2col_block", spy)
    x, w, b, _, opts = _arrays(GEOMETRIES["general"], np.float64)
    before = [lib.num_threads for lib in libs]
    convcore.conv2d(x, w, b, backend="numba", **opts)
    after = [lib.num_threads for lib in libs]
    assert observed and all(set(o) == {1} for o in observed), observed
    assert after == before


def _openblas_state():
    from threadpoolctl import OpenBLASController

    return OpenBLASController._SHARED_STATE


@pytest.mark.parametrize("path", ["direct", "threadpoolctl"])
def test_blas_limit_keeps_threadpoolctls_controlling_thread_protocol(path, monkeypatch):
    """The direct OpenBLAS calls (and threadpoolctl's limit, their fallback) take
    control only when no other live thread holds it, restore the count, and give
    control back; a BLAS already on one thread is left alone."""
    libs = _threads._blas_controller().lib_controllers
    if _threads._fast_blas() is None:
        pytest.skip("no pthreads OpenBLAS here: only threadpoolctl's limit is used")
    if path == "threadpoolctl":
        monkeypatch.setattr(_threads, "_fast", False)
    state = _openblas_state()
    assert state.controlling_thread is None
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = [lib.get_num_threads() for lib in libs]
    with _threads.blas_single_threaded() as single:
        assert single and [lib.get_num_threads() for lib in libs] == [1] * len(libs)
        assert state.controlling_thread is threading.current_thread()
    assert [lib.get_num_threads() for lib in libs] == before
    assert state.controlling_thread is None

    # Another live thread controls OpenBLAS: nothing is changed, and the caller is told.
    holding, release = threading.Event(), threading.Event()

    def hold():
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            holding.set()
            release.wait(30)

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert holding.wait(30)
        with _threads.blas_single_threaded() as single:
            assert not single
            assert [lib.get_num_threads() for lib in libs] == [2] * len(libs)
        assert state.controlling_thread is other
    finally:
        release.set()
        other.join()
    assert state.controlling_thread is None

    if path == "direct":  # already one thread: no call changes it
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            owner = state.controlling_thread
            calls = []
            for lib in _threads._fast_blas():
                monkeypatch.setattr(lib, "set", lambda n, _set=lib.set: calls.append(n) or _set(n))
            with _threads.blas_single_threaded() as single:
                assert single
            assert calls == [] and state.controlling_thread is owner


def test_worker_errors_propagate():
    def func(worker, item):
        if item == 3:
            raise ZeroDivisionError("item 3")

    with pytest.raises(ZeroDivisionError, match="item 3"):
        _threads.run_items(func, 8, 2)


# ------------------------------------------------------------------- subprocesses


def _clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVCORE_", "NUMBA_"))}
    env["CONVCORE_CONFIG_DIR"] = str(tmp_path / "no-user-config")
    env.update(extra)
    return env


def _python(code, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_clean_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_numba_not_imported_by_import_registration_or_listing(tmp_path):
    code = """
        import sys
        import convcore
        from convcore._registry import get_registry
        infos = {b.name: b for b in convcore.available_backends()}
        assert infos["numba"].available, infos["numba"].reason
        assert infos["numba"].priority > infos["numpy"].priority
        assert get_registry().spec("numba").namespaces == {"numpy"}
        from convcore.cli import main
        main(["info"], standalone_mode=False)
        assert "numba" not in sys.modules, "numba imported"
        import numpy as np
        convcore.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)))
        assert "numba" in sys.modules, "auto did not use the numba backend"
        """
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "numba" in proc.stdout  # `convcore info` lists it


def test_missing_numba_is_reported_precisely(tmp_path):
    code = """
        import importlib.util, sys
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "numba" else real(name, *a)
        import convcore
        info = {b.name: b for b in convcore.available_backends()}["numba"]
        assert not info.available
        print(info.reason)
        """
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "numba is not installed" in proc.stdout


def test_numba_num_threads_environment_is_respected(tmp_path):
    code = """
        import threading
        import numpy as np
        import convcore
        from convcore_numba import _ops, _threads
        seen = set()
        original = _threads.run_items
        def spy(func, count, threads):
            def wrapped(worker, item):
                seen.add(threading.get_ident())
                func(worker, item)
            original(wrapped, count, threads)
        _ops.run_items = spy
        _ops._PARALLEL_MIN_MACS = 0
        x = np.ones((4, 3, 20, 20)); w = np.ones((5, 3, 3, 3))
        convcore.conv2d(x, w, backend="numba")
        print(len(seen))
        """
    proc = _python(code, tmp_path, NUMBA_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


# --------------------------------------------------------------------------- warmup


def test_warmup_command(tmp_path):
    """In a fresh process: the command runs, reports, and compiles every kernel."""
    code = """
        from convcore.cli import main
        main(["warmup", "--dtype", "float32"], standalone_mode=False)
        from convcore_numba import _kernels
        compiled = {}
        for name in _kernels.__all__:
            sigs = [str(sig) for sig in getattr(_kernels, name).signatures]
            assert any("float32" in s for s in sigs), f"warmup did not compile {name}"
            assert not any("float64" in s for s in sigs), f"{name} compiled for float64"
            compiled[name] = len(sigs)
        # 1-, 2- and 3-D calls run the kernels that warmup compiled: nothing new.
        import numpy as np
        import convcore
        rng = np.random.default_rng(0)
        for c, f, groups in ((3, 8, 1), (4, 4, 4)):
            x = rng.standard_normal((2, c, 4, 5, 6)).astype(np.float32)
            w = rng.standard_normal((f, c // groups, 3, 2, 3)).astype(np.float32)
            y = convcore.conv3d(x, w, np.ones(f, np.float32), padding=1, groups=groups)
            convcore.conv3d_backward(y, x, w, padding=1, groups=groups)
            convcore.col2im(convcore.im2col(x, 2), (4, 5, 6), 2)
            y1, x1, w1 = y[:, :, 0, 0], x[:, :, 0, 0], w[:, :, 0, 0]
            convcore.conv1d_backward(y1, x1, w1, padding=1, groups=groups)
        for name in _kernels.__all__:
            assert len(getattr(_kernels, name).signatures) == compiled[name], name
        """
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "compile float32:" in proc.stdout and "float64" not in proc.stdout
    assert "total:" in proc.stdout


def test_warmup_command_refuses_a_disabled_backend(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "convcore", "warmup", "--backend", "numba"],
        env=_clean_env(tmp_path, CONVCORE_DISABLED_BACKENDS="numba"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: Invalid value for '--backend' / '-b': ")
    assert "unknown backend 'numba'" in proc.stderr
