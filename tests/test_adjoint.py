"""col2im is the adjoint of im2col: <im2col(x), y> == <x, col2im(y)>."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from cases import naive_options, resolve_padding

import convcore


def random_geometry(seed):
    """A valid random geometry: ``(N, C, (H, W), kernel, stride, padding, dilation)``.

    Padding comes in every public form (int, per-axis pair, four numbers, pairs of
    pairs, "same", "valid"); strides may exceed the kernel and padding may exceed it.
    """
    rng = np.random.default_rng(seed)
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 6, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, size=2))
    form = ["int", "pair", "four", "pairs", "same", "valid"][seed % 6]
    four = tuple(int(p) for p in rng.integers(0, 5, size=4))
    padding = {
        "int": four[0],
        "pair": (four[0], four[2]),
        "four": four,
        "pairs": ((four[0], four[1]), (four[2], four[3])),
        "same": "same",
        "valid": "valid",
    }[form]
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    pads = resolve_padding(padding, (1, 1), kernel, stride, dilation) if form != "same" else None
    size = []
    for axis in range(2):
        smallest = 1 if pads is None else max(1, extent[axis] - pads[2 * axis] - pads[2 * axis + 1])
        size.append(int(rng.integers(smallest, smallest + 7)))
    N = int(rng.integers(1, 3))
    C = int(rng.integers(1, 4))
    return N, C, tuple(size), kernel, stride, padding, dilation


SEEDS = list(range(30))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.declares("im2col", "col2im", nd=2, dtypes=["float64"])
def test_col2im_is_adjoint_of_im2col(seed, backend, ns, dtype):
    N, C, size, kernel, stride, padding, dilation = random_geometry(seed)
    Ho, Wo = naive.conv_output_size(
        size, kernel, **naive_options(size, kernel, stride, padding, dilation)
    )
    rng = np.random.default_rng(1000 + seed)
    x = rng.standard_normal((N, C, *size))
    y = rng.standard_normal((N, C * kernel[0] * kernel[1], Ho * Wo))
    kw = dict(stride=stride, padding=padding, dilation=dilation, backend=backend.name)
    cols = ns.to_numpy(convcore.im2col(ns.asarray(x), kernel, **kw))
    img = ns.to_numpy(convcore.col2im(ns.asarray(y), size, kernel, **kw))
    assert cols.shape == y.shape and img.shape == x.shape
    lhs = np.vdot(cols, y)
    rhs = np.vdot(x, img)
    # Both sides add up the same products in different orders.
    scale = np.vdot(np.abs(cols), np.abs(y)) + 1.0
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)
