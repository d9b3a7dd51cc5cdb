"""The Winograd path of the ``numba`` backend (``backends/convcore_numba/_winograd.py``).

* F(2x2, 3x3) and F(4x4, 3x3) against the float64 loop oracle (``tests/naive.py``)
  on odd sizes, inputs smaller than a tile, padding 0 and 1 (also asymmetric),
  with and without bias, one and several images, items cut into bands;
* the error bound: ``max|y - ref| <= tol * max|ref|`` with tol 1e-5 for F(2x2, 3x3)
  (measured at most 6e-7) and 1e-4 for F(4x4, 3x3) (measured at most 1.1e-5);
* float32 output, bitwise identical for 1 and 2 threads;
* ``eligible`` refuses what the path does not do;
* ``convcore.conv2d(..., backend="numba")`` takes the path, and
  ``CONVCORE_NUMBA_WINOGRAD=0`` / ``WINOGRAD = False`` turn it off;
* inf and NaN give the im2col path's exact result;
* against ``torch.nn.functional.conv2d`` when torch is installed;
* ``convcore_numba.warmup`` compiles the default kernels (float32 only);
* ``benchmarks/bench_winograd.py`` runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import naive
import numpy as np
import pytest

import convcore
from convcore.geometry import conv_geometry

pytestmark = pytest.mark.skipif(
    not any(b.name == "numba" and b.available for b in convcore.available_backends()),
    reason="the numba backend is not available here",
)

numba = pytest.importorskip("numba")

from convcore_numba import _ops, _winograd  # noqa: E402  (after the availability skip)

#: ``max|y - ref| <= TOLERANCE[tile] * max|ref|`` against the float64 oracle.
TOLERANCE = {2: 1e-5, 4: 1e-4}

#: (N, C, H, W, F, padding): odd sizes, H or W below a tile, asymmetric padding.
SHAPES = [
    (1, 16, 5, 7, 16, 1),
    (2, 17, 9, 4, 19, (0, 1, 1, 0)),
    (3, 16, 3, 3, 16, 0),  # one output pixel
    (2, 16, 2, 6, 16, 1),  # H < 4
    (2, 3, 6, 3, 5, 1),  # W < 4, few channels and filters (the kernels take any)
    (2, 20, 13, 11, 18, (1, 0, 0, 1)),
    (2, 16, 10, 14, 16, 0),
    (5, 16, 8, 8, 24, 1),
    (1, 16, 40, 37, 16, 1),
]


def _arrays(n, c, h, w, f, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    return x, wt, b


def _reference(x, w, b, geom):
    """The float64 loop oracle on the float32 inputs."""
    pad = tuple(geom.padding)
    return naive.conv(x.astype(np.float64), w.astype(np.float64), b, (1, 1), pad, (1, 1), 1)


def _assert_within(y, ref, tile):
    assert y.dtype == np.float32 and y.shape == ref.shape
    scale = float(np.max(np.abs(ref)))
    err = float(np.max(np.abs(y.astype(np.float64) - ref)))
    assert err <= TOLERANCE[tile] * scale, (
        f"F({tile}x{tile}): {err:.3g} > {TOLERANCE[tile]} * {scale:.3g}"
    )


@pytest.fixture
def small_items(monkeypatch):
    """Items of one tile row and every call on the worker threads."""
    monkeypatch.setattr(_ops, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(_winograd, "MIN_ITEM_OUTPUTS", 1)
    monkeypatch.setattr(_ops, "_PARALLEL_MIN_MACS", 0)


@pytest.fixture
def winograd_calls(monkeypatch):
    """Count the calls of ``_winograd.conv_winograd`` (the path ``_ops.conv`` takes)."""
    calls = []
    original = _winograd.conv_winograd

    def spy(*args, **kwargs):
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(_winograd, "conv_winograd", spy)
    return calls


# ------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_matches_float64_oracle(shape, with_bias, tile):
    n, c, h, w, f, pad = shape
    x, wt, b = _arrays(n, c, h, w, f)
    b = b if with_bias else None
    geom = conv_geometry((h, w), (3, 3), padding=pad)
    y = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
    _assert_within(y, _reference(x, wt, b, geom), tile)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape", SHAPES[5:], ids=[str(s) for s in SHAPES[5:]])
def test_many_small_items_match_the_oracle(shape, tile, small_items, two_threads):
    n, c, h, w, f, pad = shape
    x, wt, b = _arrays(n, c, h, w, f, seed=1)
    geom = conv_geometry((h, w), (3, 3), padding=pad)
    y = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
    _assert_within(y, _reference(x, wt, b, geom), tile)


@pytest.mark.parametrize("tile", [2, 4])
def test_layer_sized_error(tile):
    """A layer like B (64 channels and filters, 56x56, padding 1), fewer images."""
    x, wt, b = _arrays(2, 64, 56, 56, 64, seed=2)
    geom = conv_geometry((56, 56), (3, 3), padding=1)
    y = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
    ref = convcore.conv2d(
        x.astype(np.float64),
        wt.astype(np.float64),
        b.astype(np.float64),
        padding=1,
        backend="numpy",
    )
    _assert_within(y, ref, tile)


def test_non_contiguous_inputs():
    x, wt, b = _arrays(2, 32, 12, 11, 16, seed=3)
    geom = conv_geometry((12, 11), (3, 3), padding=1)
    xf = np.asfortranarray(x)
    ws = wt[:, ::-1].copy()[:, ::-1]
    y = convcore.conv2d(xf, ws, b[::-1].copy()[::-1], padding=1, backend="numba")
    assert np.array_equal(y, _winograd.conv_winograd(x, wt, b, geom))


# ---------------------------------------------------------------------- determinism


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape", [(3, 16, 21, 19, 20, 1), (1, 24, 40, 37, 16, (1, 0, 0, 1))])
def test_bitwise_identical_for_one_and_two_threads(shape, tile, small_items, two_threads):
    n, c, h, w, f, pad = shape
    x, wt, b = _arrays(n, c, h, w, f, seed=4)
    geom = conv_geometry((h, w), (3, 3), padding=pad)
    seen = []
    original = _winograd.run_items

    def spy(func, count, threads):
        seen.append((count, threads))
        return original(func, count, threads)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_winograd, "run_items", spy)
        two = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
        again = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
        assert any(count > 2 and threads == 2 for count, threads in seen), seen
        seen.clear()
        numba.set_num_threads(1)
        one = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
    assert seen and all(threads == 1 for _, threads in seen), seen
    assert np.array_equal(two, again)
    assert np.array_equal(two, one), f"1 vs 2 threads: max {np.max(np.abs(two - one))}"


# ---------------------------------------------------------------------- eligibility


def _eligible(n=4, c=32, h=12, w=12, f=16, k=3, dtype=np.float32, groups=1, **options):
    geom = conv_geometry((h, w), (k, k), **options)
    return _winograd.eligible(geom, dtype, groups, (n, c, h, w), (f, c // groups, k, k))


def test_eligible_for_3x3_stride_1_float32():
    assert _eligible(padding=1)
    assert _eligible(padding=0)
    assert _eligible(padding=(1, 0, 0, 1))
    assert _eligible(padding="same")
    assert _eligible(c=8, f=8, padding=1)
    assert _eligible(n=32, h=3, w=3, padding=1)  # 128 tiles of one pixel per image
    assert _eligible(n=4, c=256, f=256, h=16, w=16, padding=1)  # 256 tiles
    assert _eligible(n=8, c=512, f=512, h=7, w=7, padding=1)  # 128 tiles


@pytest.mark.parametrize(
    "options",
    [
        {"stride": 2, "padding": 1},
        {"stride": (1, 2), "padding": 1},
        {"dilation": 2, "padding": 2},
        {"groups": 2, "padding": 1},
        {"dtype": np.float64, "padding": 1},
        {"k": 5, "padding": 2},
        {"k": 1},
        {"padding": 2},
        {"padding": (0, 2, 1, 1)},
        {"c": 4, "f": 64, "padding": 1},
        {"f": 6, "padding": 1},
        {"n": 64, "h": 2, "w": 30, "padding": 1},  # an output height of 2
        {"n": 1, "h": 14, "w": 14, "padding": 1},  # 49 tiles
        {"n": 4, "c": 512, "f": 512, "h": 7, "w": 7, "padding": 1},  # large weights, 64 tiles
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_not_eligible(options):
    assert not _eligible(**options)


def test_not_eligible_in_1d_and_3d():
    g1 = conv_geometry((40,), (3,), padding=1)
    assert not _winograd.eligible(g1, np.float32, 1, (2, 16, 40), (16, 16, 3))
    g3 = conv_geometry((1, 40, 40), (1, 3, 3), padding=(0, 1, 1))
    assert not _winograd.eligible(g3, np.float32, 1, (2, 16, 1, 40, 40), (16, 16, 1, 3, 3))


# ----------------------------------------------------------------- the numba backend


def test_conv2d_takes_the_winograd_path(winograd_calls, monkeypatch):
    monkeypatch.delenv("CONVCORE_NUMBA_WINOGRAD", raising=False)
    x, wt, b = _arrays(2, 32, 12, 13, 20, seed=5)
    y = convcore.conv2d(x, wt, b, padding=1, backend="numba")
    assert len(winograd_calls) == 1
    _assert_within(y, _reference(x, wt, b, conv_geometry((12, 13), (3, 3), padding=1)), 2)
    convcore.conv2d(x, wt, b, stride=2, padding=1, backend="numba")  # not eligible
    convcore.conv2d(x.astype(np.float64), wt.astype(np.float64), padding=1, backend="numba")
    assert len(winograd_calls) == 1


@pytest.mark.parametrize("how", ["env", "module"])
def test_winograd_can_be_switched_off(how, winograd_calls, monkeypatch):
    x, wt, b = _arrays(2, 32, 12, 13, 20, seed=6)
    if how == "env":
        monkeypatch.setenv("CONVCORE_NUMBA_WINOGRAD", "0")
    else:
        monkeypatch.delenv("CONVCORE_NUMBA_WINOGRAD", raising=False)
        monkeypatch.setattr(_winograd, "WINOGRAD", False)
    assert not _winograd.enabled()
    y = convcore.conv2d(x, wt, b, padding=1, backend="numba")
    assert winograd_calls == []
    # The im2col path: its own rounding, the same values.
    _assert_within(y, _reference(x, wt, b, conv_geometry((12, 13), (3, 3), padding=1)), 2)


@pytest.mark.parametrize("value, tile", [("", 2), ("1", 2), ("2", 2), ("4", 4)])
def test_environment_chooses_the_tile(value, tile, monkeypatch):
    assert _winograd.TILE == 2
    monkeypatch.setenv("CONVCORE_NUMBA_WINOGRAD", value)
    assert _winograd.setting() == tile
    x, wt, b = _arrays(2, 32, 12, 13, 20, seed=7)
    geom = conv_geometry((12, 13), (3, 3), padding=1)
    y = convcore.conv2d(x, wt, b, padding=1, backend="numba")
    assert np.array_equal(y, _winograd.conv_winograd(x, wt, b, geom, tile=tile))


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("bad", ["inf", "nan", "weight"])
def test_non_finite_values_match_the_im2col_path(bad, tile, monkeypatch):
    x, wt, b = _arrays(2, 32, 12, 13, 20, seed=8)
    if bad == "weight":
        wt[3, 2, 1, 1] = np.inf
    else:
        x[1, 4, 5, 6] = float(bad)
        x[0, 0, 0, 0] = -np.inf
    geom = conv_geometry((12, 13), (3, 3), padding=1)
    # (One worker: the calling thread's errstate covers the im2col path's inf * 0.)
    with np.errstate(invalid="ignore"):
        y = _winograd.conv_winograd(x, wt, b, geom, tile=tile)
        monkeypatch.setenv("CONVCORE_NUMBA_WINOGRAD", "0")
        want = convcore.conv2d(x, wt, b, padding=1, backend="numba")
    assert not np.isfinite(want).all()
    np.testing.assert_array_equal(y, want)


# ---------------------------------------------------------------------------- torch


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("padding", [1, 0])
def test_matches_torch(tile, padding, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("CONVCORE_NUMBA_WINOGRAD", str(tile))
    x, wt, b = _arrays(3, 32, 28, 27, 48, seed=9)
    y = convcore.conv2d(x, wt, b, padding=padding, backend="numba")
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(
            torch.from_numpy(x.astype(np.float64)),
            torch.from_numpy(wt.astype(np.float64)),
            torch.from_numpy(b.astype(np.float64)),
            padding=padding,
        ).numpy()
        ref32 = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), padding=padding
        ).numpy()
    _assert_within(y, ref, tile)
    # And close to torch's own float32 result.
    _assert_within(ref32, ref, tile)
    scale = float(np.max(np.abs(ref)))
    assert float(np.max(np.abs(y - ref32))) <= 2 * TOLERANCE[tile] * scale


def test_warmup_compiles_the_winograd_kernels(tmp_path):
    """In a fresh process, ``warmup`` compiles the default Winograd kernels, float32 only."""
    code = """
        import convcore_numba
        from convcore_numba import _winograd
        convcore_numba.warmup(("float32", "float64"))
        assert _winograd.warmup_kernels() == _winograd._KERNELS[2]
        for kernel in _winograd._KERNELS[2]:
            sigs = [str(sig) for sig in kernel.signatures]
            assert len(sigs) == 1 and "float32" in sigs[0], (kernel, sigs)
        for kernel in _winograd._KERNELS[4]:  # opt-in: compiled on first use
            assert not kernel.signatures, kernel
        """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVCORE_", "NUMBA_"))}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


def test_benchmark_script_runs(tmp_path):
    """``benchmarks/bench_winograd.py`` with the smallest settings (no timing asserted)."""
    import json
    from pathlib import Path

    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_winograd.py"
    args = ["--layers", "S56", "--impls", "im2col,wino2", "--repeat", "1", "--burst", "4"]
    proc = subprocess.run(
        [sys.executable, str(script), *args, "--pause", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())["records"]
    assert {r["impl"] for r in records} == {"im2col", "wino2"}
    assert all(r["median_s"] > 0 and r["error"] < 1e-5 for r in records)


# ---------------------------------------------------------------- dx in the backward


@pytest.fixture
def small_dx_threshold(monkeypatch):
    """The backward's Winograd dx from small layers on (the tests' shapes stay small)."""
    monkeypatch.setattr(_ops, "WINOGRAD_DX_MIN_WORK", 1)
    monkeypatch.setattr(_ops, "WINOGRAD_DX_MIN_CHANNELS", 8)
    monkeypatch.delenv("CONVCORE_NUMBA_WINOGRAD", raising=False)


def _backward_reference(g, x, wt, pad):
    f64 = [a.astype(np.float64) for a in (g, x, wt)]
    return naive.conv_backward(*f64, (1, 1), pad, (1, 1), 1)


@pytest.mark.parametrize(
    ("shape", "pad", "dx_pad"),
    [
        ((3, 16, 9, 11, 24), (1, 1, 1, 1), (1, 1, 1, 1)),
        ((4, 12, 10, 7, 16), (1, 2, 2, 1), (1, 0, 0, 1)),
        ((8, 16, 6, 6, 16), (2, 2, 2, 2), (0, 0, 0, 0)),
    ],
    ids=["pad1", "asymmetric", "pad2"],
)
def test_backward_dx_by_winograd_matches_the_oracle(
    shape, pad, dx_pad, small_dx_threshold, winograd_calls
):
    """dx = conv(grad_out, flip(W)^T) with padding 2 - p on the Winograd path; dw, db
    by the GEMM path; all three against the float64 loop oracle."""
    n, c, h, w, f = shape
    x, wt, _ = _arrays(n, c, h, w, f, seed=8)
    opts = dict(padding=((pad[0], pad[1]), (pad[2], pad[3])))
    geom = conv_geometry((h, w), (3, 3), padding=pad)
    g = np.random.default_rng(9).standard_normal((n, f, *geom.output_size)).astype(np.float32)
    dx, dw, db = convcore.conv2d_backward(g, x, wt, backend="numba", **opts)
    assert [tuple(call.padding) for call in winograd_calls] == [dx_pad]
    ref_dx, ref_dw, ref_db = _backward_reference(g, x, wt, pad)
    _assert_within(dx, ref_dx, 2)
    _assert_within(dw, ref_dw, 2)
    _assert_within(db, ref_db, 2)


def test_backward_dx_by_winograd_only_where_eligible(small_dx_threshold, winograd_calls):
    x, wt, _ = _arrays(4, 16, 8, 8, 16, seed=10)  # 64 tiles: _winograd.MIN_TILES
    g = np.ones((4, 16, 8, 8), np.float32)
    convcore.conv2d_backward(g, x, wt, padding=1, backend="numba")
    assert len(winograd_calls) == 1
    g0 = np.ones((4, 16, 6, 6), np.float32)
    convcore.conv2d_backward(g0, x, wt, padding=0, backend="numba")  # dx padding 2: no
    f64 = [a.astype(np.float64) for a in (g, x, wt)]
    convcore.conv2d_backward(*f64, padding=1, backend="numba")
    assert len(winograd_calls) == 1


def test_backward_dx_threshold_and_switch(winograd_calls, monkeypatch):
    """Below WINOGRAD_DX_MIN_WORK, and with CONVCORE_NUMBA_WINOGRAD=0, dx is im2col's."""
    monkeypatch.delenv("CONVCORE_NUMBA_WINOGRAD", raising=False)
    x, wt, _ = _arrays(2, 32, 8, 8, 32, seed=11)
    g = np.random.default_rng(12).standard_normal((2, 32, 8, 8)).astype(np.float32)
    small = convcore.conv2d_backward(g, x, wt, padding=1, backend="numba")
    assert winograd_calls == []  # 32 tiles of 32 channels
    monkeypatch.setattr(_ops, "WINOGRAD_DX_MIN_WORK", 1)
    monkeypatch.setenv("CONVCORE_NUMBA_WINOGRAD", "0")
    off = convcore.conv2d_backward(g, x, wt, padding=1, backend="numba")
    assert winograd_calls == []
    for a, b in zip(small, off):
        assert np.array_equal(a, b)


def test_backward_dx_by_winograd_is_bitwise_identical_for_one_and_two_threads(
    small_dx_threshold, small_items, two_threads
):
    x, wt, _ = _arrays(3, 16, 13, 12, 24, seed=13)
    g = np.random.default_rng(14).standard_normal((3, 24, 13, 12)).astype(np.float32)
    two = convcore.conv2d_backward(g, x, wt, padding=1, backend="numba")
    numba.set_num_threads(1)
    one = convcore.conv2d_backward(g, x, wt, padding=1, backend="numba")
    for a, b in zip(two, one):
        assert a.tobytes() == b.tobytes()
