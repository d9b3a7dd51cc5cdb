"""The portable backend ``array_api``: im2col convolution on any array-API namespace.

Only the array API standard is used (through array-api-compat and
array-api-extra), so the same code runs on NumPy, CuPy, PyTorch, JAX, Dask and
array-api-strict.  im2col is a loop over the kernel offsets with strided slices
(one slice per offset, stacked); col2im is the same loop with slice-adds, so no
integer scatter with duplicate indices is ever needed and results are
deterministic on every namespace (Chainer's ``im2col_cpu`` / ``col2im_cpu``).

Memory: ``conv`` and ``conv_backward`` never build the columns of a whole
large call.  They cut it into chunks whose padded input region, columns and
GEMM results stay under ``CONVCORE_WORKSPACE_MB`` MiB (default
:data:`DEFAULT_WORKSPACE_MB`, read on every call): ranges of whole images while
one image fits, else boxes of output rows of one image (a slab of input rows
plus the kernel halo; narrower boxes when one row is too large), with all
groups or one group at a time, written into (forward) or added into
(backward ``dx``, halos overlapping) the result with ``array_api_extra.at``.
A call whose smallest chunk (one output position of one group) does not fit
raises :class:`convcore.WorkspaceLimitError` before allocating anything.
``im2col`` returns the full column matrix (its contract); ``col2im`` allocates
its padded result.  Dask arrays are not cut (their own chunks bound a task's
memory).
"""

from __future__ import annotations

import sys
from itertools import product

import array_api_compat
import array_api_extra as xpx

from ._version import __version__
from ._workspace import plan_chunks, workspace_bytes
from .geometry import ConvGeometry
from .hookspecs import hookimpl

__all__ = ["DEFAULT_WORKSPACE_MB", "col2im", "conv", "conv_backward", "im2col"]

#: Default of ``CONVCORE_WORKSPACE_MB`` for this backend, in MiB.  Larger than the
#: numpy backend's 16: this path allocates fresh arrays per chunk (no reused
#: buffers to keep in cache) and runs on GPU namespaces too, where fewer, larger
#: products pay; 64 MiB still cuts a 1x64x512x512 float32 3x3 call from 9x the
#: input's size of scratch to a few dozen MiB, and leaves batches such as
#: 32x64x28x28 in at most two chunks of whole images.
DEFAULT_WORKSPACE_MB = 64


def _offset_slices(geom: ConvGeometry):
    """For each kernel offset, the strided slices of the padded input it reads."""
    axes = []
    for k, d, s, out in zip(geom.kernel_size, geom.dilation, geom.stride, geom.output_size):
        axes.append([slice(i * d, i * d + s * (out - 1) + 1, s) for i in range(k)])
    return [(slice(None), slice(None), *combo) for combo in product(*axes)]


def _pad(xp, x, geom: ConvGeometry):
    if not any(geom.padding):
        return x
    pairs = [(0, 0), (0, 0)] + [
        (geom.padding[2 * i], geom.padding[2 * i + 1]) for i in range(geom.nd)
    ]
    return xpx.pad(x, tuple(pairs), xp=xp)


def im2col(xp, x, geom: ConvGeometry):
    """Columns ``(N, C*prod(K), prod(out))`` in PyTorch ``unfold`` row order."""
    n, c = x.shape[0], x.shape[1]
    padded = _pad(xp, x, geom)
    cols = xp.stack([padded[idx] for idx in _offset_slices(geom)], axis=2)
    return xp.reshape(cols, (n, c * geom.kernel_numel, geom.output_numel))


def col2im(xp, cols, geom: ConvGeometry):
    """Overlap-sum ``(N, C*prod(K), prod(out))`` columns back to ``(N, C, *input_size)``."""
    n, k = cols.shape[0], geom.kernel_numel
    c = cols.shape[1] // k
    cols = xp.reshape(cols, (n, c, k, *geom.output_size))
    out = xp.zeros(
        (n, c, *geom.padded_size), dtype=cols.dtype, device=array_api_compat.device(cols)
    )
    for i, idx in enumerate(_offset_slices(geom)):
        out = xpx.at(out, idx).add(cols[:, :, i, ...])
    if not any(geom.padding):
        return out
    crop = tuple(slice(b, b + size) for b, size in zip(geom.pad_before, geom.input_size))
    return out[(slice(None), slice(None), *crop)]


def _grouped_cols(xp, x, geom, groups):
    n, c = x.shape[0], x.shape[1]
    cols = im2col(xp, x, geom)
    return xp.reshape(cols, (n, groups, (c // groups) * geom.kernel_numel, geom.output_numel))


def _itemsize(xp, x) -> int:
    return xp.finfo(x.dtype).bits // 8


def _chunk_plan(xp, x, geom, groups, f, op, aux):
    """The :class:`convcore._workspace.ChunkPlan` of a call.

    A chunk's scratch is about its padded input region (``C/g`` values per
    position), its columns (``C/g * K`` rows) and ``aux`` (F/g)-row results
    per output position, per group.
    """
    cg = x.shape[1] // groups
    # Dask arrays are lazy and cut into Dask's own chunks: cutting the graph
    # again would only multiply its tasks.
    lazy = array_api_compat.is_dask_namespace(xp)
    return plan_chunks(
        geom,
        x.shape[0],
        groups,
        _itemsize(xp, x),
        sys.maxsize if lazy else workspace_bytes(DEFAULT_WORKSPACE_MB),
        rows=cg * geom.kernel_numel,
        aux=aux * (f // groups),
        channels=cg,
        backend="array_api",
        op=op,
    )


def _chunk_arrays(chunk, cg, fg):
    """A chunk's input region ``(images, channels, *inp)``, its output box
    ``(images, filters, *out)``, its filters and its number of groups."""
    (a, b), (g0, g1) = chunk.images, chunk.groups
    images = slice(a, b)
    inp = (images, slice(g0 * cg, g1 * cg), *chunk.inp)
    box = (images, slice(g0 * fg, g1 * fg), *chunk.out)
    return inp, box, slice(g0 * fg, g1 * fg), g1 - g0


def conv(xp, x, weight, bias, geom: ConvGeometry, groups: int):
    """Forward convolution: one (batched, grouped) GEMM over the columns, by chunks.

    The call is cut into chunks under ``CONVCORE_WORKSPACE_MB`` MiB (default
    :data:`DEFAULT_WORKSPACE_MB`): ranges of whole images, else boxes of output
    rows of one image (all groups or one at a time), each written into its box
    of the output (:func:`convcore._workspace.plan_chunks`).
    """
    n, c, f = x.shape[0], x.shape[1], weight.shape[0]
    cplan = _chunk_plan(xp, x, geom, groups, f, "conv", aux=2)
    if cplan.count == 1:
        return _conv_chunk(xp, x, weight, bias, geom, groups)
    cg, fg = c // groups, f // groups
    out = xp.empty((n, f, *geom.output_size), dtype=x.dtype, device=array_api_compat.device(x))
    for chunk in cplan.chunks:
        inp, box, filters, g = _chunk_arrays(chunk, cg, fg)
        b = None if bias is None else bias[filters]
        y = _conv_chunk(xp, x[inp], weight[filters, ...], b, chunk.geom, g)
        out = xpx.at(out, box).set(y)
    return out


def _conv_chunk(xp, x, weight, bias, geom, groups):
    n, f = x.shape[0], weight.shape[0]
    cols = _grouped_cols(xp, x, geom, groups)
    w = xp.reshape(weight, (groups, f // groups, cols.shape[2]))
    out = xp.reshape(xp.matmul(w, cols), (n, f, *geom.output_size))
    del cols
    if bias is not None:
        out = out + xp.reshape(bias, (1, f) + (1,) * geom.nd)
    return out


def conv_backward(xp, grad_out, x, weight, geom: ConvGeometry, groups: int):
    """Gradients ``(dx, dw, db)`` of the forward convolution, by chunks as in :func:`conv`.

    A chunk that is a box of output rows folds its ``dcols`` (col2im) into
    the input region its windows read; neighbouring regions overlap by the
    kernel halo and the folds add, so the overlaps sum.  ``dw`` accumulates
    over the chunks; ``db`` is one sum over ``grad_out``.
    """
    c, f = x.shape[1], weight.shape[0]
    db = xp.sum(grad_out, axis=(0, *range(2, 2 + geom.nd)))
    cplan = _chunk_plan(xp, x, geom, groups, f, "conv_backward", aux=1)
    if cplan.count == 1:
        return (*_backward_chunk(xp, grad_out, x, weight, geom, groups), db)
    cg, fg = c // groups, f // groups
    device = array_api_compat.device(x)
    dx = xp.zeros(tuple(x.shape), dtype=x.dtype, device=device)
    dw = xp.zeros(tuple(weight.shape), dtype=x.dtype, device=device)
    for chunk in cplan.chunks:
        inp, box, filters, g = _chunk_arrays(chunk, cg, fg)
        dxc, dwc = _backward_chunk(xp, grad_out[box], x[inp], weight[filters, ...], chunk.geom, g)
        dx = xpx.at(dx, inp).add(dxc)
        dw = xpx.at(dw, (filters, ...)).add(dwc)
    return dx, dw, db


def _backward_chunk(xp, grad_out, x, weight, geom, groups):
    """``(dx, dw)`` of one chunk (``dx`` of the chunk's input region)."""
    n, c, f = x.shape[0], x.shape[1], weight.shape[0]
    go = xp.reshape(grad_out, (n, groups, f // groups, geom.output_numel))
    cols = _grouped_cols(xp, x, geom, groups)
    ckg = cols.shape[2]
    dw = xp.sum(xp.matmul(go, xp.matrix_transpose(cols)), axis=0)
    del cols
    dw = xp.reshape(dw, tuple(weight.shape))
    w = xp.reshape(weight, (groups, f // groups, ckg))
    dcols = xp.matmul(xp.matrix_transpose(w), go)
    dx = col2im(xp, xp.reshape(dcols, (n, c * geom.kernel_numel, geom.output_numel)), geom)
    return dx, dw


def _load():
    return {"im2col": im2col, "col2im": col2im, "conv": conv, "conv_backward": conv_backward}


@hookimpl
def convcore_register_backends(register):
    """Register the portable ``array_api`` backend (lowest priority, any namespace)."""
    from ._registry import ALL_OPS, INTEGER_DTYPES, BackendSpec

    # im2col and col2im only move (and add) data, so they take integer arrays too.
    movable = {"float32", "float64", *INTEGER_DTYPES}

    register(
        BackendSpec(
            name="array_api",
            load=_load,
            ops=ALL_OPS,
            dtypes={"float32", "float64"},
            namespaces=None,
            devices=None,
            spatial_dims=None,
            op_dtypes={"im2col": movable, "col2im": movable},
            priority=0,
            version=__version__,
            description="portable array-API implementation (any compliant namespace)",
        )
    )
