"""The Conv2D layer: forward/backward agree with the functions and the naive oracle."""

from __future__ import annotations

import numpy as np
import pytest
from cases import expected_conv, expected_conv_backward

import convcore
from convcore import _registry as registry_module

OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"stride": 2, "padding": 1}, id="strided-padded"),
    pytest.param({"padding": (1, 0, 2, 1), "dilation": (2, 1)}, id="asymmetric-dilated"),
    pytest.param({"padding": "same", "stride": (2, 1), "groups": 2}, id="same-grouped"),
]


@pytest.fixture(autouse=True)
def no_selection_state(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    convcore.set_backend(None)


def _arrays(groups=1, seed=0, n=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 7, 6))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    b = rng.standard_normal(6)
    return x, w, b


@pytest.mark.parametrize("options", OPTIONS)
def test_forward_equals_conv2d_and_reference(options):
    x, w, b = _arrays(options.get("groups", 1))
    layer = convcore.Conv2D(w, b, **options)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, convcore.conv2d(x, w, b, **options))
    np.testing.assert_allclose(y, expected_conv(x, w, b, **options), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer(x), y)  # __call__ is forward


@pytest.mark.parametrize("options", OPTIONS)
def test_backward_equals_conv2d_backward_and_reference(options):
    x, w, b = _arrays(options.get("groups", 1))
    layer = convcore.Conv2D(w, b, **options)
    y = layer.forward(x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    dx, dw, db = layer.backward(g)
    fdx, fdw, fdb = convcore.conv2d_backward(g, x, w, **options)
    np.testing.assert_array_equal(dx, fdx)
    np.testing.assert_array_equal(dw, fdw)
    np.testing.assert_array_equal(db, fdb)
    rdx, rdw, rdb = expected_conv_backward(g, x, w, **options)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, rdb, rtol=1e-10, atol=1e-10)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)


def test_backward_without_bias():
    x, w, _ = _arrays()
    layer = convcore.Conv2D(w)
    y = layer.forward(x)
    np.testing.assert_allclose(y, expected_conv(x, w), rtol=1e-12, atol=1e-12)
    g = np.ones_like(y)
    dx, dw, _ = layer.backward(g)
    rdx, rdw, _ = expected_conv_backward(g, x, w)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, rtol=1e-10, atol=1e-10)


def test_backward_before_forward_raises():
    _, w, b = _arrays()
    layer = convcore.Conv2D(w, b)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((3, 6, 5, 5)))


def test_failed_forward_caches_nothing():
    x, w, b = _arrays()
    layer = convcore.Conv2D(w, b)
    with pytest.raises(ValueError, match=r"\bx\b"):
        layer.forward(x[:, :3])  # wrong channel count
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((3, 6, 5, 5)))


def test_layer_caches_its_input_and_a_second_forward_replaces_it():
    x1, w, b = _arrays(seed=0)
    x2, _, _ = _arrays(seed=7, n=2)
    layer = convcore.Conv2D(w, b, padding=1)
    layer.forward(x1)
    assert layer.input is not x1  # a copy (see test_training.py)
    np.testing.assert_array_equal(layer.input, x1)
    y2 = layer.forward(x2)
    np.testing.assert_array_equal(layer.input, x2)
    g = np.random.default_rng(2).standard_normal(y2.shape)
    dx, dw, db = layer.backward(g)
    assert dx.shape == x2.shape
    rdx, rdw, rdb = expected_conv_backward(g, x2, w, padding=(1, 1, 1, 1))
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, rdb, rtol=1e-10, atol=1e-10)
    # A gradient shaped for the first input no longer fits.
    with pytest.raises(ValueError, match="grad_out"):
        layer.backward(np.ones((3, 6, 7, 6)))


def test_layer_attributes():
    _, w, b = _arrays()
    layer = convcore.Conv2D(w, b, stride=2)
    assert layer.weight is w
    assert layer.bias is b
    assert convcore.Conv2D(w).bias is None


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
def test_layer_backend_keyword(backend, monkeypatch):
    monkeypatch.setattr(registry_module, "_registry", None)  # fresh registry, restored after
    kernels = registry_module.get_registry().kernels(backend)
    calls = []
    for op in ("conv", "conv_backward"):
        original = kernels[op]

        def counting(*args, _op=op, _original=original, **kwargs):
            calls.append(_op)
            return _original(*args, **kwargs)

        monkeypatch.setitem(kernels, op, counting)
    other = "array_api" if backend == "numpy" else "numpy"
    x, w, b = _arrays(2)
    layer = convcore.Conv2D(w, b, stride=2, groups=2, backend=backend)
    with convcore.use_backend(other):  # the layer's keyword wins over the context
        y = layer.forward(x)
        dx, dw, db = layer.backward(np.ones_like(y))
    assert calls == ["conv", "conv_backward"]
    np.testing.assert_allclose(
        y, expected_conv(x, w, b, stride=2, groups=2), rtol=1e-12, atol=1e-12
    )
    rdx, rdw, rdb = expected_conv_backward(np.ones_like(y), x, w, stride=2, groups=2)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, rdb, rtol=1e-10, atol=1e-10)


def test_layer_unknown_backend_keyword():
    x, w, b = _arrays()
    layer = convcore.Conv2D(w, b, backend="no_such_backend")
    with pytest.raises(convcore.UnknownBackendError, match="no_such_backend"):
        layer.forward(x)


def test_layer_float32():
    x, w, b = (a.astype(np.float32) for a in _arrays())
    layer = convcore.Conv2D(w, b, padding=1)
    y = layer.forward(x)
    assert y.dtype == np.float32
    dx, dw, db = layer.backward(np.ones_like(y))
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(
        y, expected_conv(x, w, b, padding=(1, 1, 1, 1)), rtol=1e-4, atol=1e-4
    )
