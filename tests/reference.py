"""Naive oracles for the test suite: direct loops, no im2col, no convcore.

Everything here is written to be obviously right rather than fast: explicit
Python loops over output positions and kernel offsets, bounds checks instead of
a padded copy, float64 accumulation.  Only the channel / filter axes are
vectorised.  This module deliberately imports nothing from ``convcore`` so that
a bug in the package's geometry or kernels cannot hide in the oracle too.

Padding is always given here as four resolved numbers ``(top, bottom, left,
right)``; :func:`resolve_padding` turns the public API's padding forms into that.

The second half of the module is the table of hand-picked convolution cases
shared by the parity and torch-oracle tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------
# Small helpers (independent re-implementations of the geometry rules)
# --------------------------------------------------------------------------


def pair(value):
    """``value`` as a 2-tuple of ints (an int means the same on both axes)."""
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def resolve_padding(padding, input_size, kernel_size, stride=1, dilation=1):
    """Turn any public padding form into ``(top, bottom, left, right)``.

    ``"same"`` follows TensorFlow / JAX: output ``ceil(size / stride)`` and an
    odd total pad puts the extra row/column at the bottom/right.
    """
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return (0, 0, 0, 0)
        assert padding.lower() == "same", padding
        out = []
        for size, k, s, d in zip(input_size, pair(kernel_size), pair(stride), pair(dilation)):
            extent = d * (k - 1) + 1
            n_out = -(-size // s)
            total = max((n_out - 1) * s + extent - size, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(padding, int):
        return (padding,) * 4
    padding = list(padding)
    if len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        return (*padding[0], *padding[1])
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    assert len(padding) == 4, padding
    return tuple(padding)


def output_size(input_size, kernel_size, stride, padding4, dilation):
    """``(Ho, Wo)`` for resolved padding: floor((H + t + b - d*(k-1) - 1) / s) + 1."""
    (kh, kw), (sh, sw), (dh, dw) = pair(kernel_size), pair(stride), pair(dilation)
    t, b, left, r = padding4
    h, w = input_size
    return (
        (h + t + b - dh * (kh - 1) - 1) // sh + 1,
        (w + left + r - dw * (kw - 1) - 1) // sw + 1,
    )


def _taps(oh, ow, kernel_size, stride, padding4, dilation):
    """Yield ``(i, j, ih, iw)``: kernel offset and the input pixel it reads.

    Offsets that land in the padding (outside the image) are still yielded, with
    ``ih`` / ``iw`` out of range; callers skip them.
    """
    (kh, kw), (sh, sw), (dh, dw) = pair(kernel_size), pair(stride), pair(dilation)
    top, left = padding4[0], padding4[2]
    for i in range(kh):
        for j in range(kw):
            yield i, j, oh * sh - top + i * dh, ow * sw - left + j * dw


# --------------------------------------------------------------------------
# Direct convolution and its gradients
# --------------------------------------------------------------------------


def conv2d_ref_at(x, w, b, n, oh, ow, stride=1, padding=(0, 0, 0, 0), dilation=1, groups=1):
    """The ``F`` outputs at one position ``(n, :, oh, ow)``, by direct summation."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    H, W = x.shape[2:]
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    wg = w.reshape(groups, Fg, Cg, KH, KW)
    acc = np.zeros((groups, Fg))
    for i, j, ih, iw in _taps(oh, ow, (KH, KW), stride, padding, dilation):
        if 0 <= ih < H and 0 <= iw < W:
            pixel = x[n, :, ih, iw].reshape(groups, Cg)
            acc += np.einsum("gfc,gc->gf", wg[:, :, :, i, j], pixel)
    acc = acc.reshape(F)
    if b is not None:
        acc = acc + np.asarray(b, dtype=np.float64)
    return acc


def conv2d_ref(x, w, b=None, stride=1, padding=(0, 0, 0, 0), dilation=1, groups=1):
    """Direct 2-D cross-correlation (PyTorch ``conv2d`` semantics), float64.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    w : ndarray (F, C // groups, KH, KW)
    b : ndarray (F,) or None
    stride, dilation : int or (int, int)
    padding : (top, bottom, left, right)
    groups : int

    Returns
    -------
    ndarray (N, F, Ho, Wo), float64
    """
    N, _, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = output_size((H, W), (KH, KW), stride, padding, dilation)
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                out[n, :, oh, ow] = conv2d_ref_at(
                    x, w, b, n, oh, ow, stride, padding, dilation, groups
                )
    return out


def conv2d_backward_ref(g, x, w, stride=1, padding=(0, 0, 0, 0), dilation=1, groups=1):
    """Gradients ``(dx, dw, db)`` of ``sum(conv2d_ref(x, w, b) * g)``, by direct loops."""
    g = np.asarray(g, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    Ho, Wo = g.shape[2:]
    wg = w.reshape(groups, Fg, Cg, KH, KW)
    dx = np.zeros((N, groups, Cg, H, W))
    dwg = np.zeros((groups, Fg, Cg, KH, KW))
    xg = x.reshape(N, groups, Cg, H, W)
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                gpix = g[n, :, oh, ow].reshape(groups, Fg)
                for i, j, ih, iw in _taps(oh, ow, (KH, KW), stride, padding, dilation):
                    if 0 <= ih < H and 0 <= iw < W:
                        dx[n, :, :, ih, iw] += np.einsum("gfc,gf->gc", wg[:, :, :, i, j], gpix)
                        dwg[:, :, :, i, j] += np.einsum("gf,gc->gfc", gpix, xg[n, :, :, ih, iw])
    db = g.sum(axis=(0, 2, 3))
    return dx.reshape(N, C, H, W), dwg.reshape(F, Cg, KH, KW), db


# --------------------------------------------------------------------------
# Column building (PyTorch unfold order) and its overlap-summing adjoint
# --------------------------------------------------------------------------


def im2col_ref_column(x, n, oh, ow, kernel_size, stride=1, padding=(0, 0, 0, 0), dilation=1):
    """Column ``oh * Wo + ow`` of image ``n``: row ``(c*KH + i)*KW + j`` = x[n, c, ih, iw]."""
    x = np.asarray(x, dtype=np.float64)
    C, H, W = x.shape[1:]
    KH, KW = pair(kernel_size)
    col = np.zeros((C, KH, KW))
    for i, j, ih, iw in _taps(oh, ow, (KH, KW), stride, padding, dilation):
        if 0 <= ih < H and 0 <= iw < W:
            col[:, i, j] = x[n, :, ih, iw]
    return col.reshape(C * KH * KW)


def im2col_ref_loops(x, kernel_size, stride=1, padding=(0, 0, 0, 0), dilation=1):
    """Columns ``(N, C*KH*KW, Ho*Wo)`` built by looping over output positions."""
    N, C, H, W = x.shape
    KH, KW = pair(kernel_size)
    Ho, Wo = output_size((H, W), (KH, KW), stride, padding, dilation)
    cols = np.zeros((N, C * KH * KW, Ho * Wo))
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                cols[n, :, oh * Wo + ow] = im2col_ref_column(
                    x, n, oh, ow, (KH, KW), stride, padding, dilation
                )
    return cols


def col2im_ref_loops(cols, input_size, kernel_size, stride=1, padding=(0, 0, 0, 0), dilation=1):
    """Image ``(N, C, H, W)``: every column entry added back onto the pixel it came from."""
    cols = np.asarray(cols, dtype=np.float64)
    H, W = input_size
    KH, KW = pair(kernel_size)
    Ho, Wo = output_size((H, W), (KH, KW), stride, padding, dilation)
    N, rows, L = cols.shape
    assert L == Ho * Wo and rows % (KH * KW) == 0, (cols.shape, Ho, Wo)
    C = rows // (KH * KW)
    per_channel = cols.reshape(N, C, KH, KW, L)
    img = np.zeros((N, C, H, W))
    for n in range(N):
        for oh in range(Ho):
            for ow in range(Wo):
                for i, j, ih, iw in _taps(oh, ow, (KH, KW), stride, padding, dilation):
                    if 0 <= ih < H and 0 <= iw < W:
                        img[n, :, ih, iw] += per_channel[n, :, i, j, oh * Wo + ow]
    return img


# --------------------------------------------------------------------------
# Case table shared by the parity and torch-oracle tests
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One convolution problem: shapes plus the options as passed to convcore."""

    id: str
    N: int
    C: int
    H: int
    W: int
    F: int
    kernel: tuple[int, int]
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1

    @property
    def padding4(self):
        """Resolved ``(top, bottom, left, right)``."""
        return resolve_padding(
            self.padding, (self.H, self.W), self.kernel, self.stride, self.dilation
        )

    @property
    def out_size(self):
        return output_size((self.H, self.W), self.kernel, self.stride, self.padding4, self.dilation)

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.F, self.C // self.groups, *self.kernel)

    @property
    def cols_shape(self):
        Ho, Wo = self.out_size
        return (self.N, self.C * self.kernel[0] * self.kernel[1], Ho * Wo)

    @property
    def out_shape(self):
        return (self.N, self.F, *self.out_size)

    def ref_kwargs(self):
        """Keyword arguments for the oracles (resolved padding)."""
        return dict(stride=self.stride, padding=self.padding4, dilation=self.dilation)

    def api_kwargs(self):
        """Keyword arguments for convcore / the public API (padding as given)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


CASES = [
    Case("basic3x3", 2, 3, 5, 6, 4, (3, 3)),
    Case("nonsquare_kernel", 2, 2, 6, 7, 3, (2, 4), padding=1),
    Case("stride_gt_kernel", 1, 2, 9, 8, 2, (2, 2), stride=3),
    Case("stride_gt_kernel_rect", 2, 1, 10, 7, 2, (1, 2), stride=(4, 3)),
    Case("pad_ge_kernel", 1, 2, 4, 5, 3, (2, 2), padding=3),
    Case("pad_ge_kernel_per_axis", 2, 2, 3, 4, 2, (3, 2), stride=2, padding=(3, 4)),
    Case("asym_pad_4", 2, 2, 5, 6, 3, (3, 3), padding=(0, 2, 1, 3)),
    Case("asym_pad_pairs", 1, 2, 5, 4, 2, (2, 3), stride=2, padding=((1, 0), (2, 1))),
    Case("same_s1_odd_total", 2, 2, 7, 6, 3, (4, 3), padding="same"),
    Case("same_s2", 2, 2, 8, 7, 2, (3, 3), stride=2, padding="same"),
    Case("same_s3", 1, 3, 10, 12, 2, (3, 4), stride=3, padding="same"),
    Case("same_s2_dilated", 1, 2, 9, 6, 2, (3, 3), stride=2, padding="same", dilation=2),
    Case("same_s2_rect_kernel", 1, 1, 5, 6, 2, (2, 3), stride=2, padding="same"),
    Case("valid", 2, 2, 6, 5, 3, (3, 3), padding="valid"),
    Case("valid_s2_floor", 1, 1, 7, 8, 1, (3, 2), stride=2, padding="valid"),
    Case("dilation2", 2, 2, 8, 7, 2, (3, 3), padding=1, dilation=2),
    Case(
        "dilation_rect", 1, 2, 9, 8, 3, (2, 3), stride=(2, 1), padding=(1, 0, 2, 1), dilation=(3, 2)
    ),
    Case("groups2", 2, 4, 5, 6, 6, (3, 3), padding=1, groups=2),
    Case("groups3_strided", 1, 6, 7, 6, 3, (2, 3), stride=2, padding=(1, 0), groups=3),
    Case("depthwise", 2, 3, 6, 5, 3, (3, 3), padding=1, groups=3),
    Case("depthwise_multiplier2", 1, 4, 5, 5, 8, (3, 2), stride=2, padding=(0, 1, 1, 0), groups=4),
    Case("pointwise_1x1", 2, 3, 4, 5, 4, (1, 1)),
    Case("1x1_strided_padded", 1, 2, 5, 6, 3, (1, 1), stride=2, padding=1),
    Case("floor_s2", 2, 2, 8, 10, 2, (3, 3), stride=2),
    Case("floor_s3_padded", 1, 1, 10, 11, 2, (2, 4), stride=3, padding=(1, 2)),
    Case("F1_C1", 3, 1, 5, 4, 1, (2, 2)),
    Case("kernel_equals_input", 1, 2, 3, 4, 2, (3, 4)),
    Case("huge_stride_padded", 1, 1, 2, 3, 1, (2, 2), stride=5, padding=2),
    Case("tall_thin", 2, 2, 9, 2, 2, (4, 1), stride=(2, 1), padding=(1, 1, 0, 0)),
]


def case_inputs(case, dtype, seed=0):
    """Deterministic ``(x, w, b, g, cols)`` for ``case`` in ``dtype``.

    ``g`` has the output's shape (the upstream gradient) and ``cols`` the
    im2col output's shape (input of col2im).
    """
    rng = np.random.default_rng([seed, sum(map(ord, case.id))])
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.F).astype(dtype)
    g = rng.standard_normal(case.out_shape).astype(dtype)
    cols = rng.standard_normal(case.cols_shape).astype(dtype)
    return x, w, b, g, cols


@functools.cache
def oracle_results(case, dtype_name):
    """Oracle results for ``case`` on the inputs of :func:`case_inputs` in ``dtype``."""
    x, w, b, g, cols = case_inputs(case, np.dtype(dtype_name))
    kw = case.ref_kwargs()
    dx, dw, db = conv2d_backward_ref(g, x, w, groups=case.groups, **kw)
    return {
        "conv": conv2d_ref(x, w, b, groups=case.groups, **kw),
        "conv_nobias": conv2d_ref(x, w, None, groups=case.groups, **kw),
        "dx": dx,
        "dw": dw,
        "db": db,
        "im2col": im2col_ref_loops(x, case.kernel, **kw),
        "col2im": col2im_ref_loops(cols, (case.H, case.W), case.kernel, **kw),
    }
