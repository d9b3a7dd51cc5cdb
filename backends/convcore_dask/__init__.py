"""convcore's Dask backend: lazy, chunk-parallel convolutions on Dask arrays.

Registered through the entry-point group ``convcore.backends`` like any
third-party plugin.  Importing this module is cheap: it does not import Dask.
``check_available`` only looks Dask up (:func:`importlib.util.find_spec`) and
the kernels, with Dask, are imported by ``load`` on first use.

The kernels build Dask graphs (``blockwise`` / ``map_blocks``) whose blocks call
the public convcore functions on the chunks, so every chunk runs on the best
local backend for its type: ``numba`` (or ``numpy``) for NumPy chunks, ``cupy``
for CuPy chunks.  Weight and bias gradients are per-chunk partials summed by a
tree reduction.  Only the batch axis (and, where it is cheap, the channel axis)
may be chunked; see ``docs/scaling.md``.
"""

from __future__ import annotations

import importlib.util

from convcore._registry import INTEGER_DTYPES
from convcore.hookspecs import hookimpl

__all__ = ["convcore_register_backends"]


def _load():
    from . import _ops

    return {
        "im2col": _ops.im2col,
        "col2im": _ops.col2im,
        "conv": _ops.conv,
        "conv_backward": _ops.conv_backward,
    }


def _dask_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("dask")
    except Exception:
        return None


def _check_available() -> str | None:
    """None when Dask can be imported here, else why not (without importing it)."""
    if importlib.util.find_spec("dask") is None:
        return "dask is not installed (pip install 'convcore[dask]')"
    if _dask_version() is None:
        return "dask is importable but has no package metadata (broken install?)"
    return None


#: The chunks' backends take float32/float64 (float16 too: computed in float32
#: by the core, or natively on CuPy); im2col and col2im only move (and add)
#: data, so they take integers as well (the numpy backend's declaration).
_FLOATS = ("float16", "float32", "float64")
_INTEGERS = INTEGER_DTYPES


@hookimpl
def convcore_register_backends(register):
    """Register the ``dask`` backend (Dask arrays of NumPy or CuPy chunks, any rank)."""
    from convcore import BackendSpec

    movable = {*_FLOATS, *_INTEGERS}
    register(
        BackendSpec(
            name="dask",
            load=_load,
            ops={"im2col", "col2im", "conv", "conv_backward"},
            dtypes=set(_FLOATS),
            namespaces={"dask"},
            devices=None,
            spatial_dims=None,
            op_dtypes={"im2col": movable, "col2im": movable},
            priority=15,
            version=_dask_version(),
            description=(
                "Dask graphs: one block per batch chunk on the chunk's best backend "
                "(numba for NumPy, cupy for CuPy), tree-reduced dw/db, lazy"
            ),
            check_available=_check_available,
        )
    )
