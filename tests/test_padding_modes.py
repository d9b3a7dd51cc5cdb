"""``padding_mode``: reflect, symmetric, replicate and circular padding, and their adjoints.

References that share nothing with ``convcore/_padmodes.py``:

* ``numpy.pad`` (modes ``reflect``, ``symmetric``, ``edge``, ``wrap``) followed
  by the naive loops with no padding, for every operator forward;
* for the backward passes: the naive gradient on the padded image folded back by
  ``numpy.add.at`` through ``numpy.pad`` of the index grid (which pixel each
  border cell holds, as NumPy says);
* PyTorch (``F.pad`` + conv / pooling, and autograd) when installed;
* the adjoint identities ``<im2col(x), c> = <x, col2im(c)>`` on every backend and
  array namespace.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from helpers import torch_or_skip

import convcore

MODES = ["reflect", "symmetric", "replicate", "circular"]
NUMPY_MODE = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge",
              "circular": "wrap"}  # fmt: skip
TORCH_MODES = ["reflect", "replicate", "circular"]  # torch has no "symmetric"


def _np_pad(x, pads, mode):
    """``x`` (channels-first) padded by ``(before, after)`` per spatial axis."""
    widths = [(0, 0), (0, 0)] + [(pads[2 * i], pads[2 * i + 1]) for i in range(x.ndim - 2)]
    return np.pad(x, widths, mode=NUMPY_MODE[mode])


def _np_fold(g, size, pads, mode):
    """Adjoint of :func:`_np_pad`: every cell of ``g`` added onto the pixel it holds."""
    nd = len(size)
    grids = np.meshgrid(*(np.arange(n) for n in size), indexing="ij")
    flat = np.ravel_multi_index(tuple(grids), size)
    source = _np_pad(flat[None, None], pads, mode)[0, 0]  # the pixel behind every cell
    out = np.zeros((*g.shape[:2], int(np.prod(size))), dtype=np.float64)
    cells = g.reshape(*g.shape[:2], -1)
    for k, pixel in enumerate(source.reshape(-1)):
        out[:, :, pixel] += cells[:, :, k]
    return out.reshape(*g.shape[:2], *size) if nd else out


GEOMETRIES = [
    # (x shape, kernel, stride, padding as (before, after) per axis, dilation)
    ("2d", (2, 3, 6, 5), (3, 3), (1, 1), (1, 2, 2, 1), (1, 1)),
    ("2d_wide_pad", (1, 2, 4, 3), (2, 2), (2, 1), (3, 4, 2, 2), (1, 1)),
    ("2d_dilated", (1, 2, 7, 6), (2, 3), (1, 2), (2, 0, 1, 3), (2, 1)),
    ("1d", (2, 2, 7), (3,), (2,), (2, 1), (1,)),
    ("3d", (1, 2, 4, 3, 5), (2, 2, 3), (1, 1, 2), (1, 0, 1, 1, 2, 1), (1, 1, 1)),
]


def _wide_ok(mode, shape, pads):
    """numpy's reflect needs at least 2 pixels per axis; every other width is defined."""
    return not (mode == "reflect" and min(shape[2:]) < 2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape, kernel, stride, pads, dilation",
    [g[1:] for g in GEOMETRIES],
    ids=[g[0] for g in GEOMETRIES],
)
def test_every_operator_equals_numpy_pad_then_the_loops(
    mode, shape, kernel, stride, pads, dilation
):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    nd = len(kernel)
    padded = _np_pad(x, pads, mode)
    zero = (0,) * (2 * nd)
    kw = {"stride": stride, "padding": pads, "dilation": dilation, "padding_mode": mode}
    # im2col / col2im
    cols = convcore.im2col(x, kernel, **kw)
    want = naive.im2col(padded, kernel, stride, zero, dilation)
    np.testing.assert_array_equal(cols, want)
    c = rng.standard_normal(cols.shape)
    back = convcore.col2im(c, shape[2:], kernel, **kw)
    gpad = naive.col2im(c, padded.shape[2:], kernel, stride, zero, dilation)
    np.testing.assert_allclose(back, _np_fold(gpad, shape[2:], pads, mode), rtol=1e-12, atol=1e-12)
    # the convolution and its gradients
    w = rng.standard_normal((4, shape[1], *kernel))
    b = rng.standard_normal(4)
    y = convcore.conv(x, w, b, **kw)
    np.testing.assert_allclose(y, naive.conv(padded, w, b, stride, zero, dilation, 1),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    g = rng.standard_normal(y.shape)
    dx, dw, db = convcore.conv_backward(g, x, w, **kw)
    dxp, dw_want, db_want = naive.conv_backward(g, padded, w, stride, zero, dilation, 1)
    np.testing.assert_allclose(dx, _np_fold(dxp, shape[2:], pads, mode), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, dw_want, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(db, db_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pooling_reads_the_border_pixels(mode, ceil_mode):
    rng = np.random.default_rng(1)
    x = (rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) - 40) * 0.01  # no ties
    pads = (1, 1, 1, 1)
    padded = _np_pad(x, pads, mode)
    opts = {"stride": 2, "padding": 1, "ceil_mode": ceil_mode, "padding_mode": mode}
    out, index = convcore.max_pool2d(x, 3, return_indices=True, **opts)
    # the loops on the padded image, where the ceil overhang is still not padding
    want, _ = naive.max_pool(padded, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), ceil_mode)
    np.testing.assert_array_equal(out, want)
    # indices point at the pixel of x that holds the maximum
    np.testing.assert_array_equal(
        np.take_along_axis(x.reshape(2, 3, -1), index.reshape(2, 3, -1), axis=2).reshape(out.shape),
        out,
    )
    g = rng.standard_normal(out.shape)
    dx = convcore.max_pool2d_backward(g, x, 3, **opts)
    dxp = naive.max_pool_backward(g, padded, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), ceil_mode)
    want_dx = _np_fold(dxp, x.shape[2:], pads, mode)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)
    # from the forward's indices (the border repeats pixels: each window's once)
    for backend in ("numba", "numpy", "array_api"):
        dx = convcore.max_pool2d_backward(g, x, 3, indices=index, backend=backend, **opts)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12, err_msg=backend)
    for include in (True, False):  # the border holds pixels: counted either way
        avg = convcore.avg_pool2d(x, 3, count_include_pad=include, **opts)
        want = naive.avg_pool(padded, (3, 3), (2, 2), (0, 0, 0, 0), ceil_mode, True, None)
        np.testing.assert_allclose(avg, want, rtol=1e-12, atol=1e-12)
        dx = convcore.avg_pool2d_backward(g, x.shape, 3, count_include_pad=include, **opts)
        dxp = naive.avg_pool_backward(g, padded.shape[2:], (3, 3), (2, 2), (0, 0, 0, 0),
                                      ceil_mode, True, None)  # fmt: skip
        np.testing.assert_allclose(
            dx, _np_fold(dxp, x.shape[2:], pads, mode), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("mode", TORCH_MODES)
def test_torch_agrees(mode):
    torch = torch_or_skip()
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 3, 2))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = F.conv2d(F.pad(xt, (1, 0, 2, 1), mode=mode), wt, stride=(2, 1))
    y = convcore.conv2d(x, w, stride=(2, 1), padding=(2, 1, 1, 0), padding_mode=mode)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(g))
    dx, dw, _ = convcore.conv2d_backward(
        g, x, w, stride=(2, 1), padding=(2, 1, 1, 0), padding_mode=mode
    )
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-11, atol=1e-11)
    # torch's own padding_mode on a Conv2d layer: padding 1 on every side
    layer = torch.nn.Conv2d(3, 4, (3, 2), padding=1, padding_mode=mode, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    want = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(
        convcore.conv2d(x, w, padding=1, padding_mode=mode), want, rtol=1e-12, atol=1e-12
    )
    pooled = F.max_pool2d(F.pad(torch.from_numpy(x), (1, 1, 1, 1), mode=mode), 3, 2)
    np.testing.assert_array_equal(
        convcore.max_pool2d(x, 3, 2, 1, padding_mode=mode), pooled.numpy()
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.declares("im2col", "col2im", nd=2)
def test_col2im_is_the_adjoint_of_im2col_on_every_backend(mode, backend, ns, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 4)).astype(dtype)
    opts = {"stride": (2, 1), "padding": (2, 1, 1, 2), "padding_mode": mode,
            "backend": backend.name}  # fmt: skip
    xa = ns.asarray(x)
    cols = ns.to_numpy(convcore.im2col(xa, (3, 2), **opts))
    np.testing.assert_array_equal(
        cols, naive.im2col(_np_pad(x, (2, 1, 1, 2), mode), (3, 2), (2, 1), (0,) * 4, (1, 1))
    )
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = ns.to_numpy(convcore.col2im(ns.asarray(c), (5, 4), (3, 2), **opts))
    lhs = np.sum(cols.astype(np.float64) * c)
    rhs = np.sum(x.astype(np.float64) * back)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(ns.to_numpy(xa), x)  # the input is not modified


@pytest.mark.declares("conv", "conv_backward", nd=2)
def test_conv_with_reflect_padding_on_every_backend(backend, ns, dtype, assert_close):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 2, 6, 5)).astype(dtype), rng.standard_normal((3, 2, 3, 3))
    w = w.astype(dtype)
    opts = {"padding": 1, "padding_mode": "reflect", "backend": backend.name}
    y = convcore.conv2d(ns.asarray(x), ns.asarray(w), **opts)
    padded = _np_pad(x.astype(np.float64), (1, 1, 1, 1), "reflect")
    want = naive.conv(padded, w.astype(np.float64), None, (1, 1), (0,) * 4, (1, 1), 1)
    assert_close(ns.to_numpy(y), want)
    g = rng.standard_normal(want.shape).astype(dtype)
    dx, dw, _ = convcore.conv2d_backward(ns.asarray(g), ns.asarray(x), ns.asarray(w), **opts)
    dxp, dw_want, _ = naive.conv_backward(g.astype(np.float64), padded, w.astype(np.float64),
                                          (1, 1), (0,) * 4, (1, 1), 1)  # fmt: skip
    assert_close(ns.to_numpy(dx), _np_fold(dxp, (6, 5), (1, 1, 1, 1), "reflect"))
    assert_close(ns.to_numpy(dw), dw_want)


def test_integer_im2col_and_every_padding_form():
    x = np.arange(12, dtype=np.int32).reshape(1, 1, 3, 4)
    cols = convcore.im2col(x, 3, padding="same", padding_mode="circular")
    padded = _np_pad(x, (1, 1, 1, 1), "circular")
    np.testing.assert_array_equal(cols, naive.im2col(padded, (3, 3), (1, 1), (0,) * 4, (1, 1)))
    assert cols.dtype == np.int32
    ones = np.ones((1, 1, 4, 4))
    y = convcore.conv2d(ones, np.ones((1, 1, 3, 3)), padding="same", padding_mode="replicate")
    np.testing.assert_array_equal(y, np.full((1, 1, 4, 4), 9.0))


@pytest.mark.parametrize(
    "value, exc, needle",
    [("mirror", ValueError, "padding_mode must be one of 'zeros', 'reflect'"),
     (0, TypeError, "padding_mode must be one of"),
     (None, TypeError, "got None")],
)  # fmt: skip
def test_bad_padding_mode_names_it(value, exc, needle):
    x = np.ones((1, 1, 4, 4))
    for call in (
        lambda: convcore.conv2d(x, np.ones((1, 1, 3, 3)), padding=1, padding_mode=value),
        lambda: convcore.im2col(x, 3, padding_mode=value),
        lambda: convcore.col2im(np.ones((1, 9, 4)), (4, 4), 3, padding_mode=value),
        lambda: convcore.max_pool2d(x, 2, padding_mode=value),
        lambda: convcore.avg_pool2d_backward(np.ones((1, 1, 2, 2)), x.shape, 2,
                                             padding_mode=value),
    ):  # fmt: skip
        with pytest.raises(exc, match=needle):
            call()


@pytest.mark.parametrize("mode", MODES)
def test_layers_take_the_padding_mode(mode):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5))
    layer = convcore.Conv2D.create(3, 4, 3, padding=1, padding_mode=mode, rng=0, dtype=np.float64)
    y = layer.forward(x)
    np.testing.assert_array_equal(
        y, convcore.conv2d(x, layer.weight, layer.bias, padding=1, padding_mode=mode)
    )
    g = rng.standard_normal(y.shape)
    dx, dw, db = layer.backward(g)
    want = convcore.conv2d_backward(g, x, layer.weight, padding=1, padding_mode=mode)
    for got, expected in zip((dx, dw, db), want):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # a first layer skips dx: dw and db come from im2col of the padded image
    first = convcore.Conv2D(layer.weight, layer.bias, padding=1, padding_mode=mode,
                            needs_input_grad=False)  # fmt: skip
    first.forward(x)
    none, dw1, db1 = first.backward(g)
    assert none is None
    np.testing.assert_allclose(dw1, want[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db1, want[2], rtol=1e-12, atol=1e-12)
    pool = convcore.MaxPool2D(3, 2, 1, padding_mode=mode)
    out = pool.forward(x)
    np.testing.assert_array_equal(out, convcore.max_pool2d(x, 3, 2, 1, padding_mode=mode))
    np.testing.assert_array_equal(
        pool.backward(np.ones_like(out)),
        convcore.max_pool2d_backward(np.ones_like(out), x, 3, 2, 1, padding_mode=mode),
    )
    avg = convcore.AvgPool2D(3, 2, 1, padding_mode=mode)
    np.testing.assert_array_equal(
        avg.forward(x), convcore.avg_pool2d(x, 3, 2, 1, padding_mode=mode)
    )
    with pytest.raises(ValueError, match=r"padding_mode must be one of"):
        convcore.MaxPool2D(2, padding_mode="mirror")
