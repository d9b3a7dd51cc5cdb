"""``convcore.teaching`` and ``convcore.naive``: the public tools for courses.

* :func:`gradcheck` passes on every convcore operator family (its backward is
  checked against finite differences of the forward, an independent route),
  catches a backward pass that is off by 1 %, checks functions of one's own, and
  names its mistakes;
* :func:`draw_im2col` draws the columns (and is what draws the docs' pictures);
* :mod:`convcore.naive` is the loop oracle, nothing added or left out.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import convcore
from convcore import _naive, naive
from convcore.teaching import GradcheckError, draw_im2col, gradcheck

RNG = np.random.default_rng(0)


def _distinct(shape, seed=0):
    """Values 0.01 apart, shuffled: no max-pool window has two maxima within eps."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - 20) * 0.01


CASES = [
    ("conv1d", convcore.conv1d, (RNG.standard_normal((2, 2, 7)), RNG.standard_normal((3, 2, 3))),
     {"stride": 2, "padding": 1}),
    ("conv2d_bias", convcore.conv2d,
     (RNG.standard_normal((2, 2, 5, 4)), RNG.standard_normal((4, 1, 3, 2)), RNG.standard_normal(4)),
     {"padding": (1, 0), "dilation": (1, 2), "groups": 2}),
    ("conv2d_nhwc", convcore.conv2d,
     (RNG.standard_normal((1, 5, 5, 2)), RNG.standard_normal((2, 2, 3, 3))),
     {"padding": "same", "layout": "NHWC"}),
    ("conv3d", convcore.conv3d,
     (RNG.standard_normal((1, 1, 3, 4, 3)), RNG.standard_normal((2, 1, 2, 2, 2))), {}),
    ("conv_transpose2d", convcore.conv_transpose2d,
     (RNG.standard_normal((1, 2, 3, 3)), RNG.standard_normal((2, 3, 3, 3)), np.ones(3)),
     {"stride": 2, "padding": 1, "output_padding": 1}),
    ("max_pool2d", convcore.max_pool2d, (_distinct((2, 2, 5, 5)), 3, 2, 1),
     {"ceil_mode": True}),
    ("avg_pool2d", convcore.avg_pool2d, (RNG.standard_normal((2, 2, 5, 5)), 2),
     {"padding": 1, "count_include_pad": False}),
    ("avg_pool1d", convcore.avg_pool1d, (RNG.standard_normal((1, 2, 7)), 3, 2), {}),
    ("max_pool", convcore.max_pool, (_distinct((1, 1, 4, 4, 3)), 2), {}),
    ("im2col", convcore.im2col, (RNG.standard_normal((2, 2, 4, 5)), (2, 3)),
     {"stride": (1, 2), "padding": 1}),
    ("im2col_nhwc", convcore.im2col, (RNG.standard_normal((1, 4, 4, 2)), 2),
     {"layout": "NHWC"}),
    ("col2im", convcore.col2im, (RNG.standard_normal((2, 8, 9)), (4, 4), 2),
     {"stride": 1, "padding": 0}),
]  # fmt: skip


@pytest.mark.parametrize("func, args, kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gradcheck_passes_on_every_operator_family(func, args, kwargs):
    kept = [a.copy() for a in args if isinstance(a, np.ndarray)]
    result = gradcheck(func, *args, **kwargs)
    assert result.passed and result.worst is None
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    assert len(result.max_error) == len(arrays)
    assert all(err < 1e-6 for err in result.max_error.values()), result.max_error
    for a, before in zip(arrays, kept):
        np.testing.assert_array_equal(a, before)  # inputs are never modified


def test_gradcheck_catches_a_backward_that_is_one_percent_off():
    x, w = RNG.standard_normal((1, 2, 4, 4)), RNG.standard_normal((2, 2, 3, 3))

    def slightly_wrong(g, x, w, **kw):
        dx, dw, _ = convcore.conv2d_backward(g, x, w, **kw)
        return dx, dw * 1.01

    with pytest.raises(GradcheckError, match=r"gradient of weight differs .* at index"):
        gradcheck(convcore.conv2d, x, w, backward=slightly_wrong, padding=1)
    result = gradcheck(
        convcore.conv2d, x, w, backward=slightly_wrong, padding=1, raise_exception=False
    )
    assert not result and result.worst[0] == "weight"
    assert result.max_error["x"] < 1e-7 < result.max_error["weight"]
    # wrt narrows the check to the right gradient: it passes
    assert gradcheck(convcore.conv2d, x, w, backward=slightly_wrong, wrt=[0], padding=1)


def test_gradcheck_checks_functions_of_ones_own_and_float32_input():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    kept = x.copy()
    assert gradcheck(np.tanh, x, backward=lambda g, x: g * (1 - np.tanh(x) ** 2))
    with pytest.raises(GradcheckError):
        gradcheck(np.tanh, x, backward=lambda g, x: g * (1 - np.tanh(x)))
    np.testing.assert_array_equal(x, kept)
    assert x.dtype == np.float32


def test_gradcheck_errors_name_the_problem():
    x = RNG.standard_normal((1, 1, 4, 4))
    with pytest.raises(TypeError, match=r"does not know the backward pass of 'tanh'"):
        gradcheck(np.tanh, x)
    with pytest.raises(ValueError, match=r"wrt=\[1\]: position 1 is not a floating-point array"):
        gradcheck(convcore.max_pool2d, x, 2, wrt=[1])
    with pytest.raises(ValueError, match=r"backward returned 2 gradient\(s\) but func has 1"):
        gradcheck(np.tanh, x, backward=lambda g, x: (g, g))
    with pytest.raises(ValueError, match=r"return_indices=False"):
        gradcheck(convcore.max_pool2d, x, 2, return_indices=True)
    with pytest.raises(ValueError, match=r"eps must be > 0"):
        gradcheck(convcore.max_pool2d, x, 2, eps=0)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"x must be a NumPy array for gradcheck"):
        gradcheck(convcore.max_pool2d, torch.ones((1, 1, 4, 4), dtype=torch.float64), 2)


def test_naive_is_the_loop_oracle():
    assert naive.__all__ == _naive.__all__
    for name in naive.__all__:
        assert getattr(naive, name) is getattr(_naive, name)
    # and it is independent of the kernels: it agrees with them on a dilated, grouped case
    x, w = RNG.standard_normal((2, 4, 6, 5)), RNG.standard_normal((2, 2, 2, 3))
    got = naive.conv(x, w, None, (1, 2), (1, 0, 2, 1), (2, 1), 2)
    want = convcore.conv2d(x, w, padding=(1, 0, 2, 1), stride=(1, 2), dilation=(2, 1), groups=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_draw_im2col_draws_the_columns():
    pytest.importorskip("matplotlib")
    fig = draw_im2col((4, 4), (3, 3), stride=2, padding=1, highlight=3)
    input_ax, columns_ax = fig.axes
    # one labelled cell per entry: the padded 6x6 input and the 9 x 4 column matrix
    assert len(input_ax.texts) == 36 and len(columns_ax.texts) == 9 * 4
    ids = convcore.im2col(np.arange(1.0, 17).reshape(1, 1, 4, 4), 3, stride=2, padding=1)[0]
    drawn = np.array([int(t.get_text()) for t in columns_ax.texts]).reshape(9, 4)
    np.testing.assert_array_equal(drawn, ids)
    assert "output position (1, 1)" in fig._suptitle.get_text()
    dilated = draw_im2col((5, 5), 2, dilation=2)
    assert "dilation=2" in dilated.axes[1].get_title()
    with pytest.raises(ValueError, match=r"highlight must be a column in \[0, 4\)"):
        draw_im2col((4, 4), (3, 3), stride=2, padding=1, highlight=4)
    with pytest.raises(ValueError, match=r"input_size must be \(H, W\)"):
        draw_im2col((4, 4, 4), 3)


def test_draw_im2col_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'convcore\[plot\]'"):
        draw_im2col((4, 4), 2)
