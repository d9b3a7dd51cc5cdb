"""A direct (sliding-window) convolution for the example backend: no im2col."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv(xp, x, weight, bias, geom, groups):
    """``conv`` kernel of the example backend, following the convcore kernel interface."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    top, bottom, left, right = geom.padding
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = geom.effective_kernel_size
    windows = sliding_window_view(xpad, (kh, kw), axis=(2, 3))
    sh, sw = geom.stride
    dh, dw = geom.dilation
    ho, wo = geom.output_size
    windows = windows[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]
    n, c = x.shape[:2]
    f = weight.shape[0]
    cg, fg = c // groups, f // groups
    out = np.empty((n, f, ho, wo), dtype=x.dtype)
    for g in range(groups):
        out[:, g * fg : (g + 1) * fg] = np.einsum(
            "nchwij,fcij->nfhw",
            windows[:, g * cg : (g + 1) * cg],
            weight[g * fg : (g + 1) * fg],
        )
    if bias is not None:
        out += np.asarray(bias)[None, :, None, None]
    return out
