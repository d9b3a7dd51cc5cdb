"""Property tests over random geometries (hypothesis), against the loop oracle."""

from __future__ import annotations

from dataclasses import dataclass

import naive
import numpy as np
import pytest
from cases import naive_options, resolve_padding
from hypothesis import given, settings
from hypothesis import strategies as st

import convcore


@dataclass(frozen=True)
class Geometry:
    N: int
    C: int
    F: int
    groups: int
    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: object  # as passed to convcore
    dilation: tuple[int, int]

    @property
    def out_size(self):
        return naive.conv_output_size(self.size, self.kernel, **self.ref())

    def api(self, backend):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, backend=backend
        )

    def ref(self):
        """``stride``, ``padding``, ``dilation`` for :mod:`naive` (padding resolved)."""
        return naive_options(self.size, self.kernel, self.stride, self.padding, self.dilation)


@st.composite
def geometries(draw):
    """Valid geometries by construction: the image is drawn after the padding so that
    the dilated kernel always fits the padded image."""
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 2))
    F = groups * draw(st.integers(1, 2))
    N = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))  # 4 > any kernel here
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    form = draw(st.sampled_from(["int", "pair", "four", "same", "valid"]))
    four = tuple(draw(st.integers(0, 4)) for _ in range(4))  # up to 4 >= any kernel
    padding = {
        "int": four[0],
        "pair": (four[0], four[2]),
        "four": four,
        "same": "same",
        "valid": "valid",
    }[form]
    size = []
    for axis in range(2):
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        if form == "same":
            smallest = 1
        else:
            pads = resolve_padding(padding, (1, 1), kernel, stride, dilation)
            smallest = max(1, extent - pads[2 * axis] - pads[2 * axis + 1])
        size.append(draw(st.integers(smallest, smallest + 5)))
    if size[0] == size[1]:
        size[1] += 1  # H != W
    return Geometry(N, C, F, groups, tuple(size), kernel, stride, padding, dilation)


@pytest.mark.declares("conv", "conv_backward", nd=2, dtypes=["float64"])
@settings(max_examples=100, deadline=None)
@given(geom=geometries(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_and_backward_match_reference(backend, np_ns, dtype, assert_close, geom, seed):
    rng = np.random.default_rng(seed)
    Ho, Wo = geom.out_size
    x = rng.standard_normal((geom.N, geom.C, *geom.size))
    w = rng.standard_normal((geom.F, geom.C // geom.groups, *geom.kernel))
    b = rng.standard_normal(geom.F)
    g = rng.standard_normal((geom.N, geom.F, Ho, Wo))
    out = convcore.conv2d(x, w, b, groups=geom.groups, **geom.api(backend.name))
    ref = naive.conv(x, w, b, groups=geom.groups, **geom.ref())
    assert_close(out, ref)
    grads = convcore.conv2d_backward(g, x, w, groups=geom.groups, **geom.api(backend.name))
    ref_grads = naive.conv_backward(g, x, w, groups=geom.groups, **geom.ref())
    for got, want, name in zip(grads, ref_grads, ("dx", "dw", "db"), strict=True):
        assert_close(got, want, err_msg=name)


@pytest.mark.declares("im2col", "col2im", nd=2, dtypes=["float64"])
@settings(max_examples=150, deadline=None)
@given(geom=geometries(), seed=st.integers(0, 2**32 - 1))
def test_im2col_col2im_reference_and_adjoint(backend, np_ns, dtype, assert_close, geom, seed):
    rng = np.random.default_rng(seed)
    Ho, Wo = geom.out_size
    rows = geom.C * geom.kernel[0] * geom.kernel[1]
    x = rng.standard_normal((geom.N, geom.C, *geom.size))
    y = rng.standard_normal((geom.N, rows, Ho * Wo))
    cols = convcore.im2col(x, geom.kernel, **geom.api(backend.name))
    np.testing.assert_array_equal(cols, naive.im2col(x, geom.kernel, **geom.ref()))
    img = convcore.col2im(y, geom.size, geom.kernel, **geom.api(backend.name))
    ref_img = naive.col2im(y, geom.size, geom.kernel, **geom.ref())
    assert_close(img, ref_img)
    lhs, rhs = np.vdot(cols, y), np.vdot(x, img)
    assert abs(lhs - rhs) <= 1e-12 * (np.vdot(np.abs(cols), np.abs(y)) + 1.0), (lhs, rhs)
