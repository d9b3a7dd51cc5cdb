"""``CONVCORE_WORKSPACE_MB`` on the ``numpy`` and ``array_api`` backends.

A tiny workspace makes both backends cut one image into boxes of output rows
(and groups); results must match the naive oracle and the uncut call, the cut
must really happen (a spy on ``plan_chunks`` counts the chunks), and a limit
below the smallest chunk is a :class:`convcore.WorkspaceLimitError` raised
before anything large is allocated.
"""

from __future__ import annotations

import tracemalloc

import naive
import numpy as np
import pytest

import convcore
from convcore import _portable, _workspace

kernels = pytest.importorskip("convcore_numpy._kernels")

#: (x shape, weight shape, options): 1-D to 3-D, stride, dilation, asymmetric
#: and oversized padding, groups, depthwise, pointwise.
CASES = [
    ((1, 3, 200), (4, 3, 3), dict(stride=2, padding=(2, 1))),
    (
        (2, 4, 9, 11),
        (6, 2, 3, 3),
        dict(stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2),
    ),
    ((1, 3, 12, 10), (5, 3, 3, 2), dict(padding=((0, 2), (1, 0)), dilation=2)),
    ((1, 4, 8, 8), (4, 1, 3, 3), dict(padding=5, groups=4)),
    ((2, 3, 16, 7), (5, 3, 1, 1), dict()),
    (
        (1, 2, 5, 6, 7),
        (4, 1, 3, 2, 3),
        dict(padding=1, groups=2, dilation=(1, 1, 2), stride=(1, 2, 1)),
    ),
]
IDS = ["1d-stride", "2d-groups-asym", "2d-dilation", "2d-depthwise-bigpad", "2d-pointwise", "3d"]

#: Workspaces small enough to cut every case below one image (MiB).
TINY = ["0.002", "0.001"]

#: (backend, namespace)
TARGETS = [
    ("numpy", "numpy"),
    ("array_api", "numpy"),
    ("array_api", "torch"),
    ("array_api", "array_api_strict"),
]


def _oracle(x, w, b, g, opts):
    geom = convcore.conv_geometry(
        x.shape[2:],
        w.shape[2:],
        stride=opts.get("stride", 1),
        padding=opts.get("padding", 0),
        dilation=opts.get("dilation", 1),
    )
    args = (geom.stride, geom.padding, geom.dilation, opts.get("groups", 1))
    return naive.conv(x, w, b, *args), naive.conv_backward(g, x, w, *args)


@pytest.fixture
def spy(monkeypatch):
    """The :class:`ChunkPlan` of every call, recorded from both backends."""
    plans = []

    def record(*args, **kwargs):
        plan = _workspace.plan_chunks(*args, **kwargs)
        plans.append(plan)
        return plan

    monkeypatch.setattr(kernels, "plan_chunks", record)
    monkeypatch.setattr(_portable, "plan_chunks", record)
    return plans


@pytest.mark.parametrize("mb", TINY)
@pytest.mark.parametrize(("xs", "ws", "opts"), CASES, ids=IDS)
@pytest.mark.parametrize(("backend", "ns_name"), TARGETS, ids=[f"{b}-{n}" for b, n in TARGETS])
def test_tiny_workspace_matches_oracle_and_uncut(
    backend, ns_name, xs, ws, opts, mb, make_ns, spy, monkeypatch, assert_close
):
    ns = make_ns(ns_name)
    rng = np.random.default_rng(len(xs) * 7 + ws[0])
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    monkeypatch.delenv("CONVCORE_WORKSPACE_MB", raising=False)
    xa, wa, ba = ns.asarray(x), ns.asarray(w), ns.asarray(b)
    full = ns.to_numpy(convcore.conv(xa, wa, ba, backend=backend, **opts))
    g = rng.standard_normal(full.shape)
    ga = ns.asarray(g)
    full_b = [ns.to_numpy(a) for a in convcore.conv_backward(ga, xa, wa, backend=backend, **opts)]
    assert all(not p.count > 1 for p in spy), "the default workspace should not cut these"
    spy.clear()

    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", mb)
    out = ns.to_numpy(convcore.conv(xa, wa, ba, backend=backend, **opts))
    grads = [ns.to_numpy(a) for a in convcore.conv_backward(ga, xa, wa, backend=backend, **opts)]
    pointwise_forward = backend == "numpy" and ws[2:] == (1,) * (len(ws) - 2)
    cut = [p for p in spy if p.count > 1 and not p.whole_images]
    assert len(cut) == (1 if pointwise_forward else 2), [p.count for p in spy]

    want, (wdx, wdw, wdb) = _oracle(x, w, b, g, opts)
    assert_close(out, want)
    assert_close(out, full)
    for got, ref, uncut in zip(grads, (wdx, wdw, wdb), full_b):
        assert_close(got, ref)
        assert_close(got, uncut)


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
def test_rows_then_groups(backend, spy, monkeypatch):
    """A slab of rows while one output row of all groups fits, one group at a time below."""
    x = np.ones((1, 8, 16, 16), np.float32)
    w = np.ones((8, 1, 3, 3), np.float32)
    # bytes per output position, all 8 groups: columns, results (and the padded input)
    per_position = 8 * 4 * ((9 + 1) if backend == "numpy" else (9 + 2 + 9))
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", str(4 * 16 * per_position / 2**20))
    convcore.conv2d(x, w, padding=1, groups=8, backend=backend)
    assert spy[-1].groups_per_chunk == 8 and 1 < spy[-1].count <= 16
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", str(per_position / 2 / 2**20))
    out = convcore.conv2d(x, w, padding=1, groups=8, backend=backend)
    assert spy[-1].groups_per_chunk == 1 and spy[-1].count > 16 * 8
    monkeypatch.delenv("CONVCORE_WORKSPACE_MB")
    np.testing.assert_array_equal(out, convcore.conv2d(x, w, padding=1, groups=8, backend=backend))


def test_whole_images_unchanged_at_default(spy, monkeypatch):
    """Normal shapes keep the batch chunks of whole images (and their results bit for bit)."""
    monkeypatch.delenv("CONVCORE_WORKSPACE_MB", raising=False)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 16, 28, 28)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    a = convcore.conv2d(x, w, padding=1, backend="numpy")
    assert spy[-1].whole_images
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "inf")
    b = convcore.conv2d(x, w, padding=1, backend="numpy")
    assert spy[-1].count == 1
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
@pytest.mark.parametrize("op", ["conv", "conv_backward"])
def test_too_small_is_a_clear_error_before_allocating(backend, op, monkeypatch):
    # 20000 channels x 9 taps: one output position needs 720 kB of columns.
    x = np.broadcast_to(np.float32(1), (1, 20000, 64, 64))
    w = np.broadcast_to(np.float32(1), (2, 20000, 3, 3))
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "0.5")
    tracemalloc.start()
    try:
        with pytest.raises(convcore.WorkspaceLimitError) as info:
            if op == "conv":
                convcore.conv2d(x, w, backend=backend)
            else:
                g = np.broadcast_to(np.float32(1), (1, 2, 62, 62))
                convcore.conv2d_backward(g, x, w, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated before the error"
    msg = str(info.value)
    assert "CONVCORE_WORKSPACE_MB='0.5'" in msg
    # numpy: columns + F rows; array_api: + the padded input region (and 2F forward)
    aux = 2 * (2 if (backend, op) == ("array_api", "conv") else 1)
    needed = 4 * (20000 * 9 * (2 if backend == "array_api" else 1) + aux)
    assert f"needs at least {needed} bytes" in msg
    assert op in msg and backend in msg
    assert isinstance(info.value, MemoryError)
    assert isinstance(info.value, convcore.ConvcoreError)


def test_reader(monkeypatch):
    read = _workspace.workspace_bytes
    for raw in ["", "  ", "junk", "0", "-3", "nan"]:
        monkeypatch.setenv("CONVCORE_WORKSPACE_MB", raw)
        assert read(16) == 16 * 2**20, raw
    monkeypatch.delenv("CONVCORE_WORKSPACE_MB")
    assert read(64) == 64 * 2**20
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "inf")
    assert read(16) > 2**60
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "1e-9")
    assert read(16) == 1
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", " 2.5 ")
    assert read(16) == int(2.5 * 2**20)


def test_sub_geometry_tiles_the_output():
    """Boxes cover every output position once; their input regions overlap by the halo."""
    geom = convcore.conv_geometry((13, 9), (3, 2), stride=(2, 1), padding=(3, 1, 0, 2), dilation=2)
    plan = _workspace.plan_chunks(
        geom, 1, 1, 8, 8 * 7 * 11, rows=6, aux=1, backend="numpy", op="conv"
    )
    seen = np.zeros(geom.output_size, int)
    for chunk in plan.chunks:
        seen[chunk.out] += 1
        assert chunk.geom.output_size == tuple(s.stop - s.start for s in chunk.out)
        assert chunk.geom.input_size == tuple(s.stop - s.start for s in chunk.inp)
    np.testing.assert_array_equal(seen, 1)
    assert plan.count > 1 and not plan.whole_images


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
def test_against_torch(backend, monkeypatch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 6, 20, 17))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "0.003")
    out = convcore.conv2d(
        x, w, b, stride=2, padding=(2, 1), dilation=(1, 2), groups=2, backend=backend
    )
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(w),
        torch.from_numpy(b),
        stride=2,
        padding=(2, 1),
        dilation=(1, 2),
        groups=2,
    ).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-11)
