"""The dask backend's kernels: Dask graphs whose blocks call convcore on the chunks.

Every kernel receives channels-first Dask arrays (the core has already applied
the layout and the float16 promotion) and returns Dask arrays, lazily: nothing
is computed here, and building a graph never calls a block function (every
``blockwise`` / ``map_blocks`` gets its ``meta``).

* **Blocks.**  One task per batch chunk calls the public function
  (:func:`convcore.im2col`, :func:`convcore.col2im`, :func:`convcore.conv`,
  :func:`convcore.conv_backward`) with the geometry's numbers, so the chunk runs
  on the best backend for its type where it runs (a Dask worker may have
  different backends installed): ``numba`` for NumPy chunks, ``cupy`` for CuPy
  chunks.  The Dask configuration key ``convcore.block-backend`` names another
  backend for the chunks; it is read when the graph is built and stored in it.
* **Chunking.**  Only the batch axis is split into tasks.  Channel chunks are
  kept where the op allows it (im2col: the rows follow the channels; col2im:
  row chunks that hold whole channels) and otherwise merged, batch chunk by
  batch chunk (a rechunk that moves no data between batch chunks).  Spatial
  chunks get no halos: they are merged the same way while the merged blocks
  stay within Dask's ``array.chunk-size`` (128 MiB by default), and beyond
  that a ``ValueError`` says how to rechunk.
* **Weight gradients.**  ``conv_backward`` runs once per batch chunk and
  returns ``dx`` as that chunk's block and ``dw``/``db`` as one partial per
  chunk, stacked along a new axis and summed by Dask's tree reduction
  (:data:`SPLIT_EVERY` partials per node).  For a fixed chunking the order of
  every sum is fixed, so the result is deterministic.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import dask
import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array
from dask.utils import format_bytes, parse_bytes

if TYPE_CHECKING:
    from convcore.geometry import ConvGeometry

__all__ = ["BLOCK_BACKEND_KEY", "SPLIT_EVERY", "col2im", "conv", "conv_backward", "im2col"]

#: Partials summed per node of the dw/db tree reduction (Dask's ``split_every``);
#: the Dask configuration key ``split_every`` overrides it when set.
SPLIT_EVERY = 4

#: Dask configuration key naming the backend the chunks run on (default: ``auto``).
BLOCK_BACKEND_KEY = "convcore.block-backend"


# ---------------------------------------------------------------------------
# block functions (module level: Dask pickles them by reference)
# ---------------------------------------------------------------------------
def _block_backend(chosen: str | None) -> str | None:
    """The ``backend=`` for a chunk: the configured one, else the selection chain.

    A chain that says ``dask`` (``set_backend("dask")``, ``CONVCORE_BACKEND=dask``)
    means ``auto`` for the chunks, which are not Dask arrays.
    """
    if chosen is not None:
        return chosen
    import convcore

    return "auto" if convcore.get_backend()[0] == "dask" else None


def _im2col_block(x, *, kernel_size, options, backend):
    import convcore

    return convcore.im2col(x, kernel_size, backend=_block_backend(backend), **options)


def _col2im_block(cols, *, input_size, kernel_size, options, backend):
    import convcore

    # the core cast the columns to the result dtype already: sum in it
    return convcore.col2im(
        cols, input_size, kernel_size, dtype=cols.dtype, backend=_block_backend(backend), **options
    )


def _conv_block(x, weight, bias=None, *, groups, options, backend):
    import convcore

    return convcore.conv(x, weight, bias, groups=groups, backend=_block_backend(backend), **options)


def _backward_block(grad_out, x, weight, *, groups, options, backend):
    import convcore

    return convcore.conv_backward(
        grad_out, x, weight, groups=groups, backend=_block_backend(backend), **options
    )


def _pick(parts, *, index):
    return parts[index]


def _pick_partial(parts, *, index):
    """One chunk's ``dw`` or ``db`` with a leading axis of 1 (for the stacked partials)."""
    part = parts[index]
    return part.reshape((1, *part.shape))


# ---------------------------------------------------------------------------
# graph helpers
# ---------------------------------------------------------------------------
def _configured_backend() -> str | None:
    name = dask.config.get(BLOCK_BACKEND_KEY, None)
    if name is None:
        return None
    import convcore

    with convcore.use_backend(name):  # checks the name (an unknown one raises here)
        return name


def _options(geom: ConvGeometry) -> dict:
    """The keyword arguments that rebuild ``geom`` in a block (padding as flat pairs)."""
    return {"stride": geom.stride, "padding": geom.padding, "dilation": geom.dilation}


def _rechunk_hint(name: str, nd: int, first_axis: int) -> str:
    axes = ", ".join(f"{first_axis + i}: -1" for i in range(nd))
    return f"{name}.rechunk({{{axes}}})"


def _block_limit() -> int:
    """Dask's ``array.chunk-size`` in bytes: the largest block a merge may make."""
    return parse_bytes(dask.config.get("array.chunk-size", "128MiB"))


def _merged_bytes(arr, axes) -> int:
    """Bytes of the largest block of ``arr`` once ``axes`` are each one chunk."""
    sizes = [arr.shape[i] if i in axes else max(arr.chunks[i]) for i in range(arr.ndim)]
    return math.prod(sizes) * arr.dtype.itemsize


def _whole_spatial(name: str, arr, nd: int, *, merge=()):
    """``arr`` with each spatial axis (and the axes ``merge``) in one chunk.

    Split spatial axes are merged (a rechunk within each batch chunk) when the
    blocks stay within Dask's ``array.chunk-size``; otherwise a ``ValueError``
    says how to rechunk: the backend has no halos between spatial chunks.
    """
    spatial = range(2, 2 + nd)
    axes = [i for i in (*merge, *spatial) if len(arr.chunks[i]) > 1]
    if not axes:
        return arr
    split = [len(arr.chunks[i]) for i in spatial]
    if any(n > 1 for n in split):
        size, limit = _merged_bytes(arr, (*merge, *spatial)), _block_limit()
        if size > limit:
            raise ValueError(
                f"{name} is split into {' x '.join(map(str, split))} chunks along its spatial "
                f"axes, and whole images would make blocks of {format_bytes(size)}, above "
                f"Dask's array.chunk-size ({format_bytes(limit)}); the dask backend runs one "
                f"task per batch chunk and has no halos between spatial chunks: rechunk with "
                f"{_rechunk_hint(name, nd, 2)} for channels-first data (NCHW) or "
                f"{_rechunk_hint(name, nd, 1)} for channels-last data (NHWC), with fewer "
                "images per batch chunk"
            )
    return arr.rechunk({i: -1 for i in axes})


def _single(arr):
    return arr if all(len(c) == 1 for c in arr.chunks) else arr.rechunk(-1)


def _split_every() -> int:
    return dask.config.get("split_every", None) or SPLIT_EVERY


def _spatial(prefix: str, nd: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(nd))


def _sizes(sizes) -> tuple[tuple[int], ...]:
    return tuple((int(s),) for s in sizes)


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------
def im2col(xp, x, geom: ConvGeometry):
    """``(N, C*prod(K), prod(out))`` columns, one block per (batch, channel) chunk."""
    nd, k = geom.nd, geom.kernel_numel
    x = _whole_spatial("x", x, nd)
    return da.blockwise(
        _im2col_block,
        ("n", "c", "l"),
        x,
        ("n", "c", *_spatial("s", nd)),
        concatenate=True,
        adjust_chunks={"c": lambda c: c * k},
        new_axes={"l": geom.output_numel},
        dtype=x.dtype,
        meta=meta_from_array(x, ndim=3),
        kernel_size=geom.kernel_size,
        options=_options(geom),
        backend=_configured_backend(),
    )


def col2im(xp, cols, geom: ConvGeometry):
    """``(N, C, *input_size)`` images; row chunks holding whole channels are kept."""
    nd, k = geom.nd, geom.kernel_numel
    merge = (1,) if any(c % k for c in cols.chunks[1]) else ()  # rows cutting taps apart
    if len(cols.chunks[2]) > 1:
        size, limit = _merged_bytes(cols, (*merge, 2)), _block_limit()
        if size > limit:
            raise ValueError(
                f"cols is split into {len(cols.chunks[2])} chunks along its L axis (the output "
                f"positions), and whole images would make blocks of {format_bytes(size)}, "
                f"above Dask's array.chunk-size ({format_bytes(limit)}); the dask backend "
                "runs one task per batch chunk: rechunk with cols.rechunk({2: -1}), with fewer "
                "images per batch chunk"
            )
        merge = (*merge, 2)
    if merge:
        cols = cols.rechunk({i: -1 for i in merge})
    return da.blockwise(
        _col2im_block,
        ("n", "r", *_spatial("s", nd)),
        cols,
        ("n", "r", "l"),
        concatenate=True,
        adjust_chunks={"r": lambda r: r // k},
        new_axes=dict(zip(_spatial("s", nd), geom.input_size)),
        dtype=cols.dtype,
        meta=meta_from_array(cols, ndim=2 + nd),
        input_size=geom.input_size,
        kernel_size=geom.kernel_size,
        options=_options(geom),
        backend=_configured_backend(),
    )


def conv(xp, x, weight, bias, geom: ConvGeometry, groups: int):
    """``(N, F, *output_size)``, one block per batch chunk (channels merged)."""
    nd = geom.nd
    x = _whole_spatial("x", x, nd, merge=(1,))
    args = [
        x,
        ("n", "c", *_spatial("s", nd)),
        _single(weight),
        ("f", "g", *_spatial("k", nd)),
    ]
    if bias is not None:
        args += [_single(bias), ("f",)]
    return da.blockwise(
        _conv_block,
        ("n", "f", *_spatial("o", nd)),
        *args,
        concatenate=True,
        new_axes=dict(zip(_spatial("o", nd), geom.output_size)),
        dtype=x.dtype,
        meta=meta_from_array(x, ndim=2 + nd),
        groups=groups,
        options=_options(geom),
        backend=_configured_backend(),
    )


def conv_backward(xp, grad_out, x, weight, geom: ConvGeometry, groups: int):
    """``(dx, dw, db)``: ``dx`` per batch chunk, ``dw`` and ``db`` tree-reduced partials."""
    nd = geom.nd
    grad_out = _whole_spatial("grad_out", grad_out, nd, merge=(1,))
    x = _whole_spatial("x", x, nd, merge=(1,))
    weight = _single(weight)
    # One task per batch chunk returns the tuple (dx, dw, db) of that chunk; the
    # three arrays below pick from it, so the backward runs once per chunk.
    parts = da.blockwise(
        _backward_block,
        ("n",),
        grad_out,
        ("n", "f", *_spatial("o", nd)),
        x,
        ("n", "c", *_spatial("s", nd)),
        weight,
        ("F", "g", *_spatial("k", nd)),
        concatenate=True,
        dtype=object,
        meta=np.empty((0,), dtype=object),
        groups=groups,
        options=_options(geom),
        backend=_configured_backend(),
    )
    batch = parts.chunks[0]
    dx = parts.map_blocks(
        _pick,
        index=0,
        chunks=(batch, *_sizes(x.shape[1:])),
        new_axis=list(range(1, 2 + nd)),
        dtype=x.dtype,
        meta=meta_from_array(x, ndim=2 + nd),
    )
    ones = ((1,) * len(batch),)
    dw_parts = parts.map_blocks(
        _pick_partial,
        index=1,
        chunks=ones + _sizes(weight.shape),
        new_axis=list(range(1, 1 + weight.ndim)),
        dtype=weight.dtype,
        meta=meta_from_array(weight, ndim=1 + weight.ndim),
    )
    db_parts = parts.map_blocks(
        _pick_partial,
        index=2,
        chunks=ones + _sizes(weight.shape[:1]),
        new_axis=[1],
        dtype=weight.dtype,
        meta=meta_from_array(weight, ndim=2),
    )
    every = _split_every()
    dw = dw_parts.sum(axis=0, split_every=every)
    db = db_parts.sum(axis=0, split_every=every)
    return dx, dw, db
