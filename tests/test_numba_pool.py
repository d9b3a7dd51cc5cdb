"""The numba backend's own pooling kernels (``convcore_numba._pool``).

The parity suite (``tests/test_pooling.py``) already runs every pooling case on
the numba backend against the loop oracle.  These tests add what is particular
to the kernels: they, and not im2col + col2im, run the operators; PyTorch's
values, indices and gradients (NaN, -inf, ties, dilation, ``ceil_mode``,
``count_include_pad``, ``divisor_override``, 1-D to 3-D) when torch is
installed; and bitwise identical results for one and two threads.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import convcore  # noqa: E402
from convcore import naive  # noqa: E402
from convcore._registry import reload_registry  # noqa: E402

_pool = pytest.importorskip("convcore_numba._pool")
_ops = pytest.importorskip("convcore_numba._ops")

rng = np.random.default_rng(20261204)

#: (nd, shape, options) of max pooling; the avg cases drop ``dilation``.
CASES = [
    (1, (2, 3, 17), dict(kernel_size=3, stride=2, padding=1)),
    (1, (1, 2, 9), dict(kernel_size=2, dilation=3, ceil_mode=True)),
    (2, (2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    (2, (3, 4, 8, 8), dict(kernel_size=2)),
    (2, (1, 2, 10, 7), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), dilation=(2, 1))),
    (2, (2, 2, 9, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    (3, (2, 2, 5, 6, 7), dict(kernel_size=2, stride=2)),
    (3, (1, 3, 6, 5, 7), dict(kernel_size=3, stride=(1, 2, 2), padding=1, dilation=(1, 1, 2))),
]
IDS = [f"{nd}d-{i}" for i, (nd, _, _) in enumerate(CASES)]


def _ops_of(nd):
    """``(forward, backward)`` of max pooling with ``nd`` spatial axes."""
    return getattr(convcore, f"max_pool{nd}d"), getattr(convcore, f"max_pool{nd}d_backward")


def _avg_ops_of(nd):
    """``(forward, backward)`` of average pooling with ``nd`` spatial axes."""
    return getattr(convcore, f"avg_pool{nd}d"), getattr(convcore, f"avg_pool{nd}d_backward")


def _oracle_geometry(nd, opts):
    """``(kernel, stride, padding, dilation, ceil_mode)`` in the loop oracle's form."""

    def tup(value, default):
        value = default if value is None else value
        return tuple(value) if isinstance(value, tuple) else (value,) * nd

    kernel = tup(opts["kernel_size"], None)
    stride = tup(opts.get("stride"), kernel)
    pad = tup(opts.get("padding"), 0)
    padding = tuple(p for p in pad for _ in range(2))
    return kernel, stride, padding, tup(opts.get("dilation"), 1), opts.get("ceil_mode", False)


def _special(shape, dtype):
    """Random values with ties, a NaN, a window of -inf and a duplicated maximum."""
    x = rng.integers(-3, 4, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size)] = np.nan
    first = x.reshape(-1, *shape[2:])[min(1, x.shape[0] * x.shape[1] - 1)]
    first[(slice(0, 3),) * (len(shape) - 2)] = -np.inf
    return x


@pytest.fixture
def no_columns(monkeypatch):
    """im2col and col2im of the numba backend fail: pooling must not use them."""

    def refuse(*args, **kwargs):
        raise AssertionError("numba pooling ran im2col / col2im")

    monkeypatch.setattr(_ops, "im2col", refuse)
    monkeypatch.setattr(_ops, "col2im", refuse)
    reload_registry()
    yield
    reload_registry()


def test_numba_declares_its_pooling_kernels():
    info = {b.name: b for b in convcore.available_backends()}["numba"]
    for op in ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward"):
        assert op in info.ops
        assert convcore.resolve_backend(op, np.zeros((1, 1, 4, 4), np.float32)) == "numba"


@pytest.mark.parametrize(("nd", "shape", "opts"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_the_loop_oracle(no_columns, nd, shape, opts, dtype):
    """Values and indices exactly, gradients to rounding, without im2col or col2im."""
    x = _special(shape, dtype)
    before = x.copy()
    fwd, bwd = _ops_of(nd)
    out, index = fwd(x, return_indices=True, backend="numba", **opts)
    kernel, stride, padding, dilation, ceil = _oracle_geometry(nd, opts)
    want, want_index = naive.max_pool(x, kernel, stride, padding, dilation, ceil)
    assert out.dtype == dtype and index.dtype == np.int64
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(index, want_index)
    g = rng.standard_normal(out.shape).astype(dtype)
    dx = bwd(g, x, backend="numba", **opts)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    want = naive.max_pool_backward(g, x, kernel, stride, padding, dilation, ceil)
    np.testing.assert_allclose(dx, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(x, before)  # the input is never modified

    avg_opts = {k: v for k, v in opts.items() if k != "dilation"}
    fwd, bwd = _avg_ops_of(nd)
    for include, override in ((True, None), (False, None), (True, 3)):
        extra = dict(count_include_pad=include, divisor_override=override)
        rules = (ceil, include, override)
        y = fwd(x, backend="numba", **avg_opts, **extra)
        want = naive.avg_pool(x, kernel, stride, padding, *rules)
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        dx = bwd(gy, x.shape, backend="numba", **avg_opts, **extra)
        want = naive.avg_pool_backward(gy, x.shape[2:], kernel, stride, padding, *rules)
        np.testing.assert_allclose(dx, want, rtol=tol, atol=tol)


@pytest.mark.parametrize(("nd", "shape", "opts"), CASES, ids=IDS)
def test_kernels_match_torch(no_columns, nd, shape, opts):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _special(shape, np.float32)
    fwd, bwd = _ops_of(nd)
    out, index = fwd(x, return_indices=True, backend="numba", **opts)
    xt = torch.from_numpy(x).requires_grad_()
    tfwd = getattr(F, f"max_pool{nd}d")
    want, want_index = tfwd(xt, return_indices=True, **opts)
    np.testing.assert_array_equal(out, want.detach().numpy())
    np.testing.assert_array_equal(index, want_index.numpy())
    g = rng.standard_normal(out.shape).astype(np.float32)
    want.backward(torch.from_numpy(g))
    dx = bwd(g, x, backend="numba", **opts)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)

    avg_opts = {k: v for k, v in opts.items() if k != "dilation"}
    afwd, abwd = _avg_ops_of(nd)
    tavg = getattr(F, f"avg_pool{nd}d")
    finite = np.nan_to_num(x, nan=0.5, neginf=-2.0)  # torch sums -inf and NaN the same way
    for extra in (dict(), dict(count_include_pad=False), dict(divisor_override=3)):
        if nd == 1 and "divisor_override" in extra:
            continue  # torch's avg_pool1d has no divisor_override
        y = afwd(finite, backend="numba", **avg_opts, **extra)
        ft = torch.from_numpy(finite).requires_grad_()
        yt = tavg(ft, **avg_opts, **extra)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-6)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        yt.backward(torch.from_numpy(gy))
        dx = abwd(gy, finite.shape, backend="numba", **avg_opts, **extra)
        np.testing.assert_allclose(dx, ft.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.fixture
def thread_counts():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS < 2: cannot compare thread counts")
    before = numba.get_num_threads()
    yield lambda n: numba.set_num_threads(n)
    numba.set_num_threads(before)


@pytest.mark.parametrize(
    ("shape", "opts"),
    [
        ((8, 16, 32, 32), dict(kernel_size=3, stride=1, padding=1)),
        ((4, 8, 6, 16, 16), dict(kernel_size=2, stride=2)),
        ((16, 32, 200), dict(kernel_size=5, stride=2, padding=2)),
    ],
    ids=["2d-overlapping", "3d", "1d"],
)
def test_bitwise_identical_for_any_thread_count(thread_counts, monkeypatch, shape, opts):
    """On the worker threads, in many items; overlapping windows with ties."""
    monkeypatch.setattr(_pool, "_ITEM_ELEMENTS", 1024)  # many small items
    monkeypatch.setattr(_pool, "_PARALLEL_MIN_TAPS", 0)
    nd = len(shape) - 2
    x = rng.integers(-4, 4, shape).astype(np.float32)
    g = rng.standard_normal(convcore.max_pool(x, **opts).shape).astype(np.float32)
    fwd, bwd = _ops_of(nd)
    afwd, abwd = _avg_ops_of(nd)
    calls = []
    original = _pool.run_items
    monkeypatch.setattr(_pool, "run_items", lambda f, n, t: (calls.append(t), original(f, n, t))[1])
    runs = []
    for threads in (1, 2):
        thread_counts(threads)
        out, index = fwd(x, return_indices=True, backend="numba", **opts)
        runs.append(
            (
                out,
                index,
                bwd(g, x, backend="numba", **opts),
                afwd(x, backend="numba", **opts),
                abwd(g, x.shape, backend="numba", **opts),
            )
        )
    assert 2 in calls  # the second round ran on two threads
    for one, two in zip(*runs):
        assert one.tobytes() == two.tobytes()


def test_empty_batch():
    for shape in ((0, 3, 6, 6),):  # an empty batch (an empty C axis is an error)
        x = np.ones(shape, np.float32)
        out, index = convcore.max_pool2d(x, 2, return_indices=True, backend="numba")
        assert out.shape == (*shape[:2], 3, 3) and index.shape == out.shape
        dx = convcore.max_pool2d_backward(np.ones(out.shape, np.float32), x, 2, backend="numba")
        assert dx.shape == shape
        assert convcore.avg_pool2d(x, 2, backend="numba").shape == out.shape
        dx = convcore.avg_pool2d_backward(np.ones(out.shape, np.float32), shape, 2, backend="numba")
        assert dx.shape == shape


def test_padding_modes_and_channels_last_go_through_the_kernels(no_columns):
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)  # (N, H, W, C)
    first = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    for mode in ("reflect", "circular"):
        kw = dict(kernel_size=3, stride=2, padding=1, padding_mode=mode)
        out, index = convcore.max_pool2d(
            x, return_indices=True, layout="channels_last", backend="numba", **kw
        )
        want, want_index = convcore.max_pool2d(first, return_indices=True, backend="numpy", **kw)
        np.testing.assert_array_equal(np.moveaxis(out, -1, 1), want)
        np.testing.assert_array_equal(np.moveaxis(index, -1, 1), want_index)
        g = rng.standard_normal(out.shape).astype(np.float32)
        dx = convcore.max_pool2d_backward(g, x, layout="channels_last", backend="numba", **kw)
        gf = np.ascontiguousarray(np.moveaxis(g, -1, 1))
        want = convcore.max_pool2d_backward(gf, first, backend="numpy", **kw)
        np.testing.assert_allclose(np.moveaxis(dx, -1, 1), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 7, 9), (1, 2, 2, 2)])
def test_2x2_kernel_equals_the_general_one(shape, monkeypatch):
    """The 2x2 / stride-2 kernel (taken, checked by a spy) gives the general kernel's
    values and indices exactly: ties, NaN, -inf, odd sizes (the last row or column
    unread)."""
    from convcore.geometry import pool_geometry

    x = _special(shape, np.float32)
    geom = pool_geometry(shape[2:], 2)
    assert _pool._is_2x2(geom)
    taken = []
    original = _pool._max2x2_block
    monkeypatch.setattr(_pool, "_max2x2_block", lambda *a: (taken.append(1), original(*a))[1])
    out, index = _pool.max_pool(None, x, geom, True)
    assert taken
    planes, L = shape[0] * shape[1], geom.output_numel
    want, want_index = np.empty((planes, L), np.float32), np.empty((planes, L), np.int64)
    x2 = x.reshape(planes, -1)
    _pool._max_block(x2, 0, planes, _pool._geo(geom), (1, *shape[2:]), want, want_index, True)
    np.testing.assert_array_equal(out.reshape(planes, L), want)
    np.testing.assert_array_equal(index.reshape(planes, L), want_index)
    for other in (dict(stride=1), dict(padding=1), dict(dilation=2)):
        assert not _pool._is_2x2(pool_geometry((8, 8), 2, **other))
    assert not _pool._is_2x2(pool_geometry((7, 9), 2, ceil_mode=True))  # the overhang
