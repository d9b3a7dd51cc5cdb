"""The seed's per-pixel loop convolution, kept as the baseline that im2col beats.

This is the "previous source code" the seed document speeds up: for every image,
filter and output pixel, one dot product between the filter and the receptive
field.  It is slow on purpose and NumPy-only; the CLI demo and the benchmarks
use it as the loop reference and as the denominator of the seed's "200x"
speed-up claim.  The test suite has its own, independent oracle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv2d_loops"]


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
