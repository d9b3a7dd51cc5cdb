"""Property tests over random geometries (hypothesis), against the loop oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import (
    col2im_ref_loops,
    conv2d_backward_ref,
    conv2d_ref,
    im2col_ref_loops,
    output_size,
    resolve_padding,
)

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
    def pads(self):
        return resolve_padding(self.padding, self.size, self.kernel, self.stride, self.dilation)

    @property
    def out_size(self):
        return output_size(self.size, self.kernel, self.stride, self.pads, self.dilation)

    def api(self, backend):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, backend=backend
        )

    def ref(self):
        return dict(stride=self.stride, padding=self.pads, dilation=self.dilation)


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


@settings(max_examples=100, deadline=None)
@given(geom=geometries(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_and_backward_match_reference(backend, np_ns, assert_close, geom, seed):
    backend.require("conv", "conv_backward", ns=np_ns, dtype=np.float64)
    rng = np.random.default_rng(seed)
    Ho, Wo = geom.out_size
    x = rng.standard_normal((geom.N, geom.C, *geom.size))
    w = rng.standard_normal((geom.F, geom.C // geom.groups, *geom.kernel))
    b = rng.standard_normal(geom.F)
    g = rng.standard_normal((geom.N, geom.F, Ho, Wo))
    out = convcore.conv2d(x, w, b, groups=geom.groups, **geom.api(backend.name))
    ref = conv2d_ref(x, w, b, groups=geom.groups, **geom.ref())
    assert_close(out, ref)
    grads = convcore.conv2d_backward(g, x, w, groups=geom.groups, **geom.api(backend.name))
    ref_grads = conv2d_backward_ref(g, x, w, groups=geom.groups, **geom.ref())
    for got, want, name in zip(grads, ref_grads, ("dx", "dw", "db"), strict=True):
        assert_close(got, want, err_msg=name)


@settings(max_examples=150, deadline=None)
@given(geom=geometries(), seed=st.integers(0, 2**32 - 1))
def test_im2col_col2im_reference_and_adjoint(backend, np_ns, assert_close, geom, seed):
    backend.require("im2col", "col2im", ns=np_ns, dtype=np.float64)
    rng = np.random.default_rng(seed)
    Ho, Wo = geom.out_size
    rows = geom.C * geom.kernel[0] * geom.kernel[1]
    x = rng.standard_normal((geom.N, geom.C, *geom.size))
    y = rng.standard_normal((geom.N, rows, Ho * Wo))
    cols = convcore.im2col(x, geom.kernel, **geom.api(backend.name))
    np.testing.assert_array_equal(cols, im2col_ref_loops(x, geom.kernel, **geom.ref()))
    img = convcore.col2im(y, geom.size, geom.kernel, **geom.api(backend.name))
    ref_img = col2im_ref_loops(y, geom.size, geom.kernel, **geom.ref())
    assert_close(img, ref_img)
    lhs, rhs = np.vdot(cols, y), np.vdot(x, img)
    assert abs(lhs - rhs) <= 1e-12 * (np.vdot(np.abs(cols), np.abs(y)) + 1.0), (lhs, rhs)
