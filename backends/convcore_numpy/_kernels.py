"""NumPy kernels for convcore: im2col, col2im, convolution forward and backward.

All four kernels follow the backend interface of ``convcore`` (see the contract
in the package docs): arrays arrive validated, ``geom`` is a resolved
:class:`convcore.geometry.ConvGeometry` and ``xp`` (the array namespace) is
ignored because these kernels call NumPy directly.  Any number of spatial axes
works (1-D, 2-D, 3-D, ...).

Design, in short:

* **im2col without a padded copy.**  For every kernel offset the valid part of
  the input is copied with one strided slice assignment; only the border of the
  column block that falls into the padding is zeroed.  The offset plan (slices
  per kernel offset) is computed once per geometry and cached.
* **col2im without a padded buffer.**  The adjoint adds, per kernel offset, the
  valid part of the column block into a strided slice of the unpadded result.
  No ``np.add.at``; the summation order is fixed, so results are deterministic.
* **Convolution layout.**  Forward and backward build the columns of a batch
  chunk as ``(C*K, n*L)`` (kernel rows, then image-major output columns), so
  each group is one GEMM: ``y = W @ cols``, ``dw = go @ cols.T`` and
  ``dcols = W.T @ go`` (written back into the column buffer).  The forward
  output is transposed into ``(N, F, L)`` in the same pass that adds the bias.
* **Pointwise convolutions** (1x1 kernel, stride 1, no padding) skip im2col in
  the forward pass and col2im in the backward pass: the GEMMs read ``x`` and
  write ``out`` / ``dx`` directly.
* **Bounded memory.**  The call is processed in chunks so that the column
  buffer plus the GEMM's other side (output rows forward, gradient rows
  backward) stay below ``CONVCORE_WORKSPACE_MB`` MiB (default 16, read once
  per call): ranges of whole images while one image fits, else, per image,
  boxes of output positions (slabs of the outermost output axis, with the
  input rows they read plus the kernel halo; narrower boxes when one output
  row is too large), with all groups or one group at a time.  The backward
  pass folds each box's ``dcols`` into the overlapping input region, so the
  halos sum; ``dw`` and ``db`` accumulate over the chunks.  A call whose
  smallest chunk (one output position of one group) exceeds the limit raises
  :class:`convcore.WorkspaceLimitError` before allocating anything.  The
  buffers are reused by all chunks.  Small buffers also come back from the
  allocator's heap without page faults, whereas fresh allocations above
  glibc's 32 MiB mmap threshold fault on every call: with a 256 MiB limit the
  float64 forward of the benchmark layers with the largest column buffers
  (70-115 MB) ran 2.5-3x slower.  :func:`im2col` returns the full column
  matrix (its contract) and :func:`col2im` allocates only its result.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from convcore._workspace import plan_chunks, workspace_bytes

if TYPE_CHECKING:
    from convcore.geometry import ConvGeometry

__all__ = ["col2im", "conv", "conv_backward", "im2col"]

_DEFAULT_WORKSPACE_MB = 16
_ALL = slice(None)


# --------------------------------------------------------------------------- plan


def _axis_taps(size, out, k, stride, pad, dil):
    """Valid output range and input slice of one kernel tap along one axis.

    Parameters
    ----------
    size, out : int
        Input and output length along the axis.
    k : int
        Kernel offset along the axis.
    stride, pad, dil : int
        Stride, padding before, dilation along the axis.

    Returns
    -------
    out_slice : slice
        Output positions whose input index ``o * stride - pad + k * dil`` lies
        inside ``[0, size)``; empty if there is none.
    in_slice : slice
        The matching input positions (a strided slice).
    """
    shift = k * dil - pad
    lo = max(0, (stride - 1 - shift) // stride)
    hi = min(out, (size - shift + stride - 1) // stride)
    hi = max(hi, lo)
    start = lo * stride + shift if hi > lo else 0
    stop = start + (hi - lo - 1) * stride + 1 if hi > lo else 0
    return slice(lo, hi), slice(start, stop, stride)


def _border_slices(out_slices, output_size):
    """Slices covering the part of an output block outside ``out_slices``.

    The regions are disjoint: along axis ``a`` the earlier axes are restricted
    to their valid range and the later axes are taken whole.
    """
    regions = []
    for a, (sl, n) in enumerate(zip(out_slices, output_size)):
        head = out_slices[:a]
        tail = (_ALL,) * (len(output_size) - a - 1)
        if sl.start > 0:
            regions.append((*head, slice(0, sl.start), *tail))
        if sl.stop < n:
            regions.append((*head, slice(sl.stop, n), *tail))
    return tuple(regions)


@lru_cache(maxsize=256)
def _plan(geom: ConvGeometry):
    """Per kernel offset: ``(kernel_index, out_slices, in_slices, border_slices)``.

    Offsets are listed in C order over the kernel axes, which is the PyTorch
    ``unfold`` row order within one channel.  An offset with no valid output
    position has empty slices and a border covering the whole block.
    """
    taps_per_axis = [
        [_axis_taps(size, out, k, s, p, d) for k in range(ks)]
        for size, out, ks, s, p, d in zip(
            geom.input_size,
            geom.output_size,
            geom.kernel_size,
            geom.stride,
            geom.pad_before,
            geom.dilation,
        )
    ]
    plan = []
    for kidx in itertools.product(*(range(k) for k in geom.kernel_size)):
        taps = [taps_per_axis[a][k] for a, k in enumerate(kidx)]
        out_sl = tuple(t[0] for t in taps)
        in_sl = tuple(t[1] for t in taps)
        if any(sl.stop == sl.start for sl in out_sl):
            full = tuple(slice(0, n) for n in geom.output_size)
            plan.append((kidx, None, None, (full,)))
        else:
            plan.append((kidx, out_sl, in_sl, _border_slices(out_sl, geom.output_size)))
    return tuple(plan)


# ------------------------------------------------------------------ gather / scatter


def _gather(src, dst, plan):
    """Fill ``dst`` (P, Q, *K, *O) with the kernel taps of ``src`` (P, Q, *S)."""
    for kidx, out_sl, in_sl, border in plan:
        block = dst[(_ALL, _ALL, *kidx)]
        if out_sl is not None:
            block[(_ALL, _ALL, *out_sl)] = src[(_ALL, _ALL, *in_sl)]
        for region in border:
            block[(_ALL, _ALL, *region)] = 0


def _scatter_add(src, dst, plan):
    """Add the taps ``src`` (P, Q, *K, *O) into ``dst`` (P, Q, *S) (col2im)."""
    for kidx, out_sl, in_sl, _ in plan:
        if out_sl is None:
            continue
        view = dst[(_ALL, _ALL, *in_sl)]
        view += src[(_ALL, _ALL, *kidx, *out_sl)]


def _taps_view(buf, nd):
    """View a ``(C, *K, n, *O)`` buffer as ``(C, n, *K, *O)``."""
    return buf.transpose(0, nd + 1, *range(1, nd + 1), *range(nd + 2, 2 * nd + 2))


def _swap01(a):
    """View ``(A, B, ...)`` as ``(B, A, ...)``."""
    return a.swapaxes(0, 1)


# ----------------------------------------------------------------------- workspace


def _workspace_bytes():
    """Workspace limit in bytes, from ``CONVCORE_WORKSPACE_MB`` (default 16 MiB).

    Unset, empty, unparsable, zero, negative or NaN values give the default;
    ``inf`` means no limit (one chunk for the whole batch).  Read on every call
    (:func:`convcore._workspace.workspace_bytes`).
    """
    return workspace_bytes(_DEFAULT_WORKSPACE_MB)


def _chunk_plan(x, geom, groups, f, limit, op):
    """The :class:`convcore._workspace.ChunkPlan` of a call: column rows plus ``F`` rows."""
    c = x.shape[1]
    return plan_chunks(
        geom,
        x.shape[0],
        groups,
        x.dtype.itemsize,
        limit,
        rows=(c // groups) * geom.kernel_numel,
        aux=f // groups,
        backend="numpy",
        op=op,
    )


def _chunked_columns(x, geom, cplan, groups, aux_rows):
    """Yield ``(chunk, cols, aux)`` for the chunks of ``cplan``.

    ``cols`` is the im2col of the chunk (its images, its groups' channels, its
    box of output positions) laid out as ``(Cc, *K, nb, *box)`` (C order), i.e.
    a ``(Cc*K, nb*box)`` matrix.  ``aux`` is an uninitialised
    ``(aux_rows * chunk groups / groups, nb*box)`` scratch matrix for the GEMM
    on the other side (output rows in the forward pass, gradient rows in the
    backward pass).  All chunks share the same two buffers, so both are valid
    only until the next chunk is requested; the caller may overwrite them.
    """
    c = x.shape[1]
    cg = c // groups
    k = geom.kernel_numel
    share = cplan.groups_per_chunk
    pos = cplan.max_positions
    cols_flat = np.empty(share * cg * k * pos, x.dtype)
    aux_flat = np.empty(aux_rows // groups * share * pos, x.dtype)
    for chunk in cplan.chunks:
        (a, b), (g0, g1) = chunk.images, chunk.groups
        sub = chunk.geom
        nb, cc = b - a, (g1 - g0) * cg
        npos = nb * sub.output_numel
        ar = aux_rows // groups * (g1 - g0)
        cols = cols_flat[: cc * k * npos].reshape(cc, *geom.kernel_size, nb, *sub.output_size)
        src = x[(slice(a, b), slice(g0 * cg, g1 * cg), *chunk.inp)]
        _gather(_swap01(src), _taps_view(cols, geom.nd), _plan(sub))
        yield chunk, cols, aux_flat[: ar * npos].reshape(ar, npos)


# ------------------------------------------------------------------------- kernels


def im2col(xp, x, geom):
    """Unfold ``x`` (N, C, *S) into columns (N, C*prod(K), prod(O)).

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored; NumPy is used directly).
    x : numpy.ndarray
        Input of shape ``(N, C, *input_size)``; may be non-contiguous.
    geom : ConvGeometry
        Resolved geometry.

    Returns
    -------
    numpy.ndarray
        Columns in PyTorch ``unfold`` order: row ``(c * KH + i) * KW + j``,
        column ``oh * Wo + ow`` (generalised to any number of axes).
    """
    n, c = x.shape[:2]
    out = np.empty((n, c, *geom.kernel_size, *geom.output_size), x.dtype)
    _gather(x, out, _plan(geom))
    return out.reshape(n, c * geom.kernel_numel, geom.output_numel)


def col2im(xp, cols, geom):
    """Fold columns (N, C*prod(K), prod(O)) back to an image, summing overlaps.

    The exact adjoint of :func:`im2col`: ``<im2col(x), y> == <x, col2im(y)>``.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    cols : numpy.ndarray
        Columns of shape ``(N, C * kernel_numel, output_numel)``.
    geom : ConvGeometry
        Resolved geometry.

    Returns
    -------
    numpy.ndarray
        Image of shape ``(N, C, *geom.input_size)``, dtype of ``cols``.
    """
    n = cols.shape[0]
    c = cols.shape[1] // geom.kernel_numel
    taps = cols.reshape(n, c, *geom.kernel_size, *geom.output_size)
    out = np.zeros((n, c, *geom.input_size), cols.dtype)
    _scatter_add(taps, out, _plan(geom))
    return out


def conv(xp, x, weight, bias, geom, groups):
    """Grouped N-d cross-correlation (forward convolution) by im2col and GEMM.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    x : numpy.ndarray
        Input ``(N, C, *input_size)``.
    weight : numpy.ndarray
        Filters ``(F, C // groups, *kernel_size)``.
    bias : numpy.ndarray or None
        ``(F,)`` or None.
    geom : ConvGeometry
        Resolved geometry.
    groups : int
        Number of channel groups.

    Returns
    -------
    numpy.ndarray
        Output ``(N, F, *output_size)``, dtype of ``x``.

    Notes
    -----
    The call is processed in chunks whose column buffer and GEMM result
    together stay under ``CONVCORE_WORKSPACE_MB`` MiB (default 16; read once per
    call): ranges of whole images, or, for an image that does not fit, boxes
    of output positions (slabs of output rows) of one image, with all groups
    or one group at a time (:func:`convcore._workspace.plan_chunks`).  A call
    whose smallest chunk (one output position of one group) does not fit
    raises :class:`convcore.WorkspaceLimitError` before allocating anything.
    """
    n, f = x.shape[0], weight.shape[0]
    w3 = weight.reshape(groups, f // groups, -1)
    if geom.is_pointwise:
        out = np.empty((n, f, *geom.output_size), x.dtype)
        _conv_pointwise(x, w3, bias, out.reshape(n, f, geom.output_numel))
        return out
    cplan = _chunk_plan(x, geom, groups, f, _workspace_bytes(), "conv")
    out = np.empty((n, f, *geom.output_size), x.dtype)
    _conv_im2col(x, w3, bias, geom, out, cplan)
    return out


def _conv_pointwise(x, w3, bias, out3):
    """Pointwise forward: ``out3[n] = W @ x[n]`` per group, no column buffer."""
    n, c = x.shape[:2]
    g, fg = w3.shape[:2]
    L = out3.shape[2]
    np.matmul(w3, x.reshape(n, g, c // g, L), out=out3.reshape(n, g, fg, L))
    if bias is not None:
        out3 += bias[:, None]


def _conv_im2col(x, w3, bias, geom, out, cplan):
    """Forward by chunks: one GEMM per group into ``(Fc, nb*box)``, then transpose.

    The transpose into ``out`` (N, F, *O) is the pass that also adds the bias.
    """
    g, fg, ckg = w3.shape
    for chunk, cols, y in _chunked_columns(x, geom, cplan, g, aux_rows=g * fg):
        (a, b), (g0, g1) = chunk.images, chunk.groups
        nb, gc, npos = b - a, g1 - g0, y.shape[1]
        np.matmul(w3[g0:g1], cols.reshape(gc, ckg, npos), out=y.reshape(gc, fg, npos))
        f0, f1 = g0 * fg, g1 * fg
        y3 = y.reshape(f1 - f0, nb, *chunk.geom.output_size)
        dst = _swap01(out[(slice(a, b), slice(f0, f1), *chunk.out)])
        if bias is None:
            np.copyto(dst, y3)
        else:
            np.add(y3, bias[f0:f1].reshape(-1, *(1,) * (geom.nd + 1)), out=dst)


def conv_backward(xp, grad_out, x, weight, geom, groups):
    """Gradients of :func:`conv` with respect to input, weight and bias.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    grad_out : numpy.ndarray
        ``(N, F, *output_size)``.
    x : numpy.ndarray
        Forward input ``(N, C, *input_size)``.
    weight : numpy.ndarray
        ``(F, C // groups, *kernel_size)``.
    geom : ConvGeometry
        Resolved geometry.
    groups : int
        Number of channel groups.

    Returns
    -------
    dx, dw, db : numpy.ndarray
        Shapes of ``x``, ``weight`` and ``(F,)``; dtype of ``x``.

    Notes
    -----
    Per batch chunk, the columns ``cols`` (C*K, nb*L) and a transposed copy
    of the gradient ``go`` (F, nb*L) give ``dw += go @ cols.T`` and
    ``dcols = W.T @ go`` as one GEMM each per group; ``dcols`` overwrites
    ``cols`` and is folded into ``dx`` (col2im).  Chunking as in :func:`conv`;
    a chunk that is a box of output positions folds its ``dcols`` into the
    input region its windows read, which overlaps the neighbouring chunks'
    regions by the kernel halo: the folds add, so the overlaps sum.  ``dw`` and
    ``db`` accumulate over the chunks.
    """
    n, f = x.shape[0], weight.shape[0]
    g = groups
    fg = f // g
    w3 = weight.reshape(g, fg, -1)
    cplan = _chunk_plan(x, geom, g, f, _workspace_bytes(), "conv_backward")
    pointwise = geom.is_pointwise and cplan.whole_images
    dw3 = np.zeros(w3.shape, x.dtype)
    db = np.zeros(f, x.dtype)
    dx = (np.empty if pointwise else np.zeros)(x.shape, x.dtype)
    go3 = grad_out.reshape(n, f, geom.output_numel)
    cg = x.shape[1] // g
    for chunk, cols, go in _chunked_columns(x, geom, cplan, g, aux_rows=f):
        (a, b), (g0, g1) = chunk.images, chunk.groups
        sub = chunk.geom
        nb, gc, npos = b - a, g1 - g0, go.shape[1]
        f0, f1 = g0 * fg, g1 * fg
        src = grad_out[(slice(a, b), slice(f0, f1), *chunk.out)]
        np.copyto(go.reshape(f1 - f0, nb, *sub.output_size), _swap01(src))
        db[f0:f1] += go.sum(axis=1)
        go = go.reshape(gc, fg, npos)
        c3 = cols.reshape(gc, w3.shape[2], npos)
        dw3[g0:g1] += np.matmul(go, c3.swapaxes(1, 2))
        if pointwise:
            _dx_pointwise(go3[a:b], w3, dx[a:b])
        else:
            np.matmul(w3[g0:g1].swapaxes(1, 2), go, out=c3)
            dst = dx[(slice(a, b), slice(g0 * cg, g1 * cg), *chunk.inp)]
            _scatter_add(_taps_view(cols, geom.nd), _swap01(dst), _plan(sub))
    return dx, dw3.reshape(weight.shape), db


def _dx_pointwise(go_chunk, w3, dx_chunk):
    """Pointwise input gradient ``dx[n] = W.T @ go[n]`` per group, no col2im."""
    nb, c = dx_chunk.shape[:2]
    g, fg = w3.shape[:2]
    L = go_chunk.shape[2]
    np.matmul(
        w3.swapaxes(1, 2),
        go_chunk.reshape(nb, g, fg, L),
        out=dx_chunk.reshape(nb, g, c // g, L),
    )
