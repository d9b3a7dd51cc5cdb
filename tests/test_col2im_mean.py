"""``col2im(..., reduction="mean")`` (the averaging fold) and ``col2im_backward``.

References: the overlap counts computed here with plain loops, ``x`` itself
(``fold(unfold(x)) == x`` wherever a window reaches), PyTorch's
``fold(unfold(x)) / fold(unfold(ones))`` when installed, the adjoint identity and
finite differences (``convcore.teaching.gradcheck``).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import torch_or_skip

import convcore
from convcore.teaching import gradcheck

GEOMETRIES = [
    ("overlapping", (7, 6), (3, 3), {"stride": 1}),
    ("strided_padded", (7, 6), (3, 2), {"stride": 2, "padding": 1}),
    ("dilated_asym", (8, 7), (2, 3), {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": 2}),
    ("gaps", (7, 7), (2, 2), {"stride": 3}),  # stride > kernel: some pixels are never read
    ("reflect", (6, 5), (3, 3), {"padding": 1, "padding_mode": "reflect"}),
    ("1d", (9,), (4,), {"stride": 2}),
    ("3d", (4, 5, 3), (2, 3, 2), {"stride": (1, 2, 1), "padding": 1}),
]


def _reached(size, kernel, kw):
    """Which pixels some window reads (im2col of a ones image, folded back, > 0)."""
    ones = np.ones((1, 1, *size))
    cols = convcore.im2col(ones, kernel, **kw)
    return convcore.col2im(np.ones_like(cols), size, kernel, **kw)[0, 0] > 0


@pytest.mark.parametrize(
    "size, kernel, kw", [g[1:] for g in GEOMETRIES], ids=[g[0] for g in GEOMETRIES]
)
@pytest.mark.declares("im2col", "col2im")
def test_the_averaging_fold_gives_the_image_back(size, kernel, kw, backend, ns, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    opts = {**kw, "backend": backend.name}
    cols = convcore.im2col(ns.asarray(x), kernel, **opts)
    back = ns.to_numpy(convcore.col2im(cols, size, kernel, reduction="mean", **opts))
    assert back.dtype == dtype and back.shape == x.shape
    reached = _reached(size, kernel, kw)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(back[..., reached], x[..., reached], rtol=tol, atol=tol)
    np.testing.assert_array_equal(back[..., ~reached], 0)  # no window: 0, not NaN


def test_torch_fold_divided_by_its_counts_agrees():
    torch = torch_or_skip()
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    c = rng.standard_normal((2, 3 * 6, 12))  # 3 channels, 3x2 kernel, 3x4 windows
    kw = {"stride": 2, "padding": 1}
    got = convcore.col2im(c, (5, 7), (3, 2), reduction="mean", **kw)
    total = F.fold(torch.from_numpy(c), (5, 7), (3, 2), **kw)
    count = F.fold(torch.ones_like(torch.from_numpy(c)), (5, 7), (3, 2), **kw)
    want = (total / count.clamp(min=1)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "size, kernel, kw", [g[1:] for g in GEOMETRIES], ids=[g[0] for g in GEOMETRIES]
)
def test_col2im_backward_is_the_adjoint_and_the_gradient(size, kernel, kw):
    rng = np.random.default_rng(2)
    cols = convcore.im2col(np.zeros((1, 2, *size)), kernel, **kw)
    c = rng.standard_normal(cols.shape)
    y = rng.standard_normal((1, 2, *size))
    for reduction in ("sum", "mean"):
        folded = convcore.col2im(c, size, kernel, reduction=reduction, **kw)
        back = convcore.col2im_backward(y, size, kernel, reduction=reduction, **kw)
        assert back.shape == c.shape
        np.testing.assert_allclose(np.sum(folded * y), np.sum(c * back), rtol=1e-12)
    assert gradcheck(convcore.col2im, c, size, kernel, reduction="mean", **kw)
    np.testing.assert_array_equal(
        convcore.col2im_backward(y, size, kernel, **kw), convcore.im2col(y, kernel, **kw)
    )


def test_torch_autograd_uses_the_adjoint():
    torch = torch_or_skip()
    import convcore.torch as ct

    c = torch.rand(1, 18, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: ct.col2im(c, (7, 6), 3, reduction="mean"), (c,))


def test_mean_of_integers_needs_a_floating_dtype_and_bad_reductions_are_named():
    cols = np.full((1, 4, 4), 3, np.int16)
    with pytest.raises(TypeError, match=r"reduction='mean' needs real floating-point columns"):
        convcore.col2im(cols, (3, 3), 2, reduction="mean")
    got = convcore.col2im(cols, (3, 3), 2, reduction="mean", dtype="float64")
    np.testing.assert_array_equal(got, np.full((1, 1, 3, 3), 3.0))
    with pytest.raises(ValueError, match=r"reduction must be 'sum' or 'mean', got 'avg'"):
        convcore.col2im(cols, (3, 3), 2, reduction="avg")
    with pytest.raises(TypeError, match=r"reduction must be 'sum' or 'mean', got None"):
        convcore.col2im_backward(np.ones((1, 1, 3, 3)), (3, 3), 2, reduction=None)
