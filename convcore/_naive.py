"""The naive N-d loop oracle: every op of convcore written as plain loops.

One module of references for the test suite (through ``tests/naive.py``) and for
``convcore check``.  Everything here is written to be obviously right rather than
fast: explicit Python loops over output positions (``itertools.product`` over the
output grid) and kernel taps, bounds checks instead of a padded copy, float64
accumulation.  Only the batch, channel and filter axes are vectorised.

Arrays are channels-first, ``(N, C, *spatial)``, with any number ``nd`` of spatial
axes.  Every geometry argument is a resolved number: ``kernel``, ``stride``,
``dilation`` and ``output_padding`` are tuples of ``nd`` ints, ``padding`` is a
tuple of ``2*nd`` ints ``(before0, after0, before1, after1, ...)`` and ``groups``
an int.  The output sizes are computed here, from those numbers alone.

This module deliberately imports nothing from ``convcore``, so that a bug in the
package's geometry or kernels cannot hide in the oracle too.  It validates
nothing beyond a few shape asserts.

:func:`seed_conv2d_loops` is the seed document's per-pixel convolution, the
"previous source code" that the CLI demo times and checks backends against.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "avg_pool",
    "avg_pool_backward",
    "col2im",
    "conv",
    "conv_backward",
    "conv_output_size",
    "conv_transpose",
    "conv_transpose_backward",
    "conv_transpose_output_size",
    "im2col",
    "max_pool",
    "max_pool_backward",
    "pool_output_size",
    "seed_conv2d_loops",
]

_ALL = slice(None)


# --------------------------------------------------------------------------
# Output sizes
# --------------------------------------------------------------------------


def conv_output_size(size, kernel, stride, padding, dilation):
    """Output size of a convolution (floor rule).

    Parameters
    ----------
    size, kernel, stride, dilation : tuple of int
        One entry per spatial axis.
    padding : tuple of int
        ``(before0, after0, before1, after1, ...)``.

    Returns
    -------
    tuple of int
        ``(size + before + after - dilation*(kernel - 1) - 1) // stride + 1`` per axis.
    """
    nd = len(size)
    return tuple(
        (size[i] + padding[2 * i] + padding[2 * i + 1] - dilation[i] * (kernel[i] - 1) - 1)
        // stride[i]
        + 1
        for i in range(nd)
    )


def pool_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    """Output size of a pooling.

    Parameters
    ----------
    size, kernel, stride, dilation : tuple of int
        One entry per spatial axis.
    padding : tuple of int
        ``(before0, after0, before1, after1, ...)``.
    ceil_mode : {False, True, "cover_all"}
        ``False``: floor, as a convolution.  ``True``: PyTorch's rule, ceil, minus one
        window if the last one would start at or beyond ``size + before`` (in the
        after-padding).  ``"cover_all"``: Chainer's ``cover_all`` / the seed's rule,
        ceil with nothing dropped.

    Returns
    -------
    tuple of int
    """
    assert (isinstance(ceil_mode, str) and ceil_mode == "cover_all") or ceil_mode in (False, True)
    out = []
    for i in range(len(size)):
        before, after = padding[2 * i], padding[2 * i + 1]
        span = size[i] + before + after - (dilation[i] * (kernel[i] - 1) + 1)
        s = stride[i]
        if isinstance(ceil_mode, str):
            n = -(-span // s) + 1
        elif ceil_mode:
            n = -(-span // s) + 1
            if (n - 1) * s >= size[i] + before:
                n -= 1
        else:
            n = span // s + 1
        out.append(n)
    return tuple(out)


def conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation):
    """Output size of a transposed convolution.

    Parameters
    ----------
    size, kernel, stride, output_padding, dilation : tuple of int
        One entry per spatial axis.
    padding : tuple of int
        ``(before0, after0, before1, after1, ...)``.

    Returns
    -------
    tuple of int
        ``(size - 1)*stride - before - after + dilation*(kernel - 1) + output_padding + 1``
        per axis.
    """
    return tuple(
        (size[i] - 1) * stride[i]
        - padding[2 * i]
        - padding[2 * i + 1]
        + dilation[i] * (kernel[i] - 1)
        + output_padding[i]
        + 1
        for i in range(len(size))
    )


# --------------------------------------------------------------------------
# Windows: output positions, kernel taps and the input cell each tap reads
# --------------------------------------------------------------------------


def _grid(shape):
    """Every index of ``shape`` in C order."""
    return itertools.product(*(range(n) for n in shape))


def _window(pos, kernel, stride, padding, dilation):
    """Yield ``(tap, idx)`` for the window at output position ``pos``, taps in C order.

    ``idx`` is the input index ``pos*stride - before + tap*dilation`` per axis; it may
    lie outside the input (padding, ceil overhang).
    """
    for tap in _grid(kernel):
        idx = tuple(
            o * s - padding[2 * i] + t * d
            for i, (o, s, t, d) in enumerate(zip(pos, stride, tap, dilation))
        )
        yield tap, idx


def _inside(idx, size):
    return all(0 <= j < n for j, n in zip(idx, size))


def _flat(idx, size):
    """C-order flat index of ``idx`` in an array of shape ``size``."""
    flat = 0
    for j, n in zip(idx, size):
        flat = flat * n + j
    return flat


# --------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------


def im2col(x, kernel, stride, padding, dilation):
    """Columns in PyTorch ``unfold`` order.

    Parameters
    ----------
    x : ndarray, shape (N, C, *size)
    kernel, stride, dilation : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis.

    Returns
    -------
    ndarray, shape (N, C*prod(kernel), prod(out)), dtype of ``x``
        Row ``c*prod(kernel) + tap`` (taps in C order), column = output position in
        C order.  Padding reads 0.
    """
    x = np.asarray(x)
    n, c, *size = x.shape
    assert len(size) == len(kernel)
    out = conv_output_size(size, kernel, stride, padding, dilation)
    cols = np.zeros((n, c, *kernel, *out), x.dtype)
    for pos in _grid(out):
        for tap, idx in _window(pos, kernel, stride, padding, dilation):
            if _inside(idx, size):
                cols[(_ALL, _ALL, *tap, *pos)] = x[(_ALL, _ALL, *idx)]
    return cols.reshape(n, c * math.prod(kernel), math.prod(out))


def col2im(cols, input_size, kernel, stride, padding, dilation):
    """Overlap sum of columns back onto the image (the adjoint of :func:`im2col`).

    Parameters
    ----------
    cols : ndarray, shape (N, C*prod(kernel), prod(out))
    input_size, kernel, stride, dilation : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis.

    Returns
    -------
    ndarray, shape (N, C, *input_size), float64
    """
    cols = np.asarray(cols, dtype=np.float64)
    out = conv_output_size(input_size, kernel, stride, padding, dilation)
    n, rows, length = cols.shape
    k = math.prod(kernel)
    assert rows % k == 0 and length == math.prod(out), (cols.shape, kernel, out)
    c = rows // k
    cols = cols.reshape(n, c, *kernel, *out)
    img = np.zeros((n, c, *input_size))
    for pos in _grid(out):
        for tap, idx in _window(pos, kernel, stride, padding, dilation):
            if _inside(idx, input_size):
                img[(_ALL, _ALL, *idx)] += cols[(_ALL, _ALL, *tap, *pos)]
    return img


# --------------------------------------------------------------------------
# Convolution (cross-correlation) and its gradients
# --------------------------------------------------------------------------


def conv(x, w, b, stride, padding, dilation, groups):
    """Grouped cross-correlation, PyTorch ``convNd`` semantics.

    Parameters
    ----------
    x : ndarray, shape (N, C, *size)
    w : ndarray, shape (F, C // groups, *kernel)
    b : ndarray, shape (F,), or None
    stride, dilation : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis; padding reads 0.
    groups : int

    Returns
    -------
    ndarray, shape (N, F, *out), float64
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, *size = x.shape
    f, cg, *kernel = w.shape
    assert c == cg * groups and f % groups == 0, (x.shape, w.shape, groups)
    fg = f // groups
    out = conv_output_size(size, kernel, stride, padding, dilation)
    xg = x.reshape(n, groups, cg, *size)
    wg = w.reshape(groups, fg, cg, *kernel)
    y = np.zeros((n, groups, fg, *out))
    for pos in _grid(out):
        for tap, idx in _window(pos, kernel, stride, padding, dilation):
            if _inside(idx, size):
                y[(_ALL, _ALL, _ALL, *pos)] += np.einsum(
                    "ngc,gfc->ngf", xg[(_ALL, _ALL, _ALL, *idx)], wg[(_ALL, _ALL, _ALL, *tap)]
                )
    y = y.reshape(n, f, *out)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape(f, *(1,) * len(out))
    return y


def conv_backward(g, x, w, stride, padding, dilation, groups):
    """Gradients of ``sum(conv(x, w, b) * g)``.

    Parameters
    ----------
    g : ndarray, shape (N, F, *out)
        Upstream gradient.
    x, w, stride, padding, dilation, groups
        As for :func:`conv`.

    Returns
    -------
    dx : ndarray, shape of ``x``, float64
    dw : ndarray, shape of ``w``, float64
    db : ndarray, shape (F,), float64
    """
    g = np.asarray(g, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, _, *size = x.shape
    f, cg, *kernel = w.shape
    fg = f // groups
    out = conv_output_size(size, kernel, stride, padding, dilation)
    assert g.shape == (n, f, *out), (g.shape, out)
    xg = x.reshape(n, groups, cg, *size)
    wg = w.reshape(groups, fg, cg, *kernel)
    gg = g.reshape(n, groups, fg, *out)
    dx = np.zeros_like(xg)
    dw = np.zeros_like(wg)
    for pos in _grid(out):
        gpos = gg[(_ALL, _ALL, _ALL, *pos)]  # (n, groups, fg)
        for tap, idx in _window(pos, kernel, stride, padding, dilation):
            if _inside(idx, size):
                cell = (_ALL, _ALL, _ALL, *idx)
                wtap = (_ALL, _ALL, _ALL, *tap)
                dx[cell] += np.einsum("ngf,gfc->ngc", gpos, wg[wtap])
                dw[wtap] += np.einsum("ngf,ngc->gfc", gpos, xg[cell])
    db = g.sum(axis=(0, *range(2, g.ndim)))
    return dx.reshape(x.shape), dw.reshape(w.shape), db


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------


def _max_scan(x, kernel, stride, padding, dilation, ceil_mode):
    """``(best, arg)`` in float64 / int64 by PyTorch's CPU scan."""
    n, c, *size = x.shape
    out = pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    best = np.full((n, c, *out), -np.inf)
    arg = np.full((n, c, *out), -1, dtype=np.int64)
    for pos in _grid(out):
        b = np.full((n, c), -np.inf)
        a = np.full((n, c), -1, dtype=np.int64)
        for _, idx in _window(pos, kernel, stride, padding, dilation):
            if not _inside(idx, size):
                continue  # padding and ceil overhang are never chosen
            v = x[(_ALL, _ALL, *idx)].astype(np.float64)
            flat = _flat(idx, size)
            a[a == -1] = flat  # start from the first real cell
            take = (v > b) | np.isnan(v)  # the first maximum, the last NaN
            b = np.where(take, v, b)
            a = np.where(take, flat, a)
        best[(_ALL, _ALL, *pos)] = b
        arg[(_ALL, _ALL, *pos)] = a
    return best, arg


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):
    """Max pooling with indices, PyTorch's CPU rules.

    Padding and ceil-overhang cells are never chosen.  Ties go to the first maximum
    in window order (taps in C order); a window holding NaN gives NaN and points at
    its last NaN; a window whose real cells are all ``-inf`` gives ``-inf`` and points
    at its first real cell; a window with no real cell gives ``-inf`` and index -1.

    Parameters
    ----------
    x : ndarray, shape (N, C, *size)
    kernel, stride, dilation : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis.
    ceil_mode : {False, True, "cover_all"}
        See :func:`pool_output_size`.

    Returns
    -------
    out : ndarray, shape (N, C, *out), dtype of ``x``
    indices : ndarray of int64, shape (N, C, *out)
        C-order flat index into each ``(n, c)`` plane, or -1.
    """
    x = np.asarray(x)
    assert x.ndim == 2 + len(kernel)
    best, arg = _max_scan(x, kernel, stride, padding, dilation, ceil_mode)
    return best.astype(x.dtype), arg


def max_pool_backward(g, x, kernel, stride, padding, dilation, ceil_mode):
    """Gradient of ``sum(max_pool(x)[0] * g)`` with respect to ``x``.

    Parameters
    ----------
    g : ndarray, shape (N, C, *out)
    x, kernel, stride, padding, dilation, ceil_mode
        As for :func:`max_pool`.

    Returns
    -------
    ndarray, shape of ``x``, float64
        Each window's gradient added onto its chosen cell; nothing for index -1.
    """
    x = np.asarray(x)
    g = np.asarray(g, dtype=np.float64)
    _, arg = _max_scan(x, kernel, stride, padding, dilation, ceil_mode)
    assert g.shape == arg.shape, (g.shape, arg.shape)
    n, c, *size = x.shape
    dx = np.zeros((n, c, math.prod(size)))
    for pos in _grid(arg.shape[2:]):
        a = arg[(_ALL, _ALL, *pos)]
        nn, cc = np.nonzero(a >= 0)  # every (n, c) once: no duplicate targets
        dx[nn, cc, a[nn, cc]] += g[(nn, cc, *pos)]
    return dx.reshape(x.shape)


def _avg_divisor(pos, size, kernel, stride, padding, count_include_pad, divisor_override):
    """PyTorch's divisor of the average-pool window at ``pos`` (1 for an empty window)."""
    if divisor_override is not None:
        return divisor_override
    count = 1
    for i, (o, n, k, s) in enumerate(zip(pos, size, kernel, stride)):
        before, after = padding[2 * i], padding[2 * i + 1]
        start = o * s - before
        if count_include_pad:
            count *= max(min(start + k, n + after) - start, 0)
        else:
            count *= max(min(start + k, n) - max(start, 0), 0)
    return count if count else 1


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Average pooling, PyTorch's divisor rule (no dilation).

    Parameters
    ----------
    x : ndarray, shape (N, C, *size)
    kernel, stride : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis.
    ceil_mode : {False, True, "cover_all"}
        See :func:`pool_output_size`.
    count_include_pad : bool
        Per axis, with ``start = o*stride - before``, the window counts
        ``min(start + k, size + after) - start`` cells (padding counted, ceil overhang
        not) if True, ``min(start + k, size) - max(start, 0)`` if False.  The divisor
        is the product over the axes; a window that counts nothing has divisor 1.
    divisor_override : int or None
        Replaces the divisor.

    Returns
    -------
    ndarray, shape (N, C, *out), float64
    """
    x = np.asarray(x, dtype=np.float64)
    n, c, *size = x.shape
    assert len(size) == len(kernel)
    ones = (1,) * len(size)
    out = pool_output_size(size, kernel, stride, padding, ones, ceil_mode)
    y = np.zeros((n, c, *out))
    for pos in _grid(out):
        total = np.zeros((n, c))
        for _, idx in _window(pos, kernel, stride, padding, ones):
            if _inside(idx, size):
                total += x[(_ALL, _ALL, *idx)]
        div = _avg_divisor(pos, size, kernel, stride, padding, count_include_pad, divisor_override)
        y[(_ALL, _ALL, *pos)] = total / div
    return y


def avg_pool_backward(
    g, input_size, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    """Gradient of ``sum(avg_pool(x) * g)`` with respect to ``x``.

    Parameters
    ----------
    g : ndarray, shape (N, C, *out)
    input_size : tuple of int
        The spatial size of ``x``.
    kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
        As for :func:`avg_pool`.

    Returns
    -------
    ndarray, shape (N, C, *input_size), float64
    """
    g = np.asarray(g, dtype=np.float64)
    n, c, *out = g.shape
    ones = (1,) * len(input_size)
    want = pool_output_size(input_size, kernel, stride, padding, ones, ceil_mode)
    assert tuple(out) == want, (g.shape, want)
    dx = np.zeros((n, c, *input_size))
    for pos in _grid(out):
        div = _avg_divisor(
            pos, input_size, kernel, stride, padding, count_include_pad, divisor_override
        )
        for _, idx in _window(pos, kernel, stride, padding, ones):
            if _inside(idx, input_size):
                dx[(_ALL, _ALL, *idx)] += g[(_ALL, _ALL, *pos)] / div
    return dx


# --------------------------------------------------------------------------
# Transposed convolution: a scatter per input position and kernel tap
# --------------------------------------------------------------------------


def _scatter(size, kernel, stride, padding, dilation, out):
    """Yield ``(i, tap, target)``: input position, tap, and the output cell it lands on.

    ``target = i*stride - before + tap*dilation`` per axis; targets outside the
    output are dropped.
    """
    for i in _grid(size):
        for tap, target in _window(i, kernel, stride, padding, dilation):
            if _inside(target, out):
                yield i, tap, target


def conv_transpose(x, w, b, stride, padding, output_padding, dilation, groups):
    """Transposed convolution, PyTorch ``conv_transposeNd`` with (before, after) padding.

    ``out[n, g*cog + co, i*s - before + t*d] += x[n, ci, i] * w[ci, co, t]`` per axis,
    for ``ci`` in group ``g``; targets outside the output are dropped; plus bias.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, *size)
    w : ndarray, shape (C_in, C_out // groups, *kernel)
    b : ndarray, shape (C_out,), or None
    stride, output_padding, dilation : tuple of int
    padding : tuple of int
        ``(before, after)`` per axis, cropped from the full output.
    groups : int

    Returns
    -------
    ndarray, shape (N, C_out, *out), float64
        ``out`` from :func:`conv_transpose_output_size`.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c_in, *size = x.shape
    c_in_w, cog, *kernel = w.shape
    assert c_in == c_in_w and c_in % groups == 0, (x.shape, w.shape, groups)
    cig = c_in // groups
    out = conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation)
    xg = x.reshape(n, groups, cig, *size)
    wg = w.reshape(groups, cig, cog, *kernel)
    y = np.zeros((n, groups, cog, *out))
    for i, tap, target in _scatter(size, kernel, stride, padding, dilation, out):
        y[(_ALL, _ALL, _ALL, *target)] += np.einsum(
            "ngc,gco->ngo", xg[(_ALL, _ALL, _ALL, *i)], wg[(_ALL, _ALL, _ALL, *tap)]
        )
    y = y.reshape(n, groups * cog, *out)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape(groups * cog, *(1,) * len(out))
    return y


def conv_transpose_backward(g, x, w, stride, padding, output_padding, dilation, groups):
    """Gradients of ``sum(conv_transpose(x, w, b) * g)``, by the scatter loop read backwards.

    Parameters
    ----------
    g : ndarray, shape (N, C_out, *out)
    x, w, stride, padding, output_padding, dilation, groups
        As for :func:`conv_transpose`.

    Returns
    -------
    dx : ndarray, shape of ``x``, float64
    dw : ndarray, shape of ``w``, float64
    db : ndarray, shape (C_out,), float64
    """
    g = np.asarray(g, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c_in, *size = x.shape
    _, cog, *kernel = w.shape
    cig = c_in // groups
    out = conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation)
    assert g.shape == (n, groups * cog, *out), (g.shape, out)
    xg = x.reshape(n, groups, cig, *size)
    wg = w.reshape(groups, cig, cog, *kernel)
    gg = g.reshape(n, groups, cog, *out)
    dx = np.zeros_like(xg)
    dw = np.zeros_like(wg)
    for i, tap, target in _scatter(size, kernel, stride, padding, dilation, out):
        cell, wtap = (_ALL, _ALL, _ALL, *i), (_ALL, _ALL, _ALL, *tap)
        gt = gg[(_ALL, _ALL, _ALL, *target)]  # (n, groups, cog)
        dx[cell] += np.einsum("ngo,gco->ngc", gt, wg[wtap])
        dw[wtap] += np.einsum("ngc,ngo->gco", xg[cell], gt)
    db = g.sum(axis=(0, *range(2, g.ndim)))
    return dx.reshape(x.shape), dw.reshape(w.shape), db


# --------------------------------------------------------------------------
# The seed document's loop
# --------------------------------------------------------------------------


def seed_conv2d_loops(x, weight, bias=None, *, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Direct convolution with one Python-level loop iteration per output value.

    The seed document's ``conv_forward_naive``: for every image, filter and output
    pixel, one dot product between the filter and the receptive field of a
    zero-padded copy.  Slow on purpose; the CLI demo times it as the "previous source
    code".

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    weight : ndarray, shape (F, C, HH, WW)
    bias : ndarray, shape (F,), optional
    stride, pad : int
        Symmetric stride and zero padding.

    Returns
    -------
    ndarray, shape (N, F, H', W'), dtype ``result_type(x, weight)``
        ``H' = (H + 2*pad - HH) // stride + 1``.
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
