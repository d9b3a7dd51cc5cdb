"""Winograd convolution: the float32 forward of 3x3 stride-1 convolutions in fewer multiplies.

F(m x m, 3x3) computes each output tile of ``m x m`` pixels from an input
tile ``d`` of ``(m + 2) x (m + 2)`` pixels as ``Y = A^T [(G g G^T) * (B^T d B)] A``
(Lavin and Gray, 2016): ``(m + 2)^2`` multiplies per tile, channel and filter
instead of ``9 m^2``.  F(2x2, 3x3) (:data:`TILE` = 2, the default) needs 2.25x
fewer multiply-adds than im2col + GEMM and keeps the error of the direct sum;
F(4x4, 3x3) (``CONVCORE_NUMBA_WINOGRAD=4``, opt-in) needs 4x fewer, with about
20x the error (see below).  The transforms are additions (and, for F(4x4), multiplies
by small constants).

* The **filter transform** ``U = G g G^T`` runs once per call, in float64,
  rounded to float32: ``((m + 2)^2, F, C)``.
* **Work items** are ``(image range, band of tile rows)``, cut like the
  im2col path's (:func:`._ops._split_batch`) from the shapes alone, so that an
  item's ``V`` and ``M`` blocks are about :data:`._ops.BLOCK_BYTES` (but hold at
  least :data:`MIN_ITEM_OUTPUTS` output pixels, and a call at least
  :data:`MIN_ITEMS` items).  An item
  transforms its input tiles (``V = B^T d B``: tiles ``m`` apart, the zero
  padding and the partial last tiles made in the kernel) into ``(T, C, P)``
  for its ``P`` tiles (``T = (m + 2)^2``), multiplies ``M[a] = U[a] @ V[a]``
  (``T`` single-threaded GEMMs, ``F x C`` by ``C x P``, one batched
  ``np.matmul``) and writes ``Y = A^T m A`` (+ bias) into the output, clipping
  the edge tiles.
* **Determinism.**  The cut depends only on the shapes, every GEMM is
  single-threaded, the transforms are serial Numba kernels whose loops do not
  depend on the thread or on the item's neighbours: bitwise identical results
  for any number of threads.
* **Non-finite values.**  The transforms mix the pixels of a tile, so an
  ``inf`` or ``NaN`` spreads differently than in a direct sum (``inf - inf``).
  The output kernel marks the non-finite values it computes; if there are any,
  the call is recomputed by im2col + GEMM, which gives that path's exact
  result (and also covers a transform that overflows where the direct sum
  does not).
* **Error** against a float64 reference (random normal data, ``max|y - ref|``
  relative to ``max|ref|``; see ``docs/numba.md``): F(2x2, 3x3) 1.7e-7 to
  5.8e-7, about the float32 direct sum's (torch 2.6e-7 to 3.8e-7, the im2col
  path 4.4e-7 to 6.6e-7); F(4x4, 3x3) 2.9e-6 to 1.2e-5 (6.3e-6 on layer B).
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np

from . import _ops
from ._threads import blas_single_threaded, run_items

__all__ = ["TILE", "WINOGRAD", "conv_winograd", "eligible", "enabled", "setting"]

#: Module switch of the Winograd path (``CONVCORE_NUMBA_WINOGRAD=0`` also turns it off).
WINOGRAD = True
#: Output tile: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3) (``CONVCORE_NUMBA_WINOGRAD=4``).
#: Measured (``benchmarks/bench_winograd.py``, 2 threads, time against torch):
#: F(4x4) faster than F(2x2) only on 16 x 128 x 28x28 (0.65 against 0.73), as fast
#: on 32x32 (0.77, 0.76), slower on layer B (0.73, 0.71) and 1.6-1.7x slower with
#: 256-512 channels (14x14, 7x7); with 17-23x the error it is not the default.
TILE = 2
#: Smallest channel and filter counts that take the Winograd path.  Measured
#: (2 threads, time against the im2col path, N=8 56x56): 8 channels -> 32
#: filters 0.81, 16 -> 16 0.64, 16 -> 64 0.66, 32 -> 8 filters 0.53 (16 -> 128 at
#: 28x28 0.88).  (Groups of at most 4 filters take the direct kernel anyway.)
MIN_CHANNELS = 8
MIN_FILTERS = 8
#: Smallest output height and width.  Measured (N=32, 64-128 channels, 128 tiles
#: or more): 3x3 0.58, 4x4 0.53-0.67, 5x5 0.75-0.79, 6x6 0.53.
MIN_SIZE = 3
#: Smallest number of 2x2 output tiles (all images): the filter transform and each
#: item's pass over the transformed filters are paid back per tile.  Measured: 16
#: to 49 tiles 1.01-3.8 (64 and 128 channels at 8x8 and 14x14, one or two
#: images), 64 to 98 tiles 0.74-0.89.
MIN_TILES = 64
#: Above this many weights per tap (``C * F``) the transformed filters (64 bytes a
#: weight) no longer stay in the caches between items: such layers need
#: :data:`LARGE_MIN_TILES` tiles.  Measured with 512 x 512: 64 tiles 0.77 (16x16)
#: and 1.01 (7x7), 128 tiles and more 0.50-0.86; with 256 x 256, 64 to 144 tiles
#: 0.70-1.05.
LARGE_WEIGHTS = 256 * 256
LARGE_MIN_TILES = 128
#: Items hold the tiles of at least this many output pixels (their ``V`` and ``M``
#: blocks may then exceed :data:`._ops.BLOCK_BYTES`: the GEMMs need columns), twice
#: as many from :data:`LARGE_WEIGHTS` weights per tap on.  Measured (2 threads,
#: F(2x2), time against the im2col path, items of ``BLOCK_BYTES`` -> 64 tiles ->
#: 128 tiles): 512 channels 7x7 1.08 -> 0.80 -> 0.81, 14x14 1.21 -> 0.65 ->
#: 0.53, 28x28 1.06 -> 0.61 -> 0.50; 256 channels 7x7 0.97 -> 0.92 -> 0.88, 14x14
#: 0.74 -> 0.58 -> 0.57, 28x28 0.73 -> 0.72 -> 0.64; 128 channels 14x14 0.54 ->
#: 0.55 -> 0.61; 64 channels (8x8, 56x56) within 0.50-0.60 either way.
MIN_ITEM_OUTPUTS = 256
#: Calls with enough tiles are cut into at least this many items (both threads busy).
MIN_ITEMS = 2

_SERIAL = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False}


def setting() -> int:
    """The output tile the Winograd path uses, or 0 when it is off.

    0 when :data:`WINOGRAD` is False or ``CONVCORE_NUMBA_WINOGRAD=0``; 2 or 4
    when ``CONVCORE_NUMBA_WINOGRAD`` says so; else :data:`TILE`.  Read on every
    call.
    """
    if not WINOGRAD:
        return 0
    raw = os.environ.get("CONVCORE_NUMBA_WINOGRAD", "").strip()
    if raw in ("0", "2", "4"):
        return int(raw)
    return TILE


def enabled() -> bool:
    """Whether the Winograd path is on (:func:`setting` is not 0)."""
    return setting() != 0


def eligible(geom, dtype, groups: int, x_shape, w_shape) -> bool:
    """Whether a forward convolution takes the Winograd path (when :func:`enabled`).

    float32, 2-D, a 3x3 kernel, stride 1, dilation 1, no groups, at most one
    pixel of padding per side, at least :data:`MIN_CHANNELS` channels and
    :data:`MIN_FILTERS` filters, an output of at least :data:`MIN_SIZE` per side
    and at least :data:`MIN_TILES` 2x2 output tiles (:data:`LARGE_MIN_TILES`
    above :data:`LARGE_WEIGHTS` weights per tap).
    """
    if not (
        np.dtype(dtype) == np.float32
        and geom.nd == 2
        and len(x_shape) == 4
        and len(w_shape) == 4
        and tuple(geom.kernel_size) == (3, 3)
        and tuple(geom.stride) == (1, 1)
        and tuple(geom.dilation) == (1, 1)
        and groups == 1
        and max(geom.padding) <= 1
        and x_shape[1] >= MIN_CHANNELS
        and w_shape[0] >= MIN_FILTERS
        and min(geom.output_size) >= MIN_SIZE
    ):
        return False
    ho, wo = geom.output_size
    tiles = x_shape[0] * -(-ho // 2) * -(-wo // 2)
    large = x_shape[1] * w_shape[0] > LARGE_WEIGHTS
    return tiles >= (LARGE_MIN_TILES if large else MIN_TILES)


def filter_transform(weight, tile: int = 2) -> np.ndarray:
    """``U = G g G^T`` of ``weight`` (F, C, 3, 3), computed in float64: float32 ``(T, F, C)``.

    ``T`` is 16 for F(2x2, 3x3) (``tile=2``), 36 for F(4x4, 3x3).  The matrices
    lie :func:`_slab` elements apart (a view of a larger buffer).
    """
    g = np.ascontiguousarray(weight)
    f, c = g.shape[:2]
    slab = _slab(f * c)
    count = (tile + 2) ** 2
    us = np.empty(count * slab, np.float32)
    kernel = _KERNELS[tile][0]
    # Items of filters (each element is computed alone: any cut gives the same bits).
    ranges = _ops._pieces(f, max(1, (1 << 16) // c))
    run_items(
        lambda worker, idx: kernel(g, us, slab, *ranges[idx]),
        len(ranges),
        _ops._workers(count * 8.0 * f * c, len(ranges), 0),
    )
    return us.reshape(count, slab)[:, : f * c].reshape(count, f, c)


# ------------------------------------------------------------------------ kernels


@nb.njit(inline="always")
def _u(i):
    """``i`` as an unsigned index: no wraparound check, so LLVM vectorises the loops.

    Every index expression must stay unsigned (``_u(2) * q``, not ``2 * q``):
    Numba makes a signed and an unsigned integer a signed one.
    """
    return nb.uintp(i)


@nb.njit(inline="always")
def _g4(k, g0, g1, g2):
    """Row ``k`` of ``G g`` of F(2x2, 3x3) for a column ``g0 .. g2`` (``k`` a constant)."""
    if k == 0:
        return g0
    if k == 1:
        return 0.5 * ((g0 + g1) + g2)
    if k == 2:
        return 0.5 * ((g0 - g1) + g2)
    return g2


@nb.njit(inline="always")
def _filter_row(k, gs, src, us, dst, fc, count):
    """``U[4k .. 4k + 3]`` of ``count`` consecutive filters ``g`` (9 apart from ``gs[src]``)."""
    for c in range(_u(count)):
        s = src + _u(9) * c
        t0 = _g4(k, np.float64(gs[s]), np.float64(gs[s + _u(3)]), np.float64(gs[s + _u(6)]))
        t1 = _g4(k, np.float64(gs[s + _u(1)]), np.float64(gs[s + _u(4)]), np.float64(gs[s + _u(7)]))
        t2 = _g4(k, np.float64(gs[s + _u(2)]), np.float64(gs[s + _u(5)]), np.float64(gs[s + _u(8)]))
        us[dst + c] = t0
        us[dst + fc + c] = 0.5 * ((t0 + t1) + t2)
        us[dst + _u(2) * fc + c] = 0.5 * ((t0 - t1) + t2)
        us[dst + _u(3) * fc + c] = t2


@nb.njit(**_SERIAL)
def _filter_tiles(g, us, slab, f0, f1):
    """``U[:, f, c] = G g[f, c] G^T`` (4x4, flattened) of filters ``f0 .. f1``, in float64.

    ``g`` (F, C, 3, 3); ``U[a]`` is the ``(F, C)`` matrix at ``us[a * slab:]``.
    """
    c_all = g.shape[1]
    gs = g.reshape(-1)
    fc = _u(slab)
    for f in range(f0, f1):
        src = _u(f * c_all * 9)
        dst = _u(f * c_all)
        _filter_row(0, gs, src, us, dst, fc, c_all)
        _filter_row(1, gs, src, us, dst + _u(4) * fc, fc, c_all)
        _filter_row(2, gs, src, us, dst + _u(8) * fc, fc, c_all)
        _filter_row(3, gs, src, us, dst + _u(12) * fc, fc, c_all)


@nb.njit(inline="always")
def _bt4(k, r0, r1, r2, r3):
    """Row ``k`` of ``B^T d`` of F(2x2, 3x3) for a column ``r0 .. r3`` (``k`` a constant)."""
    if k == 0:
        return r0 - r2
    if k == 1:
        return r1 + r2
    if k == 2:
        return r2 - r1
    return r1 - r3


@nb.njit(inline="always")
def _input_rows(k, pl, el, tw, vs, base, step, count):
    """``V[4k .. 4k + 3]`` of ``count`` tiles in a row: ``vs[base + a * step + z]``.

    ``pl`` holds the 4 planes (row parity, column parity) of the padded rows,
    ``el`` their values at column ``2 tw`` (see :func:`input_tiles`).
    """
    one = _u(1)
    p0, p1, p2, p3 = _u(0), _u(1) * el, _u(2) * el, _u(3) * el
    tw = _u(tw)
    for z in range(_u(count)):
        c0 = _bt4(k, pl[p0 + z], pl[p2 + z], pl[p0 + z + tw], pl[p2 + z + tw])
        c1 = _bt4(k, pl[p1 + z], pl[p3 + z], pl[p1 + z + tw], pl[p3 + z + tw])
        c2 = _bt4(
            k, pl[p0 + z + one], pl[p2 + z + one], pl[p0 + z + tw + one], pl[p2 + z + tw + one]
        )
        c3 = _bt4(
            k, pl[p1 + z + one], pl[p3 + z + one], pl[p1 + z + tw + one], pl[p3 + z + tw + one]
        )
        vs[base + z] = c0 - c2
        vs[base + step + z] = c1 + c2
        vs[base + _u(2) * step + z] = c2 - c1
        vs[base + _u(3) * step + z] = c1 - c3


@nb.njit(**_SERIAL)
def input_tiles(x, i0, i1, t0, t1, tiles_w, pt, pl, vs, slab):
    """``V = B^T d B`` of the 4x4 tiles of images ``i0 .. i1``, tile rows ``t0 .. t1``.

    ``x`` (N, C, H, W); ``V[a]`` is the ``(C, P)`` matrix at ``vs[a * slab:]``,
    tile ``p = ((i - i0) * (t1 - t0) + (t - t0)) * tiles_w + tw``; tile ``(t,
    tw)`` starts at pixel ``(2t - pt, 2tw - pl)``, pixels outside the image are
    zeros.

    Per image and channel, the band's padded rows are split into 4 planes by
    row and column parity, ``tiles_w`` columns a row (the last column, ``2
    tiles_w``, apart): a tile row ``t`` of the planes is then ``t * tiles_w`` on,
    so one loop per row of ``B^T d B`` covers the whole band (long loops
    vectorise; loops over one tile row are too short).  The band's last tile
    column reads the next row there: it is recomputed from the last columns.
    """
    c_all, h, w = x.shape[1], x.shape[2], x.shape[3]
    xs = x.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    tw = _u(tiles_w)
    half = tw + _u(1)
    wp = _u(2) * half
    row = np.zeros(wp, x.dtype)  # one padded row: [0, pl) and [pl + w, wp) stay zero
    el = _u((band + 1) * tiles_w + 1)  # one plane (and a column of slack)
    planes = np.zeros(4 * el, x.dtype)
    last = np.zeros((4, band + 1), x.dtype)  # column 2 * tiles_w of each plane row
    step = _u(slab)
    count = band * tiles_w
    one = _u(1)
    for i in range(i0, i1):
        for c in range(c_all):
            plane = _u((i * c_all + c) * h * w)
            for pr in range(2 * band + 2):  # the padded rows of the band
                hh = 2 * t0 - pt + pr
                if 0 <= hh < h:
                    src = plane + _u(hh * w)
                    for q in range(_u(w)):
                        row[_u(pl) + q] = xs[src + q]
                else:
                    for q in range(_u(w)):
                        row[_u(pl) + q] = 0
                r = pr % 2
                even = _u(2 * r) * el + _u(pr // 2) * tw
                odd = even + el
                for j in range(half):  # j == tw lands on the next row, written later
                    planes[even + j] = row[_u(2) * j]
                    planes[odd + j] = row[_u(2) * j + one]
                last[2 * r, pr // 2] = row[_u(2) * tw]
                last[2 * r + 1, pr // 2] = row[_u(2) * tw + one]
            base = _u(c * p_all + (i - i0) * band * tiles_w)
            _input_rows(0, planes, el, tiles_w, vs, base, step, count)
            _input_rows(1, planes, el, tiles_w, vs, base + _u(4) * step, step, count)
            _input_rows(2, planes, el, tiles_w, vs, base + _u(8) * step, step, count)
            _input_rows(3, planes, el, tiles_w, vs, base + _u(12) * step, step, count)
            # The last tile of every tile row: its columns 2 tw and 2 tw + 1 are in `last`.
            for t in range(band):
                z = _u(t * tiles_w + tiles_w - 1)
                for k in range(4):
                    c1 = _bt4(
                        k,
                        planes[el + z],
                        planes[_u(3) * el + z],
                        planes[el + z + tw],
                        planes[_u(3) * el + z + tw],
                    )
                    c2 = _bt4(k, last[0, t], last[2, t], last[0, t + 1], last[2, t + 1])
                    c3 = _bt4(k, last[1, t], last[3, t], last[1, t + 1], last[3, t + 1])
                    c0 = _bt4(
                        k,
                        planes[z],
                        planes[_u(2) * el + z],
                        planes[z + tw],
                        planes[_u(2) * el + z + tw],
                    )
                    at = base + _u(4 * k) * step + z
                    vs[at] = c0 - c2
                    vs[at + step] = c1 + c2
                    vs[at + _u(2) * step] = c2 - c1
                    vs[at + _u(3) * step] = c1 - c3


@nb.njit(inline="always")
def _tile_out(ms, p, fp, b):
    """The 2x2 outputs ``A^T m A + b`` of the tile whose ``m[0, f, p]`` is ``ms[p]``.

    ``fp`` is the distance between ``M[a]`` and ``M[a + 1]``; all unsigned.
    """
    m0, m1, m2, m3 = ms[p], ms[p + fp], ms[p + _u(2) * fp], ms[p + _u(3) * fp]
    m4, m5, m6, m7 = ms[p + _u(4) * fp], ms[p + _u(5) * fp], ms[p + _u(6) * fp], ms[p + _u(7) * fp]
    m8, m9 = ms[p + _u(8) * fp], ms[p + _u(9) * fp]
    m10, m11 = ms[p + _u(10) * fp], ms[p + _u(11) * fp]
    m12, m13 = ms[p + _u(12) * fp], ms[p + _u(13) * fp]
    m14, m15 = ms[p + _u(14) * fp], ms[p + _u(15) * fp]
    s0 = m0 + m4 + m8
    s1 = m1 + m5 + m9
    s2 = m2 + m6 + m10
    s3 = m3 + m7 + m11
    d0 = m4 - m8 - m12
    d1 = m5 - m9 - m13
    d2 = m6 - m10 - m14
    d3 = m7 - m11 - m15
    return s0 + s1 + s2 + b, s1 - s2 - s3 + b, d0 + d1 + d2 + b, d1 - d2 - d3 + b


@nb.njit(**_SERIAL)
def output_tiles(ms, slab, i0, i1, t0, t1, tiles_w, bias, y, check):
    """``Y = A^T m A + bias`` of the tiles of :func:`input_tiles` into ``y`` (N, F, Ho, Wo).

    ``M[a]`` is the ``(F, P)`` matrix at ``ms[a * slab:]``; edge tiles are
    clipped to ``Ho x Wo``.  Per image and filter, one loop over the band's
    tiles writes their 4 outputs into 4 rows of a scratch array (long loops
    vectorise; one loop per tile row measured 4x slower), then the output rows
    are interleaved from them.  ``check`` (at least the band's tiles) gets
    ``y - y`` of every output added to it per tile: it ends NaN where an inf or
    a NaN was computed.  (An add per lane, not a reduction: the loop vectorises.)
    """
    f_all, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    ys = y.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    fp = _u(slab)
    count = _u(band * tiles_w)
    q = np.empty(4 * count, y.dtype)
    full = _u(wo // 2)
    one, two = _u(1), _u(2)
    q1, q2, q3 = count, _u(2) * count, _u(3) * count
    for i in range(i0, i1):
        for f in range(f_all):
            b = bias[f]
            p0 = _u(f * p_all + (i - i0) * band * tiles_w)
            for z in range(count):
                a, bb, c, d = _tile_out(ms, p0 + z, fp, b)
                q[z] = a
                q[q1 + z] = bb
                q[q2 + z] = c
                q[q3 + z] = d
                check[z] += (a - a) + (bb - bb) + (c - c) + (d - d)
            plane = _u((i * f_all + f) * ho * wo)
            for t in range(band):
                r = 2 * (t0 + t)
                src = _u(t * tiles_w)
                for k in range(2):
                    if r + k >= ho:
                        break
                    dst = plane + _u((r + k) * wo)
                    e = _u(2 * k) * count + src
                    for j in range(full):
                        ys[dst + two * j] = q[e + j]
                        ys[dst + two * j + one] = q[e + count + j]
                    if full < tiles_w:
                        ys[dst + two * full] = q[e + full]


# ------------------------------------------------------------------ F(4x4, 3x3)


@nb.njit(inline="always")
def _g6(g0, g1, g2):
    """``G g`` of F(4x4, 3x3) (6x3, interpolation points 0, 1, -1, 2, -2, inf), float64."""
    s = g0 + g2
    return (
        0.25 * g0,
        -(s + g1) / 6.0,
        -(s - g1) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    )


@nb.njit(**_SERIAL)
def _filter_tiles4(g, us, slab, f0, f1):
    """``U[:, f, c] = G g[f, c] G^T`` (6x6, flattened) of filters ``f0 .. f1``, in float64."""
    c_all = g.shape[1]
    gs = g.reshape(-1)
    fc = _u(slab)
    t = np.empty(18)  # G g, (6, 3)
    for f in range(f0, f1):
        for c in range(_u(c_all)):
            src = _u(f * c_all * 9) + _u(9) * c
            dst = _u(f * c_all) + c
            for j in range(3):
                a0, a1, a2, a3, a4, a5 = _g6(
                    np.float64(gs[src + _u(j)]),
                    np.float64(gs[src + _u(3 + j)]),
                    np.float64(gs[src + _u(6 + j)]),
                )
                t[j], t[3 + j], t[6 + j], t[9 + j], t[12 + j], t[15 + j] = a0, a1, a2, a3, a4, a5
            for a in range(6):
                b0, b1, b2, b3, b4, b5 = _g6(t[3 * a], t[3 * a + 1], t[3 * a + 2])
                row = dst + _u(6 * a) * fc
                us[row] = b0
                us[row + fc] = b1
                us[row + _u(2) * fc] = b2
                us[row + _u(3) * fc] = b3
                us[row + _u(4) * fc] = b4
                us[row + _u(5) * fc] = b5


@nb.njit(inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):
    """``B^T d`` of F(4x4, 3x3) for a column of 6 values (float32, fixed order)."""
    return (
        (np.float32(4) * d0 - np.float32(5) * d2) + d4,
        (d3 + d4) - np.float32(4) * (d1 + d2),
        np.float32(4) * (d1 - d2) + (d4 - d3),
        np.float32(2) * (d3 - d1) + (d4 - d2),
        np.float32(2) * (d1 - d3) + (d4 - d2),
        (np.float32(4) * d1 - np.float32(5) * d3) + d5,
    )


@nb.njit(**_SERIAL)
def input_tiles4(x, i0, i1, t0, t1, tiles_w, pt, pl, vs, slab):
    """``V = B^T d B`` of F(4x4, 3x3): 6x6 tiles 4 apart (see :func:`input_tiles`).

    Tile ``(t, tw)`` starts at pixel ``(4t - pt, 4tw - pl)``; ``V[a]`` is the
    ``(C, P)`` matrix at ``vs[a * slab:]``, ``a`` in ``0 .. 35``.  The columns of
    the combined rows are kept in 4 phases (column mod 4), so the width
    transform reads them with unit stride.
    """
    c_all, h, w = x.shape[1], x.shape[2], x.shape[3]
    xs = x.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    quarter = _u(tiles_w + 1)
    wp = _u(4) * quarter
    rows = np.zeros(6 * wp, x.dtype)  # [0, pl) and [pl + w, wp) of each row stay zero
    ph = np.empty(24 * quarter, x.dtype)  # (B^T d)[k, 4j + r] at ph[(r * 6 + k) * quarter + j]
    step = _u(slab)
    one = _u(1)
    for i in range(i0, i1):
        for c in range(c_all):
            plane = _u((i * c_all + c) * h * w)
            for t in range(t0, t1):
                p0 = _u(c * p_all + ((i - i0) * band + (t - t0)) * tiles_w)
                for k in range(6):
                    hh = 4 * t - pt + k
                    dst = _u(k) * wp + _u(pl)
                    if 0 <= hh < h:
                        src = plane + _u(hh * w)
                        for q in range(_u(w)):
                            rows[dst + q] = xs[src + q]
                    else:
                        for q in range(_u(w)):
                            rows[dst + q] = 0
                for r in range(4):
                    out = _u(r * 6) * quarter
                    for j in range(quarter):
                        q = _u(4) * j + _u(r)
                        v0, v1, v2, v3, v4, v5 = _bt6(
                            rows[q],
                            rows[wp + q],
                            rows[_u(2) * wp + q],
                            rows[_u(3) * wp + q],
                            rows[_u(4) * wp + q],
                            rows[_u(5) * wp + q],
                        )
                        ph[out + j] = v0
                        ph[out + quarter + j] = v1
                        ph[out + _u(2) * quarter + j] = v2
                        ph[out + _u(3) * quarter + j] = v3
                        ph[out + _u(4) * quarter + j] = v4
                        ph[out + _u(5) * quarter + j] = v5
                for k in range(6):
                    e0 = _u(k) * quarter
                    e1 = e0 + _u(6) * quarter
                    e2 = e0 + _u(12) * quarter
                    e3 = e0 + _u(18) * quarter
                    base = _u(6 * k) * step + p0
                    for j in range(_u(tiles_w)):
                        v0, v1, v2, v3, v4, v5 = _bt6(
                            ph[e0 + j],
                            ph[e1 + j],
                            ph[e2 + j],
                            ph[e3 + j],
                            ph[e0 + j + one],
                            ph[e1 + j + one],
                        )
                        vs[base + j] = v0
                        vs[base + step + j] = v1
                        vs[base + _u(2) * step + j] = v2
                        vs[base + _u(3) * step + j] = v3
                        vs[base + _u(4) * step + j] = v4
                        vs[base + _u(5) * step + j] = v5


@nb.njit(inline="always")
def _at6(m0, m1, m2, m3, m4, m5):
    """``A^T m`` of F(4x4, 3x3) for a column of 6 values (float32, fixed order)."""
    p12, d12 = m1 + m2, m1 - m2
    p34, d34 = m3 + m4, m3 - m4
    return (
        (m0 + p12) + p34,
        d12 + np.float32(2) * d34,
        p12 + np.float32(4) * p34,
        (d12 + np.float32(8) * d34) + m5,
    )


@nb.njit(inline="always")
def _tile_out4(ms, p, fp, b):
    """The 4x4 outputs ``A^T m A + b`` of a tile (row-major), ``m[a]`` at ``ms[p + a * fp]``."""
    r00, r10, r20, r30 = _at6(
        ms[p], ms[p + _u(6) * fp], ms[p + _u(12) * fp],
        ms[p + _u(18) * fp], ms[p + _u(24) * fp], ms[p + _u(30) * fp],
    )  # fmt: skip
    r01, r11, r21, r31 = _at6(
        ms[p + fp], ms[p + _u(7) * fp], ms[p + _u(13) * fp],
        ms[p + _u(19) * fp], ms[p + _u(25) * fp], ms[p + _u(31) * fp],
    )  # fmt: skip
    r02, r12, r22, r32 = _at6(
        ms[p + _u(2) * fp], ms[p + _u(8) * fp], ms[p + _u(14) * fp],
        ms[p + _u(20) * fp], ms[p + _u(26) * fp], ms[p + _u(32) * fp],
    )  # fmt: skip
    r03, r13, r23, r33 = _at6(
        ms[p + _u(3) * fp], ms[p + _u(9) * fp], ms[p + _u(15) * fp],
        ms[p + _u(21) * fp], ms[p + _u(27) * fp], ms[p + _u(33) * fp],
    )  # fmt: skip
    r04, r14, r24, r34 = _at6(
        ms[p + _u(4) * fp], ms[p + _u(10) * fp], ms[p + _u(16) * fp],
        ms[p + _u(22) * fp], ms[p + _u(28) * fp], ms[p + _u(34) * fp],
    )  # fmt: skip
    r05, r15, r25, r35 = _at6(
        ms[p + _u(5) * fp], ms[p + _u(11) * fp], ms[p + _u(17) * fp],
        ms[p + _u(23) * fp], ms[p + _u(29) * fp], ms[p + _u(35) * fp],
    )  # fmt: skip
    y00, y01, y02, y03 = _at6(r00, r01, r02, r03, r04, r05)
    y10, y11, y12, y13 = _at6(r10, r11, r12, r13, r14, r15)
    y20, y21, y22, y23 = _at6(r20, r21, r22, r23, r24, r25)
    y30, y31, y32, y33 = _at6(r30, r31, r32, r33, r34, r35)
    return (
        y00 + b, y01 + b, y02 + b, y03 + b,
        y10 + b, y11 + b, y12 + b, y13 + b,
        y20 + b, y21 + b, y22 + b, y23 + b,
        y30 + b, y31 + b, y32 + b, y33 + b,
    )  # fmt: skip


@nb.njit(**_SERIAL)
def output_tiles4(ms, slab, i0, i1, t0, t1, tiles_w, bias, y, check):
    """``Y = A^T m A + bias`` of F(4x4, 3x3) (see :func:`output_tiles`): 4x4 output tiles."""
    f_all, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    ys = y.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    fp = _u(slab)
    full = _u(wo // 4)  # tiles whose four columns are inside the output
    four = _u(4)
    out = np.empty(16, y.dtype)
    for i in range(i0, i1):
        for f in range(f_all):
            b = bias[f]
            plane = _u((i * f_all + f) * ho * wo)
            for t in range(t0, t1):
                p0 = _u(f * p_all + ((i - i0) * band + (t - t0)) * tiles_w)
                y0 = plane + _u(4 * t * wo)
                y1 = y0 + _u(wo)
                y2 = y1 + _u(wo)
                y3 = y2 + _u(wo)
                nrows = min(4, ho - 4 * t)
                if nrows == 4:
                    for j in range(full):
                        v = _tile_out4(ms, p0 + j, fp, b)
                        q = four * j
                        ys[y0 + q] = v[0]
                        ys[y0 + q + _u(1)] = v[1]
                        ys[y0 + q + _u(2)] = v[2]
                        ys[y0 + q + _u(3)] = v[3]
                        ys[y1 + q] = v[4]
                        ys[y1 + q + _u(1)] = v[5]
                        ys[y1 + q + _u(2)] = v[6]
                        ys[y1 + q + _u(3)] = v[7]
                        ys[y2 + q] = v[8]
                        ys[y2 + q + _u(1)] = v[9]
                        ys[y2 + q + _u(2)] = v[10]
                        ys[y2 + q + _u(3)] = v[11]
                        ys[y3 + q] = v[12]
                        ys[y3 + q + _u(1)] = v[13]
                        ys[y3 + q + _u(2)] = v[14]
                        ys[y3 + q + _u(3)] = v[15]
                        check[j] += (
                            ((v[0] - v[0]) + (v[1] - v[1])) + ((v[2] - v[2]) + (v[3] - v[3]))
                            + ((v[4] - v[4]) + (v[5] - v[5])) + ((v[6] - v[6]) + (v[7] - v[7]))
                            + ((v[8] - v[8]) + (v[9] - v[9])) + ((v[10] - v[10]) + (v[11] - v[11]))
                            + ((v[12] - v[12]) + (v[13] - v[13]))
                            + ((v[14] - v[14]) + (v[15] - v[15]))
                        )  # fmt: skip
                    first = full
                else:
                    first = _u(0)
                # The bottom tile row and the right-hand partial tile: clipped, one by one.
                for j in range(first, _u(tiles_w)):
                    v = _tile_out4(ms, p0 + j, fp, b)
                    for k in range(16):
                        out[k] = v[k]
                    for r in range(nrows):
                        for s in range(min(4, wo - 4 * j)):
                            val = out[4 * r + s]
                            ys[y0 + _u(r * wo + 4 * j + s)] = val
                            check[j] += val - val


# ------------------------------------------------------------------------- driver


def _slab(size: int) -> int:
    """Elements from ``V[a]`` (or ``M[a]``) to ``V[a + 1]`` for matrices of ``size`` elements.

    A multiple of 4 KiB plus 256 bytes: the 16 matrices a transform kernel
    reads or writes side by side then fall into different L1 cache sets.
    Measured (one thread, layer B, 112 tiles per item: ``F * P`` is a multiple
    of 1024): the output transform 14.4 ns per tile and filter with the
    matrices back to back, 5.8 ns with this spacing (input 6.3 and 5.1 ns).
    """
    return -(-size // 1024) * 1024 + 64


def conv_winograd(x, weight, bias, geom, single=None, tile=None):
    """Forward ``(N, C, H, W) -> (N, F, Ho, Wo)`` of an :func:`eligible` float32 convolution.

    ``single`` is what :func:`._threads.blas_single_threaded` yielded around the
    call (False: run on one worker); None enters it here.  ``tile`` is the
    output tile, 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)); None: :func:`setting`
    (:data:`TILE` when the path is off).
    """
    if single is None:
        with blas_single_threaded() as single:
            return conv_winograd(x, weight, bias, geom, single, tile)
    tile = (setting() or TILE) if tile is None else tile
    _, input_kernel, output_kernel = _KERNELS[tile]
    count = (tile + 2) ** 2  # matrices: tile elements
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    f = weight.shape[0]
    ho, wo = geom.output_size
    pt, pl = geom.pad_before
    tiles_h, tiles_w = -(-ho // tile), -(-wo // tile)
    u = filter_transform(weight, tile)
    b = np.zeros(f, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    out = np.empty((n, f, ho, wo), np.float32)
    tile_bytes = count * (c + f) * 4  # one tile's columns of V and M
    min_outputs = MIN_ITEM_OUTPUTS * (2 if c * f >= LARGE_WEIGHTS else 1)
    per_item = max(_ops.BLOCK_BYTES // tile_bytes, -(-min_outputs // tile**2))
    per_item = max(1, min(per_item, -(-n * tiles_h * tiles_w // MIN_ITEMS)))  # tiles
    images, bands = _ops._split_batch(
        n, tiles_h, tiles_h * tiles_w * tile_bytes, per_item * tile_bytes
    )
    nb_max = max(i1 - i0 for i0, i1 in images)
    band_max = max(t1 - t0 for t0, t1 in bands)
    p_max = nb_max * band_max * tiles_w
    sv, sm = _slab(c * p_max), _slab(f * p_max)

    def item(worker, idx):
        # Band-major: items running side by side write different images, not adjacent
        # bands of one image (whose cache lines the other core's prefetcher would take).
        (i0, i1), (t0, t1) = images[idx % len(images)], bands[idx // len(images)]
        p = (i1 - i0) * (t1 - t0) * tiles_w
        vs, ms = buffers.get(worker)
        input_kernel(x, i0, i1, t0, t1, tiles_w, pt, pl, vs, sv)
        v = vs.reshape(count, sv)[:, : c * p].reshape(count, c, p)
        m = ms.reshape(count, sm)[:, : f * p].reshape(count, f, p)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite: recomputed below
            np.matmul(u, v, out=m)
        output_kernel(ms, sm, i0, i1, t0, t1, tiles_w, b, out, checks[worker])

    items = len(images) * len(bands)
    macs = float(n) * f * c * count * tiles_h * tiles_w
    workers = _ops._workers(macs, items, p_max * tile_bytes) if single else 1
    buffers = _ops._Buffers(workers, (count * sv, count * sm), np.float32)
    # Per worker, rows a cache line apart: no false sharing in the output kernel's loop.
    checks = np.zeros((workers, p_max + 16), np.float32)
    run_items(item, items, workers)
    if np.isnan(checks).any():
        # inf / NaN (or an overflow in a transform): im2col + GEMM gives the exact pattern.
        x5 = x.reshape(n, c, 1, h, w)
        w5 = np.ascontiguousarray(weight).reshape(f, c, 1, 3, 3)
        out5 = out.reshape(n, f, 1, ho, wo)
        _ops._forward_im2col(x5, w5, bias, out5, _ops._geo(geom), 1, single)
    return out


#: ``(filter, input, output)`` transform kernels per output tile size.
_KERNELS = {
    2: (_filter_tiles, input_tiles, output_tiles),
    4: (_filter_tiles4, input_tiles4, output_tiles4),
}


def warmup_kernels():
    """The kernels ``convcore warmup`` compiles (float32): those of :data:`TILE`.

    F(4x4, 3x3)'s (opt-in) compile on first use: 4.0 s, against 5.8 s for
    F(2x2, 3x3)'s (fresh process, empty cache).
    """
    return _KERNELS[TILE]
