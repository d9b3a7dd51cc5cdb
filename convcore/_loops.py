"""Loop references: the seed's per-pixel convolution and the checks of ``convcore check``.

:func:`conv2d_loops` is the "previous source code" the seed document speeds up:
for every image, filter and output pixel, one dot product between the filter
and the receptive field.  It is slow on purpose and NumPy-only; the CLI demo
and the benchmarks use it as the denominator of the seed's "200x" claim.

The other functions are the references of ``convcore check``: every op of the
public API written as loops over output pixels and kernel taps, from the
resolved numbers alone (per-axis stride, ``(top, bottom, left, right)``
padding, dilation, groups).  They compute their own output sizes and share no
code with :mod:`convcore.geometry` or any backend.  The test suite has its own,
independent oracle as well (``tests/reference.py``), which these are checked
against.
"""

from __future__ import annotations

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
    """Zero-padded input, output size and the window of every output pixel."""
    t, b, left, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, right)))
    ho = _out(x.shape[2], kernel[0], stride[0], t, b, dil[0])
    wo = _out(x.shape[3], kernel[1], stride[1], left, right, dil[1])

    def window(i, j):
        r, s = i * stride[0], j * stride[1]
        return (
            slice(r, r + dil[0] * (kernel[0] - 1) + 1, dil[0]),
            slice(s, s + dil[1] * (kernel[1] - 1) + 1, dil[1]),
        )

    return xp, ho, wo, window


def im2col_loops(x, kernel, stride, pad, dil) -> np.ndarray:
    """``(N, C*KH*KW, Ho*Wo)`` columns, one receptive field copied per output pixel."""
    n, c = x.shape[:2]
    xp, ho, wo, window = _frame(x, kernel, stride, pad, dil)
    cols = np.empty((n, c * kernel[0] * kernel[1], ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):
            cols[:, :, i, j] = xp[(slice(None), slice(None), *window(i, j))].reshape(n, -1)
    return cols.reshape(n, -1, ho * wo)


def col2im_loops(cols, input_size, kernel, stride, pad, dil) -> np.ndarray:
    """Overlap-sum of ``(N, C*KH*KW, Ho*Wo)`` columns back to ``(N, C, H, W)``."""
    n = cols.shape[0]
    c = cols.shape[1] // (kernel[0] * kernel[1])
    zeros = np.zeros((n, c, *input_size), cols.dtype)
    acc, ho, wo, window = _frame(zeros, kernel, stride, pad, dil)
    cols = cols.reshape(n, c, kernel[0], kernel[1], ho, wo)
    for i in range(ho):
        for j in range(wo):
            acc[(slice(None), slice(None), *window(i, j))] += cols[..., i, j]
    t, left = pad[0], pad[2]
    return acc[:, :, t : t + input_size[0], left : left + input_size[1]]


def conv2d_forward_loops(x, weight, bias, stride, pad, dil, groups) -> np.ndarray:
    """Grouped cross-correlation, one weighted sum per output pixel and group."""
    n, c = x.shape[:2]
    f = weight.shape[0]
    cg, fg = c // groups, f // groups
    xp, ho, wo, window = _frame(x, weight.shape[2:], stride, pad, dil)
    out = np.zeros((n, f, ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):
            field = xp[(slice(None), slice(None), *window(i, j))]
            for g in range(groups):
                part = field[:, g * cg : (g + 1) * cg]
                filt = weight[g * fg : (g + 1) * fg]
                out[:, g * fg : (g + 1) * fg, i, j] = np.tensordot(
                    part, filt, ([1, 2, 3], [1, 2, 3])
                )
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_loops(grad_out, x, weight, stride, pad, dil, groups):
    """``(dx, dw, db)`` of :func:`conv2d_forward_loops`, accumulated pixel by pixel."""
    c, h, w = x.shape[1:]
    f = weight.shape[0]
    cg, fg = c // groups, f // groups
    xp, ho, wo, window = _frame(x, weight.shape[2:], stride, pad, dil)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(weight)
    for i in range(ho):
        for j in range(wo):
            win = (slice(None), slice(None), *window(i, j))
            field = xp[win]
            dfield = dxp[win]  # a view: writes land in dxp
            for g in range(groups):
                gs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
                go = grad_out[:, fs, i, j]
                dw[fs] += np.tensordot(go, field[:, gs], ([0], [0]))
                dfield[:, gs] += np.tensordot(go, weight[fs], ([1], [0]))
    t, left = pad[0], pad[2]
    dx = dxp[:, :, t : t + h, left : left + w]
    return dx, dw, grad_out.sum(axis=(0, 2, 3))
