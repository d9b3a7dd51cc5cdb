"""Bad input: ValueError / TypeError naming the parameter and the value; empty inputs.

Every error case also checks that the inputs were left untouched.
"""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from cases import expected_conv, expected_conv_backward

import convcore

BACKENDS = ["numpy", "array_api"]


@pytest.fixture(autouse=True)
def no_selection_state(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    convcore.set_backend(None)


def _arrays(dtype=np.float64, n=2, c=4, h=6, w=7, f=6, groups=1, k=(3, 3)):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c // groups, *k)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    return {"x": x, "weight": weight, "bias": bias}


def _grad_out(a, **options):
    return np.ones(convcore.conv2d(a["x"], a["weight"], **options).shape, dtype=a["x"].dtype)


def _snapshot(*arrays):
    return [np.array(np.asarray(a), copy=True) for a in arrays if a is not None]


def _assert_unchanged(arrays, snapshot):
    arrays = [a for a in arrays if a is not None]
    assert len(arrays) == len(snapshot)
    for a, before in zip(arrays, snapshot):
        np.testing.assert_array_equal(np.asarray(a), before, strict=True)


# Each case: (call, exception, regex naming the parameter, text the message must contain).
# ``call(a)`` receives fresh arrays from ``_arrays()`` and returns the arrays it passed in.


def _conv(a, **options):
    x = options.pop("x", a["x"])
    weight = options.pop("weight", a["weight"])
    bias = options.pop("bias", a["bias"])
    convcore.conv2d(x, weight, bias, **options)


def _backward(a, **options):
    grad_out = options.pop("grad_out", None)
    if grad_out is None:
        grad_out = _grad_out(a)
    x = options.pop("x", a["x"])
    weight = options.pop("weight", a["weight"])
    convcore.conv2d_backward(grad_out, x, weight, **options)


CONV_CASES = [
    # ndim
    pytest.param({"x": np.zeros((4, 6, 7))}, ValueError, r"\bx\b", "(4, 6, 7)", id="x-3d"),
    pytest.param(
        {"x": np.zeros((1, 2, 4, 6, 7))}, ValueError, r"\bx\b", "(1, 2, 4, 6, 7)", id="x-5d"
    ),
    pytest.param(
        {"weight": np.zeros((6, 4, 9))}, ValueError, r"\bweight\b", "(6, 4, 9)", id="weight-3d"
    ),
    pytest.param({"bias": np.zeros((6, 1))}, ValueError, r"\bbias\b", "(6, 1)", id="bias-2d"),
    pytest.param({"bias": np.zeros(5)}, ValueError, r"\bbias\b", "(5,)", id="bias-wrong-length"),
    pytest.param({"bias": np.float64(1.0)}, ValueError, r"\bbias\b", "()", id="bias-0d"),
    # channels and groups
    pytest.param(
        {"weight": np.zeros((6, 3, 3, 3))}, ValueError, r"\bx\b", "4", id="channel-mismatch"
    ),
    pytest.param(
        {"weight": np.zeros((5, 2, 3, 3)), "bias": np.zeros(5), "groups": 2},
        ValueError,
        r"\bgroups\b",
        "5",
        id="F-not-divisible-by-groups",
    ),
    pytest.param(
        {"groups": 3, "weight": np.zeros((6, 1, 3, 3))},
        ValueError,
        r"\b(x|groups)\b",
        "3",
        id="C-not-divisible",
    ),
    pytest.param({"groups": 0}, ValueError, r"\bgroups\b", "0", id="groups-0"),
    pytest.param({"groups": -2}, ValueError, r"\bgroups\b", "-2", id="groups-negative"),
    pytest.param({"groups": 1.5}, TypeError, r"\bgroups\b", "1.5", id="groups-float"),
    pytest.param({"groups": 2.0}, TypeError, r"\bgroups\b", "2.0", id="groups-integral-float"),
    pytest.param({"groups": True}, TypeError, r"\bgroups\b", "True", id="groups-bool"),
    pytest.param({"groups": "2"}, TypeError, r"\bgroups\b", "'2'", id="groups-str"),
    # geometry
    pytest.param(
        {"x": np.zeros((2, 4, 2, 7))},
        ValueError,
        r"kernel_size|weight",
        "3",
        id="kernel-taller-than-input",
    ),
    pytest.param(
        {"dilation": 4},
        ValueError,
        r"kernel_size|weight|dilation",
        "4",
        id="dilated-kernel-too-big",
    ),
    pytest.param({"stride": 0}, ValueError, r"\bstride\b", "0", id="stride-0"),
    pytest.param({"stride": -1}, ValueError, r"\bstride\b", "-1", id="stride-negative"),
    pytest.param({"stride": (1, 0)}, ValueError, r"\bstride\b", "(1, 0)", id="stride-pair-0"),
    pytest.param({"dilation": 0}, ValueError, r"\bdilation\b", "0", id="dilation-0"),
    pytest.param({"dilation": -1}, ValueError, r"\bdilation\b", "-1", id="dilation-negative"),
    pytest.param({"padding": -1}, ValueError, r"\bpadding\b", "-1", id="padding-negative"),
    pytest.param(
        {"padding": (0, 0, 0, -1)}, ValueError, r"\bpadding\b", "-1", id="padding-negative-side"
    ),
    pytest.param(
        {"padding": (1, 2, 3)}, ValueError, r"\bpadding\b", "(1, 2, 3)", id="padding-length-3"
    ),
    pytest.param(
        {"padding": (1,) * 6},
        ValueError,
        r"\bpadding\b",
        "(1, 1, 1, 1, 1, 1)",
        id="padding-length-6",
    ),
    pytest.param(
        {"padding": "full"}, ValueError, r"\bpadding\b", "'full'", id="padding-bad-string"
    ),
    pytest.param({"padding": 1.5}, TypeError, r"\bpadding\b", "1.5", id="padding-float"),
    pytest.param({"padding": True}, TypeError, r"\bpadding\b", "True", id="padding-bool"),
    pytest.param({"padding": "3"}, ValueError, r"\bpadding\b", "'3'", id="padding-str-number"),
    pytest.param({"stride": 1.5}, TypeError, r"\bstride\b", "1.5", id="stride-float"),
    pytest.param({"stride": True}, TypeError, r"\bstride\b", "True", id="stride-bool"),
    pytest.param({"stride": "3"}, TypeError, r"\bstride\b", "'3'", id="stride-str"),
    pytest.param({"stride": (1, 2.0)}, TypeError, r"\bstride\b", "2.0", id="stride-pair-float"),
    pytest.param({"dilation": 1.5}, TypeError, r"\bdilation\b", "1.5", id="dilation-float"),
    pytest.param({"dilation": False}, TypeError, r"\bdilation\b", "False", id="dilation-bool"),
    pytest.param({"dilation": "2"}, TypeError, r"\bdilation\b", "'2'", id="dilation-str"),
    # dtypes
    pytest.param(
        {"weight": np.zeros((6, 4, 3, 3), np.float32)},
        TypeError,
        r"\bweight\b",
        "float32",
        id="weight-float32-x-float64",
    ),
    pytest.param(
        {"bias": np.zeros(6, np.float32)}, TypeError, r"\bbias\b", "float32", id="bias-float32"
    ),
    pytest.param(
        {
            "x": np.zeros((2, 4, 6, 7), np.int64),
            "weight": np.zeros((6, 4, 3, 3), np.int64),
            "bias": None,
        },
        TypeError,
        r"\bx\b",
        "int64",
        id="integer-dtype",
    ),
    pytest.param(
        {
            "x": np.zeros((2, 4, 6, 7), np.complex128),
            "weight": np.zeros((6, 4, 3, 3), np.complex128),
            "bias": None,
        },
        TypeError,
        r"\bx\b",
        "complex128",
        id="complex-dtype",
    ),
    pytest.param(
        {"x": np.zeros((2, 4, 6, 7), bool), "weight": np.zeros((6, 4, 3, 3), bool), "bias": None},
        TypeError,
        r"\bx\b",
        "bool",
        id="bool-dtype",
    ),
    # namespaces / non-arrays
    pytest.param(
        {"weight": xps.zeros((6, 4, 3, 3), dtype=xps.float64)},
        TypeError,
        r"\bweight\b",
        "numpy",
        id="weight-array-api-strict",
    ),
    pytest.param(
        {"bias": xps.zeros((6,), dtype=xps.float64)},
        TypeError,
        r"\bbias\b",
        "numpy",
        id="bias-array-api-strict",
    ),
    pytest.param({"weight": [[[[0.0]]]]}, TypeError, r"\bweight\b", "list", id="weight-list"),
    pytest.param({"x": 3.0}, TypeError, r"\bx\b", "float", id="x-python-float"),
    pytest.param({"bias": [0.0] * 6}, TypeError, r"\bbias\b", "list", id="bias-list"),
]


@pytest.mark.parametrize(("options", "exc", "pattern", "text"), CONV_CASES)
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_conv2d_rejects_bad_input(options, exc, pattern, text, backend):
    a = _arrays()
    passed = [options.get(k, a[k]) for k in ("x", "weight", "bias")]
    before = _snapshot(*(p for p in passed if isinstance(p, np.ndarray)))
    with pytest.raises(exc, match=pattern) as info:
        _conv(a, backend=backend, **options)
    assert text in str(info.value)
    _assert_unchanged([p for p in passed if isinstance(p, np.ndarray)], before)


def test_mixed_numpy_and_torch_is_a_type_error_that_says_what_to_do():
    torch = pytest.importorskip("torch")
    a = _arrays()
    w_torch = torch.from_numpy(a["weight"].copy())
    with pytest.raises(TypeError, match=r"weight is a torch array but x is a numpy array") as info:
        convcore.conv2d(a["x"], w_torch)
    assert "weight.numpy(force=True)" in str(info.value)
    x_torch = torch.from_numpy(a["x"].copy())
    with pytest.raises(TypeError, match=r"weight is a numpy array but x is a torch array") as info:
        convcore.conv2d(x_torch, a["weight"])
    assert "torch.as_tensor(weight, device=x.device)" in str(info.value)
    with pytest.raises(TypeError, match=r"grad_out is a numpy array but x is a torch array"):
        convcore.max_pool2d_backward(np.ones((2, 3, 3, 4)), x_torch, 2)


def test_numpy_weights_never_move_to_the_gpu():
    """NumPy weights with CuPy input stay an error (no silent host-to-device copy)."""
    from types import ModuleType

    from convcore._validation import _conversion_hint

    hint = _conversion_hint(ModuleType("cupy"), "weight", "x")
    assert "cupy.asarray(weight)" in hint and "GPU" in hint
    cupy = pytest.importorskip("cupy")
    try:
        x = cupy.ones((2, 3, 5, 6), dtype=cupy.float64)
    except Exception as exc:  # no CUDA driver here: the hint above is what remains to check
        pytest.skip(f"cannot make CuPy arrays here: {exc}")
    with pytest.raises(TypeError, match=r"weight is a numpy array but x is a cupy array") as info:
        convcore.conv2d(x, _arrays()["weight"])
    assert "cupy.asarray(weight)" in str(info.value)


BACKWARD_CASES = [
    pytest.param(
        {"grad_out": np.ones((2, 6, 4))}, ValueError, r"\bgrad_out\b", "(2, 6, 4)", id="grad_out-3d"
    ),
    pytest.param(
        {"grad_out": np.ones((2, 6, 4, 6))},
        ValueError,
        r"\bgrad_out\b",
        "(2, 6, 4, 6)",
        id="grad_out-wrong-spatial",
    ),
    pytest.param(
        {"grad_out": np.ones((2, 5, 4, 5))},
        ValueError,
        r"\bgrad_out\b",
        "(2, 5, 4, 5)",
        id="grad_out-wrong-F",
    ),
    pytest.param(
        {"grad_out": np.ones((3, 6, 4, 5))},
        ValueError,
        r"\bgrad_out\b",
        "(3, 6, 4, 5)",
        id="grad_out-wrong-N",
    ),
    pytest.param(
        {"grad_out": np.ones((2, 6, 4, 5), np.float32)},
        TypeError,
        r"\bgrad_out\b",
        "float32",
        id="grad_out-dtype",
    ),
    pytest.param(
        {"grad_out": xps.ones((2, 6, 4, 5), dtype=xps.float64)},
        TypeError,
        r"\bgrad_out\b|\bx\b",
        "numpy",
        id="grad_out-namespace",
    ),
    pytest.param({"x": np.zeros((4, 6, 7))}, ValueError, r"\bx\b", "(4, 6, 7)", id="x-3d"),
    pytest.param(
        {"weight": np.zeros((6, 4, 9))}, ValueError, r"\bweight\b", "(6, 4, 9)", id="weight-3d"
    ),
    pytest.param(
        {"weight": np.zeros((6, 3, 3, 3))}, ValueError, r"\bx\b", "4", id="channel-mismatch"
    ),
    pytest.param({"groups": 4}, ValueError, r"\bx\b|\bgroups\b", "4", id="groups-mismatch"),
    pytest.param({"groups": 0}, ValueError, r"\bgroups\b", "0", id="groups-0"),
    pytest.param({"stride": 0}, ValueError, r"\bstride\b", "0", id="stride-0"),
    pytest.param({"padding": -1}, ValueError, r"\bpadding\b", "-1", id="padding-negative"),
    pytest.param({"dilation": 1.5}, TypeError, r"\bdilation\b", "1.5", id="dilation-float"),
    pytest.param(
        {"weight": np.zeros((6, 4, 3, 3), np.float32)},
        TypeError,
        r"\bweight\b",
        "float32",
        id="weight-dtype",
    ),
]


@pytest.mark.parametrize(("options", "exc", "pattern", "text"), BACKWARD_CASES)
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_conv2d_backward_rejects_bad_input(options, exc, pattern, text, backend):
    a = _arrays()
    grad_out = options.get("grad_out", _grad_out(a))
    passed = [grad_out, options.get("x", a["x"]), options.get("weight", a["weight"])]
    numpy_passed = [p for p in passed if isinstance(p, np.ndarray)]
    before = _snapshot(*numpy_passed)
    with pytest.raises(exc, match=pattern) as info:
        _backward(a, backend=backend, **options)
    assert text in str(info.value)
    _assert_unchanged(numpy_passed, before)


IM2COL_CASES = [
    # (N, C, W) is 1-D data now; no spatial axis at all is the error
    pytest.param(np.zeros((4, 6)), 3, {}, ValueError, r"\bx\b", "(4, 6)", id="x-2d"),
    pytest.param(
        np.zeros((2, 4, 6, 7)), 1.5, {}, TypeError, r"\bkernel_size\b", "1.5", id="kernel-float"
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)), True, {}, TypeError, r"\bkernel_size\b", "True", id="kernel-bool"
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)), "3", {}, TypeError, r"\bkernel_size\b", "'3'", id="kernel-str"
    ),
    pytest.param(np.zeros((2, 4, 6, 7)), 0, {}, ValueError, r"\bkernel_size\b", "0", id="kernel-0"),
    pytest.param(
        np.zeros((2, 4, 6, 7)),
        (3, 3, 3),
        {},
        ValueError,
        r"\bkernel_size\b",
        "(3, 3, 3)",
        id="kernel-3-long",
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)), 7, {}, ValueError, r"\bkernel_size\b", "7", id="kernel-too-big"
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)), 3, {"stride": 0}, ValueError, r"\bstride\b", "0", id="stride-0"
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)),
        3,
        {"padding": "full"},
        ValueError,
        r"\bpadding\b",
        "'full'",
        id="padding-str",
    ),
    pytest.param(
        np.zeros((2, 4, 6, 7)),
        3,
        {"dilation": -1},
        ValueError,
        r"\bdilation\b",
        "-1",
        id="dilation-neg",
    ),
    pytest.param([[[[1.0]]]], 1, {}, TypeError, r"\bx\b", "list", id="x-list"),
]


@pytest.mark.parametrize(("x", "kernel_size", "options", "exc", "pattern", "text"), IM2COL_CASES)
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_im2col_rejects_bad_input(x, kernel_size, options, exc, pattern, text, backend):
    before = _snapshot(x) if isinstance(x, np.ndarray) else []
    with pytest.raises(exc, match=pattern) as info:
        convcore.im2col(x, kernel_size, backend=backend, **options)
    assert text in str(info.value)
    if isinstance(x, np.ndarray):
        _assert_unchanged([x], before)


COL2IM_CASES = [
    # input (6, 7), kernel 3 -> output (4, 5) = 20 columns; C = 4 -> 36 rows.
    pytest.param((2, 36), (6, 7), 3, {}, ValueError, r"\bcols\b", "(2, 36)", id="cols-2d"),
    pytest.param(
        (2, 35, 20), (6, 7), 3, {}, ValueError, r"\bcols\b", "35", id="rows-not-multiple-of-kernel"
    ),
    pytest.param((2, 0, 20), (6, 7), 3, {}, ValueError, r"\bcols\b", "0", id="no-rows"),
    pytest.param((2, 36, 21), (6, 7), 3, {}, ValueError, r"\bcols\b", "21", id="columns-mismatch"),
    pytest.param(
        (2, 36, 20),
        (6, 7),
        3,
        {"stride": 2},
        ValueError,
        r"\bcols\b",
        "20",
        id="columns-mismatch-stride",
    ),
    # input_size gives the number of spatial axes (1, 2 or 3 ...); none is an error
    pytest.param((2, 3, 3), (), 3, {}, ValueError, r"\binput_size\b", "()", id="input_size-empty"),
    pytest.param((2, 3, 3), "56", 3, {}, TypeError, r"\binput_size\b", "'56'", id="input_size-str"),
    pytest.param(
        (2, 27, 61), (6, 7, 5), 3, {}, ValueError, r"\bcols\b", "61", id="cols-3d-mismatch"
    ),
    pytest.param(
        (2, 36, 20), (6.0, 7), 3, {}, TypeError, r"\binput_size\b", "6.0", id="input_size-float"
    ),
    pytest.param(
        (2, 36, 20), (0, 7), 3, {}, ValueError, r"\binput_size\b", "(0, 7)", id="input_size-0"
    ),
    pytest.param(
        (2, 36, 20), (6, 7), 3, {"padding": -1}, ValueError, r"\bpadding\b", "-1", id="padding-neg"
    ),
    pytest.param(
        (2, 36, 20), (6, 7), 3, {"stride": "1"}, TypeError, r"\bstride\b", "'1'", id="stride-str"
    ),
]


@pytest.mark.parametrize(
    ("shape", "input_size", "kernel_size", "options", "exc", "pattern", "text"), COL2IM_CASES
)
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_col2im_rejects_bad_input(
    shape, input_size, kernel_size, options, exc, pattern, text, backend
):
    cols = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    before = _snapshot(cols)
    with pytest.raises(exc, match=pattern) as info:
        convcore.col2im(cols, input_size, kernel_size, backend=backend, **options)
    assert text in str(info.value)
    _assert_unchanged([cols], before)


def test_reshape_gemm_output_rejects_wrong_size():
    y = np.arange(2 * 3 * 12, dtype=np.float64).reshape(2, 3, 12)
    with pytest.raises(ValueError, match=r"output_size") as info:
        convcore.reshape_gemm_output(y, (3, 5))
    assert "12" in str(info.value)
    with pytest.raises(ValueError, match=r"\by\b"):
        convcore.reshape_gemm_output(y.reshape(6, 12), (3, 4))
    out = convcore.reshape_gemm_output(y, (3, 4))
    np.testing.assert_array_equal(out, y.reshape(2, 3, 3, 4))


# --------------------------------------------------------------------------
# Empty inputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_empty_batch(backend, dtype):
    a = _arrays(dtype, n=0, groups=2)
    x, w, b = a["x"], a["weight"], a["bias"]
    options = {"stride": 2, "padding": 1, "groups": 2, "backend": backend}
    y = convcore.conv2d(x, w, b, **options)
    assert y.shape == (0, 6, 3, 4)
    assert y.dtype == dtype
    dx, dw, db = convcore.conv2d_backward(np.zeros((0, 6, 3, 4), dtype), x, w, **options)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, (6,))
    assert dx.dtype == dw.dtype == db.dtype == dtype
    # No examples, so no gradient: zeros (as in PyTorch).
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros_like(b))
    cols = convcore.im2col(x, 3, stride=2, padding=1, backend=backend)
    assert cols.shape == (0, 4 * 9, 12)
    assert cols.dtype == dtype
    back = convcore.col2im(cols, (6, 7), 3, stride=2, padding=1, backend=backend)
    assert back.shape == (0, 4, 6, 7)
    assert back.dtype == dtype


def test_empty_batch_array_api_strict():
    a = _arrays(n=0)
    x, w = xps.asarray(a["x"]), xps.asarray(a["weight"])
    y = convcore.conv2d(x, w)
    assert tuple(y.shape) == (0, 6, 4, 5)
    assert y.dtype == xps.float64


@pytest.mark.parametrize(
    "shape",
    [(2, 0, 6, 7), (2, 4, 0, 7), (2, 4, 6, 0), (0, 0, 6, 7)],
    ids=["C=0", "H=0", "W=0", "N=0-and-C=0"],
)
@pytest.mark.parametrize("backend", [None, *BACKENDS], ids=["auto", *BACKENDS])
def test_empty_channels_or_space_is_an_error(shape, backend):
    x = np.zeros(shape)
    with pytest.raises(ValueError, match=r"\bx\b") as info:
        convcore.im2col(x, 1, backend=backend)
    assert str(shape) in str(info.value)
    w = np.zeros((3, shape[1], 1, 1))
    with pytest.raises(ValueError, match=r"\bx\b|\bweight\b"):
        convcore.conv2d(x, w, backend=backend)


def test_empty_filters_is_an_error():
    a = _arrays()
    with pytest.raises(ValueError, match=r"\bweight\b"):
        convcore.conv2d(a["x"], np.zeros((0, 4, 3, 3)))


# --------------------------------------------------------------------------
# Inputs are never modified (success paths; error paths are checked above)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_not_modified(backend):
    a = _arrays(groups=2)
    x, w, b = a["x"], a["weight"], a["bias"]
    options = {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": (1, 2), "groups": 2}
    g = np.random.default_rng(5).standard_normal(convcore.conv2d(x, w, b, **options).shape)
    before = _snapshot(x, w, b, g)
    y = convcore.conv2d(x, w, b, backend=backend, **options)
    dx, dw, db = convcore.conv2d_backward(g, x, w, backend=backend, **options)
    cols = convcore.im2col(x, (3, 3), stride=2, padding=1, backend=backend)
    cols_before = _snapshot(cols)
    convcore.col2im(cols, (6, 7), (3, 3), stride=2, padding=1, backend=backend)
    _assert_unchanged([x, w, b, g], before)
    _assert_unchanged([cols], cols_before)
    # And the results are right, so the calls above did real work.
    pads = (1, 0, 2, 1)
    ref = expected_conv(x, w, b, stride=(2, 1), padding=pads, dilation=(1, 2), groups=2)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    rdx, rdw, rdb = expected_conv_backward(
        g, x, w, stride=(2, 1), padding=pads, dilation=(1, 2), groups=2
    )
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_results_do_not_alias_inputs():
    # A result that shares memory with an input would let later in-place updates leak.
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 5))
    w = np.ones((4, 4, 1, 1))
    for backend in BACKENDS:
        for out in (
            convcore.conv2d(x, w, backend=backend),
            convcore.im2col(x, 1, backend=backend),
        ):
            assert not np.shares_memory(out, x)
