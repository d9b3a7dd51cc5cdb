"""Training with the layers: owned parameters, kept gradients, skipped dx, isolated caches.

* ``create`` draws the documented initialisations from shapes (seeded, any float dtype);
* ``grad_weight`` / ``grad_bias`` / ``gradients()`` after ``backward`` are the naive
  oracle's (and PyTorch's, when installed) for every convolution and transposed
  convolution, with and without the input gradient;
* ``needs_input_grad=False`` / ``backward(..., input_grad=False)`` does not run the
  backend's col2im or conv_backward (convolution) or its conv (transposed
  convolution): spies on the kernels fail the test if it did;
* changing the input after ``forward`` does not change ``backward`` (the layer keeps a
  copy; ``copy_input=False`` keeps a reference; max pooling keeps the winners' indices);
* ``examples/train_digits.py``, short: the loss falls and the accuracy is far above chance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import naive
import numpy as np
import pytest
from cases import naive_options

import convcore
from convcore import _registry as registry_module

ROOT = Path(__file__).resolve().parents[1]
CONVS = {1: convcore.Conv1D, 2: convcore.Conv2D, 3: convcore.Conv3D}
TRANSPOSES = {1: convcore.ConvTranspose1D, 2: convcore.ConvTranspose2D, 3: convcore.ConvTranspose3D}
SIZES = {1: (9,), 2: (7, 6), 3: (5, 4, 5)}
KERNELS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


@pytest.fixture(autouse=True)
def no_selection_state(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    convcore.set_backend(None)


def _available(name: str) -> bool:
    return registry_module.get_registry().unavailable_reason(name) is None


CPU_BACKENDS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(not _available(name), reason=f"backend {name} unavailable"),
    )
    for name in ["numpy", "numba", "array_api"]
]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _conv_case(nd, groups=1, n=3, dtype=np.float64, seed=0):
    rng = _rng(seed)
    x = rng.standard_normal((n, 4, *SIZES[nd])).astype(dtype)
    w = rng.standard_normal((6, 4 // groups, *KERNELS[nd])).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, w, b


def _transpose_case(nd, groups=1, n=2, dtype=np.float64, seed=0):
    rng = _rng(seed)
    x = rng.standard_normal((n, 4, *SIZES[nd])).astype(dtype)
    w = rng.standard_normal((4, 6 // groups, *KERNELS[nd])).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, w, b


def _naive_transpose(x, w, stride, padding, output_padding, dilation, groups):
    nd = x.ndim - 2
    return {
        "stride": (stride,) * nd,
        "padding": (padding,) * (2 * nd),
        "output_padding": (output_padding,) * nd,
        "dilation": (dilation,) * nd,
        "groups": groups,
    }


def _spy(monkeypatch, backend, forbidden=(), counted=()):
    """Replace ``backend``'s kernels: ``forbidden`` ones raise, ``counted`` ones are logged."""
    monkeypatch.setattr(registry_module, "_registry", None)  # fresh registry, restored after
    kernels = registry_module.get_registry().kernels(backend)
    calls = []
    for op in forbidden:

        def refuse(*args, _op=op, **kwargs):
            raise AssertionError(f"{_op} ran although the input gradient was not wanted")

        monkeypatch.setitem(kernels, op, refuse)
    for op in counted:
        original = kernels[op]

        def counting(*args, _op=op, _original=original, **kwargs):
            calls.append(_op)
            return _original(*args, **kwargs)

        monkeypatch.setitem(kernels, op, counting)
    return calls


# ---------------------------------------------------------------------------
# create: parameters from shapes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_create_shapes_dtype_and_seed(nd):
    conv = CONVS[nd].create(6, 8, 3, groups=2, padding=1, rng=0)
    assert conv.weight.shape == (8, 3, *(3,) * nd)
    assert conv.bias.shape == (8,)
    assert conv.weight.dtype == conv.bias.dtype == np.float32
    assert (conv.padding, conv.groups) == (1, 2)
    again = CONVS[nd].create(6, 8, 3, groups=2, padding=1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(conv.weight, again.weight)
    np.testing.assert_array_equal(conv.bias, again.bias)
    wide = CONVS[nd].create(6, 8, 3, groups=2, rng=0, dtype=np.float64)
    assert wide.weight.dtype == np.float64
    np.testing.assert_array_equal(wide.weight.astype(np.float32), conv.weight)  # rounded once
    kernel = KERNELS[nd]
    tr = TRANSPOSES[nd].create(4, 6, kernel, groups=2, stride=2, rng=1, bias=False)
    assert tr.weight.shape == (4, 3, *kernel)
    assert tr.bias is None
    assert tr.stride == 2


def test_create_initialisations():
    fan_in = 16 * 5 * 5
    bound = 1 / np.sqrt(fan_in)
    uniform = convcore.Conv2D.create(16, 64, 5, rng=3)  # PyTorch's default
    assert np.abs(uniform.weight).max() <= bound
    assert np.abs(uniform.bias).max() <= bound
    assert np.abs(uniform.weight).max() > 0.95 * bound
    np.testing.assert_allclose(uniform.weight.std(), bound / np.sqrt(3), rtol=0.05)
    he = convcore.Conv2D.create(16, 64, 5, init="he", rng=3)
    np.testing.assert_allclose(he.weight.std(), np.sqrt(2 / fan_in), rtol=0.05)
    np.testing.assert_array_equal(he.bias, 0)
    # A transposed convolution's fan_in is weight.shape[1] * K (C_out / groups), as in PyTorch.
    tr = convcore.ConvTranspose2D.create(64, 16, 5, rng=3)
    assert np.abs(tr.weight).max() <= bound < 1 / np.sqrt(64 * 25) * 2.1
    unseeded = [convcore.Conv1D.create(2, 2, 3).weight for _ in range(2)]
    assert not np.array_equal(*unseeded)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((3, 8, 3), {"groups": 2}, ValueError, "in_channels=3 must be a multiple of groups=2"),
        ((4, 6, 3), {"groups": 4}, ValueError, "out_channels=6 must be a multiple of groups=4"),
        ((0, 6, 3), {}, ValueError, "in_channels must be a positive int"),
        ((2, 6, (3, 3, 3)), {}, ValueError, "kernel_size must be a positive int or 2"),
        ((2, 6, 0), {}, ValueError, "kernel_size"),
        ((2, 6, 3), {"init": "xavier"}, ValueError, "init must be one of 'uniform', 'he'"),
        ((2, 6, 3), {"dtype": np.int32}, TypeError, "floating dtype"),
        ((2, 6, 3), {"bias": 1}, TypeError, "bias must be True or False"),
        ((2, 6, 3), {"groups": 0}, ValueError, "groups"),
        ((2, 6, 3), {"needs_input_grad": "no"}, TypeError, "needs_input_grad"),
        ((2, 6, 3), {"layout": "NDHWC"}, ValueError, "layout"),
    ],
)
def test_create_rejects_bad_shapes(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        convcore.Conv2D.create(*args, **kwargs)


# ---------------------------------------------------------------------------
# gradients kept, against the naive oracle
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_keeps_the_oracles_gradients(nd, input_grad, assert_close):
    options = {"stride": 2, "padding": 1, "dilation": 1, "groups": 2}
    x, w, b = _conv_case(nd, groups=2)
    layer = CONVS[nd](w, b, needs_input_grad=input_grad, **options)
    y = layer.forward(x)
    g = _rng(1).standard_normal(y.shape)
    dx, dw, db = layer.backward(g)
    geo = naive_options(x.shape[2:], w.shape[2:], 2, 1, 1)
    rdx, rdw, rdb = naive.conv_backward(g, x, w, groups=2, **geo)
    assert layer.grad_weight is dw and layer.grad_bias is db
    assert_close(dw, rdw)
    assert_close(db, rdb)
    if input_grad:
        assert_close(dx, rdx)
    else:
        assert dx is None
    grads = layer.gradients()
    assert list(grads) == list(layer.parameters()) == ["weight", "bias"]
    assert grads["weight"] is dw and grads["bias"] is db
    assert layer.parameters()["weight"] is w and layer.parameters()["bias"] is b


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_keeps_the_oracles_gradients(nd, input_grad, assert_close):
    # output_padding >= stride (allowed by dilation): windows beyond x are dropped.
    options = {"stride": 2, "padding": 1, "output_padding": 2, "dilation": 3, "groups": 2}
    x, w, b = _transpose_case(nd, groups=2)
    layer = TRANSPOSES[nd](w, b, **options)
    y = layer.forward(x)
    g = _rng(1).standard_normal(y.shape)
    dx, dw, db = layer.backward(g, input_grad=input_grad)
    rdx, rdw, rdb = naive.conv_transpose_backward(g, x, w, **_naive_transpose(x, w, **options))
    assert layer.grad_weight is dw and layer.grad_bias is db
    assert_close(dw, rdw)
    assert_close(db, rdb)
    if input_grad:
        assert_close(dx, rdx)
    else:
        assert dx is None


@pytest.mark.parametrize("layout", ["NHWC", "HWCN"])
def test_weight_gradients_in_other_layouts(layout, assert_close):
    from convcore._validation import Layout

    lay = Layout(layout, 2)
    x, w, b = _conv_case(2)
    xl = lay.from_first(np, x)
    conv = convcore.Conv2D(w, b, padding="same", layout=layout)
    g = _rng(2).standard_normal(conv(xl).shape)
    want = conv.backward(g)
    got = conv.backward(g, input_grad=False)
    assert got[0] is None
    assert_close(got[1], want[1])
    assert_close(got[2], want[2])
    xt, wt, bt = _transpose_case(2)
    tr = convcore.ConvTranspose2D(wt, bt, stride=2, layout=layout)
    gt = _rng(3).standard_normal(tr(lay.from_first(np, xt)).shape)
    want = tr.backward(gt)
    got = tr.backward(gt, input_grad=False)
    assert got[0] is None
    assert_close(got[1], want[1])
    assert_close(got[2], want[2])


def test_weight_gradients_half_precision_and_empty_batch():
    x, w, b = (a.astype(np.float16) for a in _conv_case(2))
    conv = convcore.Conv2D(w, b, padding=1, needs_input_grad=False)
    g = np.ones_like(conv(x))
    _, dw, db = conv.backward(g)
    _, rdw, rdb = conv.backward(g, input_grad=True)
    assert dw.dtype == db.dtype == np.float16
    np.testing.assert_allclose(dw.astype(np.float64), rdw.astype(np.float64), rtol=2e-3, atol=2e-2)
    np.testing.assert_array_equal(db, rdb)
    for layer, x0 in [
        (convcore.Conv2D(w, b, padding=1), x[:0]),
        (convcore.ConvTranspose2D(w.swapaxes(0, 1).copy(), None), x[:0, :6]),
    ]:
        y = layer(x0)
        dx, dw, db = layer.backward(y, input_grad=False)
        assert dx is None
        assert dw.shape == layer.weight.shape and not dw.any()
        assert db.shape == (y.shape[1],) and not db.any()
        assert layer.gradients().keys() == layer.parameters().keys()


@pytest.mark.parametrize(("chunk_bytes", "im2col_calls"), [(None, 2), (1, 10)])
def test_weight_gradients_in_batch_chunks(chunk_bytes, im2col_calls, monkeypatch, assert_close):
    from convcore import layers

    assert layers._batch_ranges(5, 2**20) == [(0, 5)]
    assert layers._batch_ranges(5, 3 * 2**20) == [(0, 2), (2, 4), (4, 5)]  # 24 MiB an image
    x, w, b = _conv_case(2, groups=2, n=5)
    conv = convcore.Conv2D(w, b, padding=1, groups=2)
    g = _rng(7).standard_normal(conv(x).shape)
    want = conv.backward(g)
    xt, wt, bt = _transpose_case(2, groups=2, n=5)
    tr = convcore.ConvTranspose2D(wt, bt, stride=2, output_padding=2, dilation=3, groups=2)
    gt = _rng(8).standard_normal(tr(xt).shape)
    want_t = tr.backward(gt)
    calls = _spy(monkeypatch, "numpy", counted=("im2col",))
    conv.backend = tr.backend = "numpy"
    if chunk_bytes is not None:  # one image per chunk
        monkeypatch.setattr(layers, "_COLUMN_CHUNK_BYTES", chunk_bytes)
    for layer, grad, ref in [(conv, g, want), (tr, gt, want_t)]:
        _, dw, db = layer.backward(grad, input_grad=False)
        assert_close(dw, ref[1])
        assert_close(db, ref[2])
    assert len(calls) == im2col_calls


def test_weight_gradients_check_grad_out():
    x, w, b = _conv_case(2)
    conv = convcore.Conv2D(w, b, needs_input_grad=False)
    conv(x)
    with pytest.raises(ValueError, match="grad_out must have shape"):
        conv.backward(np.ones((3, 6, 2, 2)))
    assert conv.grad_weight is None  # a failed backward keeps nothing
    with pytest.raises(TypeError, match="input_grad must be True or False"):
        conv.backward(np.ones((3, 6, 5, 5)), input_grad=0)


def test_layer_without_bias_and_gradients_before_backward():
    x, w, _ = _conv_case(2)
    conv = convcore.Conv2D(w)
    assert conv.parameters() == {"weight": w}
    with pytest.raises(RuntimeError, match=r"Conv2D\.gradients\(\) called before backward"):
        conv.gradients()
    _, dw, db = conv.backward(np.ones_like(conv(x)), input_grad=False)
    assert conv.grad_bias is None and db.shape == (6,)  # db still returned
    assert conv.gradients() == {"weight": dw}


def test_pooling_layers_have_no_parameters():
    for layer in (convcore.MaxPool2D(2), convcore.AvgPool1D(3), convcore.MaxPool3D(2)):
        assert layer.parameters() == {} and layer.gradients() == {}


def test_sgd_step_is_one_loop_and_setattr_works(assert_close):
    x, w, b = _conv_case(2)
    conv = convcore.Conv2D(w.copy(), b.copy(), padding=1)
    g = _rng(4).standard_normal(conv(x).shape)
    _, dw, db = conv.backward(g)
    for name, p in conv.parameters().items():  # in place
        p -= 0.1 * conv.gradients()[name]
    assert_close(conv.weight, w - 0.1 * dw)
    assert_close(conv.bias, b - 0.1 * db)
    for name, p in conv.parameters().items():  # by attribute (immutable arrays)
        setattr(conv, name, p + 0.1 * conv.gradients()[name])
    assert_close(conv.weight, w)
    assert_close(conv.bias, b)


def test_gradients_match_torch():
    torch = pytest.importorskip("torch")
    x, w, b = _conv_case(2, groups=2)
    conv = convcore.Conv2D(w, b, stride=2, padding=1, groups=2, needs_input_grad=False)
    g = _rng(5).standard_normal(conv(x).shape)
    conv.backward(g)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(torch.tensor(x), tw, tb, stride=2, padding=1, groups=2)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(conv.grad_weight, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv.grad_bias, tb.grad.numpy(), rtol=1e-10, atol=1e-10)

    xt, wt, bt = _transpose_case(2, groups=2)
    tr = convcore.ConvTranspose2D(wt, bt, stride=2, padding=1, output_padding=1, groups=2)
    gt = _rng(6).standard_normal(tr(xt).shape)
    tr.backward(gt, input_grad=False)
    tw = torch.tensor(wt, requires_grad=True)
    tb = torch.tensor(bt, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(
        torch.tensor(xt), tw, tb, stride=2, padding=1, output_padding=1, groups=2
    )
    ty.backward(torch.tensor(gt))
    np.testing.assert_allclose(tr.grad_weight, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tr.grad_bias, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_torch_tensors_train_too():
    torch = pytest.importorskip("torch")
    x, w, b = (torch.tensor(a) for a in _conv_case(2))
    conv = convcore.Conv2D(w, b, padding=1, needs_input_grad=False)
    y = conv(x)
    x += 1  # the cache is a copy
    dx, dw, db = conv.backward(torch.ones_like(y))
    assert dx is None and isinstance(dw, torch.Tensor) and isinstance(db, torch.Tensor)
    want = convcore.conv2d_backward(torch.ones_like(y), x - 1, w, padding=1)
    torch.testing.assert_close(dw, want[1])
    torch.testing.assert_close(db, want[2])


# ---------------------------------------------------------------------------
# no dx: the kernels that would compute it do not run
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_conv_without_input_grad_runs_no_col2im(backend, monkeypatch, assert_close):
    x, w, b = _conv_case(2, groups=2)
    want = convcore.Conv2D(w, b, stride=2, padding=1, groups=2, backend=backend)
    y = want(x)
    g = _rng(1).standard_normal(y.shape)
    _, rdw, rdb = want.backward(g)
    calls = _spy(monkeypatch, backend, forbidden=("col2im", "conv_backward"), counted=("im2col",))
    for layer, kwargs in [
        (convcore.Conv2D(w, b, stride=2, padding=1, groups=2, backend=backend,
                         needs_input_grad=False), {}),
        (convcore.Conv2D(w, b, stride=2, padding=1, groups=2, backend=backend),
         {"input_grad": False}),
    ]:  # fmt: skip
        layer(x)
        dx, dw, db = layer.backward(g, **kwargs)
        assert dx is None
        assert_close(dw, rdw)
        assert_close(db, rdb)
    assert calls == ["im2col", "im2col"]
    # The spy would have caught a dx: asking for one runs the forbidden kernel.
    with pytest.raises(AssertionError, match="conv_backward ran"):
        layer.backward(g, input_grad=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_conv_transpose_without_input_grad_runs_no_convolution(backend, monkeypatch, assert_close):
    x, w, b = _transpose_case(2, groups=2)
    options = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "backend": backend}
    want = convcore.ConvTranspose2D(w, b, **options)
    g = _rng(1).standard_normal(want(x).shape)
    _, rdw, rdb = want.backward(g)
    layer = convcore.ConvTranspose2D(w, b, needs_input_grad=False, **options)
    layer(x)
    calls = _spy(monkeypatch, backend, forbidden=("conv", "conv_backward"), counted=("im2col",))
    dx, dw, db = layer.backward(g)
    assert dx is None and calls == ["im2col"]
    assert_close(dw, rdw)
    assert_close(db, rdb)
    with pytest.raises(AssertionError, match="conv ran"):
        layer.backward(g, input_grad=True)


def test_input_grad_true_overrides_needs_input_grad(assert_close):
    x, w, b = _conv_case(1)
    layer = convcore.Conv1D(w, b, needs_input_grad=False)
    assert "needs_input_grad=False" in repr(layer)
    g = np.ones_like(layer(x))
    dx, _, _ = layer.backward(g, input_grad=True)
    assert_close(dx, convcore.conv1d_backward(g, x, w)[0])
    layer.needs_input_grad = True  # a settable attribute
    assert layer.backward(g)[0] is not None


# ---------------------------------------------------------------------------
# the cache does not see later changes of the input
# ---------------------------------------------------------------------------
def _layers_and_inputs():
    x, w, b = _conv_case(2)
    xt, wt, bt = _transpose_case(2)
    return [
        (convcore.Conv2D(w, b, padding=1), x),
        (convcore.Conv2D(w, b, padding=1, needs_input_grad=False), x),
        (convcore.ConvTranspose2D(wt, bt, stride=2), xt),
        (convcore.ConvTranspose2D(wt, bt, stride=2, needs_input_grad=False), xt),
        (convcore.MaxPool2D(2), x),
        (convcore.AvgPool2D(2), x),
    ]


@pytest.mark.parametrize("index", list(range(6)))
def test_changing_the_input_after_forward_does_not_change_backward(index):
    layer, x = _layers_and_inputs()[index]
    original = x.copy()
    y = layer.forward(x)
    g = _rng(9).standard_normal(y.shape)
    x[...] = _rng(10).standard_normal(x.shape)  # the caller reuses its buffer
    got = layer.backward(g)
    fresh, _ = _layers_and_inputs()[index]
    fresh.forward(original)
    want = fresh.backward(g)
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple)
                    else (want,), strict=True):  # fmt: skip
        if b is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, b)


def test_copy_input_false_keeps_a_reference():
    x, w, b = _conv_case(2)
    conv = convcore.Conv2D(w, b, padding=1, copy_input=False)
    conv(x)
    assert conv.input is x
    assert "copy_input=False" in repr(conv)
    g = np.ones_like(conv(x))
    before = conv.backward(g)[1]
    x *= 2  # seen by the layer: the documented cost of no copy
    np.testing.assert_allclose(conv.backward(g)[1], 2 * before)
    with pytest.raises(TypeError, match="copy_input must be True or False"):
        convcore.Conv2D(w, copy_input=None)


# ---------------------------------------------------------------------------
# the example
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_digits():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_digits
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return train_digits


def test_example_trains_quickly(train_digits):
    small = train_digits.load_digits_split(seed=0, limit=600)
    assert small[0].shape[1:] == (1, 8, 8) and small[0].dtype == np.float32
    assert (len(small[1]), len(small[3])) == (450, 150)
    data = train_digits.load_digits_split(seed=0)
    assert (len(data[1]), len(data[3])) == (1347, 450)
    assert 0 <= data[0].min() and data[0].max() <= 1
    model, hist = train_digits.train(data, epochs=2, batch_size=32, seed=0, log=None)
    assert len(hist.batch_loss) == 2 * 43 and len(hist.seconds) == 2
    assert np.mean(hist.batch_loss[-5:]) < 0.3 * np.mean(hist.batch_loss[:5])
    assert hist.loss[1] < 0.5 * hist.loss[0]
    assert hist.test_accuracy[-1] > 0.7  # chance is 0.1; 10 epochs reach 0.97
    assert model[0].needs_input_grad is False
    assert model[0].weight.dtype == np.float32


def test_example_main_prints_and_plots(train_digits, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    argv = ["--epochs", "1", "--limit", "300", "--batch-size", "50", "--backend", "numpy"]
    assert train_digits.main([*argv, "--lr", "0.1", "--seed", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "epoch  1  loss" in out and "test acc" in out
    assert "final test accuracy" in out and f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_rejects_bad_options(train_digits, capsys):
    with pytest.raises(SystemExit):
        train_digits.main(["--epochs", "0"])
    assert "--epochs" in capsys.readouterr().err


def test_softmax_cross_entropy_gradient(train_digits):
    rng = _rng(11)
    logits = rng.standard_normal((5, 10))
    labels = rng.integers(0, 10, 5)
    loss, grad = train_digits.softmax_cross_entropy(logits, labels)
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (
            train_digits.softmax_cross_entropy(up, labels)[0]
            - train_digits.softmax_cross_entropy(down, labels)[0]
        ) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert loss > 0


def test_max_pooling_layers_keep_the_indices_not_a_copy():
    """The winners' indices of the forward are what the backward uses: no copy of x,
    the same dx as the functions', and x's values are never read again."""
    rng = _rng(3)
    for layer, shape in (
        (convcore.MaxPool1D(3, 2, 1), (2, 3, 11)),
        (convcore.MaxPool2D(2), (2, 3, 8, 6)),
        (convcore.MaxPool3D(2, padding=1, padding_mode="reflect"), (1, 2, 4, 5, 3)),
    ):
        x = rng.standard_normal(shape)
        y = layer(x)
        assert layer.input is x and layer.indices.shape == y.shape
        assert layer.indices.dtype == np.int64
        g = rng.standard_normal(y.shape)
        nd = len(shape) - 2
        bwd = getattr(convcore, f"max_pool{nd}d_backward")
        want = bwd(g, x.copy(), layer.kernel_size, **layer._options())
        x[...] = 0  # the caller reuses its buffer
        np.testing.assert_allclose(layer.backward(g), want, rtol=1e-15, atol=0)
    with pytest.raises(TypeError, match="copy_input"):
        convcore.MaxPool2D(2, copy_input=False)
