"""Numba kernels of the ``numba`` backend: im2col, col2im and direct convolutions.

Every kernel is compiled once per dtype at module level; geometry arrives as
plain integer arguments, never through globals.  Two families:

* **Serial kernels** (``nogil=True, cache=True``) work on one image, one band
  of output rows or one range of channels.  The convolution driver
  (``_ops.py``) runs them in its own worker threads next to single-threaded
  BLAS calls, one pipeline per core, so that Numba and OpenBLAS never compete
  for the cores.  They are cached on disk: a second process loads them
  instead of compiling them.
* **Parallel kernels** (``parallel=True``, ``prange`` over the ``(n, c)``
  planes that each iteration owns) implement the stand-alone ``im2col`` and
  ``col2im`` ops.  They are not cached (``cache=True`` with ``parallel=True``
  is not known to be safe, numba#4807).

Conventions (2-D; a 1-D problem is a 2-D one with a height of 1):

* ``x`` planes are ``(H, W)``, column blocks are ``(rows, L)`` with row
  ``(c * KH + i) * KW + j`` and column ``oh * Wo + ow`` (PyTorch ``unfold``
  order).
* ``geo`` is the tuple ``(kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)``: kernel
  size, stride, padding before (top, left), dilation and output size.
* All summations run in a fixed order, so results do not depend on the
  number of threads.  ``conv_direct_backward_block`` lets LLVM vectorise its
  dot products (``fastmath={"reassoc"}``): their order is then fixed by the
  compiled loop and the loop length, the same for every thread and item.
"""

from __future__ import annotations

import numba as nb

__all__ = [
    "accumulate",
    "add_bias",
    "col2im_block",
    "col2im_parallel",
    "conv_direct_backward_block",
    "conv_direct_block",
    "im2col_block",
    "im2col_parallel",
    "row_sums",
]

_SERIAL = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False}
_PARALLEL = {"parallel": True, "nogil": True, "error_model": "numpy", "boundscheck": False}


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
def _im2col_plane(xs, xoff, h, w, ds, doff, ldd, oh0, oh1, geo):
    """Write the ``KH*KW`` rows of one channel plane into a column block.

    ``xs`` is the flat input and the plane starts at ``xoff`` (``h`` x ``w``);
    ``ds`` is the flat column block with row stride ``ldd`` and the channel's
    first row starts at ``doff``.  Output rows ``oh0 .. oh1`` fill the columns.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, _, wo = geo
    for i in range(kh):
        for j in range(kw):
            rbase = doff + (i * kw + j) * ldd
            offw = j * dw - pw
            lo, hi = _valid_range(w, wo, offw, sw)
            for oh in range(oh0, oh1):
                ih = oh * sh - ph + i * dh
                base = _u(rbase + (oh - oh0) * wo)
                if ih < 0 or ih >= h:
                    for ow in range(wo):
                        ds[base + _u(ow)] = 0
                    continue
                for ow in range(lo):
                    ds[base + _u(ow)] = 0
                src = _u(xoff + ih * w + offw + lo * sw)
                dst = base + _u(lo)
                if sw == 1:
                    for k in range(hi - lo):
                        ds[dst + _u(k)] = xs[src + _u(k)]
                else:
                    for k in range(hi - lo):
                        ds[dst + _u(k)] = xs[src + _u(k * sw)]
                for ow in range(hi, wo):
                    ds[base + _u(ow)] = 0


@nb.njit(inline="always")
def _col2im_plane(cs, coff, ldc, xs, xoff, h, w, geo):
    """Overlap-sum the ``KH*KW`` rows of one channel into its image plane.

    ``cs`` is the flat column block (row stride ``ldc``, the channel's first
    row at ``coff``); ``xs`` the flat image, the plane at ``xoff``.  The plane
    is zeroed first.  Kernel offsets are visited in ``(i, j)`` order and output
    positions in raster order, so every pixel sums its terms in a fixed order.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, ho, wo = geo
    for q in range(h * w):
        xs[_u(xoff + q)] = 0
    for i in range(kh):
        oh_lo, oh_hi = _valid_range(h, ho, i * dh - ph, sh)
        for j in range(kw):
            offw = j * dw - pw
            lo, hi = _valid_range(w, wo, offw, sw)
            rbase = coff + (i * kw + j) * ldc
            for oh in range(oh_lo, oh_hi):
                ih = oh * sh - ph + i * dh
                src = _u(rbase + oh * wo + lo)
                dst = _u(xoff + ih * w + offw + lo * sw)
                if sw == 1:
                    for k in range(hi - lo):
                        xs[dst + _u(k)] += cs[src + _u(k)]
                else:
                    for k in range(hi - lo):
                        xs[dst + _u(k * sw)] += cs[src + _u(k)]


# ----------------------------------------------------------------- serial (driver) kernels


@nb.njit(**_SERIAL)
def im2col_block(x4, i0, i1, c0, c1, c_ref, oh0, oh1, ds, first, istride, ldd, geo, gch, grows):
    """Columns of images ``i0 .. i1``, channels ``c0 .. c1``, output rows ``oh0 .. oh1``.

    ``x4`` is (N, C, H, W); ``ds`` a flat destination whose rows are ``ldd``
    apart.  Image ``i``'s block starts at ``(i - first) * istride``, so the
    images can sit one after the other (``istride = rows * ldd``) or side by
    side in the columns (``istride = (oh1 - oh0) * Wo``, ``ldd`` = all their
    columns).  Channel ``c`` goes to the rows starting at
    ``(d // gch) * grows + (d % gch) * KH*KW`` with ``d = c - c_ref``, so that
    a block can hold per-group blocks of ``grows`` rows with a spare row each
    (the row of ones that carries the bias).
    """
    k = geo[0] * geo[1]
    c_all, h, w = x4.shape[1], x4.shape[2], x4.shape[3]
    xs = x4.reshape(-1)
    for i in range(i0, i1):
        for c in range(c0, c1):
            d = c - c_ref
            row0 = (d // gch) * grows + (d % gch) * k
            doff = (i - first) * istride + row0 * ldd
            _im2col_plane(xs, (i * c_all + c) * h * w, h, w, ds, doff, ldd, oh0, oh1, geo)


@nb.njit(**_SERIAL)
def col2im_block(cs, first, istride, ldc, x4, i0, i1, c0, c1, c_ref, geo):
    """Overlap-sum column blocks into images ``i0 .. i1``, channels ``c0 .. c1``.

    ``cs`` is flat with rows ``ldc`` apart; image ``i``'s block starts at
    ``(i - first) * istride`` and its rows ``(c - c_ref) * KH*KW ...`` belong
    to channel ``c``.  The planes ``x4[i, c0:c1]`` are overwritten.
    """
    k = geo[0] * geo[1]
    c_all, h, w = x4.shape[1], x4.shape[2], x4.shape[3]
    xs = x4.reshape(-1)
    for i in range(i0, i1):
        for c in range(c0, c1):
            coff = (i - first) * istride + (c - c_ref) * k * ldc
            _col2im_plane(cs, coff, ldc, xs, (i * c_all + c) * h * w, h, w, geo)


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
    for r in range(parts.shape[0]):
        for q in range(start, stop):
            dst[q] += parts[r, q]


@nb.njit(**_SERIAL)
def conv_direct_block(x4, w4, bias, y4, i0, i1, f0, f1, geo, group_channels, group_filters):
    """Direct grouped convolution of images ``i0 .. i1``, filters ``f0 .. f1``.

    For groups too thin for a GEMM (depthwise: one filter per group), where a
    per-group product would be a matrix-vector product.  ``x4`` (N, C, H, W),
    ``w4`` (F, C/groups, KH, KW), ``bias`` (F,) (zeros for no bias), ``y4``
    (N, F, Ho, Wo), all C-contiguous.  Output rows accumulate in place, taps in
    ``(c, i, j)`` order.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, ho, wo = geo
    c_all, h, w = x4.shape[1], x4.shape[2], x4.shape[3]
    f_all = w4.shape[0]
    cg = group_channels
    xs = x4.reshape(-1)
    ys = y4.reshape(-1)
    ws = w4.reshape(-1)
    for b in range(i0, i1):
        for f in range(f0, f1):
            cs = (f // group_filters) * cg
            bv = bias[f]
            for oh in range(ho):
                base = ((b * f_all + f) * ho + oh) * wo
                for q in range(wo):
                    ys[_u(base + q)] = bv
                for c in range(cg):
                    xoff = (b * c_all + cs + c) * h * w
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            wv = ws[_u(((f * cg + c) * kh + i) * kw + j)]
                            offw = j * dw - pw
                            lo, hi = _valid_range(w, wo, offw, sw)
                            src = _u(xoff + ih * w + offw + lo * sw)
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
    """``(hq, wq)``: the size of the phase planes of :func:`conv_direct_backward_block`.

    Phase plane ``(rh, rw)`` of a zero-padded input plane holds the pixels
    ``(m * sh + rh - ph, n * sw + rw - pw)`` for ``m < hq``, ``n < wq``, so tap
    ``(i, j)`` of output ``(oh, ow)`` is pixel ``(oh + i*dh // sh, ow + j*dw // sw)``
    of plane ``(i*dh % sh, j*dw % sw)``: one flat, unit-stride loop over a grad_out
    plane whose rows are extended to ``wq`` (zeros after ``wo``) reaches every tap.
    One spare row keeps the last row's overhang inside the plane.
    """
    kh, kw, sh, sw, _, _, dh, dw, ho, wo = geo
    return ho + ((kh - 1) * dh) // sh + 1, wo + ((kw - 1) * dw) // sw


@nb.njit(inline="always")
def _to_phases(xs, xoff, h, w, xq, hq, wq, sh, sw, ph, pw):
    """Zero-padded phase planes (see :func:`phase_plan`) of the plane at ``xs[xoff:]``."""
    plane = hq * wq
    for q in range(sh * sw * plane):
        xq[_u(q)] = 0
    for rh in range(sh):
        m_lo, m_hi = _valid_range(h, hq, rh - ph, sh)
        for rw in range(sw):
            lo, hi = _valid_range(w, wq, rw - pw, sw)
            for m in range(m_lo, m_hi):
                row = (rh * sw + rw) * plane + m * wq
                src = xoff + (m * sh + rh - ph) * w + rw - pw
                for n in range(lo, hi):
                    xq[_u(row + n)] = xs[_u(src + n * sw)]


@nb.njit(inline="always")
def _from_phases(dxq, hq, wq, sh, sw, ph, pw, dxs, xoff, h, w):
    """Write the plane at ``dxs[xoff:]`` from its phase planes; pixels outside them are 0."""
    plane = hq * wq
    for q in range(h * w):
        dxs[_u(xoff + q)] = 0
    for rh in range(sh):
        m_lo, m_hi = _valid_range(h, hq, rh - ph, sh)
        for rw in range(sw):
            lo, hi = _valid_range(w, wq, rw - pw, sw)
            for m in range(m_lo, m_hi):
                row = (rh * sw + rw) * plane + m * wq
                dst = xoff + (m * sh + rh - ph) * w + rw - pw
                for n in range(lo, hi):
                    dxs[_u(dst + n * sw)] = dxq[_u(row + n)]


@nb.njit(**_SERIAL_REASSOC)
def conv_direct_backward_block(
    go4, x4, w4, dx4, parts, slot, i0, i1, g0, g1, geo, group_channels, group_filters, band, buf
):
    """Direct backward of images ``i0 .. i1``, groups ``g0 .. g1`` (thin groups).

    Writes the ``dx4`` planes of the groups' channels for those images (owned)
    and the images' ``[dw | db]`` partial of each group into ``parts[slot, g]``
    (``(F/g, C/g*KH*KW + 1)``, the last column ``db``).  ``go4`` (N, F, Ho, Wo),
    ``x4`` and ``dx4`` (N, C, H, W), ``w4`` (F, C/g, KH, KW), all C-contiguous;
    ``buf`` is scratch of ``F/g * Ho * wq + 2 * sh * sw * hq * wq`` elements
    (:func:`phase_plan`).

    Per image and channel the input plane is laid out as zero-padded phase
    planes (:func:`phase_plan`), and per image and filter the grad_out plane as
    rows of ``wq`` (zeros after ``wo``).  Then every tap is one unit-stride loop
    over the extended grad_out plane that does both gradients:
    ``dxq[t + off] += w * go[t]`` and ``s += go[t] * xq[t + off]``; ``dxq`` is
    copied back into ``dx`` at the end.  The extended lanes add exact zeros
    when the weights and the input are finite; a non-finite input or weight
    can leak NaN into ``dw`` through them, and the driver then recomputes the
    call another way.  The output rows are taken in bands of about ``band``
    elements (whole rows), so that a band's slices of the planes stay in L1.
    Every ``dx`` pixel sums its terms in (band, filter, tap) order; every ``dw``
    entry sums one dot product per band and image (vectorised, in an order
    fixed by the loop length) in (image, band) order.  All of that depends on
    the geometry and ``band`` only.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, ho, wo = geo
    hq, wq = phase_plan(geo)
    kk = kh * kw
    c_all, h, w = x4.shape[1], x4.shape[2], x4.shape[3]
    f_all = go4.shape[1]
    cg, fg = group_channels, group_filters
    ckg = cg * kk
    xs = x4.reshape(-1)
    gs = go4.reshape(-1)
    ws = w4.reshape(-1)
    dxs = dx4.reshape(-1)
    T = ho * wq
    rows = max(1, band // wq)  # output rows per band: the band's planes stay in L1
    plane = hq * wq
    nphase = sh * sw
    goe = buf[: fg * T]
    xq = buf[fg * T : fg * T + nphase * plane]
    dxq = buf[fg * T + nphase * plane : fg * T + 2 * nphase * plane]
    zero = xs[0] * 0
    for g in range(g0, g1):
        for fl in range(fg):
            for q in range(ckg + 1):
                parts[slot, g, fl, q] = zero
        for b in range(i0, i1):
            # grad_out planes of the group's filters, rows extended to wq.
            for q in range(fg * T):
                goe[_u(q)] = 0
            for fl in range(fg):
                src = (b * f_all + g * fg + fl) * ho * wo
                dst = fl * T
                for oh in range(ho):
                    for ow in range(wo):
                        goe[_u(dst + oh * wq + ow)] = gs[_u(src + oh * wo + ow)]
                sdb = zero
                for t in range(T):
                    sdb += goe[_u(dst + t)]
                parts[slot, g, fl, ckg] += sdb
            for cl in range(cg):
                c = g * cg + cl
                xoff = (b * c_all + c) * h * w
                _to_phases(xs, xoff, h, w, xq, hq, wq, sh, sw, ph, pw)
                for q in range(nphase * plane):
                    dxq[_u(q)] = 0
                for t0 in range(0, T, rows * wq):
                    t1 = min(T, t0 + rows * wq)
                    for fl in range(fg):
                        f = g * fg + fl
                        gl = goe[fl * T + t0 : fl * T + t1]
                        for i in range(kh):
                            for j in range(kw):
                                wv = ws[_u(((f * cg + cl) * kh + i) * kw + j)]
                                off = (((i * dh) % sh) * sw + (j * dw) % sw) * plane + t0
                                off += ((i * dh) // sh) * wq + (j * dw) // sw
                                xt = xq[off : off + t1 - t0]
                                dt = dxq[off : off + t1 - t0]
                                s = zero
                                for t in range(t1 - t0):
                                    gv = gl[_u(t)]
                                    dt[_u(t)] += wv * gv
                                    s += gv * xt[_u(t)]
                                parts[slot, g, fl, (cl * kh + i) * kw + j] += s
                _from_phases(dxq, hq, wq, sh, sw, ph, pw, dxs, xoff, h, w)


# ------------------------------------------------------------------------ parallel ops


@nb.njit(**_PARALLEL)
def im2col_parallel(x4, out3, geo):
    """``im2col`` of a batch: ``x4`` (N, C, H, W) into ``out3`` (N, C*KH*KW, L).

    Parallel over the ``(n, c)`` planes; each iteration writes only its own
    rows.  The body calls the cached serial kernel, which keeps the compile
    time of this (uncached) parallel kernel short.
    """
    n, c = x4.shape[0], x4.shape[1]
    k = geo[0] * geo[1]
    ds = out3.reshape(-1)
    ldd = out3.shape[2]
    zero = n - n  # a variable, not the literal 0: one specialization of the callee
    for p in nb.prange(n * c):
        b = p // c
        ch = p - b * c
        im2col_block(
            x4, b, b + 1, ch, ch + 1, zero, zero, geo[8], ds, zero, c * k * ldd, ldd, geo, c, c * k
        )


@nb.njit(**_PARALLEL)
def col2im_parallel(cols3, out4, geo):
    """``col2im`` of a batch: ``cols3`` (N, C*KH*KW, L) into ``out4`` (N, C, H, W).

    Parallel over the ``(n, c)`` image planes: each iteration owns the plane it
    sums into, so there are no races and the summation order is fixed.
    """
    n, c = out4.shape[0], out4.shape[1]
    cs = cols3.reshape(-1)
    ldc = cols3.shape[2]
    zero = n - n  # a variable, not the literal 0: one specialization of the callee
    for p in nb.prange(n * c):
        b = p // c
        ch = p - b * c
        col2im_block(cs, zero, cols3.shape[1] * ldc, ldc, out4, b, b + 1, ch, ch + 1, zero, geo)
