"""Loop references: the seed's per-pixel convolution and the checks of ``convcore check``.

:func:`conv2d_loops` is the "previous source code" the seed document speeds up:
for every image, filter and output pixel, one dot product between the filter
and the receptive field.  It is slow on purpose and NumPy-only; the CLI demo
and the benchmarks use it as the denominator of the seed's "200x" claim.

The other functions are the references of ``convcore check``: every op of the
public API written as loops over output positions, from the resolved numbers
alone (per-axis stride, ``(before, after)`` padding per axis, dilation,
groups), for any number of spatial axes.  They compute their own output sizes and share no
code with :mod:`convcore.geometry` or any backend.  The test suite has its own,
independent oracle as well (``tests/reference.py``), which these are checked
against.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "col2im_loops",
    "conv2d_backward_loops",
    "conv2d_forward_loops",
    "conv2d_loops",
    "im2col_loops",
]


def conv2d_loops(x, weight, bias=None, *, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Direct convolution with one Python-level loop iteration per output value.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    weight : ndarray, shape (F, C, HH, WW)
    bias : ndarray, shape (F,), optional
    stride, pad : int
        Symmetric stride and zero padding, as in the seed's ``conv_forward_naive``.

    Returns
    -------
    ndarray, shape (N, F, H', W') with ``H' = (H + 2*pad - HH) // stride + 1``.
    """
    n, _, h, w = x.shape
    f, _, hh, ww = weight.shape
    ho = (h + 2 * pad - hh) // stride + 1
    wo = (w + 2 * pad - ww) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, ho, wo), dtype=np.result_type(x, weight))
    for i in range(n):
        for k in range(f):
            filt = weight[k]
            b = 0.0 if bias is None else bias[k]
            for r in range(ho):
                for s in range(wo):
                    window = xp[i, :, r * stride : r * stride + hh, s * stride : s * stride + ww]
                    out[i, k, r, s] = np.sum(window * filt) + b
    return out


# ------------------------------------------------------------ references of `check`


def _out(size: int, k: int, stride: int, before: int, after: int, dil: int) -> int:
    return (size + before + after - dil * (k - 1) - 1) // stride + 1


def _frame(x, kernel, stride, pad, dil):
    """Zero-padded input, output size and the window of every output position.

    ``x`` is ``(N, C, *spatial)`` with any number of spatial axes; ``pad`` is
    ``(before, after)`` per axis.  ``window(pos)`` gives the strided slices of
    the padded input that the output position ``pos`` (a tuple) reads.
    """
    nd = x.ndim - 2
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(nd)]
    xp = np.pad(x, [(0, 0), (0, 0), *pairs])
    out = tuple(_out(x.shape[2 + i], kernel[i], stride[i], *pairs[i], dil[i]) for i in range(nd))

    def window(pos):
        return tuple(
            slice(o * s, o * s + d * (k - 1) + 1, d) for o, s, d, k in zip(pos, stride, dil, kernel)
        )

    return xp, out, window


def _positions(out):
    return itertools.product(*(range(o) for o in out))


def im2col_loops(x, kernel, stride, pad, dil) -> np.ndarray:
    """``(N, C*prod(K), prod(O))`` columns, one receptive field copied per output position."""
    n, c = x.shape[:2]
    xp, out, window = _frame(x, kernel, stride, pad, dil)
    cols = np.empty((n, c * math.prod(kernel), *out), x.dtype)
    for pos in _positions(out):
        field = xp[(slice(None), slice(None), *window(pos))]
        cols[(slice(None), slice(None), *pos)] = field.reshape(n, -1)
    return cols.reshape(n, -1, math.prod(out))


def col2im_loops(cols, input_size, kernel, stride, pad, dil) -> np.ndarray:
    """Overlap-sum of ``(N, C*prod(K), prod(O))`` columns back to ``(N, C, *input_size)``."""
    n = cols.shape[0]
    c = cols.shape[1] // math.prod(kernel)
    zeros = np.zeros((n, c, *input_size), cols.dtype)
    acc, out, window = _frame(zeros, kernel, stride, pad, dil)
    cols = cols.reshape(n, c, *kernel, *out)
    for pos in _positions(out):
        acc[(slice(None), slice(None), *window(pos))] += cols[(Ellipsis, *pos)]
    crop = tuple(slice(pad[2 * i], pad[2 * i] + size) for i, size in enumerate(input_size))
    return acc[(slice(None), slice(None), *crop)]


def conv2d_forward_loops(x, weight, bias, stride, pad, dil, groups) -> np.ndarray:
    """Grouped cross-correlation (any number of spatial axes), one weighted sum per
    output position and group."""
    n, c = x.shape[:2]
    f = weight.shape[0]
    cg, fg = c // groups, f // groups
    xp, out, window = _frame(x, weight.shape[2:], stride, pad, dil)
    y = np.zeros((n, f, *out), x.dtype)
    axes = list(range(1, weight.ndim))
    for pos in _positions(out):
        field = xp[(slice(None), slice(None), *window(pos))]
        for g in range(groups):
            part = field[:, g * cg : (g + 1) * cg]
            filt = weight[g * fg : (g + 1) * fg]
            y[(slice(None), slice(g * fg, (g + 1) * fg), *pos)] = np.tensordot(
                part, filt, (axes, axes)
            )
    if bias is not None:
        y += bias.reshape((1, f) + (1,) * len(out))
    return y


def conv2d_backward_loops(grad_out, x, weight, stride, pad, dil, groups):
    """``(dx, dw, db)`` of :func:`conv2d_forward_loops`, accumulated position by position."""
    c = x.shape[1]
    f = weight.shape[0]
    cg, fg = c // groups, f // groups
    xp, out, window = _frame(x, weight.shape[2:], stride, pad, dil)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    for pos in _positions(out):
        win = (slice(None), slice(None), *window(pos))
        field = xp[win]
        dfield = dxp[win]  # a view: writes land in dxp
        for g in range(groups):
            gs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
            go = grad_out[(slice(None), fs, *pos)]
            dw[fs] += np.tensordot(go, field[:, gs], ([0], [0]))
            dfield[:, gs] += np.tensordot(go, weight[fs], ([1], [0]))
    crop = tuple(slice(pad[2 * i], pad[2 * i] + size) for i, size in enumerate(x.shape[2:]))
    dx = dxp[(slice(None), slice(None), *crop)]
    return dx, dw, grad_out.sum(axis=(0, *range(2, grad_out.ndim)))
