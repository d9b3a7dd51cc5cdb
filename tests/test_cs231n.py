"""``convcore.cs231n``: the cs231n layer API, checked against independent references.

* every conv and max-pool variant (naive, im2col, strides/reshape, fast) against
  the naive loop oracle (``tests/naive.py``) and the seed's per-pixel loops,
  including geometries the assignment's asserts refuse;
* the gradients against centred finite differences of the forward pass (the
  assignment's ``eval_numerical_gradient_array``, written out here);
* ``im2col_indices`` / ``col2im_indices`` in the assignment's column order, and
  each the adjoint of the other;
* caches, parameter dictionaries and inputs: checked, copied, never modified.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

from convcore import cs231n

CONV_VARIANTS = ["naive", "im2col", "strides", "fast"]
POOL_VARIANTS = ["naive", "reshape", "im2col", "fast"]

# (x shape, w shape, stride, pad): the last two do not tile the padded input
# (the assignment's conv_forward_im2col asserts on them).
CONV_GEOMETRIES = [
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1),
    ((2, 3, 8, 6), (2, 3, 3, 2), 2, 0),
    ((1, 2, 9, 8), (3, 2, 4, 3), 3, 2),
]
POOL_GEOMETRIES = [
    ((2, 3, 8, 8), (2, 2, 2)),  # tiles the input (the reshape path)
    ((2, 2, 7, 9), (3, 2, 2)),  # does not
    ((1, 2, 6, 6), (2, 3, 1)),
]


def _conv(variant):
    return getattr(cs231n, f"conv_forward_{variant}"), getattr(cs231n, f"conv_backward_{variant}")


def _pool(variant):
    return (
        getattr(cs231n, f"max_pool_forward_{variant}"),
        getattr(cs231n, f"max_pool_backward_{variant}"),
    )


def _numerical_gradient(f, x, dout, h=1e-5):
    """Centred differences of ``sum(f(x) * dout)`` with respect to ``x`` (x restored)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = np.sum(f(x) * dout)
        x[idx] = old - h
        minus = np.sum(f(x) * dout)
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


@pytest.mark.parametrize("variant", CONV_VARIANTS)
@pytest.mark.parametrize("xs, ws, stride, pad", CONV_GEOMETRIES)
def test_conv_forward_and_backward_equal_the_loops(variant, xs, ws, stride, pad):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    forward, backward = _conv(variant)
    before = [a.copy() for a in (x, w, b)]
    out, cache = forward(x, w, b, {"stride": stride, "pad": pad})
    geo = ((stride, stride), (pad,) * 4, (1, 1))
    want = naive.conv(x, w, b, *geo, 1)
    assert out.shape == want.shape == (xs[0], ws[0], *want.shape[2:])
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        out, naive.seed_conv2d_loops(x, w, b, stride=stride, pad=pad), rtol=1e-12, atol=1e-12
    )
    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)
    for got, expected in zip((dx, dw, db), naive.conv_backward(dout, x, w, *geo, 1)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for a, kept in zip((x, w, b), before):
        np.testing.assert_array_equal(a, kept)


@pytest.mark.parametrize("variant", ["naive", "fast"])
def test_conv_gradients_equal_finite_differences(variant):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2)), np.ones(2)
    conv_param = {"stride": 2, "pad": 1}
    forward, backward = _conv(variant)
    out, cache = forward(x, w, b, conv_param)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)
    np.testing.assert_allclose(
        dx, _numerical_gradient(lambda v: forward(v, w, b, conv_param)[0], x, dout), rtol=1e-6
    )
    np.testing.assert_allclose(
        dw, _numerical_gradient(lambda v: forward(x, v, b, conv_param)[0], w, dout), rtol=1e-6
    )
    np.testing.assert_allclose(
        db, _numerical_gradient(lambda v: forward(x, w, v, conv_param)[0], b, dout), rtol=1e-6
    )


@pytest.mark.parametrize("variant", POOL_VARIANTS)
@pytest.mark.parametrize("xs, window", POOL_GEOMETRIES)
def test_max_pool_forward_and_backward_equal_the_loops(variant, xs, window):
    rng = np.random.default_rng(2)
    # distinct values 0.01 apart: no window holds two maxima within the
    # finite-difference step
    x = rng.permutation(np.prod(xs)).reshape(xs) * 0.01
    ph, pw, stride = window
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    forward, backward = _pool(variant)
    kept = x.copy()
    out, cache = forward(x, pool_param)
    np.testing.assert_array_equal(x, kept)
    geo = ((ph, pw), (stride, stride), (0, 0, 0, 0), (1, 1), False)
    want, _ = naive.max_pool(x, *geo)
    np.testing.assert_array_equal(out, want)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    # overlapping windows add their gradients (in another order than the loops)
    np.testing.assert_allclose(dx, naive.max_pool_backward(dout, x, *geo), rtol=1e-12, atol=1e-15)
    num = _numerical_gradient(lambda v: forward(v, pool_param)[0], x.copy(), dout)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


def test_every_backward_takes_the_cache_of_any_forward_of_its_layer():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), np.zeros(4)
    out, cache = cs231n.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    dout = rng.standard_normal(out.shape)
    grads = [_conv(v)[1](dout, cache) for v in CONV_VARIANTS]
    for other in grads[1:]:
        for got, want in zip(other, grads[0]):
            np.testing.assert_array_equal(got, want)
    # a cs231n-style 5-tuple cache (x, w, b, conv_param, x_cols) is taken too
    np.testing.assert_array_equal(cs231n.conv_backward_im2col(dout, (*cache, None))[0], grads[0][0])
    pooled, pool_cache = cs231n.max_pool_forward_reshape(x, {"pool_height": 2, "pool_width": 2,
                                                             "stride": 2})  # fmt: skip
    dpool = rng.standard_normal(pooled.shape)
    first = cs231n.max_pool_backward_naive(dpool, pool_cache)
    for variant in POOL_VARIANTS:
        np.testing.assert_array_equal(_pool(variant)[1](dpool, pool_cache), first)


def test_the_cache_keeps_a_copy_of_the_parameters():
    x, w, b = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), np.zeros(1)
    conv_param = {"stride": 1, "pad": 1}
    out, cache = cs231n.conv_forward_naive(x, w, b, conv_param)
    conv_param["pad"] = 0  # a notebook reusing its dictionary
    dx, _, _ = cs231n.conv_backward_naive(np.ones_like(out), cache)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, naive.conv_backward(np.ones_like(out), x, w, (1, 1),
                                                          (1, 1, 1, 1), (1, 1), 1)[0])  # fmt: skip


def test_im2col_indices_has_the_assignments_column_order():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5, 6))
    cols = cs231n.im2col_indices(x, 3, 2, padding=1, stride=2)
    # rows: channel, then taps in row-major order; columns: position-major, image fastest
    hp, wp = 5 + 2, 6 + 2
    out_h, out_w = (hp - 3) // 2 + 1, (wp - 2) // 2 + 1
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.empty((2 * 3 * 2, out_h * out_w * 3))
    for c in range(2):
        for i in range(3):
            for j in range(2):
                for oh in range(out_h):
                    for ow in range(out_w):
                        for n in range(3):
                            row = (c * 3 + i) * 2 + j
                            col = (oh * out_w + ow) * 3 + n
                            expected[row, col] = padded[n, c, oh * 2 + i, ow * 2 + j]
    np.testing.assert_array_equal(cols, expected)


def test_col2im_indices_is_the_adjoint_of_im2col_indices():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5))
    cols = cs231n.im2col_indices(x, 3, 3, padding=1, stride=1)
    other = rng.standard_normal(cols.shape)
    back = cs231n.col2im_indices(other, x.shape, 3, 3, padding=1, stride=1)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * other), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize(
    "conv_param, exc, needle",
    [
        ({"stride": 1}, ValueError, "missing 'pad'"),
        ({"stride": 1, "pad": 0, "dilation": 2}, ValueError, "unknown 'dilation'"),
        ({"stride": 0, "pad": 0}, ValueError, "conv_param['stride'] must be >= 1, got 0"),
        ({"stride": 1, "pad": -1}, ValueError, "conv_param['pad'] must be >= 0, got -1"),
        ({"stride": 1.5, "pad": 0}, TypeError, "conv_param['stride'] must be an integer"),
        ([1, 0], TypeError, "conv_param must be a dict"),
    ],
)
def test_bad_conv_param_is_an_error_naming_the_key(conv_param, exc, needle):
    x, w, b = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), np.zeros(1)
    with pytest.raises(exc) as info:
        cs231n.conv_forward_fast(x, w, b, conv_param)
    assert needle in str(info.value)


def test_bad_pool_param_and_cache_are_errors_naming_them():
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"pool_param must have the keys .*missing 'pool_width'"):
        cs231n.max_pool_forward_fast(x, {"pool_height": 2, "stride": 2})
    with pytest.raises(TypeError, match=r"cache must be the tuple \(x, w, b, conv_param\)"):
        cs231n.conv_backward_fast(np.ones((1, 1, 2, 2)), (x,))
    with pytest.raises(TypeError, match=r"cache must be the tuple \(x, pool_param\)"):
        cs231n.max_pool_backward_fast(np.ones((1, 1, 2, 2)), "cache")
    with pytest.raises(TypeError, match=r"\bw must be an array"):
        cs231n.conv_forward_naive(x, [[1.0]], np.zeros(1), {"stride": 1, "pad": 0})


def test_torch_agrees_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3)), np.ones(4)
    out, _ = cs231n.conv_forward_fast(x, w, b, {"stride": 2, "pad": 1})
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1
    )
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-12, atol=1e-12)
    pooled, _ = cs231n.max_pool_forward_fast(x, {"pool_height": 3, "pool_width": 2, "stride": 2})
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), (3, 2), 2)
    np.testing.assert_array_equal(pooled, want.numpy())
