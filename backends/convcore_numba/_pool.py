"""Pooling kernels of the ``numba`` backend: max (with the winner's index) and average, 1-3-D.

The core builds pooling from im2col and col2im on backends that have no
pooling kernels (:mod:`convcore.pooling`); that materialises every window's
taps, and max pooling's backward a one-hot column matrix.  These kernels scan
the windows in place instead:

* ``max_pool``: one pass over each window's taps keeps the running maximum and
  the flat plane index of the tap it came from (PyTorch's CPU rule: a tap wins
  when it is greater than the best so far or NaN, so the first maximum or the
  last NaN; taps in the padding never win; a window with no tap inside the
  image gets ``-inf`` and the index -1).
* ``max_pool_backward``: each window's gradient added at its winner (the
  forward's indices, or the same scan run again), windows in C order, so
  overlapping windows add in a fixed order.
* ``avg_pool`` / ``avg_pool_backward``: sums over the taps inside the image
  (the padding holds zeros) divided by the divisor the core computed per
  window (``count_include_pad``, ``divisor_override`` and ``ceil_mode`` rules
  live in :func:`convcore.pooling._divisors`, once for every backend).

Work items are ranges of ``(n, c)`` planes: a plane is read and written by one
item only and every plane's sums run in the same order, so results are bitwise
identical for any number of threads.  The kernels are serial (``nogil``,
cached on disk) like those of :mod:`._kernels`, and 1-D / 2-D calls run as 3-D
with leading axes of size 1.
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from ._ops import _geo
from ._threads import num_threads, run_items

if TYPE_CHECKING:
    from convcore.geometry import ConvGeometry

__all__ = ["avg_pool", "avg_pool_backward", "max_pool", "max_pool_backward"]

_SERIAL = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False}

#: Below this many tap reads a call runs on the calling thread only (handing
#: items to the pool costs tens of microseconds).
_PARALLEL_MIN_TAPS = 1_000_000
#: Input elements per work item: planes are grouped into items of about this size.
_ITEM_ELEMENTS = 1 << 16


# --------------------------------------------------------------------------- kernels
#
# Planes are flat: ``x[p, (iz * H + iy) * W + ix]``.  For each output row
# ``(od, oh)`` the kernels list the input rows its windows read (``rows``: the
# flat offsets of the valid ``(iz, iy)`` pairs, in kernel order), so a window is
# two loops, over those rows and over its taps along W.  Windows whose W taps
# all lie inside the image (the interior, found once per call) take every tap
# without a test; only border windows compute their range of taps (an integer
# division).  Measured on (2048, 32, 32) planes, 2x2 windows, one thread: a
# test per tap made the scan 1.8x slower, a range per window 3-4x.


@nb.njit(inline="always")
def _taps(start, k, dil, size):
    """Taps ``t`` in ``[lo, hi)`` with ``0 <= start + t * dil < size``."""
    lo = 0
    if start < 0:
        lo = (-start + dil - 1) // dil
    hi = k
    if start + (k - 1) * dil >= size:
        hi = (size - 1 - start) // dil + 1
    if hi < lo:
        hi = lo
    return lo, hi


@nb.njit(inline="always")
def _interior(pad, stride, k, dil, size, count):
    """Outputs ``o`` in ``[lo, hi)`` whose taps ``o * stride - pad + t * dil`` are all inside."""
    lo = (pad + stride - 1) // stride
    last = size - 1 - (k - 1) * dil + pad  # o * stride <= last
    hi = last // stride + 1 if last >= 0 else 0
    hi = min(hi, count)
    if hi < lo:
        hi = lo
    return lo, hi


@nb.njit(inline="always")
def _rows(od, oh, geo, D, H, W, rows):
    """Fill ``rows`` with the flat offsets of output row ``(od, oh)``'s input rows; their count."""
    kd, kh, sd, sh, pd, ph, dd, dh = geo[0], geo[1], geo[3], geo[4], geo[6], geo[7], geo[9], geo[10]
    z0, y0 = od * sd - pd, oh * sh - ph
    a0, a1 = _taps(z0, kd, dd, D)
    i0, i1 = _taps(y0, kh, dh, H)
    n = 0
    for a in range(a0, a1):
        for i in range(i0, i1):
            rows[n] = ((z0 + a * dd) * H + y0 + i * dh) * W
            n += 1
    return n


@nb.njit(inline="always")
def _window_taps(ow, geo, W, lo_w, hi_w):
    """``(x0, j0, j1)``: the first column and the range of W taps of window column ``ow``."""
    kw, sw, pw, dw = geo[2], geo[5], geo[8], geo[11]
    x0 = ow * sw - pw
    if lo_w <= ow < hi_w:
        return x0, 0, kw
    j0, j1 = _taps(x0, kw, dw, W)
    return x0, j0, j1


@nb.njit(inline="always")
def _argmax(x, p, rows, n, x0, j0, j1, dw):
    """Flat index of the window's winner (first maximum or last NaN; -1 for no tap)."""
    if n == 0 or j1 <= j0:
        return -1
    win = rows[0] + x0 + j0 * dw
    best = x[p, win]
    for r in range(n):
        base = rows[r] + x0
        for j in range(j0, j1):
            k = base + j * dw
            v = x[p, k]
            take = (v > best) | (v != v)  # no branch: random data mispredicts
            best = v if take else best
            win = k if take else win
    return win


@nb.njit(**_SERIAL)
def _max_block(x, p0, p1, geo, dims, out, index, want_index):
    """Window maxima of flat planes ``[p0, p1)`` of ``x`` ``(P, D*H*W)`` into ``out`` ``(P, L)``."""
    kd, kh, kw, sw, pw, dw = geo[0], geo[1], geo[2], geo[5], geo[8], geo[11]
    do, ho, wo = geo[12], geo[13], geo[14]
    D, H, W = dims
    rows = np.empty(kd * kh, np.int64)
    lo_w, hi_w = _interior(pw, sw, kw, dw, W, wo)
    for p in range(p0, p1):
        w = 0
        for od in range(do):
            for oh in range(ho):
                n = _rows(od, oh, geo, D, H, W, rows)
                for ow in range(wo):
                    x0, j0, j1 = _window_taps(ow, geo, W, lo_w, hi_w)
                    win = _argmax(x, p, rows, n, x0, j0, j1, dw)
                    if win < 0:
                        out[p, w] = -np.inf
                    else:
                        out[p, w] = x[p, win]
                    if want_index:
                        index[p, w] = win
                    w += 1


@nb.njit(**_SERIAL)
def _max2x2_block(x, p0, p1, H, W, ho, wo, out, index):
    """:func:`_max_block` for 2x2 windows, stride 2, no padding, in 2-D (the usual pooling).

    The four taps in fixed order (PyTorch's: row-major), no ranges: 1.7-2.4x
    faster than the general kernel (one thread, 4x4 to 32x32 planes, float32).
    """
    for p in range(p0, p1):
        w = 0
        for oh in range(ho):
            top = 2 * oh * W
            for ow in range(wo):
                k0 = top + 2 * ow
                best = x[p, k0]
                win = k0
                for k in (k0 + 1, k0 + W, k0 + W + 1):
                    v = x[p, k]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    win = k if take else win
                out[p, w] = best
                index[p, w] = win
                w += 1


@nb.njit(**_SERIAL)
def _scatter_block(grad, index, p0, p1, dx):
    """``dx`` ``(P, D*H*W)`` of planes ``[p0, p1)``: ``grad`` added at ``index`` (-1: none)."""
    for p in range(p0, p1):
        dx[p, :] = 0
        for w in range(index.shape[1]):
            k = index[p, w]
            if k >= 0:
                dx[p, k] += grad[p, w]


@nb.njit(**_SERIAL)
def _avg_block(x, p0, p1, geo, dims, divisor, out):
    """Window sums of planes ``[p0, p1)`` over the taps inside the image, over ``divisor``.

    ``out`` starts as zeros (its elements are the sums' zero of the right dtype).
    """
    kd, kh, kw, sw, pw, dw = geo[0], geo[1], geo[2], geo[5], geo[8], geo[11]
    do, ho, wo = geo[12], geo[13], geo[14]
    D, H, W = dims
    rows = np.empty(kd * kh, np.int64)
    lo_w, hi_w = _interior(pw, sw, kw, dw, W, wo)
    for p in range(p0, p1):
        w = 0
        for od in range(do):
            for oh in range(ho):
                n = _rows(od, oh, geo, D, H, W, rows)
                for ow in range(wo):
                    x0, j0, j1 = _window_taps(ow, geo, W, lo_w, hi_w)
                    total = out[p, w]
                    for r in range(n):
                        base = rows[r] + x0
                        for j in range(j0, j1):
                            total += x[p, base + j * dw]
                    out[p, w] = total / divisor[w]
                    w += 1


@nb.njit(**_SERIAL)
def _avg_backward_block(grad, p0, p1, geo, dims, divisor, dx):
    """``dx`` ``(P, D*H*W)`` of planes ``[p0, p1)``: each window's share on its taps."""
    kd, kh, kw, sw, pw, dw = geo[0], geo[1], geo[2], geo[5], geo[8], geo[11]
    do, ho, wo = geo[12], geo[13], geo[14]
    D, H, W = dims
    rows = np.empty(kd * kh, np.int64)
    lo_w, hi_w = _interior(pw, sw, kw, dw, W, wo)
    for p in range(p0, p1):
        dx[p, :] = 0
        w = 0
        for od in range(do):
            for oh in range(ho):
                n = _rows(od, oh, geo, D, H, W, rows)
                for ow in range(wo):
                    x0, j0, j1 = _window_taps(ow, geo, W, lo_w, hi_w)
                    share = grad[p, w] / divisor[w]
                    for r in range(n):
                        base = rows[r] + x0
                        for j in range(j0, j1):
                            dx[p, base + j * dw] += share
                    w += 1


KERNELS = (
    _max_block,
    _max2x2_block,
    _scatter_block,
    _avg_block,
    _avg_backward_block,
)


# --------------------------------------------------------------------------- drivers


def _planes(a):
    """A C-contiguous ``(N*C, prod(S))`` view or copy of ``a`` (``(N, C, *S)``)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0] * a.shape[1], prod(a.shape[2:]))


def _dims(geom: ConvGeometry) -> tuple[int, int, int]:
    """``(D, H, W)`` of the input, leading axes of size 1 added."""
    return (1,) * (3 - geom.nd) + tuple(geom.input_size)


def _run(kernel_item, planes: int, plane_elements: int, taps: float) -> None:
    """``kernel_item(p0, p1)`` over ``range(planes)`` in items of about :data:`_ITEM_ELEMENTS`."""
    if planes == 0:
        return
    per = max(1, _ITEM_ELEMENTS // max(1, plane_elements))
    starts = list(range(0, planes, per))
    if taps < _PARALLEL_MIN_TAPS or len(starts) == 1:
        kernel_item(0, planes)
        return

    def item(worker, idx):
        p0 = starts[idx]
        kernel_item(p0, min(planes, p0 + per))

    run_items(item, len(starts), num_threads())


def _is_2x2(geom: ConvGeometry) -> bool:
    """2-D, 2x2 windows 2 apart, no padding (nor ceil overhang), no dilation."""
    return (
        geom.nd == 2
        and tuple(geom.kernel_size) == (2, 2)
        and tuple(geom.stride) == (2, 2)
        and tuple(geom.dilation) == (1, 1)
        and not any(geom.padding)
    )


def _divisor_array(divisor, count: int, dtype) -> np.ndarray:
    """The per-window divisor as a ``(L,)`` array of ``dtype`` (a scalar is broadcast)."""
    div = np.asarray(divisor, dtype=dtype)
    if div.ndim == 0:
        return np.full(count, div, dtype=dtype)
    return np.ascontiguousarray(div.reshape(count))


def max_pool(xp, x, geom: ConvGeometry, return_indices: bool):
    """``(out, index)`` of max pooling ``x`` ``(N, C, *S)``; ``index`` is None unless asked.

    ``index`` (int64) holds the flat index into each ``(n, c)`` input plane of
    the tap each window's maximum came from, -1 for a window with no tap
    inside the image.
    """
    geo = _geo(geom)
    n, c = x.shape[:2]
    x4 = _planes(x)
    dims = _dims(geom)
    planes, L = n * c, geom.output_numel
    out = np.empty((planes, L), x4.dtype)
    index = np.empty((planes, L) if return_indices else (1, 1), np.int64)
    want = bool(return_indices)

    if _is_2x2(geom):
        index = index if return_indices else np.empty((planes, L), np.int64)
        H, W = geom.input_size
        ho, wo = geom.output_size

        def run(p0, p1):
            _max2x2_block(x4, p0, p1, H, W, ho, wo, out, index)

    else:

        def run(p0, p1):
            _max_block(x4, p0, p1, geo, dims, out, index, want)

    _run(run, planes, prod(geom.input_size), float(planes) * L * geom.kernel_numel)
    shape = (n, c, *geom.output_size)
    return out.reshape(shape), (index.reshape(shape) if return_indices else None)


def max_pool_backward(xp, grad_out, x, geom: ConvGeometry, indices=None):
    """Gradient of :func:`max_pool` with respect to ``x``: each window's on its winner.

    The winners come from ``indices`` (flat indices into the planes of ``x``,
    checked by the core to lie in ``[-1, plane)``) or, without them, from
    :func:`max_pool`'s scan of ``x``; then one pass over the output adds every
    window's gradient at its winner, windows in C order.
    """
    n, c = x.shape[:2]
    planes, L = n * c, geom.output_numel
    plane = prod(geom.input_size)
    if indices is None:
        _, indices = max_pool(xp, x, geom, True)
    index = np.ascontiguousarray(indices, dtype=np.int64).reshape(planes, L)
    grad = np.ascontiguousarray(grad_out, dtype=x.dtype).reshape(planes, L)
    dx = np.empty((planes, plane), x.dtype)

    def run(p0, p1):
        _scatter_block(grad, index, p0, p1, dx)

    _run(run, planes, plane, float(planes) * (L + plane))
    return dx.reshape((n, c, *geom.input_size))


def avg_pool(xp, x, geom: ConvGeometry, divisor):
    """Average pooling of ``x``: window sums over the taps inside the image, over ``divisor``.

    ``divisor`` is a scalar or one value per window (``(L,)``, C order over the
    output), in the compute dtype.
    """
    geo = _geo(geom)
    n, c = x.shape[:2]
    x4 = _planes(x)
    dims = _dims(geom)
    planes, L = n * c, geom.output_numel
    div = _divisor_array(divisor, L, x4.dtype)
    out = np.zeros((planes, L), x4.dtype)

    def run(p0, p1):
        _avg_block(x4, p0, p1, geo, dims, div, out)

    _run(run, planes, prod(geom.input_size), float(planes) * L * geom.kernel_numel)
    return out.reshape((n, c, *geom.output_size))


def avg_pool_backward(xp, grad_out, geom: ConvGeometry, divisor):
    """Gradient of :func:`avg_pool`: each window's gradient over ``divisor`` on its taps."""
    geo = _geo(geom)
    n, c = grad_out.shape[:2]
    planes, L = n * c, geom.output_numel
    grad = np.ascontiguousarray(grad_out).reshape(planes, L)
    div = _divisor_array(divisor, L, grad.dtype)
    dx = np.empty((planes, prod(geom.input_size)), grad.dtype)
    dims = _dims(geom)

    def run(p0, p1):
        _avg_backward_block(grad, p0, p1, geo, dims, div, dx)

    _run(run, planes, prod(geom.input_size), float(planes) * L * geom.kernel_numel)
    return dx.reshape((n, c, *geom.input_size))
