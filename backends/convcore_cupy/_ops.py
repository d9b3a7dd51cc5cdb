"""CuPy kernels for convcore: im2col and col2im in CUDA, GEMMs through cuBLAS.

The four ops follow the backend interface of ``convcore``: arrays arrive
validated (CuPy arrays of one dtype on one device), ``geom`` is a resolved 2-D
:class:`convcore.geometry.ConvGeometry`, and ``xp`` is ignored.

Design, in short (``docs/cupy.md`` has the long version):

* **CUDA source in a .cu file**, compiled by NVRTC through :class:`cupy.RawModule`
  with ``name_expressions`` for the dtype x index-type template instances, once
  per device (:func:`cupy.memoize` with ``for_each_device=True``; CuPy also keeps
  the compiled binary in its on-disk kernel cache).
* **col2im is a gather**: one thread per image element sums the column entries
  that cover it, in a fixed order.  No atomics, so every op here is bitwise
  reproducible run to run on the same GPU.
* **Index type per launch**: 32-bit when every index fits, else 64-bit; sizes
  beyond that are refused with a ``ValueError`` (:func:`_source.index_type`).
* **GEMMs**: :func:`cupy.matmul` (cuBLAS), one GEMM per group over a whole
  batch chunk (strided-batched over the groups).  Everything runs on the
  current stream of the array's device, allocates from CuPy's memory pool and
  never synchronises with the host.
* **Bounded workspace**: the batch is processed in chunks so that the column
  buffer stays below ``CONVCORE_WORKSPACE_MB`` MiB (default 256), as in the CPU
  backends.
* **float16** is stored as float16; col2im, the GEMMs (cuBLAS compute type
  32F) and the bias gradient accumulate in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cupy
import numpy as np

from . import _source

if TYPE_CHECKING:
    from collections.abc import Iterator

    from convcore.geometry import ConvGeometry

__all__ = ["col2im", "conv", "conv_backward", "im2col"]

_THREADS = 256
#: Grid size cap; the kernels loop (grid-stride) over the rest.
_MAX_BLOCKS = 1 << 20
#: Accumulation dtype of sums that do not go through the kernels (db, dw chunks).
_ACCUMULATE = {"float16": "float32", "float32": "float32", "float64": "float64"}


# ------------------------------------------------------------------- compilation


@cupy.memoize(for_each_device=True)
def _module():
    """The compiled kernels of the current device (NVRTC, once per device)."""
    return cupy.RawModule(
        code=_source.kernel_source(),
        options=_source.NVRTC_OPTIONS,
        name_expressions=_source.NAME_EXPRESSIONS,
    )


@cupy.memoize(for_each_device=True)
def _function(kernel: str, dtype: str, index: str):
    """One template instance, e.g. ``convcore_im2col<float, int>``."""
    return _module().get_function(_source.name_expression(kernel, dtype, index))


def _launch(kernel, src, dst, geom_ints, total, col_strides, extents):
    """Launch ``kernel`` over ``total`` work items on the current stream."""
    dtype = src.dtype.name
    if dtype not in _source.STORAGE_TYPES:
        raise TypeError(
            f"the cupy backend supports {sorted(_source.STORAGE_TYPES)}, got dtype {dtype}"
        )
    blocks = min(-(-total // _THREADS), _MAX_BLOCKS)
    index = _source.index_type((*extents, total + blocks * _THREADS))
    itype = np.int32 if index == "int32" else np.int64
    args = (
        src,
        dst,
        itype(total),
        *(np.int32(v) for v in geom_ints),
        *(itype(s) for s in col_strides),
    )
    _function(kernel, dtype, index)((blocks,), (_THREADS,), args)


def _im2col_into(img, cols, geom: ConvGeometry, col_stride_n: int, col_stride_row: int):
    """Columns of the contiguous images ``img`` (n, C, H, W) into ``cols``."""
    n, c = img.shape[:2]
    ints = _source.check_geometry(geom, c)
    total = n * c * geom.output_numel
    _launch(
        "convcore_im2col",
        img,
        cols,
        ints,
        total,
        (col_stride_n, col_stride_row),
        (img.size, cols.size),
    )


def _col2im_into(cols, img, geom: ConvGeometry, col_stride_n: int, col_stride_row: int):
    """Fold ``cols`` into the contiguous images ``img`` (n, C, H, W), overwriting them."""
    c = img.shape[1]
    ints = _source.check_geometry(geom, c)
    _launch(
        "convcore_col2im",
        cols,
        img,
        ints,
        img.size,
        (col_stride_n, col_stride_row),
        (img.size, cols.size),
    )


# -------------------------------------------------------------------------- GEMMs


def _mm(a, b, out=None):
    """Per group ``a @ b``: ``(g, m, k) @ (g, k, n) -> (g, m, n)``.

    One group goes through the 2-D path of :func:`cupy.matmul`, which hands
    transposed operands to cuBLAS without copying them.
    """
    if a.shape[0] == 1:
        return cupy.matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return cupy.matmul(a, b, out=out)


def _mm_nt(a, b):
    """Per group ``a @ b.T``: ``(g, m, M) @ (g, k, M).T -> (g, m, k)`` (may be a view)."""
    if a.shape[0] == 1:
        return cupy.matmul(a[0], b[0].T)[None]
    # Batched matmul copies transposed operands: transpose the smaller one.
    return cupy.matmul(b, a.transpose(0, 2, 1)).transpose(0, 2, 1)


def _column_chunks(x, geom: ConvGeometry) -> Iterator[tuple[tuple[int, int], object]]:
    """Yield ``((start, stop), cols)`` per batch chunk, cols = im2col laid out (C*K, n*L).

    One workspace buffer (from CuPy's pool) is reused by every chunk; a chunk's
    ``cols`` is only valid until the next one is produced.
    """
    n, c = x.shape[:2]
    L = geom.output_numel
    ck = c * geom.kernel_numel
    chunks = _source.batch_chunks(
        n, _source.columns_bytes(geom, c, x.itemsize), _source.workspace_bytes()
    )
    nb_max = max(b - a for a, b in chunks)
    buf = cupy.empty(ck * nb_max * L, dtype=x.dtype)
    for a, b in chunks:
        m = (b - a) * L
        cols = buf[: ck * m].reshape(ck, m)
        _im2col_into(x[a:b], cols, geom, L, m)
        yield (a, b), cols


# ------------------------------------------------------------------------- kernels


def im2col(xp, x, geom):
    """Unfold ``x`` (N, C, H, W) into columns (N, C*KH*KW, Ho*Wo), PyTorch order.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    x : cupy.ndarray
        Input batch; may be non-contiguous.
    geom : ConvGeometry
        Resolved 2-D geometry.

    Returns
    -------
    cupy.ndarray
        Row ``(c*KH + i)*KW + j``, column ``oh*Wo + ow``; on ``x``'s device.
    """
    with x.device:
        x = cupy.ascontiguousarray(x)
        n, c = x.shape[:2]
        ck, L = c * geom.kernel_numel, geom.output_numel
        cols = cupy.empty((n, ck, L), dtype=x.dtype)
        _im2col_into(x, cols, geom, ck * L, L)
        return cols


def col2im(xp, cols, geom):
    """Fold columns (N, C*KH*KW, Ho*Wo) into images (N, C, H, W), summing overlaps.

    A gather: every image element is written once, by one thread, with its
    contributions summed in a fixed order (float32 for float16 input).

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    cols : cupy.ndarray
        Columns in :func:`im2col` order; may be non-contiguous.
    geom : ConvGeometry
        Resolved 2-D geometry.

    Returns
    -------
    cupy.ndarray
        Images of shape ``(N, C, *geom.input_size)``, dtype of ``cols``.
    """
    with cols.device:
        cols = cupy.ascontiguousarray(cols)
        n, ck, L = cols.shape
        c = ck // geom.kernel_numel
        img = cupy.empty((n, c, *geom.input_size), dtype=cols.dtype)
        _col2im_into(cols, img, geom, ck * L, L)
        return img


def conv(xp, x, weight, bias, geom, groups):
    """Grouped 2-D cross-correlation by im2col and cuBLAS GEMMs.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    x : cupy.ndarray
        Input ``(N, C, H, W)``.
    weight : cupy.ndarray
        Filters ``(F, C // groups, KH, KW)``.
    bias : cupy.ndarray or None
        ``(F,)`` or None.
    geom : ConvGeometry
        Resolved 2-D geometry.
    groups : int
        Number of channel groups.

    Returns
    -------
    cupy.ndarray
        Output ``(N, F, Ho, Wo)``, dtype and device of ``x``.
    """
    with x.device:
        x = cupy.ascontiguousarray(x)
        n, c = x.shape[:2]
        f = weight.shape[0]
        fg = f // groups
        L = geom.output_numel
        w3 = cupy.ascontiguousarray(weight).reshape(groups, fg, -1)
        out = cupy.empty((n, f, *geom.output_size), dtype=x.dtype)
        out3 = out.reshape(n, f, L)
        if geom.is_pointwise:
            # 1x1, stride 1, no padding: the columns are the image itself.
            _source.check_geometry(geom, c)
            cupy.matmul(
                w3, x.reshape(n, groups, c // groups, L), out=out3.reshape(n, groups, fg, L)
            )
            if bias is not None:
                out3 += bias[:, None]
            return out
        ckg = w3.shape[2]
        for (a, b), cols in _column_chunks(x, geom):
            nb = b - a
            y = _mm(w3, cols.reshape(groups, ckg, nb * L))  # (g, fg, nb*L) == (F, nb, L)
            y = y.reshape(f, nb, L).transpose(1, 0, 2)
            if bias is None:
                out3[a:b] = y
            else:
                cupy.add(y, bias[:, None], out=out3[a:b])
        return out


def conv_backward(xp, grad_out, x, weight, geom, groups):
    """Gradients of :func:`conv` with respect to input, weight and bias.

    Parameters
    ----------
    xp : namespace
        Array namespace of the inputs (ignored).
    grad_out : cupy.ndarray
        ``(N, F, Ho, Wo)``.
    x : cupy.ndarray
        Forward input ``(N, C, H, W)``.
    weight : cupy.ndarray
        ``(F, C // groups, KH, KW)``.
    geom : ConvGeometry
        Resolved 2-D geometry.
    groups : int
        Number of channel groups.

    Returns
    -------
    dx, dw, db : cupy.ndarray
        Shapes of ``x``, ``weight`` and ``(F,)``; dtype and device of ``x``.
        Bitwise reproducible: no atomics anywhere.
    """
    with x.device:
        x = cupy.ascontiguousarray(x)
        n = x.shape[0]
        f = weight.shape[0]
        fg = f // groups
        L = geom.output_numel
        acc = _ACCUMULATE[x.dtype.name]
        go3 = cupy.ascontiguousarray(grad_out).reshape(n, f, L)
        w3 = cupy.ascontiguousarray(weight).reshape(groups, fg, -1)
        w3t = w3.transpose(0, 2, 1)
        ckg = w3.shape[2]
        db = cupy.sum(go3, axis=(0, 2), dtype=acc).astype(x.dtype, copy=False)
        dx = cupy.empty(x.shape, dtype=x.dtype)
        dw = None
        for (a, b), cols in _column_chunks(x, geom):
            m = (b - a) * L
            cols3 = cols.reshape(groups, ckg, m)
            gof = cupy.ascontiguousarray(go3[a:b].transpose(1, 0, 2)).reshape(groups, fg, m)
            part = _mm_nt(gof, cols3)  # (g, fg, ckg)
            if dw is None:
                dw = part
            else:
                if dw.dtype != acc:
                    dw = dw.astype(acc)
                dw += part
            _mm(w3t, gof, out=cols3)  # dcols overwrite the columns
            _col2im_into(cols, dx[a:b], geom, L, m)
        dw = dw.astype(x.dtype, order="C", copy=False).reshape(weight.shape)
        return dx, dw, db
