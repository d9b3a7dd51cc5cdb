"""Numba kernels of the ``numba`` backend: im2col, col2im and direct convolutions.

Every kernel is compiled once per dtype at module level; geometry arrives as
plain integer arguments, never through globals.  All of them are **serial**
(``nogil=True, cache=True``) and work on one image, one band of output rows or
one range of channels: the drivers (``_ops.py``) run them in their own worker
threads next to single-threaded BLAS calls, one pipeline per core, so that
Numba and OpenBLAS never compete for the cores.  They are cached on disk: a
second process loads them instead of compiling them.  (There are no
``parallel=True`` kernels: those cannot be cached, numba#4807, and each cost
about 1.1 s of compilation per dtype in every process.)

Conventions.  Every kernel is 3-D: a 2-D problem is a 3-D one with a depth of
1, a 1-D problem also has a height of 1, so one compiled kernel per dtype
serves every rank.

* ``x`` volumes are ``(D, H, W)``, column blocks are ``(rows, L)`` with row
  ``((c * KD + a) * KH + i) * KW + j`` and column ``(od * Ho + oh) * Wo + ow``
  (PyTorch ``unfold`` order, in N-d).
* An *output row* is a pair ``(od, oh)``, numbered ``r = od * Ho + oh``: bands
  of output rows may span several depth slices.
* ``geo`` is the tuple ``(kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, do,
  ho, wo)``: kernel size, stride, padding before (front, top, left), dilation
  and output size.
* All summations run in a fixed order, so results do not depend on the
  number of threads.  ``conv_direct_backward_block`` lets LLVM vectorise its
  dot products (``fastmath={"reassoc"}``): their order is then fixed by the
  compiled loop and the loop length, the same for every thread and item.
* ``im2col_block`` and ``col2im_block`` also take integer arrays (data
  movement); ``col2im_block`` then adds with the wrap-around of the dtype,
  as NumPy's integer ``+`` does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "accumulate",
    "add_bias",
    "col2im_block",
    "conv_direct_backward_block",
    "conv_direct_block",
    "im2col_block",
    "row_sums",
]

#: Elements of ``dst`` that :func:`accumulate` finishes before moving on (16 KiB of float32).
_ACC_CHUNK = 4096

_SERIAL = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False}


# ----------------------------------------------------------------------------- helpers


@nb.njit(inline="always")
def _valid_range(size, out, offset, stride):
    """Output positions ``o`` in ``[lo, hi)`` with ``0 <= o * stride + offset < size``.

    Both ends lie in ``[0, out]``: the loops that zero ``[0, lo)`` and
    ``[hi, out)`` never leave the output row.
    """
    if offset >= 0:
        lo = 0
    else:
        lo = min(out, (-offset + stride - 1) // stride)
    last = size - 1 - offset
    hi = 0 if last < 0 else min(out, last // stride + 1)
    if hi < lo:
        hi = lo
    return lo, hi


@nb.njit(inline="always")
def _u(i):
    """``i`` as an unsigned index: Numba then skips its negative-index wraparound
    check, and LLVM vectorises the copy loops (3-6x faster im2col)."""
    return nb.uintp(i)


@nb.njit(inline="always")
def _im2col_volume(xs, xoff, d, h, w, ds, doff, ldd, r0, r1, geo):
    """Write the ``KD*KH*KW`` rows of one channel into a column block.

    ``xs`` is the flat input and the channel's volume starts at ``xoff``
    (``d`` x ``h`` x ``w``); ``ds`` is the flat column block with row stride
    ``ldd`` and the channel's first row starts at ``doff``.  Output rows
    ``r0 .. r1`` (``r = od * Ho + oh``) fill the columns, one depth slice
    ``od`` at a time.  Per slice and tap: zeros for the output rows whose input
    row is padding, the valid part of the others, zeros for their padding
    columns.  With a unit stride along W, consecutive valid rows are
    contiguous runs of the input; when ``sh * W == Wo`` (stride 1 and "same"
    padding along H and W) they are one run, copied by a single loop.
    """
    kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, _, ho, wo = geo
    for a in range(kd):
        for i in range(kh):
            vlo_all, vhi_all = _valid_range(h, ho, i * dh - ph, sh)
            for j in range(kw):
                rbase = doff + ((a * kh + i) * kw + j) * ldd - r0 * wo
                offw = j * dw - pw
                lo, hi = _valid_range(w, wo, offw, sw)
                r = r0
                while r < r1:
                    od = r // ho
                    oh0 = r - od * ho
                    oh1 = min(ho, oh0 + r1 - r)
                    r += oh1 - oh0
                    obase = rbase + od * ho * wo  # column block row of (od, 0)
                    iz = od * sd - pd + a * dd
                    if iz < 0 or iz >= d:  # the whole slice reads padding
                        vlo = vhi = oh1
                    else:
                        vlo = min(max(vlo_all, oh0), oh1)
                        vhi = min(max(vhi_all, vlo), oh1)
                    start = _u(obase + oh0 * wo)
                    for q in range((vlo - oh0) * wo):
                        ds[start + _u(q)] = 0
                    start = _u(obase + vhi * wo)
                    for q in range((oh1 - vhi) * wo):
                        ds[start + _u(q)] = 0
                    ih = vlo * sh - ph + i * dh
                    src0 = xoff + (iz * h + ih) * w + offw + lo * sw
                    dst0 = obase + vlo * wo
                    if sw == 1:
                        runs, n = vhi - vlo, hi - lo
                        if sh * w == wo:  # the rows' valid parts are one run
                            runs, n = min(runs, 1), (vhi - vlo - 1) * wo + hi - lo
                        if hi > lo:
                            for run in range(runs):
                                src = _u(src0 + run * sh * w)
                                dst = _u(dst0 + lo + run * wo)
                                for k in range(n):
                                    ds[dst + _u(k)] = xs[src + _u(k)]
                        for oh in range(vhi - vlo):  # then the padding columns
                            base = _u(dst0 + oh * wo)
                            for ow in range(lo):
                                ds[base + _u(ow)] = 0
                            for ow in range(hi, wo):
                                ds[base + _u(ow)] = 0
                    else:
                        for oh in range(vhi - vlo):
                            base = _u(dst0 + oh * wo)
                            for ow in range(lo):
                                ds[base + _u(ow)] = 0
                            src = _u(src0 + oh * sh * w)
                            for k in range(hi - lo):
                                ds[base + _u(lo + k)] = xs[src + _u(k * sw)]
                            for ow in range(hi, wo):
                                ds[base + _u(ow)] = 0


@nb.njit(inline="always")
def _col2im_volume(cs, coff, ldc, xs, xoff, d, h, w, geo):
    """Overlap-sum the ``KD*KH*KW`` rows of one channel into its volume.

    ``cs`` is the flat column block (row stride ``ldc``, the channel's first
    row at ``coff``); ``xs`` the flat image, the volume at ``xoff``.  The
    volume is zeroed first.  Kernel offsets are visited in ``(a, i, j)`` order
    and output positions in raster order, so every voxel sums its terms in a
    fixed order.
    """
    kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, do, ho, wo = geo
    for q in range(d * h * w):
        xs[_u(xoff + q)] = 0
    for a in range(kd):
        od_lo, od_hi = _valid_range(d, do, a * dd - pd, sd)
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(h, ho, i * dh - ph, sh)
            for j in range(kw):
                offw = j * dw - pw
                lo, hi = _valid_range(w, wo, offw, sw)
                rbase = coff + ((a * kh + i) * kw + j) * ldc
                for od in range(od_lo, od_hi):
                    iz = od * sd - pd + a * dd
                    for oh in range(oh_lo, oh_hi):
                        ih = oh * sh - ph + i * dh
                        src = _u(rbase + (od * ho + oh) * wo + lo)
                        dst = _u(xoff + (iz * h + ih) * w + offw + lo * sw)
                        if sw == 1:
                            for k in range(hi - lo):
                                xs[dst + _u(k)] += cs[src + _u(k)]
                        else:
                            for k in range(hi - lo):
                                xs[dst + _u(k * sw)] += cs[src + _u(k)]


# ------------------------------------------------------------------------- kernels


@nb.njit(**_SERIAL)
def im2col_block(x5, i0, i1, c0, c1, c_ref, r0, r1, ds, first, istride, ldd, geo, gch, grows):
    """Columns of images ``i0 .. i1``, channels ``c0 .. c1``, output rows ``r0 .. r1``.

    ``x5`` is (N, C, D, H, W); ``ds`` a flat destination whose rows are
    ``ldd`` apart.  Image ``i``'s block starts at ``(i - first) * istride``, so
    the images can sit one after the other (``istride = rows * ldd``) or side
    by side in the columns (``istride = (r1 - r0) * Wo``, ``ldd`` = all their
    columns).  Channel ``c`` goes to the rows starting at
    ``(e // gch) * grows + (e % gch) * KD*KH*KW`` with ``e = c - c_ref``, so
    that a block can hold per-group blocks of ``grows`` rows with a spare row
    each (the row of ones that carries the bias).
    """
    k = geo[0] * geo[1] * geo[2]
    c_all, d, h, w = x5.shape[1], x5.shape[2], x5.shape[3], x5.shape[4]
    xs = x5.reshape(-1)
    for i in range(i0, i1):
        for c in range(c0, c1):
            e = c - c_ref
            row0 = (e // gch) * grows + (e % gch) * k
            doff = (i - first) * istride + row0 * ldd
            _im2col_volume(xs, (i * c_all + c) * d * h * w, d, h, w, ds, doff, ldd, r0, r1, geo)


@nb.njit(**_SERIAL)
def col2im_block(cs, first, istride, ldc, x5, i0, i1, c0, c1, c_ref, geo):
    """Overlap-sum column blocks into images ``i0 .. i1``, channels ``c0 .. c1``.

    ``cs`` is flat with rows ``ldc`` apart; image ``i``'s block starts at
    ``(i - first) * istride`` and its rows ``(c - c_ref) * KD*KH*KW ...``
    belong to channel ``c``.  The volumes ``x5[i, c0:c1]`` are overwritten.
    """
    k = geo[0] * geo[1] * geo[2]
    c_all, d, h, w = x5.shape[1], x5.shape[2], x5.shape[3], x5.shape[4]
    xs = x5.reshape(-1)
    for i in range(i0, i1):
        for c in range(c0, c1):
            coff = (i - first) * istride + (c - c_ref) * k * ldc
            _col2im_volume(cs, coff, ldc, xs, (i * c_all + c) * d * h * w, d, h, w, geo)


@nb.njit(**_SERIAL)
def add_bias(y3, bias, i0, i1, l0, l1):
    """``y3[i, f, l0:l1] += bias[f]`` for the images ``i0 .. i1`` of ``y3`` (N, F, L)."""
    f_all, n = y3.shape[1], y3.shape[2]
    ys = y3.reshape(-1)
    for i in range(i0, i1):
        for f in range(f_all):
            b = bias[f]
            base = _u((i * f_all + f) * n)
            for q in range(l0, l1):
                ys[base + _u(q)] += b


@nb.njit(**_SERIAL)
def row_sums(a2, parts, slot, g, col):
    """``parts[slot, g, r, col] = sum(a2[r, :])`` for every row ``r`` of ``a2``.

    Eight interleaved partial sums combined pairwise: a fixed order, whatever
    thread runs it.  Both arrays are C-contiguous.
    """
    m, n = a2.shape
    n8 = n - n % 8
    for r in range(m):
        row = a2[r]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = row[0] * 0
        for i in range(0, n8, 8):
            s0 += row[i]
            s1 += row[i + 1]
            s2 += row[i + 2]
            s3 += row[i + 3]
            s4 += row[i + 4]
            s5 += row[i + 5]
            s6 += row[i + 6]
            s7 += row[i + 7]
        for i in range(n8, n):
            s0 += row[i]
        parts[slot, g, r, col] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@nb.njit(**_SERIAL)
def accumulate(dst, parts, start, stop):
    """``dst[start:stop] += parts[0, start:stop]``, then ``parts[1]``, ... in that order.

    Each element gets the same sequence of additions whatever ``start`` and
    ``stop`` are, so splitting the range among threads changes nothing.
    """
    # Unsigned indices (the loop vectorises) and chunks of dst that stay in L1
    # while every part is added to them; the order per element is unchanged.
    ps = parts.reshape(-1)
    m = parts.shape[1]
    for q0 in range(start, stop, _ACC_CHUNK):
        q1 = min(q0 + _ACC_CHUNK, stop)
        for r in range(parts.shape[0]):
            base = _u(r * m)
            for q in range(_u(q0), _u(q1)):
                dst[q] += ps[base + q]


@nb.njit(**_SERIAL)
def conv_direct_block(x5, w5, bias, y5, i0, i1, f0, f1, geo, group_channels, group_filters):
    """Direct grouped convolution of images ``i0 .. i1``, filters ``f0 .. f1``.

    For groups too thin for a GEMM (depthwise: one filter per group), where a
    per-group product would be a matrix-vector product.  ``x5`` (N, C, D, H, W),
    ``w5`` (F, C/groups, KD, KH, KW), ``bias`` (F,) (zeros for no bias), ``y5``
    (N, F, Do, Ho, Wo), all C-contiguous.  Output rows accumulate in place, taps
    in ``(c, a, i, j)`` order.
    """
    kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, do, ho, wo = geo
    c_all, d, h, w = x5.shape[1], x5.shape[2], x5.shape[3], x5.shape[4]
    f_all = w5.shape[0]
    cg = group_channels
    xs = x5.reshape(-1)
    ys = y5.reshape(-1)
    ws = w5.reshape(-1)
    # The valid output columns of every kernel column, once per call: two
    # integer divisions per tap and output row cost more than the row's FMAs.
    los = np.empty(kw, np.int64)
    his = np.empty(kw, np.int64)
    for j in range(kw):
        los[j], his[j] = _valid_range(w, wo, j * dw - pw, sw)
    for b in range(i0, i1):
        for f in range(f0, f1):
            cs = (f // group_filters) * cg
            bv = bias[f]
            for od in range(do):
                for oh in range(ho):
                    base = (((b * f_all + f) * do + od) * ho + oh) * wo
                    for q in range(wo):
                        ys[_u(base + q)] = bv
                    for c in range(cg):
                        xoff = (b * c_all + cs + c) * d * h * w
                        for a in range(kd):
                            iz = od * sd - pd + a * dd
                            if iz < 0 or iz >= d:
                                continue
                            for i in range(kh):
                                ih = oh * sh - ph + i * dh
                                if ih < 0 or ih >= h:
                                    continue
                                for j in range(kw):
                                    wv = ws[_u((((f * cg + c) * kd + a) * kh + i) * kw + j)]
                                    offw = j * dw - pw
                                    lo, hi = los[j], his[j]
                                    src = _u(xoff + (iz * h + ih) * w + offw + lo * sw)
                                    dst = _u(base + lo)
                                    if sw == 1:
                                        for k in range(hi - lo):
                                            ys[dst + _u(k)] += wv * xs[src + _u(k)]
                                    else:
                                        for k in range(hi - lo):
                                            ys[dst + _u(k)] += wv * xs[src + _u(k * sw)]


#: Serial kernels whose float sums LLVM may vectorise (reassociate).  The order
#: it picks is fixed in the compiled code (it depends on the loop length and the
#: offsets between the buffers, i.e. on the geometry, never on the thread or the
#: item), so results stay reproducible.
_SERIAL_REASSOC = dict(_SERIAL, fastmath={"reassoc"})


@nb.njit(inline="always")
def phase_plan(geo):
    """``(dq, hq, wq)``: the size of the phase volumes of :func:`conv_direct_backward_block`.

    Phase volume ``(rd, rh, rw)`` of a zero-padded input volume holds the
    voxels ``(l * sd + rd - pd, m * sh + rh - ph, n * sw + rw - pw)`` for
    ``l < dq``, ``m < hq``, ``n < wq``, so tap ``(a, i, j)`` of output
    ``(od, oh, ow)`` is voxel ``(od + a*dd // sd, oh + i*dh // sh, ow + j*dw // sw)``
    of volume ``(a*dd % sd, i*dh % sh, j*dw % sw)``: one flat, unit-stride loop
    over a grad_out volume laid out like a phase volume (slices of ``hq`` rows of
    ``wq``, zeros after ``ho`` and ``wo``) reaches every tap.  One spare row per
    slice keeps the last row's overhang inside the slice.
    """
    kd, kh, kw, sd, sh, sw, _, _, _, dd, dh, dw, do, ho, wo = geo
    return do + ((kd - 1) * dd) // sd, ho + ((kh - 1) * dh) // sh + 1, wo + ((kw - 1) * dw) // sw


@nb.njit(inline="always")
def _to_phases(xs, xoff, d, h, w, xq, dq, hq, wq, geo):
    """Zero-padded phase volumes (see :func:`phase_plan`) of the volume at ``xs[xoff:]``."""
    sd, sh, sw, pd, ph, pw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    vol = dq * hq * wq
    for q in range(sd * sh * sw * vol):
        xq[_u(q)] = 0
    for rd in range(sd):
        l_lo, l_hi = _valid_range(d, dq, rd - pd, sd)
        for rh in range(sh):
            m_lo, m_hi = _valid_range(h, hq, rh - ph, sh)
            for rw in range(sw):
                lo, hi = _valid_range(w, wq, rw - pw, sw)
                pbase = ((rd * sh + rh) * sw + rw) * vol
                for ll in range(l_lo, l_hi):
                    for m in range(m_lo, m_hi):
                        row = pbase + (ll * hq + m) * wq
                        src = xoff + ((ll * sd + rd - pd) * h + m * sh + rh - ph) * w + rw - pw
                        for n in range(lo, hi):
                            xq[_u(row + n)] = xs[_u(src + n * sw)]


@nb.njit(inline="always")
def _from_phases(dxq, dq, hq, wq, geo, dxs, xoff, d, h, w):
    """Write the volume at ``dxs[xoff:]`` from its phase volumes; voxels outside them are 0."""
    sd, sh, sw, pd, ph, pw = geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    vol = dq * hq * wq
    for q in range(d * h * w):
        dxs[_u(xoff + q)] = 0
    for rd in range(sd):
        l_lo, l_hi = _valid_range(d, dq, rd - pd, sd)
        for rh in range(sh):
            m_lo, m_hi = _valid_range(h, hq, rh - ph, sh)
            for rw in range(sw):
                lo, hi = _valid_range(w, wq, rw - pw, sw)
                pbase = ((rd * sh + rh) * sw + rw) * vol
                for ll in range(l_lo, l_hi):
                    for m in range(m_lo, m_hi):
                        row = pbase + (ll * hq + m) * wq
                        dst = xoff + ((ll * sd + rd - pd) * h + m * sh + rh - ph) * w + rw - pw
                        for n in range(lo, hi):
                            dxs[_u(dst + n * sw)] = dxq[_u(row + n)]


@nb.njit(**_SERIAL_REASSOC)
def conv_direct_backward_block(
    go5, x5, w5, dx5, parts, slot, i0, i1, g0, g1, geo, group_channels, group_filters, band, buf
):
    """Direct backward of images ``i0 .. i1``, groups ``g0 .. g1`` (thin groups).

    Writes the ``dx5`` volumes of the groups' channels for those images
    (owned) and the images' ``[dw | db]`` partial of each group into
    ``parts[slot, g]`` (``(F/g, C/g*KD*KH*KW + 1)``, the last column ``db``).
    ``go5`` (N, F, Do, Ho, Wo), ``x5`` and ``dx5`` (N, C, D, H, W), ``w5``
    (F, C/g, KD, KH, KW), all C-contiguous; ``buf`` is scratch of
    ``F/g * T + 2 * sd * sh * sw * dq * hq * wq`` elements with
    ``T = ((Do - 1) * hq + Ho) * wq`` (:func:`phase_plan`).

    Per image and channel the input volume is laid out as zero-padded phase
    volumes (:func:`phase_plan`), and per image and filter the grad_out volume
    as slices of ``hq`` rows of ``wq`` (zeros after ``Ho`` and ``Wo``; the
    last slice stops after ``Ho`` rows: ``T`` elements).  Then every tap is one
    unit-stride loop over the extended grad_out volume that does both
    gradients: ``dxq[t + off] += w * go[t]`` and ``s += go[t] * xq[t + off]``;
    ``dxq`` is copied back into ``dx`` at the end.  The extended lanes add
    exact zeros when the weights and the input are finite; a non-finite input
    or weight can leak NaN into ``dw`` through them, and the driver then
    recomputes the call another way.  The flat loop is taken in bands of about
    ``band`` elements (whole rows), so that a band's slices of the volumes stay
    in L1.  Every ``dx`` voxel sums its terms in (band, filter, tap) order;
    every ``dw`` entry sums one dot product per band and image (vectorised, in
    an order fixed by the loop length) in (image, band) order.  All of that
    depends on the geometry and ``band`` only.  In 2-D (``Do = 1``) the layout
    is the phase planes of a plane.
    """
    kd, kh, kw, sd, sh, sw, _, _, _, dd, dh, dw, do, ho, wo = geo
    dq, hq, wq = phase_plan(geo)
    kk = kd * kh * kw
    c_all, d, h, w = x5.shape[1], x5.shape[2], x5.shape[3], x5.shape[4]
    f_all = go5.shape[1]
    cg, fg = group_channels, group_filters
    ckg = cg * kk
    xs = x5.reshape(-1)
    gs = go5.reshape(-1)
    ws = w5.reshape(-1)
    dxs = dx5.reshape(-1)
    plane = hq * wq
    vol = dq * plane
    T = ((do - 1) * hq + ho) * wq
    L = do * ho * wo
    rows = max(1, band // wq)  # rows per band: the band's slices of the volumes stay in L1
    nphase = sd * sh * sw
    goe = buf[: fg * T]
    xq = buf[fg * T : fg * T + nphase * vol]
    dxq = buf[fg * T + nphase * vol : fg * T + 2 * nphase * vol]
    zero = xs[0] * 0
    for g in range(g0, g1):
        for fl in range(fg):
            for q in range(ckg + 1):
                parts[slot, g, fl, q] = zero
        for b in range(i0, i1):
            # grad_out volumes of the group's filters, laid out like a phase volume.
            for q in range(fg * T):
                goe[_u(q)] = 0
            for fl in range(fg):
                src = (b * f_all + g * fg + fl) * L
                dst = fl * T
                for od in range(do):
                    for oh in range(ho):
                        row = dst + (od * hq + oh) * wq
                        srow = src + (od * ho + oh) * wo
                        for ow in range(wo):
                            goe[_u(row + ow)] = gs[_u(srow + ow)]
                sdb = zero
                for t in range(T):
                    sdb += goe[_u(dst + t)]
                parts[slot, g, fl, ckg] += sdb
            for cl in range(cg):
                c = g * cg + cl
                xoff = (b * c_all + c) * d * h * w
                _to_phases(xs, xoff, d, h, w, xq, dq, hq, wq, geo)
                for q in range(nphase * vol):
                    dxq[_u(q)] = 0
                for t0 in range(0, T, rows * wq):
                    t1 = min(T, t0 + rows * wq)
                    for fl in range(fg):
                        f = g * fg + fl
                        gl = goe[fl * T + t0 : fl * T + t1]
                        for a in range(kd):
                            for i in range(kh):
                                for j in range(kw):
                                    tap = (a * kh + i) * kw + j
                                    wv = ws[_u((f * cg + cl) * kk + tap)]
                                    phase = (((a * dd) % sd) * sh + (i * dh) % sh) * sw
                                    off = (phase + (j * dw) % sw) * vol + t0
                                    off += ((a * dd) // sd) * plane + ((i * dh) // sh) * wq
                                    off += (j * dw) // sw
                                    xt = xq[off : off + t1 - t0]
                                    dt = dxq[off : off + t1 - t0]
                                    s = zero
                                    for t in range(t1 - t0):
                                        gv = gl[_u(t)]
                                        dt[_u(t)] += wv * gv
                                        s += gv * xt[_u(t)]
                                    parts[slot, g, fl, cl * kk + tap] += s
                _from_phases(dxq, dq, hq, wq, geo, dxs, xoff, d, h, w)
