"""The ``dask`` backend and ``convcore apply``: lazy graphs, parity, clusters, resuming.

* parity: every op on Dask arrays chunked along the batch axis equals the
  in-memory result on the same NumPy data (threaded scheduler, and a real
  ``LocalCluster`` of two worker processes);
* the graphs are lazy (no block runs before ``compute``), NumPy chunks run on
  the best NumPy backend (numba), ``dw``/``db`` are tree-reduced, spatial chunks
  are refused with the rechunk to do;
* ``convcore apply`` streams a stack from Zarr or ``.npy`` files into Zarr,
  resumes after an interruption without recomputing finished chunks, and
  finishes with the right output when a worker process is killed mid-job;
* ``ApplyOptions`` checks every field, and the command builds the same options
  (the same job fingerprint) as the Python API.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import auto_for_numpy

import convcore
from convcore import cli as cli_module
from convcore import stack as stack_module
from convcore._registry import get_registry, reload_registry
from convcore.cli import main
from convcore.pooling import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from convcore.stack import ApplyOptions

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

try:
    import distributed
except ImportError:  # pragma: no cover - CI installs it with the test extra
    distributed = None
try:
    import zarr
except ImportError:  # pragma: no cover - CI installs it with the test extra
    zarr = None

needs_distributed = pytest.mark.skipif(
    distributed is None, reason="needs dask.distributed (pip install 'convcore[dask]')"
)
needs_zarr = pytest.mark.skipif(zarr is None, reason="needs zarr (pip install 'convcore[dask]')")


def _chunked(a, per_chunk, *, axis_chunks=None):
    """``a`` as a Dask array with ``per_chunk`` items per batch chunk (others whole)."""
    chunks = axis_chunks or (per_chunk,) + (-1,) * (a.ndim - 1)
    return da.from_array(a, chunks=chunks)


def _whole(a):
    return da.from_array(a, chunks=-1)


# (name, N, C, H, W, F, kernel, options): uneven batch chunks of 3
GEOMETRIES = [
    ("basic", 7, 3, 8, 7, 4, (3, 3), {}),
    ("stride_pad", 5, 2, 9, 8, 3, (3, 2), {"stride": (2, 1), "padding": (1, 0, 2, 1)}),
    ("dilation", 4, 2, 9, 9, 2, (3, 3), {"dilation": (2, 1), "padding": 2}),
    ("groups", 5, 4, 6, 6, 6, (3, 3), {"padding": 1, "groups": 2}),
    ("depthwise", 4, 3, 7, 6, 3, (3, 3), {"padding": "same", "groups": 3}),
    ("pointwise", 6, 5, 4, 5, 4, (1, 1), {}),
]
geometry = pytest.mark.parametrize("geom", GEOMETRIES, ids=[g[0] for g in GEOMETRIES])


def _inputs(geom, dtype, seed=0):
    _, n, c, h, w, f, kernel, options = geom
    rng = np.random.default_rng(seed)
    groups = options.get("groups", 1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    y = convcore.conv2d(x, wt, b, **options)
    g = rng.standard_normal(y.shape).astype(dtype)
    return x, wt, b, g, options


def _conv_options(options):
    return {k: v for k, v in options.items() if k != "groups"}


# --------------------------------------------------------------------------- selection


def test_auto_picks_the_dask_backend_for_dask_arrays():
    x = _chunked(np.ones((4, 2, 5, 5), np.float32), 2)
    for op in ("im2col", "col2im", "conv", "conv_backward"):
        assert convcore.resolve_backend(op, x) == "dask"
    assert convcore.resolve_backend("conv", np.ones((4, 2, 5, 5))) != "dask"
    info = next(b for b in convcore.available_backends() if b.name == "dask")
    assert info.available and info.namespaces == {"dask"} and info.devices is None


# --------------------------------------------------------------------------- parity


@geometry
def test_conv2d_and_backward_equal_in_memory(geom, dtype, assert_close):
    x, w, b, g, options = _inputs(geom, dtype)
    xd, gd = _chunked(x, 3), _chunked(g, 2)  # different batch chunks: aligned by Dask
    y = convcore.conv2d(xd, _whole(w), _whole(b), **options)
    assert isinstance(y, da.Array) and y.dtype == dtype
    assert y.chunks[0] == xd.chunks[0]
    assert_close(y.compute(), convcore.conv2d(x, w, b, **options))
    grads = convcore.conv2d_backward(gd, xd, _whole(w), **options)
    assert all(isinstance(a, da.Array) for a in grads)
    for got, want in zip(dask.compute(*grads), convcore.conv2d_backward(g, x, w, **options)):
        assert got.dtype == dtype
        assert_close(got, want)


@geometry
def test_im2col_and_col2im_equal_in_memory(geom, dtype, assert_close):
    x, w, _, _, options = _inputs(geom, dtype)
    kernel, opts = w.shape[2:], _conv_options(options)
    cols = convcore.im2col(_chunked(x, 3), kernel, **opts)
    want = convcore.im2col(x, kernel, **opts)
    assert_close(cols.compute(), want)
    back = convcore.col2im(cols, x.shape[2:], kernel, **opts)
    assert_close(back.compute(), convcore.col2im(want, x.shape[2:], kernel, **opts))


POOLS = [
    ("max_2", "max", {"kernel_size": 2}),
    ("max_3_s2_p1_ceil", "max", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_2_ceil", "avg", {"kernel_size": 2, "ceil_mode": True}),
    ("avg_3_p1_nopad", "avg", {"kernel_size": 3, "stride": 2, "padding": 1,
                               "count_include_pad": False}),
]  # fmt: skip


@pytest.mark.parametrize("kind, options", [p[1:] for p in POOLS], ids=[p[0] for p in POOLS])
def test_pooling_forward_and_backward_equal_in_memory(kind, options, dtype, assert_close):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    xd = _chunked(x, 2)
    if kind == "max":
        y = max_pool2d(xd, **options)
        want = max_pool2d(x, **options)
        g = rng.standard_normal(want.shape).astype(dtype)
        dx = max_pool2d_backward(_chunked(g, 2), xd, **options)
        want_dx = max_pool2d_backward(g, x, **options)
    else:
        y = avg_pool2d(xd, **options)
        want = avg_pool2d(x, **options)
        g = rng.standard_normal(want.shape).astype(dtype)
        dx = avg_pool2d_backward(_chunked(g, 2), x.shape, **options)
        want_dx = avg_pool2d_backward(g, x.shape, **options)
    assert isinstance(y, da.Array) and isinstance(dx, da.Array)
    got_y, got_dx = dask.compute(y, dx)
    assert_close(got_y, want)
    assert_close(got_dx, want_dx)


def test_other_ranks_layouts_and_dtypes(assert_close):
    rng = np.random.default_rng(2)
    x1, w1 = rng.standard_normal((5, 2, 11)), rng.standard_normal((3, 2, 3))
    assert_close(convcore.conv1d(_chunked(x1, 2), _whole(w1)).compute(), convcore.conv1d(x1, w1))
    x3, w3 = rng.standard_normal((3, 2, 5, 5, 4)), rng.standard_normal((3, 2, 3, 3, 2))
    got = convcore.conv3d(_chunked(x3, 2), _whole(w3), padding=1).compute()
    assert_close(got, convcore.conv3d(x3, w3, padding=1))
    # channels last: the batch axis is still the one split into tasks
    xl, wl = rng.standard_normal((5, 6, 7, 4)), rng.standard_normal((2, 4, 3, 3))
    got = convcore.conv2d(_chunked(xl, 2), _whole(wl), layout="NHWC", padding=1).compute()
    assert_close(got, convcore.conv2d(xl, wl, layout="NHWC", padding=1))
    # float16 in, float16 out (computed in float32 by the chunks' backend)
    x16, w16 = xl.astype(np.float16), wl.astype(np.float16)
    y16 = convcore.conv2d(_chunked(x16, 2), _whole(w16), layout="NHWC")
    assert y16.dtype == np.float16
    want16 = convcore.conv2d(x16, w16, layout="NHWC")
    np.testing.assert_array_equal(y16.compute(), want16)
    # integers through im2col / col2im (data movement)
    xi = np.arange(4 * 3 * 5 * 5, dtype=np.int32).reshape(4, 3, 5, 5)
    cols = convcore.im2col(_chunked(xi, 3), 2)
    np.testing.assert_array_equal(cols.compute(), convcore.im2col(xi, 2))
    np.testing.assert_array_equal(
        convcore.col2im(cols, (5, 5), 2).compute(),
        convcore.col2im(convcore.im2col(xi, 2), (5, 5), 2),
    )


def test_numpy_weights_and_bias_join_dask_input(assert_close):
    """Dask's own arithmetic mixes NumPy arrays into Dask graphs; so does convcore.

    The NumPy weight, bias and gradient become single-chunk Dask arrays, the
    result stays lazy and chunked like the Dask argument, and equals the
    in-memory result; the NumPy arguments are not modified.
    """
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((5, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), np.ones(4)
    kept = [a.copy() for a in (x, w, b)]
    xd = _chunked(x, 2)
    y = convcore.conv2d(xd, w, b, padding=1)
    assert isinstance(y, da.Array) and y.chunks[0] == xd.chunks[0]
    assert_close(y.compute(), convcore.conv2d(x, w, b, padding=1))
    g = rng.standard_normal(y.shape)
    for grad_out, image in [(_chunked(g, 2), x), (g, xd)]:  # either side may be the NumPy one
        grads = convcore.conv2d_backward(grad_out, image, w, padding=1)
        assert all(isinstance(a, da.Array) for a in grads)
        for got, want in zip(dask.compute(*grads), convcore.conv2d_backward(g, x, w, padding=1)):
            assert_close(got, want)
    wt = rng.standard_normal((3, 2, 3, 3))
    yt = convcore.conv_transpose2d(xd, wt, np.ones(2), stride=2)
    assert isinstance(yt, da.Array)
    assert_close(yt.compute(), convcore.conv_transpose2d(x, wt, np.ones(2), stride=2))
    gp = rng.standard_normal((5, 3, 3, 3))
    dx = max_pool2d_backward(gp, xd, 2)
    assert isinstance(dx, da.Array)
    assert_close(dx.compute(), max_pool2d_backward(gp, x, 2))
    from convcore.matlab import forward_propagation

    hwcn, filters = np.transpose(x, (2, 3, 1, 0)), np.transpose(w, (2, 3, 1, 0))
    got = forward_propagation(da.from_array(hwcn, chunks=(-1, -1, -1, 2)), filters, b, 1, 1)
    assert isinstance(got, da.Array)
    assert_close(got.compute(), forward_propagation(hwcn, filters, b, 1, 1))
    for before, after in zip(kept, (x, w, b)):
        np.testing.assert_array_equal(before, after)


def test_other_libraries_do_not_join_dask_input():
    """Only NumPy arguments join Dask input (as in Dask itself); a torch weight does not."""
    torch = pytest.importorskip("torch")
    x = da.from_array(np.ones((2, 1, 4, 4), np.float32), chunks=(1, -1, -1, -1))
    with pytest.raises(TypeError, match=r"weight is a torch array but x is a dask array"):
        convcore.conv2d(x, torch.ones((1, 1, 3, 3)))


def test_channel_chunks_are_kept_or_merged(assert_close):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 4, 6, 6)), rng.standard_normal((6, 2, 3, 3))
    xd = da.from_array(x, chunks=(2, 2, -1, -1))
    cols = convcore.im2col(xd, 3)  # rows follow the channel chunks
    assert cols.chunks[1] == (18, 18)
    back = convcore.col2im(cols, (6, 6), 3)
    assert back.chunks[1] == (2, 2)
    assert_close(back.compute(), convcore.col2im(convcore.im2col(x, 3), (6, 6), 3))
    # rows that cut a channel apart are merged first
    odd = convcore.col2im(cols.rechunk({1: (10, 26)}), (6, 6), 3)
    assert odd.chunks[1] == (4,)
    assert_close(odd.compute(), back.compute())
    y = convcore.conv2d(xd, _whole(w), groups=2)  # conv needs every channel of a chunk
    assert y.chunks == (xd.chunks[0], (6,), (4,), (4,))
    assert_close(y.compute(), convcore.conv2d(x, w, groups=2))


# --------------------------------------------------------------------------- graphs


@pytest.fixture
def block_calls(monkeypatch):
    """Count the public-function calls that the dask backend's blocks make (on chunks)."""
    calls = []
    for name in ("im2col", "col2im", "conv", "conv_backward"):
        original = getattr(convcore, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            if not isinstance(args[0], da.Array):  # a block's call, not the user's
                calls.append((_name, args[0].shape[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(convcore, name, spy)
    return calls


def test_graphs_are_lazy_and_run_each_block_once(block_calls):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((9, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    xd = _chunked(x, 2)  # 5 chunks
    y = convcore.conv2d(xd, _whole(w), padding=1)
    grads = convcore.conv2d_backward(da.ones_like(y), xd, _whole(w), padding=1)
    pooled = max_pool2d(y, 2)
    cols = convcore.im2col(xd, 3)
    back = convcore.col2im(cols, (6, 6), 3)
    assert block_calls == []  # building the graphs ran no block
    dask.compute(*grads)
    # dx, dw and db come from one backward per batch chunk
    assert sorted(block_calls) == [("conv_backward", n) for n in (1, 2, 2, 2, 2)]
    block_calls.clear()
    dask.compute(pooled, back)
    counts = {op: sum(1 for o, _ in block_calls if o == op) for op in ("conv", "im2col", "col2im")}
    assert counts == {"conv": 5, "im2col": 10, "col2im": 5}  # im2col: pooling's and cols'


def test_numpy_chunks_run_on_the_best_numpy_backend(monkeypatch):
    registry = get_registry()
    best = auto_for_numpy("conv", "float32")
    assert best == ("numba" if registry.unavailable_reason("numba") is None else "numpy")
    calls = []
    for name in (best, "numpy", "array_api"):
        kernels = registry.kernels(name)
        for op in ("conv", "conv_backward"):
            original = kernels[op]

            def counting(*args, _name=name, _op=op, _original=original, **kwargs):
                calls.append((_name, _op))
                return _original(*args, **kwargs)

            monkeypatch.setitem(kernels, op, counting)
    x = _chunked(np.ones((6, 2, 5, 5), np.float32), 2)
    w = _whole(np.ones((3, 2, 3, 3), np.float32))
    y = convcore.conv2d(x, w)
    y.compute()
    assert calls == [(best, "conv")] * 3
    calls.clear()
    # ``convcore.block-backend`` in Dask's configuration picks the chunks' backend
    with dask.config.set({"convcore.block-backend": "numpy"}):
        dw = convcore.conv2d_backward(da.ones_like(y), x, w)[1]  # read when the graph is built
    dw.compute()
    assert calls == [("numpy", "conv_backward")] * 3
    # ``set_backend("dask")`` means auto for the chunks
    calls.clear()
    convcore.set_backend("dask")
    try:
        convcore.conv2d(x, w).compute()
    finally:
        convcore.set_backend(None)
    assert calls == [(best, "conv")] * 3
    with (
        dask.config.set({"convcore.block-backend": "nope"}),
        pytest.raises(convcore.UnknownBackendError, match="nope"),
    ):
        convcore.conv2d(x, w)


def _reduction_levels(arr, leaf_prefix: str) -> int:
    """Levels of combining tasks between the tasks named ``leaf_prefix*`` and ``arr``.

    Dask's reductions first apply the reduction to each block on its own (one
    level, not counted here), then combine ``split_every`` results per task.
    """
    from dask.core import get_dependencies

    graph = dict(arr.__dask_graph__())
    key = next(iter(dask.core.flatten(arr.__dask_keys__())))

    def depth(k) -> int:
        name = k[0] if isinstance(k, tuple) else k
        if str(name).startswith(leaf_prefix):
            return 0
        deps = get_dependencies(graph, k)
        return 1 + max(depth(d) for d in deps)

    return depth(key) - 1


def test_weight_gradients_are_tree_reduced_and_deterministic():
    from convcore_dask import _ops

    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((16, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    g = rng.standard_normal((16, 3, 4, 4))
    xd, gd, wd = _chunked(x, 1), _chunked(g, 1), _whole(w)  # 16 partials
    _, dw, db = convcore.conv2d_backward(gd, xd, wd)
    assert _ops.SPLIT_EVERY == 4
    assert _reduction_levels(dw, "_pick_partial") == 2  # 16 partials -> 4 -> 1
    assert _reduction_levels(db, "_pick_partial") == 2
    with dask.config.set(split_every=2):
        _, dw2, _ = convcore.conv2d_backward(gd, xd, wd)
    assert _reduction_levels(dw2, "_pick_partial") == 4  # 16 -> 8 -> 4 -> 2 -> 1
    first, again = dw.compute(), convcore.conv2d_backward(gd, xd, wd)[1].compute()
    np.testing.assert_array_equal(first, again)  # fixed chunking, fixed order of sums
    np.testing.assert_allclose(first, convcore.conv2d_backward(g, x, w)[1], rtol=1e-12)


def test_small_spatial_chunks_are_merged(assert_close):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((4, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    xd = da.from_array(x, chunks=(2, 1, 4, 3))  # every axis split
    y = convcore.conv2d(xd, _whole(w), padding=1)
    assert y.chunks == ((2, 2), (3,), (8,), (8,))
    assert_close(y.compute(), convcore.conv2d(x, w, padding=1))
    cols = convcore.im2col(xd, 3)
    assert cols.chunks == ((2, 2), (9, 9), (36,))
    back = convcore.col2im(cols.rechunk({2: 12}), (8, 8), 3)
    assert_close(back.compute(), convcore.col2im(convcore.im2col(x, 3), (8, 8), 3))


def test_large_spatial_chunks_are_refused_with_the_rechunk_to_do():
    x = da.from_array(np.ones((4, 2, 8, 8)), chunks=(2, 2, 4, -1))
    w = _whole(np.ones((3, 2, 3, 3)))
    with dask.config.set({"array.chunk-size": "1KiB"}):  # whole images: 2 KiB blocks
        with pytest.raises(ValueError, match=r"x is split into 2 x 1 chunks along its spat") as exc:
            convcore.conv2d(x, w)
        assert "x.rechunk({2: -1, 3: -1})" in str(exc.value)
        assert "x.rechunk({1: -1, 2: -1})" in str(exc.value)  # the NHWC spelling
        assert "blocks of 2.00 kiB, above Dask's array.chunk-size (1.00 kiB)" in str(exc.value)
        with pytest.raises(ValueError, match=r"x\.rechunk"):
            convcore.im2col(x, 3)
        good = x.rechunk({0: 1, 2: -1, 3: -1})  # 1 KiB blocks
        g = da.from_array(np.ones((4, 3, 6, 6)), chunks=(2, -1, 3, 3))
        with pytest.raises(ValueError, match=r"grad_out is split into 2 x 2 .*grad_out\.rechunk"):
            convcore.conv2d_backward(g, good, w)
        cols = convcore.im2col(good, 3).rechunk({2: 18})
        with pytest.raises(ValueError, match=r"cols\.rechunk\(\{2: -1\}\)"):
            convcore.col2im(cols, (8, 8), 3)
        np.testing.assert_array_equal(convcore.conv2d(good, w).compute(), 18.0)


# --------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each (NumPy chunks on numba with one thread)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"NUMBA_NUM_THREADS": "1"},
    ) as lc:
        yield lc


@needs_distributed
def test_local_cluster_parity(cluster, assert_close):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    xd, wd, bd = _chunked(x, 2), _whole(w), _whole(b)
    y = convcore.conv2d(xd, wd, bd, padding=1, groups=2)
    pooled = max_pool2d(y, 2)
    g = da.ones_like(y)
    dx, dw, db = convcore.conv2d_backward(g, xd, wd, padding=1, groups=2)
    with distributed.Client(cluster, set_as_default=False) as client:
        got = client.compute([y, pooled, dx, dw, db], sync=True)
        workers = client.run(lambda: os.getpid())
    assert len(set(workers.values()) - {os.getpid()}) == 2  # two other processes did it
    want_y = convcore.conv2d(x, w, b, padding=1, groups=2)
    want = [want_y, max_pool2d(want_y, 2)]
    want += convcore.conv2d_backward(np.ones_like(want_y), x, w, padding=1, groups=2)
    for a, e in zip(got, want):
        assert_close(a, e)


# --------------------------------------------------------------------------- convcore apply


@pytest.fixture
def job(tmp_path):
    """A small stack saved as .npy files (three sizes of file) and a Zarr array."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((23, 3, 12, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    npy = tmp_path / "frames"
    npy.mkdir()
    np.save(npy / "a.npy", x[:10])
    for i in range(10, 15):
        np.save(npy / f"b{i:02d}.npy", x[i])  # one image (C, H, W) per file
    np.save(npy / "c.npy", x[15:])
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "b.npy", b)
    paths = {"npy": npy, "w": tmp_path / "w.npy", "b": tmp_path / "b.npy", "dir": tmp_path}
    if zarr is not None:
        z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=x.shape,
                            chunks=(5, 3, 12, 11), dtype=x.dtype)  # fmt: skip
        z[:] = x
        paths["zarr"] = tmp_path / "in.zarr"
    want = max_pool2d(convcore.conv2d(x, w, b, padding=1), 2)
    return x, w, b, want, paths


@pytest.fixture
def runner(monkeypatch, tmp_path):
    monkeypatch.delenv("CONVCORE_BACKEND", raising=False)
    monkeypatch.delenv(stack_module.ENV_SCHEDULER, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "userconfig"))
    return CliRunner()


def _apply(runner, paths, out, *extra, source="npy"):
    args = ["apply", str(paths[source]), str(out), "--weight", str(paths["w"])]
    args += ["--bias", str(paths["b"]), "--padding", "1", "--pool", "max", "--chunk", "4"]
    return runner.invoke(main, [*args, *extra], catch_exceptions=False)


def _one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ")
    for needle in needles:
        assert needle in err, err
    return err


@needs_zarr
@pytest.mark.parametrize("source", ["npy", "zarr"])
def test_apply_streams_a_stack_into_zarr(runner, job, source, assert_close):
    _, _, _, want, paths = job
    out = paths["dir"] / "out.zarr"
    result = _apply(runner, paths, out, source=source)
    assert result.exit_code == 0, result.output
    assert "6 chunks of up to 4 images; scheduler: threads in this process" in result.stderr
    assert "writing" in result.stderr  # the progress bar, on stderr
    assert "6 chunks computed, 0 already written" in result.stdout
    assert "peak memory (this process):" in result.stdout
    got = zarr.open_array(str(out), mode="r")
    assert got.shape == want.shape and got.chunks == (4, *want.shape[1:])
    assert_close(got[:], want)
    again = _apply(runner, paths, out, source=source)  # finished: nothing to do
    assert "0 chunks computed, 6 already written" in again.stdout


@needs_zarr
def test_apply_resumes_without_recomputing_finished_chunks(runner, job, monkeypatch, assert_close):
    _, _, _, want, paths = job
    out = paths["dir"] / "out.zarr"
    real_write = stack_module._write_chunk
    calls = []

    def failing_write(block, path, start):
        calls.append(start)
        if len(calls) == 3:  # the third chunk written, whichever the scheduler ran third
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        return real_write(block, path, start)

    monkeypatch.setattr(stack_module, "_write_chunk", failing_write)
    with dask.config.set(num_workers=1):  # one chunk at a time
        result = _apply(runner, paths, out)
    assert result.exit_code == 1 and "Aborted!" in result.stderr
    done = stack_module._finished(out, 6)
    assert done == {start // 4 for start in calls[:2]}  # the two written before the interrupt
    monkeypatch.setattr(stack_module, "_write_chunk", real_write)
    convs = []
    original = convcore.conv

    def counting(x, *args, **kwargs):
        convs.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(convcore, "conv", counting)
    result = _apply(runner, paths, out)
    assert result.exit_code == 0, result.output
    assert f"{len(done)} already written" in result.stderr
    assert f"{6 - len(done)} chunks computed, {len(done)} already written" in result.stdout
    assert len(convs) == 6 - len(done)  # the finished chunks were not recomputed
    assert_close(zarr.open_array(str(out), mode="r")[:], want)
    assert stack_module._finished(out, 6) == set(range(6))


@needs_zarr
def test_apply_errors_are_one_line(runner, job, tmp_path):
    _, _, _, _, paths = job
    out = tmp_path / "out.zarr"
    _one_line_error(_apply(runner, {**paths, "npy": tmp_path / "missing"}, out), "does not exist")
    np.save(tmp_path / "w5.npy", np.ones((4, 5, 3, 3), np.float32))
    bad = runner.invoke(
        main, ["apply", str(paths["npy"]), str(out), "--weight", str(tmp_path / "w5.npy")]
    )
    _one_line_error(bad, "x has C=3 channels")
    assert not out.exists()  # nothing written before the job was validated
    _one_line_error(_apply(runner, paths, out, "--stride", "a"), "--stride")
    _one_line_error(_apply(runner, paths, out, "--backend", "nope"), "unknown backend 'nope'")
    assert _apply(runner, paths, out).exit_code == 0
    _one_line_error(_apply(runner, paths, out, "--stride", "2"), "another job's result")
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        result = _apply(runner, paths, tmp_path / "o2.zarr", "--scheduler", "tcp://127.0.0.1:9")
    if distributed is not None:
        _one_line_error(result, "cannot connect to the Dask scheduler at tcp://127.0.0.1:9")
    (tmp_path / "empty").mkdir()
    _one_line_error(_apply(runner, {**paths, "npy": tmp_path / "empty"}, out), "no .npy files")


@needs_distributed
@needs_zarr
def test_apply_on_a_cluster_survives_a_killed_worker(cluster, job, monkeypatch, caplog):
    x, w, b, _, paths = job
    big = np.concatenate([x] * 6)  # 138 images, 35 chunks of 4
    stack = paths["dir"] / "big"
    stack.mkdir()
    np.save(stack / "all.npy", big)
    out = paths["dir"] / "big.zarr"
    with distributed.Client(cluster, set_as_default=False) as client:
        pids = client.run(lambda: os.getpid())
    victim = pids[sorted(pids)[0]]
    killed = []

    def progress(index):
        if not killed:  # after the first chunk: the other chunks are queued or running
            os.kill(victim, signal.SIGKILL)
            killed.append(index)

    monkeypatch.setenv(stack_module.ENV_SCHEDULER, cluster.scheduler_address)
    report = stack_module.apply_stack(
        stack, out, w, b, ApplyOptions(padding=1, pool="max", chunk=4), progress=progress
    )
    assert killed and report.computed == report.chunks == 35
    assert report.scheduler == cluster.scheduler_address
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    want = max_pool2d(convcore.conv2d(big, w, b, padding=1), 2)
    np.testing.assert_allclose(zarr.open_array(str(out), mode="r")[:], want, rtol=1e-5, atol=1e-5)
    assert all(peak > 0 for peak in report.peak_rss_mib.values())
    assert any("Restarting worker" in r.getMessage() for r in caplog.records)  # its nanny saw it
    deadline = time.monotonic() + 30
    while len(cluster.scheduler_info["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the nanny restarts the killed worker


# --------------------------------------------------------------------------- ApplyOptions

# (field, bad value, error, what the message says besides the field and the value)
BAD_OPTIONS = [
    ("stride", 0, ValueError, ">= 1 on every axis"),
    ("stride", (1, 2, 3), ValueError, "a sequence of 2 ints"),
    ("stride", "2", TypeError, "an int or a sequence of 2 ints"),
    ("padding", -1, ValueError, ">= 0 on every side"),
    ("padding", "full", ValueError, "'valid' or 'same'"),
    ("padding", 1.5, TypeError, "an integer"),
    ("dilation", (1, 0), ValueError, ">= 1 on every axis"),
    ("groups", 0, ValueError, "a positive integer"),
    ("groups", True, TypeError, "a positive integer"),
    ("groups", 2.0, TypeError, "a positive integer"),
    ("pool", "min", ValueError, "None, 'max' or 'avg'"),
    ("pool", "MAX", ValueError, "None, 'max' or 'avg'"),
    ("pool", 1, ValueError, "None, 'max' or 'avg'"),
    ("pool_size", 0, ValueError, ">= 1 on every axis"),
    ("pool_size", (2, 2, 2), ValueError, "a sequence of 2 ints"),
    ("pool_stride", (2, 0), ValueError, ">= 1 on every axis"),
    ("chunk", 0, ValueError, "a positive number of images"),
    ("chunk", 2.5, TypeError, "a positive number of images"),
    ("chunk", "4", TypeError, "a positive number of images"),
    ("dtype", "float16", ValueError, "None, 'float32' or 'float64'"),
    ("dtype", "nonsense", ValueError, "None, 'float32' or 'float64'"),
    ("dtype", int, ValueError, "None, 'float32' or 'float64'"),
    ("backend", 3, TypeError, "a backend name or None"),
]


@pytest.mark.parametrize(
    "name, value, error, expected",
    BAD_OPTIONS,
    ids=[f"{b[0]}={b[1]!r}" for b in BAD_OPTIONS],
)
def test_apply_options_name_the_bad_field(name, value, error, expected):
    with pytest.raises(error) as exc:
        ApplyOptions(**{name: value})
    message = str(exc.value)
    assert message.startswith(f"{name} must be "), message
    assert repr(value) in message and expected in message, message


def test_every_apply_option_is_checked():
    fields = [f.name for f in dataclasses.fields(ApplyOptions)]
    assert sorted(fields) == sorted({b[0] for b in BAD_OPTIONS})


def test_apply_options_defaults_and_normal_form():
    assert dataclasses.asdict(ApplyOptions()) == {
        "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "pool": None, "pool_size": 2,
        "pool_stride": None, "chunk": 32, "dtype": None, "backend": None,
    }  # fmt: skip
    options = ApplyOptions(
        stride=[2, 1], padding=[[1, 0], [2, 1]], dilation=np.array([1, 2]), groups=np.int64(2),
        pool="avg", pool_size=[3, 3], pool_stride=(np.int32(1), 2), chunk=np.int32(4),
        dtype=np.float32, backend="numpy",
    )  # fmt: skip
    assert options == ApplyOptions(
        stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2, pool="avg",
        pool_size=(3, 3), pool_stride=(1, 2), chunk=4, dtype="float32", backend="numpy",
    )  # fmt: skip
    assert type(options.groups) is int and type(options.chunk) is int
    assert all(type(v) is int for v in options.dilation + options.pool_stride)
    assert ApplyOptions(dtype=np.dtype("f8")).dtype == "float64"
    assert ApplyOptions(padding="same").padding == "same"
    assert hash(options) == hash(dataclasses.replace(options))  # frozen: usable as a key
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.chunk = 8


def test_job_options_are_recorded_as_before():
    # What an output's attributes record (and the fingerprint hashes): the keys, their
    # order and the values of the versions before ApplyOptions, so their outputs resume.
    recorded = stack_module._job_options(
        ApplyOptions(stride=(2, 1), padding=1, pool="max", chunk=4, backend="numpy"),
        np.dtype(np.float32),
    )
    assert list(recorded.items()) == [
        ("stride", [2, 1]), ("padding", 1), ("dilation", 1), ("groups", 1), ("pool", "max"),
        ("pool_size", 2), ("pool_stride", None), ("chunk", 4), ("dtype", "float32"),
    ]  # fmt: skip


def test_apply_takes_one_options_object(job, tmp_path):
    _, w, b, _, paths = job
    with pytest.raises(TypeError, match=r"options must be an ApplyOptions, got \{'chunk': 4\}"):
        stack_module.apply_stack(paths["npy"], tmp_path / "o.zarr", w, b, {"chunk": 4})
    with pytest.raises(TypeError, match="options must be an ApplyOptions"):
        stack_module.build_graph(stack_module.open_stack(paths["npy"]), w, b, 4)
    assert not (tmp_path / "o.zarr").exists()


def test_build_graph_follows_the_options(job, assert_close):
    x, w, b, want, paths = job
    stack = stack_module.open_stack(paths["npy"])
    y = stack_module.build_graph(stack, w, b, ApplyOptions(padding=1, pool="max", chunk=5))
    assert isinstance(y, da.Array) and y.chunks[0] == (5, 5, 5, 5, 3)
    assert_close(y.compute(), want)
    plain = stack_module.build_graph(stack, w, options=ApplyOptions(dtype="float64"))
    assert plain.dtype == np.float64 and plain.chunks[0] == (23,)
    assert_close(plain.compute(), convcore.conv2d(x.astype(np.float64), w.astype(np.float64)))


CLI_JOBS = [
    ("defaults", [], ApplyOptions()),
    (
        "every_option",
        ["--bias", "B", "--stride", "2,1", "--padding", "SAME", "--dilation", "1,2",
         "--groups", "1", "--pool", "avg", "--pool-size", "2", "--pool-stride", "1,2",
         "--chunk", "3", "--dtype", "float64", "-b", "numpy"],
        ApplyOptions(stride=(2, 1), padding="same", dilation=(1, 2), pool="avg", pool_size=2,
                     pool_stride=(1, 2), chunk=3, dtype="float64", backend="numpy"),
    ),
    (
        "four_sides",
        ["--padding", "1,0,2,1", "--pool", "max", "--pool-size", "3,2", "--chunk", "8"],
        ApplyOptions(padding=(1, 0, 2, 1), pool="max", pool_size=(3, 2), chunk=8),
    ),
]  # fmt: skip


@needs_zarr
@pytest.mark.parametrize("args, expected", [c[1:] for c in CLI_JOBS], ids=[c[0] for c in CLI_JOBS])
def test_the_command_builds_the_options_of_the_python_api(runner, job, monkeypatch, args, expected):
    _, w, b, _, paths = job
    given = []
    real_apply = cli_module.apply_stack

    def spy(input_path, output_path, weight, bias, options, **kwargs):
        given.append(options)
        return real_apply(input_path, output_path, weight, bias, options, **kwargs)

    monkeypatch.setattr(cli_module, "apply_stack", spy)
    out = paths["dir"] / "cli.zarr"
    args = [str(paths["b"]) if a == "B" else a for a in args]
    result = runner.invoke(
        main,
        ["apply", str(paths["npy"]), str(out), "--weight", str(paths["w"]), *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert given == [expected]
    bias = b if "--bias" in args else None
    # the Python API with the same options: the same job (same fingerprint), so it
    # resumes the command's output with nothing left to do ...
    report = stack_module.apply_stack(paths["npy"], out, w, bias, expected)
    assert report.computed == 0 and report.skipped == report.chunks
    # ... also on another backend (not part of the job), and a fresh run records the same
    again = dataclasses.replace(expected, backend="array_api")
    fresh = paths["dir"] / "python.zarr"
    stack_module.apply_stack(paths["npy"], fresh, w, bias, again)
    recorded = [dict(zarr.open_array(str(o), mode="r").attrs)[stack_module.ATTRS_KEY]
                for o in (out, fresh)]  # fmt: skip
    assert recorded[0]["fingerprint"] == recorded[1]["fingerprint"]
    assert recorded[0]["options"] == recorded[1]["options"]
    got, want = (zarr.open_array(str(o), mode="r")[:] for o in (fresh, out))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_zarr
def test_option_errors_of_the_command_name_the_option(runner, job, tmp_path):
    _, _, _, _, paths = job
    out = tmp_path / "out.zarr"
    for extra, needle in [
        (("--stride", "0"), "stride must be >= 1"),
        (("--dilation", "1,0"), "dilation must be >= 1"),
        (("--padding", "-1"), "padding must be >= 0"),
        (("--groups", "0"), "groups must be a positive integer"),
        (("--pool-size", "0"), "pool_size must be >= 1"),
        (("--pool-stride", "2,0"), "pool_stride must be >= 1"),
        (("--chunk", "0"), "Invalid value for --chunk: must be >= 1, got 0"),
        (("--pool-size", "2,2,2"), "Invalid value for --pool-size: must have 1 or 2 entries"),
    ]:
        err = _one_line_error(_apply(runner, paths, out, *extra), needle)
        assert f"Invalid value for {extra[0]}" in err  # every error names its option
        assert not out.exists()  # checked before anything is read or written
    err = _one_line_error(_apply(runner, paths, out, "--backend", "typo"), "'typo'")
    assert "Invalid value for '--backend'" in err and "came from --backend" in err
    assert not out.exists()


def test_apply_refuses_a_backend_that_cannot_run_the_chunks_before_writing(runner, job, tmp_path):
    _, _, _, _, paths = job
    out = tmp_path / "out.zarr"
    registry = get_registry()
    registry.register(
        convcore.BackendSpec(
            name="ghost", load=dict, ops={"conv"}, check_available=lambda: "no ghost here"
        )
    )
    try:
        _one_line_error(_apply(runner, paths, out, "-b", "ghost"), "'ghost' is unavailable")
        assert not out.exists()
        _one_line_error(_apply(runner, paths, out, "-b", "dask"), "'dask'", "NumPy")
        assert not out.exists()
    finally:
        reload_registry()


# --------------------------------------------------------------------------- imports


def _python(code, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVCORE_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


def test_stack_module_and_cli_import_without_dask(tmp_path):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", np.ones((2, 1, 4, 4), np.float32))
    np.save(tmp_path / "w.npy", np.ones((1, 1, 3, 3), np.float32))
    proc = _python(
        """
        import sys
        import convcore.cli, convcore.stack
        print(sorted(m for m in ("dask", "zarr", "distributed") if m in sys.modules))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    proc = _python(
        """
        import sys
        sys.modules["dask"] = None  # as if Dask were not installed
        import convcore.cli
        sys.argv = ["convcore", "apply", "in", "out.zarr", "-w", "w.npy"]
        convcore.cli.main()
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "convcore apply needs dask" in proc.stderr
    assert "pip install 'convcore[dask]'" in proc.stderr
