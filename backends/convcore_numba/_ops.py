"""The four ops of the ``numba`` backend: the drivers around the Numba kernels.

Layout of a convolution call (3-D; 2-D runs as 3-D with a depth of 1, 1-D
also with a height of 1: one set of compiled kernels serves every rank, see
:mod:`._kernels`):

* The call is cut into independent **work items** that run on
  ``numba.get_num_threads()`` threads (:mod:`._threads`).  Every item runs
  serial Numba kernels and single-threaded BLAS on its own column block of
  about :data:`BLOCK_BYTES`, so the block an item builds is still in cache when
  its GEMM reads it, and no BLAS thread spins next to a Numba thread.
* **Forward** items are ``(image range, band of output rows)``: several small
  images or one band of a large one (an output row is a pair ``(od, oh)``, so
  a band may span depth slices).  An item unfolds them into
  ``(groups, C/g*KD*KH*KW + 1, rows*Wo)`` blocks whose last row per group is
  ones, and multiplies each by ``[W_g | b_g]`` (the bias rides in the GEMM);
  the GEMM writes straight into the output: no transpose, no bias pass.
  Pointwise convolutions (1x1(x1), stride 1, no padding) skip the unfolding;
  groups of at most :data:`DIRECT_MAX_FILTERS_PER_GROUP` filters (depthwise)
  use a direct kernel.
* **Backward** of groups of at most :data:`DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP`
  filters (depthwise; pointwise layers only when their GEMMs are tiny too, see
  :func:`backward_path`) runs a direct kernel: items ``(image range, range of
  groups)`` own their ``dx`` volumes and write one ``[dw | db]`` partial per
  (image range, group); no BLAS.
* Other **backward** items are ``(image range, group, range of channels)``.  An item
  unfolds its images side by side (the last channel range adds the row of
  ones, so ``db`` comes out of the ``dw`` GEMM), computes its columns of the
  range's ``[dw | db]`` partial (``go @ cols.T``, summing over all the
  range's pixels), then reuses the block for ``dcols = W.T @ go`` and folds
  it into its own channels of ``dx`` (col2im owns those volumes).  The
  partials are added to ``dw`` in range order.
* **im2col / col2im** (the stand-alone ops) run the same serial kernels on
  items ``(image range, channel range)``: each item writes its own rows of
  the columns (im2col) or owns the channel volumes it sums into (col2im).
  They take integer arrays too (data movement; col2im's sums wrap around on
  overflow like NumPy's integer ``+``).
* **Determinism.**  How a call is cut into bands, ranges and channel ranges
  depends only on the geometry and the dtype, never on the number of threads
  or on the workspace, every BLAS call is single-threaded, and partials are
  summed in a fixed order: results are bitwise identical from run to run, for
  any number of threads and any ``CONVCORE_WORKSPACE_MB``.  (Cutting a product
  differently changes its rounding: OpenBLAS gives different bits for
  differently partitioned products, and for 1 vs 2 threads, on this machine.)
  The one exception: when another Python thread holds threadpoolctl's
  control of OpenBLAS, the call runs on one thread with BLAS as it is set.
* **Workspace.**  ``CONVCORE_WORKSPACE_MB`` bounds the column blocks in flight
  (``workers x block``: fewer workers when it is below one block per thread,
  never fewer than one) and, separately, the ``dw`` partials kept per round of
  image ranges (at least one range per round).
"""

from __future__ import annotations

import os
from math import ceil
from typing import TYPE_CHECKING

import numpy as np

from . import _kernels as K
from . import _winograd
from ._threads import blas_single_threaded, num_threads, run_items

if TYPE_CHECKING:
    from convcore.geometry import ConvGeometry

__all__ = ["col2im", "conv", "conv_backward", "im2col"]

#: Default of ``CONVCORE_WORKSPACE_MB`` (see docs/numba.md for the measurement).
DEFAULT_WORKSPACE_MB = 64
#: Target size of one work item's column block: about a core's L2 cache.
BLOCK_BYTES = 1 << 20
#: Bytes of grad_out per band of output rows in the direct backward kernel (the
#: band's slices of the planes stay in L1).  Measured, one thread, us per plane,
#: against no bands: float64 56x56 and 112x112 10-18% faster with 1024 elements,
#: float32 at most 3% slower with 2048; 128 elements 1.1-1.6x slower.
BAND_BYTES = 8192
#: Below this many multiply-adds (element copies for im2col / col2im) a call runs
#: on the calling thread only.
_PARALLEL_MIN_MACS = 2_000_000
#: Forward convolutions with at most this many filters per group use the direct
#: kernel (depthwise and similar: the per-group GEMM would be a matrix-vector
#: product).  Measured: depthwise 3x3 layers 2-9x faster direct; with 32 filters
#: (layer D) im2col + GEMM is 7x faster than the direct kernel.
DIRECT_MAX_FILTERS_PER_GROUP = 4
#: The backward of layers with at most this many filters per group uses the
#: direct kernel (see :func:`backward_path`; 0 forces im2col + GEMM).  Measured
#: (one thread, N=8, 3x3 to 7x7, 14x14 to 28x28, 16 channels per group): direct
#: 0.12-0.23x the time of im2col + GEMM with 1 filter per group, 0.5-0.9x with 4;
#: float32 breaks even near 6 filters, float64 near 8.  Its time grows with the
#: filters per group, the GEMM's hardly; the channels per group did not matter.
DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP = 4
#: Pointwise layers (1x1, stride 1, no padding) have a GEMM path without im2col:
#: their backward uses the direct kernel only for one filter per group or at most
#: this many weights (filters x channels) per group.  Measured (one thread, 14x14
#: and 56x56): direct 0.23-0.91x the time of the pointwise GEMMs within that bound,
#: 0.47-0.88x with one filter, 0.76-1.56x with 2-4 filters and 16-64 channels.
DIRECT_BACKWARD_POINTWISE_MAX_WEIGHTS = 16


#: A GEMM backward item that holds a range of one image's channels (a group's
#: whole image is over :data:`BLOCK_BYTES`) gets this many times
#: :data:`BLOCK_BYTES`: the backward's ``dcols = W^T @ grad_out`` has only
#: ``F/g`` as inner dimension, and more rows per range pay.  Measured (steady
#: state, 2 threads, median of 7, time against a factor of 1): B float32
#: 0.96-0.98, float64 0.86-0.87, E float64 0.96, H 0.90 (both dtypes); A, C, D,
#: E float32 and F within 1.5%; a factor of 4 was no better.
BACKWARD_CHANNEL_BLOCK_FACTOR = 2


#: The backward of a 3x3 stride-1 float32 layer computes ``dx`` by the Winograd
#: forward (:mod:`._winograd`) when its channels and filters are at least
#: :data:`WINOGRAD_DX_MIN_CHANNELS` and ``tiles * min(C, F)`` (2x2 tiles of ``dx``)
#: at least :data:`WINOGRAD_DX_MIN_WORK`; below, im2col + GEMM, whose columns the
#: ``dw`` GEMM has built anyway, is as fast.  Measured (2 threads, quiet, whole
#: backward with Winograd ``dx`` against without): N=8 C=64 56x56 F=64 0.83,
#: N=16 C=64 32x32 F=64 0.78, N=64 C=32 16x16 F=64 0.86, 1024-2048 tiles with 32-64
#: channels 0.86-0.94, 392 tiles with 128-256 channels 0.86-0.88; 512 tiles with 32
#: channels 0.97-1.04, 16 channels 0.95-1.00.
WINOGRAD_DX_MIN_WORK = 32 * 1024
WINOGRAD_DX_MIN_CHANNELS = 32


# --------------------------------------------------------------------------- helpers


def _geo(geom: ConvGeometry):
    """``(kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, do, ho, wo)`` of a 1-, 2- or 3-D geometry.

    Missing leading axes get size 1, stride 1, no padding and dilation 1.
    """
    lift = 3 - geom.nd
    if lift < 0:
        raise NotImplementedError(
            f"the numba backend supports 1-D, 2-D and 3-D convolutions, got {geom.nd} spatial axes"
        )
    one, zero = (1,) * lift, (0,) * lift
    return (
        *one, *geom.kernel_size,
        *one, *geom.stride,
        *zero, *geom.pad_before,
        *one, *geom.dilation,
        *one, *geom.output_size,
    )  # fmt: skip


def _as5d(a, geom: ConvGeometry):
    """A C-contiguous ``(N, C, D, H, W)`` view or copy of ``a`` (``(N, C, *S)``)."""
    a = np.ascontiguousarray(a)
    return a.reshape(*a.shape[:2], *(1,) * (3 - geom.nd), *a.shape[2:])


def _kernel_numel(geo) -> int:
    return geo[0] * geo[1] * geo[2]


def _out_rows(geo) -> int:
    """Output rows ``(od, oh)`` of a geometry: ``Do * Ho``."""
    return geo[12] * geo[13]


def _workspace_bytes() -> int:
    """``CONVCORE_WORKSPACE_MB`` in bytes (default :data:`DEFAULT_WORKSPACE_MB`)."""
    raw = os.environ.get("CONVCORE_WORKSPACE_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_WORKSPACE_MB
    except ValueError:
        mb = DEFAULT_WORKSPACE_MB
    return max(int(mb * 2**20), 1)


def _pieces(total: int, per_piece: int):
    """``range(total)`` cut into near-equal ``(start, stop)`` pieces of at most ``per_piece``."""
    count = ceil(total / max(1, per_piece))
    step = ceil(total / count)
    return [(a, min(total, a + step)) for a in range(0, total, step)]


def _workers(macs: float, items: int, block_bytes: int) -> int:
    """Threads for a call: all of them, unless the call is tiny or the workspace small."""
    if macs < _PARALLEL_MIN_MACS:
        return 1
    fit = max(1, _workspace_bytes() // max(1, block_bytes))
    return max(1, min(num_threads(), items, fit))


class _Buffers:
    """Scratch arrays per worker, allocated on the worker's first item.

    ``size`` is one flat length (``get`` returns an array) or a tuple of them
    (``get`` returns a tuple of arrays).  (Keeping them between calls measured
    no faster: a worker's block is about BLOCK_BYTES, far below the size where
    fresh arrays page-fault on every call.)
    """

    def __init__(self, workers: int, size, dtype):
        self._sizes = size if isinstance(size, tuple) else (size,)
        self._tuple = isinstance(size, tuple)
        self._dtype = dtype
        self._arrays = [None] * workers

    def get(self, worker: int):
        bufs = self._arrays[worker]
        if bufs is None:
            bufs = self._arrays[worker] = tuple(np.empty(s, self._dtype) for s in self._sizes)
        return bufs if self._tuple else bufs[0]


class _Partials:
    """The backward's ``[dw | db]`` partials: one per image range, summed in range order.

    They are kept for a round of ranges that fits ``CONVCORE_WORKSPACE_MB`` (at
    least one range) in ``parts`` (``(ranges in a round, groups, F/g, C/g*K + 1)``)
    and then added to ``acc`` by :func:`_kernels.accumulate`, whose order per
    element does not depend on how the sum is split among the threads.
    """

    def __init__(self, ranges: int, groups: int, fg: int, ckg: int, dtype):
        self.shape = (groups, fg, ckg + 1)
        self.size = groups * fg * (ckg + 1)
        cap = max(1, _workspace_bytes() // (self.size * np.dtype(dtype).itemsize))
        self.rounds = _pieces(ranges, cap)
        self.parts = np.empty((max(b - a for a, b in self.rounds), *self.shape), dtype)
        self.acc = np.zeros(self.size, dtype)

    def run(self, item, per_range: int, workers: int) -> None:
        """``item(worker, idx, first)`` for every round, then the round's sums.

        ``idx // per_range`` is the range within the round (slot of ``parts``),
        ``first`` the round's first range.
        """
        spans = _pieces(self.size, max(1 << 14, ceil(self.size / max(1, workers))))
        acc = self.acc
        for first, stop in self.rounds:
            count = stop - first
            run_items(lambda wk, idx, s=first: item(wk, idx, s), count * per_range, workers)
            flat = self.parts[:count].reshape(count, self.size)
            run_items(lambda wk, p, fl=flat: K.accumulate(acc, fl, *spans[p]), len(spans), workers)

    def dw_db(self):
        """``(dw, db)`` of the summed partials: ``(groups, F/g, C/g*K)`` and ``(F,)``."""
        acc3 = self.acc.reshape(self.shape)
        dw = np.ascontiguousarray(acc3[:, :, :-1])
        return dw, np.ascontiguousarray(acc3[:, :, -1]).reshape(-1)


# ------------------------------------------------------------------- im2col / col2im ops


def im2col(xp, x, geom: ConvGeometry):
    """Unfold ``x`` (N, C, *S) into columns (N, C*prod(K), prod(O)); items of channels."""
    geo = _geo(geom)
    x5 = _as5d(x, geom)
    n, c = x5.shape[:2]
    k, L = geom.kernel_numel, geom.output_numel
    out = np.empty((n, c * k, L), x5.dtype)
    ds = out.reshape(-1)
    rows = _out_rows(geo)
    images, chans = _split_batch(n, c, c * k * L * x5.itemsize)

    def item(worker, idx):
        (i0, i1), (c0, c1) = images[idx // len(chans)], chans[idx % len(chans)]
        K.im2col_block(x5, i0, i1, c0, c1, 0, 0, rows, ds, 0, c * k * L, L, geo, c, c * k)

    items = len(images) * len(chans)
    run_items(item, items, _workers(float(out.size), items, 0))
    return out


def col2im(xp, cols, geom: ConvGeometry):
    """Fold columns back to ``(N, C, *input_size)``, summing overlaps; items own channels."""
    geo = _geo(geom)
    cols = np.ascontiguousarray(cols)
    n = cols.shape[0]
    k, L = geom.kernel_numel, geom.output_numel
    c = cols.shape[1] // k
    size = (1,) * (3 - geom.nd) + tuple(geom.input_size)
    out = np.empty((n, c, *size), cols.dtype)
    cs = cols.reshape(-1)
    images, chans = _split_batch(n, c, c * k * L * cols.itemsize)

    def item(worker, idx):
        (i0, i1), (c0, c1) = images[idx // len(chans)], chans[idx % len(chans)]
        K.col2im_block(cs, 0, c * k * L, L, out, i0, i1, c0, c1, 0, geo)

    items = len(images) * len(chans)
    run_items(item, items, _workers(float(cols.size), items, 0))
    return out.reshape((n, c, *geom.input_size))


# ------------------------------------------------------------------------- forward


def conv(xp, x, weight, bias, geom: ConvGeometry, groups: int):
    """Grouped cross-correlation ``(N, C, *S) -> (N, F, *O)`` by im2col + GEMM."""
    geo = _geo(geom)
    x5 = _as5d(x, geom)
    w5 = _as5d(weight, geom)
    if bias is not None:
        bias = np.ascontiguousarray(bias)
    n = x5.shape[0]
    f = w5.shape[0]
    if _winograd.enabled() and _winograd.eligible(geom, x5.dtype, groups, x.shape, weight.shape):
        with blas_single_threaded() as single:  # 3x3 stride 1, float32: see _winograd.py
            return _winograd.conv_winograd(x, weight, bias, geom, single)
    out = np.empty((n, f, *geo[12:]), x5.dtype)
    if f // groups <= DIRECT_MAX_FILTERS_PER_GROUP:
        # No BLAS call: no limit to set (threadpoolctl cost ~10 us per call here).
        _forward_direct(x5, w5, bias, out, geo, groups)
        return out.reshape((n, f, *geom.output_size))
    with blas_single_threaded() as single:
        if geom.is_pointwise:
            _forward_pointwise(x5, w5, bias, out, groups, single)
        else:
            _forward_im2col(x5, w5, bias, out, geo, groups, single)
    return out.reshape((n, f, *geom.output_size))


def _forward_direct(x5, w5, bias, out, geo, groups):
    """Thin groups: the direct kernel, items of whole images (no BLAS involved)."""
    n, c = x5.shape[:2]
    f = w5.shape[0]
    b = bias if bias is not None else np.zeros(f, x5.dtype)
    per_image = f * _out_rows(geo) * geo[14] * w5[0].size
    if n * per_image <= (1 << 20) and n * per_image < _PARALLEL_MIN_MACS:
        # One item on one thread (what the general path below would do): call the
        # kernel directly, without the item machinery (a few us of a tiny call).
        K.conv_direct_block(x5, w5, b, out, 0, n, 0, f, geo, c // groups, f // groups)
        return
    images = _pieces(n, max(1, (1 << 20) // max(1, per_image)))

    def item(worker, idx):
        i0, i1 = images[idx]
        K.conv_direct_block(x5, w5, b, out, i0, i1, 0, f, geo, c // groups, f // groups)

    run_items(item, len(images), _workers(float(n) * per_image, len(images), 0))


def _split_batch(n: int, size: int, per_image: int, block: int | None = None):
    """Image ranges and bands of ``size`` (rows or columns): items of about ``block`` bytes.

    Small images are grouped (several per item); a large one is cut into bands.
    ``per_image`` is the block size of one whole image in bytes; ``block``
    defaults to :data:`BLOCK_BYTES`.
    """
    block = BLOCK_BYTES if block is None else block
    if per_image <= block:
        return _pieces(n, block // per_image), [(0, size)]
    per_unit = max(1, per_image // size)
    return _pieces(n, 1), _pieces(size, block // per_unit)


def _gemm_block(itemsize: int) -> int:
    """Bytes of a GEMM item's column block: :data:`BLOCK_BYTES` per 4 bytes of element.

    The same number of elements in float64 as in float32 (2 MiB).  Measured
    (steady state, 2 threads, median of 7, float64 against 1 MiB): forward F
    0.92, E 0.95, B and D 0.97, A, C and H 0.98-0.99; backward B 0.97, H 0.96,
    A, D, E and F 1.00, C 1.03.  float32 forward gained nothing from 2 MiB
    (0.99-1.03).
    """
    return BLOCK_BYTES * max(1, itemsize // 4)


def _forward_pointwise(x5, w5, bias, out, groups, single):
    """``y_n = W_g @ x_n`` per group and image (batched matmul); no column buffer."""
    n, c = x5.shape[:2]
    f = w5.shape[0]
    cg, fg = c // groups, f // groups
    L = x5[0, 0].size
    x3 = x5.reshape(n, c, L)
    y3 = out.reshape(n, f, L)
    w3 = w5.reshape(groups, fg, cg)
    images, bands = _split_batch(n, L, c * L * x5.itemsize, _gemm_block(x5.itemsize))

    def item(worker, idx):
        (i0, i1), (l0, l1) = images[idx // len(bands)], bands[idx % len(bands)]
        for g in range(groups):
            np.matmul(
                w3[g],
                x3[i0:i1, g * cg : (g + 1) * cg, l0:l1],
                out=y3[i0:i1, g * fg : (g + 1) * fg, l0:l1],
            )
        if bias is not None:
            K.add_bias(y3, bias, i0, i1, l0, l1)

    items = len(images) * len(bands)
    workers = _workers(float(n) * f * cg * L, items, 0) if single else 1
    run_items(item, items, workers)


def _forward_im2col(x5, w5, bias, out, geo, groups, single):
    n, c = x5.shape[:2]
    f = w5.shape[0]
    cg, fg = c // groups, f // groups
    ckg = cg * _kernel_numel(geo)
    ho, wo = _out_rows(geo), geo[14]  # output rows (od, oh) of wo columns
    L = ho * wo
    extra = 1 if bias is not None else 0
    rows_g = ckg + extra
    # [W_g | b_g]: the bias multiplies the row of ones at the end of each group block.
    wb = np.empty((groups, fg, rows_g), x5.dtype)
    wb[:, :, :ckg] = w5.reshape(groups, fg, ckg)
    if extra:
        wb[:, :, ckg] = bias.reshape(groups, fg)
    per_image = groups * rows_g * L * x5.itemsize
    images, bands = _split_batch(n, ho, per_image, _gemm_block(x5.itemsize))
    nb_max = max(b - a for a, b in images)
    rows_max = max(b - a for a, b in bands)
    y3 = out.reshape(n, f, L)

    def item(worker, idx):
        (i0, i1), (r0, r1) = images[idx // len(bands)], bands[idx % len(bands)]
        nb, lb = i1 - i0, (r1 - r0) * wo
        buf = buffers.get(worker)
        cols = buf[: nb * groups * rows_g * lb].reshape(nb, groups, rows_g, lb)
        if extra:
            cols[:, :, ckg, :] = 1
        istride = groups * rows_g * lb  # the images one after the other
        K.im2col_block(x5, i0, i1, 0, c, 0, r0, r1, buf, i0, istride, lb, geo, cg, rows_g)
        for g in range(groups):
            np.matmul(wb[g], cols[:, g], out=y3[i0:i1, g * fg : (g + 1) * fg, r0 * wo : r1 * wo])

    items = len(images) * len(bands)
    size = nb_max * groups * rows_g * rows_max * wo
    workers = _workers(float(n) * f * ckg * L, items, size * x5.itemsize) if single else 1
    buffers = _Buffers(workers, size, x5.dtype)
    run_items(item, items, workers)


# ------------------------------------------------------------------------ backward


def conv_backward(xp, grad_out, x, weight, geom: ConvGeometry, groups: int):
    """``(dx, dw, db)`` of :func:`conv`; bitwise reproducible for any thread count."""
    geo = _geo(geom)
    x5 = _as5d(x, geom)
    w5 = _as5d(weight, geom)
    n, c = x5.shape[:2]
    f = w5.shape[0]
    if backward_path(f // groups, c // groups, geom.is_pointwise) == "direct":
        go5 = np.ascontiguousarray(grad_out).reshape(n, f, *geo[12:])
        out = _backward_direct(go5, x5, w5, geo, groups)
        if out is not None:
            dx, dw, db = out
            return dx.reshape(x.shape), dw.reshape(weight.shape), db
        # Non-finite values: im2col + GEMM below gives the exact NaN/inf pattern.
    dx_geom = _winograd_dx_geometry(geom, x5.dtype, groups, tuple(grad_out.shape), weight.shape)
    dtype = x5.dtype
    cg, fg = c // groups, f // groups
    kk = _kernel_numel(geo)
    ckg = cg * kk
    out_rows = _out_rows(geo)
    L = out_rows * geo[14]
    go3 = np.ascontiguousarray(grad_out).reshape(n, f, L)
    w3 = w5.reshape(groups, fg, ckg)
    need_dx = dx_geom is None  # else dx comes from the Winograd path below
    dx = np.empty_like(x5) if need_dx else None
    pointwise = geom.is_pointwise
    x3 = x5.reshape(n, c, L) if pointwise else None
    dx3 = dx.reshape(n, c, L) if pointwise else None
    itemsize = x5.itemsize

    # Items: (image range, group, channel range): several images side by side
    # when one group's block fits BLOCK_BYTES (their dw GEMM then sums over all
    # their columns at once), else one image and a range of its channels (at
    # least one) in BACKWARD_CHANNEL_BLOCK_FACTOR * BLOCK_BYTES.  The cut depends only on the
    # geometry and the dtype, so the rounding does too.
    group_block = (ckg + 1) * L * itemsize
    gemm_block = _gemm_block(itemsize)
    if group_block <= gemm_block:
        images, chans = _pieces(n, gemm_block // group_block), [(0, cg)]
    else:
        per_chan = kk * L * itemsize  # one channel of one image
        block_bytes = BACKWARD_CHANNEL_BLOCK_FACTOR * gemm_block
        images, chans = _pieces(n, 1), _pieces(cg, block_bytes // per_chan)
    nb_max = max(b - a for a, b in images)
    ch_max = max(b - a for a, b in chans)
    block = nb_max * (ch_max * kk + 1) * L
    per_range = groups * len(chans)

    partials = _Partials(len(images), groups, fg, ckg, dtype)

    def item(worker, idx, first):
        r = first + idx // per_range
        (i0, i1), rest = images[r], idx % per_range
        g, (c0, c1) = rest // len(chans), chans[rest % len(chans)]
        nb, nc, cs = i1 - i0, c1 - c0, g * cg
        last = c1 == cg
        bufs = buffers.get(worker)
        # grad_out of the range as (F/g, nb*L): the images side by side.
        if nb == 1:
            gor = go3[i0, g * fg : (g + 1) * fg]
        else:
            gor = bufs[1][: fg * nb * L].reshape(fg, nb, L)
            gor[...] = go3[i0:i1, g * fg : (g + 1) * fg].transpose(1, 0, 2)
            gor = gor.reshape(fg, nb * L)
        slot = partials.parts[r - first, g]
        if pointwise:
            if nb == 1:
                xr = x3[i0, cs + c0 : cs + c1]
            else:
                xr = bufs[0][: nc * nb * L].reshape(nc, nb, L)
                xr[...] = x3[i0:i1, cs + c0 : cs + c1].transpose(1, 0, 2)
                xr = xr.reshape(nc, nb * L)
            np.matmul(gor, xr.T, out=slot[:, c0:c1])
            if last:
                K.row_sums(gor, partials.parts, r - first, g, ckg)
            if not need_dx:
                return
            go = go3[i0:i1, g * fg : (g + 1) * fg]
            np.matmul(w3[g, :, c0:c1].T, go, out=dx3[i0:i1, cs + c0 : cs + c1])
            return
        rows = nc * kk
        buf = bufs[0]
        cols = buf[: (rows + last) * nb * L].reshape(rows + last, nb * L)
        K.im2col_block(
            x5, i0, i1, cs + c0, cs + c1, cs + c0, 0, out_rows, buf, i0, L, nb * L, geo, nc, rows
        )
        if last:
            cols[rows] = 1
        np.matmul(gor, cols.T, out=slot[:, c0 * kk : c0 * kk + rows + last])
        if not need_dx:
            return
        dcols = buf[: rows * nb * L].reshape(rows, nb * L)  # the columns are no longer needed
        np.matmul(w3[g, :, c0 * kk : c1 * kk].T, gor, out=dcols)
        K.col2im_block(buf, i0, L, nb * L, dx, i0, i1, cs + c0, cs + c1, cs + c0, geo)

    with blas_single_threaded() as single:
        items = len(images) * per_range
        macs = 2.0 * n * f * L * ckg
        workers = _workers(macs, items, block * itemsize) if single else 1
        buffers = _Buffers(workers, (block, fg * nb_max * L), dtype)
        partials.run(item, per_range, workers)
        if not need_dx:
            # dx of a 3x3 stride-1 layer is the 3x3 stride-1 convolution of grad_out
            # with the flipped, transposed weights: Winograd's fewer multiplies.
            w_t = np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            dx = _winograd.conv_winograd(np.ascontiguousarray(grad_out), w_t, None, dx_geom, single)
    dw, db = partials.dw_db()
    return dx.reshape(x.shape), dw.reshape(weight.shape), db


def _winograd_dx_geometry(geom: ConvGeometry, dtype, groups: int, go_shape, w_shape):
    """The geometry of ``dx`` as a convolution of ``grad_out`` when the Winograd path
    can compute it (a 3x3, stride-1, ungrouped float32 layer whose ``dx`` convolution
    is :func:`._winograd.eligible`), else None.

    With stride 1, ``dx = conv(grad_out, flip(W)^T)`` padded ``2 - p`` on each side
    that the forward padded by ``p``: eligible (at most 1) for ``p`` of 1 or 2.
    """
    if not (
        geom.nd == 2
        and groups == 1
        and tuple(geom.kernel_size) == (3, 3)
        and tuple(geom.stride) == (1, 1)
        and tuple(geom.dilation) == (1, 1)
        and not any(geom.overhang)
        and _winograd.enabled()
    ):
        return None
    pads = geom.padding  # (top, bottom, left, right)
    if min(pads) < 1 or max(pads) > 2:
        return None
    from convcore.geometry import conv_geometry

    dx_geom = conv_geometry(tuple(go_shape[2:]), (3, 3), padding=tuple(2 - p for p in pads))
    if tuple(dx_geom.output_size) != tuple(geom.input_size):
        return None
    ho, wo = dx_geom.output_size
    tiles = go_shape[0] * -(-ho // 2) * -(-wo // 2)
    channels = min(w_shape[:2])
    if channels < WINOGRAD_DX_MIN_CHANNELS or tiles * channels < WINOGRAD_DX_MIN_WORK:
        return None
    dx_weights = (w_shape[1], w_shape[0], 3, 3)
    return dx_geom if _winograd.eligible(dx_geom, dtype, 1, go_shape, dx_weights) else None


def backward_path(group_filters: int, group_channels: int, pointwise: bool = False) -> str:
    """``"direct"`` or ``"im2col"`` (GEMMs): how :func:`conv_backward` computes a layer.

    Thin groups take the direct kernel (see
    :data:`DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP`), pointwise ones only when
    their GEMMs would be tiny too (:data:`DIRECT_BACKWARD_POINTWISE_MAX_WEIGHTS`).
    Non-finite values fall back to the GEMM path at run time.
    """
    if group_filters > DIRECT_BACKWARD_MAX_FILTERS_PER_GROUP:
        return "im2col"
    if pointwise and group_filters > 1:
        if group_filters * group_channels > DIRECT_BACKWARD_POINTWISE_MAX_WEIGHTS:
            return "im2col"
    return "direct"


def _backward_direct(go5, x5, w5, geo, groups):
    """Thin groups: one direct kernel computes ``dx`` and the ``[dw | db]`` partials.

    Items are ``(image range, range of groups)``; an item owns the ``dx``
    planes of its images and groups and writes one ``[dw | db]`` partial per
    (image range, group).  Several small images share an item (and a
    partial); a large image is cut by groups.  The partials are added up in
    image-range order, in rounds that fit the workspace, as in the GEMM path.

    Returns None when the weights or the result are not finite: the kernel's
    extended lanes (zeros times input) may have turned an ``inf`` that no tap
    reaches into NaN, so the caller recomputes such a call with im2col + GEMM.
    """
    if not np.isfinite(w5).all():
        return None
    n, c = x5.shape[:2]
    f = w5.shape[0]
    dtype = x5.dtype
    itemsize = x5.itemsize
    cg, fg = c // groups, f // groups
    kk = _kernel_numel(geo)
    ckg = cg * kk
    L = _out_rows(geo) * geo[14]
    # Bytes an item reads and writes: x, dx and grad_out of its volumes.
    per_group = (2 * cg * x5[0, 0].size + fg * L) * itemsize
    images, group_ranges = _split_batch(n, groups, groups * per_group)
    per_image = len(group_ranges)
    partials = _Partials(len(images), groups, fg, ckg, dtype)
    dx = np.empty_like(x5)
    dq, hq, wq = K.phase_plan.py_func(geo)
    # Extended grad_out of the group's filters, then the phase volumes of x and dx.
    ext = ((geo[12] - 1) * hq + geo[13]) * wq
    scratch = fg * ext + 2 * geo[3] * geo[4] * geo[5] * dq * hq * wq
    band = BAND_BYTES // itemsize

    def item(worker, idx, first):
        r = first + idx // per_image
        (i0, i1), (g0, g1) = images[r], group_ranges[idx % per_image]
        buf = buffers.get(worker)
        K.conv_direct_backward_block(
            go5, x5, w5, dx, partials.parts, r - first, i0, i1, g0, g1, geo, cg, fg, band, buf
        )

    items = len(images) * per_image
    workers = _workers(2.0 * n * f * L * ckg, items, scratch * itemsize)
    buffers = _Buffers(workers, scratch, dtype)
    partials.run(item, per_image, workers)
    if not np.isfinite(partials.acc).all():
        return None
    return dx, *partials.dw_db()
