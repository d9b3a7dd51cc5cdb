"""Winograd convolution: the float32 forward of 3x3 stride-1 convolutions in fewer multiplies.

F(m x m, 3x3) computes each output tile of ``m x m`` pixels from an input
tile ``d`` of ``(m + 2) x (m + 2)`` pixels as ``Y = A^T [(G g G^T) * (B^T d B)] A``
(Lavin and Gray, 2016): ``(m + 2)^2`` multiplies per tile, channel and filter
instead of ``9 m^2``.  F(2x2, 3x3) (:data:`TILE` = 2, the default) needs 2.25x
fewer multiply-adds than im2col + GEMM and keeps the error of the direct sum;
F(4x4, 3x3) (``CONVCORE_NUMBA_WINOGRAD=4``) needs 4x fewer, with about 20x the
error (see below).  The transforms are additions (and, for F(4x4), multiplies
by small constants).

* The **filter transform** ``U = G g G^T`` runs once per call, in float64,
  rounded to float32: ``((m + 2)^2, F, C)``.
* **Work items** are ``(image range, band of tile rows)``, cut like the
  im2col path's (:func:`._ops._split_batch`) from the shapes alone, so that an
  item's ``V`` and ``M`` blocks are about :data:`._ops.BLOCK_BYTES`.  An item
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
  The output kernel marks the non-finite values it writes; if there are any,
  the call is recomputed by im2col + GEMM, which gives that path's exact
  result (and also covers a transform that overflows where the direct sum
  does not).
* **Error** against a float64 reference (random normal data, ``max|y - ref|``
  relative to ``max|ref|``; see ``docs/numba.md``): F(2x2, 3x3) 1.6e-7 to
  5.7e-7, about the float32 direct sum's 2.5e-7 to 4.5e-7; F(4x4, 3x3) 1.2e-6
  to 1.1e-5 (7.3e-6 on layer B).
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
#: Smallest channel and filter counts that take the Winograd path.
MIN_CHANNELS = 16
MIN_FILTERS = 16
#: Smallest output (``Ho * Wo``) that takes the Winograd path.
MIN_OUTPUT = 64
#: Output tile: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3).
TILE = 2

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
    pixel of padding per side, at least :data:`MIN_CHANNELS` channels,
    :data:`MIN_FILTERS` filters and :data:`MIN_OUTPUT` output pixels.
    """
    return (
        np.dtype(dtype) == np.float32
        and geom.nd == 2
        and tuple(geom.kernel_size) == (3, 3)
        and tuple(geom.stride) == (1, 1)
        and tuple(geom.dilation) == (1, 1)
        and groups == 1
        and max(geom.padding) <= 1
        and len(x_shape) == 4
        and len(w_shape) == 4
        and x_shape[1] >= MIN_CHANNELS
        and w_shape[0] >= MIN_FILTERS
        and geom.output_numel >= MIN_OUTPUT
    )


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
    _KERNELS[tile][0](g, us, slab)
    return us.reshape(count, slab)[:, : f * c].reshape(count, f, c)


# ------------------------------------------------------------------------ kernels


@nb.njit(inline="always")
def _u(i):
    """``i`` as an unsigned index: no wraparound check, so LLVM vectorises the loops.

    Every index expression must stay unsigned (``_u(2) * q``, not ``2 * q``):
    Numba makes a signed and an unsigned integer a signed one.
    """
    return nb.uintp(i)


@nb.njit(**_SERIAL)
def _filter_tiles(g, us, slab):
    """``U[:, f, c] = G g[f, c] G^T`` (4x4, flattened) for ``g`` (F, C, 3, 3), in float64.

    ``U[a]`` is the ``(F, C)`` matrix at ``us[a * slab:]``.
    """
    f_all, c_all = g.shape[0], g.shape[1]
    gs = g.reshape(-1)
    fc = _u(slab)
    t = np.empty(12)  # G g, (4, 3)
    for f in range(f_all):
        for c in range(_u(c_all)):
            src = _u(f * c_all * 9) + _u(9) * c
            dst = _u(f * c_all) + c
            for j in range(3):
                g0 = np.float64(gs[src + _u(j)])
                g1 = np.float64(gs[src + _u(3 + j)])
                g2 = np.float64(gs[src + _u(6 + j)])
                t[j] = g0
                t[3 + j] = 0.5 * (g0 + g1 + g2)
                t[6 + j] = 0.5 * (g0 - g1 + g2)
                t[9 + j] = g2
            for a in range(4):  # (G g) G^T
                t0, t1, t2 = t[3 * a], t[3 * a + 1], t[3 * a + 2]
                row = dst + _u(4 * a) * fc
                us[row] = t0
                us[row + fc] = 0.5 * (t0 + t1 + t2)
                us[row + _u(2) * fc] = 0.5 * (t0 - t1 + t2)
                us[row + _u(3) * fc] = t2


@nb.njit(**_SERIAL)
def input_tiles(x, i0, i1, t0, t1, tiles_w, pt, pl, vs, slab):
    """``V = B^T d B`` of the 4x4 tiles of images ``i0 .. i1``, tile rows ``t0 .. t1``.

    ``x`` (N, C, H, W); ``V[a]`` is the ``(C, P)`` matrix at ``vs[a * slab:]``,
    tile ``p = ((i - i0) * (t1 - t0) + (t - t0)) * tiles_w + tw``; tile ``(t,
    tw)`` starts at pixel ``(2t - pt, 2tw - pl)``, pixels outside the image are
    zeros.  Per channel and tile row
    the 4 rows are copied into zero-padded rows, combined along the height
    (``B^T d``) into even and odd columns, then along the width (``... B``).
    """
    c_all, h, w = x.shape[1], x.shape[2], x.shape[3]
    xs = x.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    half = _u(tiles_w + 1)
    wp = _u(2) * half
    rows = np.zeros(4 * wp, x.dtype)  # [0, pl) and [pl + w, wp) of each row stay zero
    ev = np.empty(4 * half, x.dtype)  # (B^T d)[k, 2j]
    od = np.empty(4 * half, x.dtype)  # (B^T d)[k, 2j + 1]
    step = _u(slab)  # V[a] to V[a + 1]
    one, two = _u(1), _u(2)
    for i in range(i0, i1):
        for c in range(c_all):
            plane = _u((i * c_all + c) * h * w)
            for t in range(t0, t1):
                p0 = _u(c * p_all + ((i - i0) * band + (t - t0)) * tiles_w)
                for k in range(4):
                    hh = 2 * t - pt + k
                    dst = _u(k) * wp + _u(pl)
                    if 0 <= hh < h:
                        src = plane + _u(hh * w)
                        for q in range(_u(w)):
                            rows[dst + q] = xs[src + q]
                    else:
                        for q in range(_u(w)):
                            rows[dst + q] = 0
                for j in range(half):
                    q = two * j
                    r0, r1, r2, r3 = rows[q], rows[wp + q], rows[two * wp + q], rows[_u(3) * wp + q]
                    ev[j] = r0 - r2
                    ev[half + j] = r1 + r2
                    ev[two * half + j] = r2 - r1
                    ev[_u(3) * half + j] = r1 - r3
                    q += one
                    r0, r1, r2, r3 = rows[q], rows[wp + q], rows[two * wp + q], rows[_u(3) * wp + q]
                    od[j] = r0 - r2
                    od[half + j] = r1 + r2
                    od[two * half + j] = r2 - r1
                    od[_u(3) * half + j] = r1 - r3
                for k in range(4):
                    e = _u(k) * half
                    base = _u(4 * k) * step + p0
                    for j in range(_u(tiles_w)):
                        e0 = ev[e + j]
                        o0 = od[e + j]
                        e1 = ev[e + j + one]
                        o1 = od[e + j + one]
                        vs[base + j] = e0 - e1
                        vs[base + step + j] = o0 + e1
                        vs[base + two * step + j] = e1 - o0
                        vs[base + _u(3) * step + j] = o0 - o1


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
    clipped to ``Ho x Wo``.  ``check`` (at least ``tiles_w``) gets ``y - y``
    of every value written added to it per tile column: it ends NaN where an
    inf or a NaN was written.  (An add per lane, not a reduction: the loops
    vectorise.)
    """
    f_all, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    ys = y.reshape(-1)
    band = t1 - t0
    p_all = (i1 - i0) * band * tiles_w
    fp = _u(slab)
    full = _u(wo // 2)  # tiles whose two columns are inside the output
    one, two = _u(1), _u(2)
    for i in range(i0, i1):
        for f in range(f_all):
            b = bias[f]
            plane = _u((i * f_all + f) * ho * wo)
            for t in range(t0, t1):
                p0 = _u(f * p_all + ((i - i0) * band + (t - t0)) * tiles_w)
                y0 = plane + _u(2 * t * wo)
                y1 = y0 + _u(wo)
                if 2 * t + 1 < ho:
                    for j in range(full):
                        a, bb, c, d = _tile_out(ms, p0 + j, fp, b)
                        ys[y0 + two * j] = a
                        ys[y0 + two * j + one] = bb
                        ys[y1 + two * j] = c
                        ys[y1 + two * j + one] = d
                        check[j] += (a - a) + (bb - bb) + (c - c) + (d - d)
                    if full < tiles_w:
                        a, bb, c, d = _tile_out(ms, p0 + full, fp, b)
                        ys[y0 + two * full] = a
                        ys[y1 + two * full] = c
                        check[full] += (a - a) + (c - c)
                else:
                    for j in range(full):
                        a, bb, c, d = _tile_out(ms, p0 + j, fp, b)
                        ys[y0 + two * j] = a
                        ys[y0 + two * j + one] = bb
                        check[j] += (a - a) + (bb - bb)
                    if full < tiles_w:
                        a, bb, c, d = _tile_out(ms, p0 + full, fp, b)
                        ys[y0 + two * full] = a
                        check[full] += a - a


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
def _filter_tiles4(g, us, slab):
    """``U[:, f, c] = G g[f, c] G^T`` (6x6, flattened) for ``g`` (F, C, 3, 3), in float64."""
    f_all, c_all = g.shape[0], g.shape[1]
    gs = g.reshape(-1)
    fc = _u(slab)
    t = np.empty(18)  # G g, (6, 3)
    for f in range(f_all):
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
    images, bands = _ops._split_batch(n, tiles_h, tiles_h * tiles_w * tile_bytes)
    nb_max = max(i1 - i0 for i0, i1 in images)
    band_max = max(t1 - t0 for t0, t1 in bands)
    p_max = nb_max * band_max * tiles_w
    sv, sm = _slab(c * p_max), _slab(f * p_max)

    def item(worker, idx):
        (i0, i1), (t0, t1) = images[idx // len(bands)], bands[idx % len(bands)]
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
    checks = np.zeros((workers, max(16, tiles_w)), np.float32)  # a cache line or more each
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
