"""The dispatch plan's two rules, for the operators built in the core on the backends' ops.

A backend that declares 2-D but not 1-D kernels runs 1-D pooling and transposed
convolutions as 2-D with a height of 1; a backend that declares float32 but not
float16 computes them in float32 and rounds once.  Both are checked against the
loop oracle (``naive``) on a run-time backend whose kernels are the portable ones
behind a narrower declaration, with spies on what the kernels receive.
"""

from __future__ import annotations

import numpy as np
import pytest

import convcore
from convcore import _portable
from convcore import _registry as registry_module

rng = np.random.default_rng(7)


@pytest.fixture
def narrow(monkeypatch):
    """A backend ``narrow``: portable kernels, 2-D only, float32/float64; records its calls."""
    monkeypatch.setattr(registry_module, "_registry", None)
    monkeypatch.delenv("CONVCORE_BACKEND", raising=False)
    calls = []

    def spy(op):
        kernel = getattr(_portable, op)

        def run(xp, first, *rest):
            geom = next(a for a in rest if isinstance(a, convcore.ConvGeometry))
            calls.append((op, first.ndim, str(first.dtype), geom.nd))
            return kernel(xp, first, *rest)

        return run

    ops = ("im2col", "col2im", "conv", "conv_backward")
    convcore.register_backend(
        convcore.BackendSpec(
            name="narrow",
            load=lambda: {op: spy(op) for op in ops},
            ops=set(ops),
            namespaces={"numpy"},
            spatial_dims={2},
        )
    )
    yield calls
    monkeypatch.setattr(registry_module, "_registry", None)


def _lifted(call) -> bool:
    """A kernel call of a 1-D operator that ran as 2-D: 2-D geometry, 4-D images."""
    op, ndim, _, nd = call
    return nd == 2 and ndim == (3 if op == "col2im" else 4)  # col2im takes (N, C*K, L)


def _close(got, want, tol=1e-12):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def test_1d_pooling_runs_as_2d_with_a_height_of_one(narrow):
    import naive

    x = rng.standard_normal((2, 3, 11))
    kw = dict(kernel=(3,), stride=(2,), padding=(1, 1), dilation=(1,), ceil_mode=True)
    out, idx = convcore.max_pool1d(x, 3, 2, 1, ceil_mode=True, return_indices=True,
                                   backend="narrow")  # fmt: skip
    want, want_idx = naive.max_pool(x, **kw)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(idx, want_idx)
    g = rng.standard_normal(out.shape)
    dx = convcore.max_pool1d_backward(g, x, 3, 2, 1, ceil_mode=True, backend="narrow")
    _close(dx, naive.max_pool_backward(g, x, **kw))
    da = convcore.avg_pool1d_backward(g, x.shape, 3, 2, 1, ceil_mode=True, backend="narrow")
    _close(da, naive.avg_pool_backward(g, (11,), (3,), (2,), (1, 1), True, True, None))
    assert narrow and all(_lifted(call) for call in narrow), narrow


def test_1d_transposed_convolution_runs_as_2d(narrow):
    import naive

    x, w, b = rng.standard_normal((2, 4, 6)), rng.standard_normal((4, 3, 3)), np.ones(6)
    kw = dict(stride=2, padding=(1, 0), output_padding=1, groups=2, dilation=1)
    y = convcore.conv_transpose1d(x, w, b, **kw, backend="narrow")
    resolved = ((2,), (1, 0), (1,), (1,), 2)
    _close(y, naive.conv_transpose(x, w, b, *resolved))
    g = rng.standard_normal(y.shape)
    for got, want in zip(
        convcore.conv_transpose1d_backward(g, x, w, **kw, backend="narrow"),
        naive.conv_transpose_backward(g, x, w, *resolved),
    ):
        _close(got, want)
    assert {op for op, *_ in narrow} == {"col2im", "conv", "im2col"}
    assert all(_lifted(call) for call in narrow), narrow


@pytest.mark.parametrize(
    ("call", "exact"),
    [
        (lambda x: convcore.max_pool2d(x, 2, padding=1), True),  # a maximum is one of the values
        (lambda x: convcore.avg_pool2d(x, 3, stride=1, ceil_mode=True), False),
        (lambda x: convcore.conv_transpose2d(x, np.ones((3, 2, 3, 3), x.dtype), stride=2), False),
    ],
    ids=["max_pool2d", "avg_pool2d", "conv_transpose2d"],
)
def test_float16_runs_in_float32_and_is_rounded_once(narrow, call, exact):
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float16)
    with convcore.use_backend("narrow"):
        y = call(x)
    assert y.dtype == np.float16
    assert narrow and all(dtype == "float32" for _, _, dtype, _ in narrow), narrow
    want = call(x.astype(np.float64))  # the default backend, float64
    np.testing.assert_allclose(
        y.astype(np.float64), want, rtol=2e-3, atol=2e-3 * np.abs(want).max()
    )
    if exact:
        np.testing.assert_array_equal(y, want.astype(np.float16))


def test_a_backend_without_an_op_is_refused_before_any_work(narrow, monkeypatch):
    """conv_transpose_backward needs conv and im2col: refused by name, no kernel runs."""
    monkeypatch.setattr(registry_module, "_registry", None)
    convcore.register_backend(
        convcore.BackendSpec(
            name="col2im_only",
            load=lambda: {"col2im": _portable.col2im},
            ops={"col2im"},
            namespaces={"numpy"},
        )
    )
    x, w = np.ones((1, 2, 3, 3)), np.ones((2, 2, 2, 2))
    y = convcore.conv_transpose2d(x, w, backend="col2im_only")  # forward: col2im only
    with pytest.raises(convcore.BackendCapabilityError, match="'conv', which conv_transpose"):
        convcore.conv_transpose2d_backward(np.ones_like(y), x, w, backend="col2im_only")
    with pytest.raises(convcore.BackendCapabilityError, match="'im2col', which max_pool needs"):
        convcore.max_pool2d(x, 2, backend="col2im_only")


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
def test_four_spatial_axes_where_the_backend_declares_any_rank(backend):
    """numpy and array_api declare any rank: 4-D convolution and its transpose run."""
    import naive

    x, w = rng.standard_normal((1, 2, 4, 3, 4, 3)), rng.standard_normal((3, 2, 2, 2, 2, 2))
    one, pads = (1,) * 4, (1, 0) * 4
    y = convcore.conv(x, w, padding=pads, backend=backend)
    _close(y, naive.conv(x, w, None, one, pads, one, 1))
    t = convcore.conv_transpose(x, np.swapaxes(w, 0, 1), stride=2, backend=backend)
    wt = np.swapaxes(w, 0, 1)
    _close(t, naive.conv_transpose(x, wt, None, (2,) * 4, (0,) * 8, (0,) * 4, one, 1))
    m = convcore.max_pool(x, 2, backend=backend)
    np.testing.assert_array_equal(m, naive.max_pool(x, (2,) * 4, (2,) * 4, (0,) * 8, one, False)[0])


def test_pooling_and_transposed_convolution_declare_floating_dtypes_only():
    """im2col/col2im move integers; the operators built on them compute in floating point."""
    moves = {"int32", "float32"}
    spec = convcore.BackendSpec(
        name="ints",
        load=dict,
        ops={"im2col", "col2im"},
        op_dtypes={"im2col": moves, "col2im": moves},
    )
    assert spec.supports("im2col", dtype="int32")
    for op in ("max_pool", "avg_pool_backward", "conv_transpose"):
        assert not spec.supports(op, dtype="int32"), op
        assert spec.supports(op, dtype="float32"), op


@pytest.mark.parametrize(
    "make",
    [
        lambda: convcore.MaxPool3D(2, layout="NHWC"),
        lambda: convcore.AvgPool1D(2, layout="NCHW"),
        lambda: convcore.Conv1D(np.ones((1, 1, 1)), layout="NHWC"),
        lambda: convcore.ConvTranspose2D(np.ones((1, 1, 1, 1)), layout="NDHWC"),
    ],
    ids=["MaxPool3D", "AvgPool1D", "Conv1D", "ConvTranspose2D"],
)
def test_layers_check_their_layout_when_made(make):
    with pytest.raises(ValueError, match=r"layout='N[A-Z]+' does not describe an array with"):
        make()


def test_a_backend_may_implement_a_pooling_operator_itself(monkeypatch):
    """A pooling kernel of the backend's own replaces im2col (and needs no im2col):
    the core calls it with the channels-first input and the window geometry, and
    still validates, resolves the geometry and converts the layout."""
    monkeypatch.setattr(registry_module, "_registry", None)
    monkeypatch.delenv("CONVCORE_BACKEND", raising=False)
    seen = []

    def max_pool(xp, x, geom, return_indices):
        seen.append((x.shape, geom.kernel_size, geom.stride, return_indices))
        out, index = convcore.max_pool2d(x, geom.kernel_size, geom.stride, backend="numpy",
                                         return_indices=True)  # fmt: skip
        return out, index if return_indices else None

    spec = convcore.BackendSpec(
        name="pool_only",
        load=lambda: {"max_pool": max_pool},
        ops={"max_pool"},
        namespaces={"numpy"},
    )
    assert spec.supports("max_pool")
    refused = spec.supports("max_pool_backward")
    assert not refused and "'im2col', which max_pool_backward needs" in refused.reason
    assert spec.dtypes_for("max_pool") == {"float32", "float64"}
    convcore.register_backend(spec)
    x = rng.standard_normal((2, 6, 6, 3))  # channels last
    out, index = convcore.max_pool2d(
        x, 2, return_indices=True, layout="channels_last", backend="pool_only"
    )
    want, want_index = convcore.max_pool2d(
        np.moveaxis(x, -1, 1), 2, return_indices=True, backend="numpy"
    )
    np.testing.assert_array_equal(np.moveaxis(out, -1, 1), want)
    np.testing.assert_array_equal(np.moveaxis(index, -1, 1), want_index)
    assert seen == [((2, 3, 6, 6), (2, 2), (2, 2), True)]
    with pytest.raises(convcore.BackendCapabilityError, match="max_pool_backward"):
        convcore.max_pool2d_backward(np.ones((2, 3, 3, 3)), np.ones((2, 3, 6, 6)), 2,
                                     backend="pool_only")  # fmt: skip
    with pytest.raises(ValueError, match="unknown ops"):
        convcore.BackendSpec(name="bad", load=dict, ops={"max_unpool"})
    monkeypatch.setattr(registry_module, "_registry", None)
