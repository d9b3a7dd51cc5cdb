"""``padding="same"`` for pooling (TensorFlow's rule) and the transposed convolution.

References, none of them convcore's geometry code:

* pooling: the naive loops with the padding TensorFlow's formula gives
  (``out = ceil(n / s)``, ``total = max((out - 1) s + k - n, 0)``, the odd cell
  after), written out here, and JAX's ``lax.reduce_window(..., "SAME")`` when
  JAX is installed (max, and TF's average: padding not counted);
* the transposed convolution: the adjoint identity with ``conv(padding="same")``
  on the ``input * stride`` image, the output size ``input * stride``, the naive
  loops, and JAX's ``lax.conv_transpose(..., "SAME")`` when installed.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

import convcore


def _tf_same(size, kernel, stride, dilation=1):
    """TensorFlow's "SAME" padding ``(before, after)`` for one axis."""
    k = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


POOLS = [
    ("2d_s2", (2, 3, 5, 6), (3, 3), (2, 2), (1, 1)),
    ("2d_s1_even", (1, 2, 6, 5), (2, 4), (1, 1), (1, 1)),
    ("2d_s3_k2", (1, 2, 7, 8), (2, 2), (3, 3), (1, 1)),
    ("2d_dilated", (1, 2, 7, 7), (3, 2), (2, 1), (2, 3)),
    ("1d", (2, 2, 9), (4,), (2,), (1,)),
    ("3d", (1, 2, 5, 4, 6), (3, 2, 3), (2, 2, 3), (1, 1, 1)),
]


def _pads(shape, kernel, stride, dilation):
    return tuple(
        p for n, k, s, d in zip(shape[2:], kernel, stride, dilation) for p in _tf_same(n, k, s, d)
    )


@pytest.mark.parametrize(
    "shape, kernel, stride, dilation", [p[1:] for p in POOLS], ids=[p[0] for p in POOLS]
)
def test_same_pooling_equals_the_loops_with_tensorflows_padding(shape, kernel, stride, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    pads = _pads(shape, kernel, stride, dilation)
    out, index = convcore.max_pool(x, kernel, stride, "same", dilation, return_indices=True)
    want, want_index = naive.max_pool(x, kernel, stride, pads, dilation, False)
    assert out.shape[2:] == tuple(-(-n // s) for n, s in zip(shape[2:], stride))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(index, want_index)
    g = rng.standard_normal(out.shape)
    np.testing.assert_allclose(
        convcore.max_pool_backward(g, x, kernel, stride, "same", dilation),
        naive.max_pool_backward(g, x, kernel, stride, pads, dilation, False),
        rtol=1e-12,
        atol=1e-12,
    )
    if any(d != 1 for d in dilation):
        return  # average pooling has no dilation
    for include in (True, False):
        avg = convcore.avg_pool(x, kernel, stride, "same", count_include_pad=include)
        want = naive.avg_pool(x, kernel, stride, pads, False, include, None)
        np.testing.assert_allclose(avg, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            convcore.avg_pool_backward(g, x.shape, kernel, stride, "same",
                                       count_include_pad=include),
            naive.avg_pool_backward(g, x.shape[2:], kernel, stride, pads, False, include, None),
            rtol=1e-12, atol=1e-12,
        )  # fmt: skip


@pytest.mark.parametrize(
    "shape, kernel, stride", [p[1:4] for p in POOLS if p[0] != "2d_dilated"],
    ids=[p[0] for p in POOLS if p[0] != "2d_dilated"],
)  # fmt: skip
def test_same_pooling_equals_jax_reduce_window(shape, kernel, stride):
    jax = pytest.importorskip("jax")
    lax = jax.lax
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    window, strides = (1, 1, *kernel), (1, 1, *stride)
    want = lax.reduce_window(x, -np.inf, lax.max, window, strides, "SAME")
    np.testing.assert_array_equal(convcore.max_pool(x, kernel, stride, "same"), np.asarray(want))
    # TensorFlow's average: the padding is not counted
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, "SAME")
    count = lax.reduce_window(np.ones_like(x), 0.0, lax.add, window, strides, "SAME")
    got = convcore.avg_pool(x, kernel, stride, "same", count_include_pad=False)
    np.testing.assert_allclose(got, np.asarray(total / count), rtol=1e-6, atol=1e-6)


def test_same_pooling_layers_and_layouts():
    x = np.random.default_rng(2).standard_normal((2, 7, 5, 3))  # NHWC
    layer = convcore.MaxPool2D(3, 2, "same", layout="NHWC")
    y = layer.forward(x)
    assert y.shape == (2, 4, 3, 3)
    want = convcore.max_pool2d(np.moveaxis(x, 3, 1), 3, 2, "same")
    np.testing.assert_array_equal(np.moveaxis(y, 3, 1), want)
    assert convcore.pool_output_size((7, 5), 3, 2, "same") == (4, 3)
    with pytest.raises(ValueError, match=r"ceil_mode must be False with padding='same'"):
        convcore.avg_pool2d(x, 3, 2, "same", ceil_mode=True, layout="NHWC")


# --------------------------------------------------------------------------- transposed

TRANSPOSES = [
    ("k3_s2", (2, 3, 4, 5), (3, 2, 3, 3), (2, 2), (1, 1), 1),
    ("k4_s2", (1, 2, 3, 3), (2, 4, 4, 4), (2, 2), (1, 1), 1),
    ("k1_s3", (1, 2, 3, 4), (2, 2, 1, 1), (3, 3), (1, 1), 1),  # kernel shorter than stride
    ("k2_s3_rect", (1, 2, 3, 2), (2, 3, 2, 3), (3, 2), (1, 1), 1),
    ("dilated_grouped", (1, 4, 3, 3), (4, 1, 3, 2), (2, 1), (2, 3), 2),
    ("1d_k5_s2", (2, 2, 6), (2, 3, 5), (2,), (1,), 1),
    ("3d", (1, 2, 2, 3, 2), (2, 2, 3, 2, 2), (2, 1, 3), (1, 1, 1), 1),
]


@pytest.mark.parametrize(
    "xs, ws, stride, dilation, groups", [t[1:] for t in TRANSPOSES], ids=[t[0] for t in TRANSPOSES]
)
def test_same_transposed_convolution_is_the_adjoint_of_same_convolution(
    xs, ws, stride, dilation, groups
):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y = convcore.conv_transpose(x, w, stride=stride, padding="same", dilation=dilation,
                                groups=groups)  # fmt: skip
    size = tuple(n * s for n, s in zip(xs[2:], stride))
    assert y.shape == (xs[0], ws[1] * groups, *size)
    # <conv_transpose(x), z> == <x, conv(z)>: conv(z) on the input * stride image with
    # TensorFlow's "same" padding (tested against torch and the loops elsewhere)
    z = rng.standard_normal(y.shape)
    forward = convcore.conv(z, w, stride=stride, padding="same", dilation=dilation, groups=groups)
    assert forward.shape == x.shape
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * forward), rtol=1e-10)
    # the loops, with the crop and output padding the TensorFlow rule implies
    pads, out_pad = [], []
    for n, k, s, d in zip(size, ws[2:], stride, dilation):
        before, after = _tf_same(n, k, s, d)
        k_eff = d * (k - 1) + 1
        pads += [before, after]
        out_pad.append(n - ((n // s - 1) * s - before - after + k_eff))
    want = naive.conv_transpose(x, w, None, stride, tuple(pads), tuple(out_pad), dilation, groups)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    got = convcore.conv_transpose_backward(
        g, x, w, stride=stride, padding="same", dilation=dilation, groups=groups
    )
    ref = naive.conv_transpose_backward(
        g, x, w, stride, tuple(pads), tuple(out_pad), dilation, groups
    )
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "xs, ws, stride",
    [t[1:4] for t in TRANSPOSES if t[5] == 1 and all(d == 1 for d in t[4])],
    ids=[t[0] for t in TRANSPOSES if t[5] == 1 and all(d == 1 for d in t[4])],
)
def test_same_transposed_convolution_equals_jax(xs, ws, stride):
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    nd = len(xs) - 2
    spatial = "DHW"[-nd:]
    # convcore's weight is (C_in, C_out, *k): the gradient of a convolution whose
    # weight is (O=C_in, I=C_out, *k), which is what transpose_kernel=True expects
    want = jax.lax.conv_transpose(
        x, w, stride, "SAME",
        dimension_numbers=(f"NC{spatial}", f"OI{spatial}", f"NC{spatial}"),
        transpose_kernel=True,
    )  # fmt: skip
    got = convcore.conv_transpose(x, w, stride=stride, padding="same")
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_same_transposed_convolution_refuses_output_padding():
    assert convcore.conv_transpose_output_size((5, 3), (3, 1), stride=(2, 3), padding="same") == (
        10,
        9,
    )
    with pytest.raises(ValueError, match=r"output_padding must be 0 with padding='same'"):
        convcore.conv_transpose2d(
            np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), stride=2, padding="same",
            output_padding=1,
        )  # fmt: skip
