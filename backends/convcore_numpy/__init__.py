"""convcore's NumPy backend: NumPy-specific im2col/col2im kernels and BLAS GEMMs.

Registered through the entry-point group ``convcore.backends`` like any
third-party plugin.  This module is cheap to import; the kernels (and NumPy)
are imported by ``load`` on first use.
"""

from __future__ import annotations

from convcore._registry import INTEGER_DTYPES
from convcore.hookspecs import hookimpl

__all__ = ["convcore_register_backends"]


def _load():
    from . import _kernels

    return {
        "im2col": _kernels.im2col,
        "col2im": _kernels.col2im,
        "conv": _kernels.conv,
        "conv_backward": _kernels.conv_backward,
    }


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("numpy")
    except Exception:  # pragma: no cover - numpy is a hard dependency
        return None


#: im2col and col2im only move (and add) data, so they take integer arrays too.
_INTEGERS = INTEGER_DTYPES


@hookimpl
def convcore_register_backends(register):
    """Register the ``numpy`` backend (NumPy arrays on the CPU, float32/float64, any rank)."""
    from convcore import BackendSpec

    movable = {"float32", "float64", *_INTEGERS}

    register(
        BackendSpec(
            name="numpy",
            load=_load,
            ops={"im2col", "col2im", "conv", "conv_backward"},
            dtypes={"float32", "float64"},
            namespaces={"numpy"},
            devices={"cpu"},
            spatial_dims=None,
            op_dtypes={"im2col": movable, "col2im": movable},
            priority=10,
            version=_version(),
            description="NumPy kernels: strided copies into reused buffers, BLAS GEMM",
        )
    )
