"""convcore's Numba backend: multi-threaded CPU kernels for NumPy arrays, 1-D to 3-D.

Registered through the entry-point group ``convcore.backends`` like any
third-party plugin.  Importing this module is cheap: it does not import Numba.
``check_available`` only looks Numba up (:func:`importlib.util.find_spec`),
and the kernels, with Numba, are imported by ``load`` on first use.

:func:`warmup` compiles the kernels ahead of time (``convcore warmup`` on the
command line).  See ``docs/numba.md`` for the design and the measurements.
"""

from __future__ import annotations

import importlib.util

from convcore._registry import INTEGER_DTYPES
from convcore.hookspecs import hookimpl

__all__ = ["INTEGERS", "convcore_register_backends", "warmup"]

_MIN_NUMBA = (0, 59)

#: im2col and col2im only move (and add) data, so they take integer arrays too.
#: Their kernels compile per dtype on first use (``convcore warmup`` prepares the
#: floats; ``warmup(dtypes=("int32",))`` prepares an integer type) and are cached.
INTEGERS = INTEGER_DTYPES


#: The pooling operators the backend has kernels of its own for (``_pool.py``).
POOLING = ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")


def _load():
    from . import _ops, _pool

    return {
        "im2col": _ops.im2col,
        "col2im": _ops.col2im,
        "conv": _ops.conv,
        "conv_backward": _ops.conv_backward,
        "max_pool": _pool.max_pool,
        "max_pool_backward": _pool.max_pool_backward,
        "avg_pool": _pool.avg_pool,
        "avg_pool_backward": _pool.avg_pool_backward,
    }


def _numba_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("numba")
    except Exception:
        return None


def _check_available() -> str | None:
    """None when Numba can be imported here, else why not (without importing it)."""
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    found = _numba_version()
    if found is None:
        return "numba is importable but has no package metadata (broken install?)"
    try:
        parts = tuple(int(p) for p in found.split(".")[:2])
    except ValueError:
        return None
    if parts < _MIN_NUMBA:
        need = ".".join(map(str, _MIN_NUMBA))
        return f"numba {found} is too old (the numba backend needs numba >= {need})"
    return None


def warmup(dtypes=("float32", "float64")) -> dict[str, float]:
    """Compile (or load from Numba's cache) every kernel for ``dtypes``.

    Parameters
    ----------
    dtypes : iterable of str, optional
        ``"float32"`` and/or ``"float64"`` (every kernel), or integer types of
        :data:`INTEGERS` (the im2col and col2im kernels only).

    Returns
    -------
    dict
        Seconds spent: ``"import"`` (importing Numba and the kernels) and one
        entry per dtype.
    """
    from ._warmup import warmup as _warmup

    return _warmup(dtypes)


def _spec_warmup(dtypes) -> dict[str, float | int]:
    """``BackendSpec.warmup``: :func:`warmup` with the steps named for ``convcore warmup``."""
    times = warmup(dtypes)
    report: dict[str, float | int] = {"import numba and the kernels": times["import"]}
    for name in dtypes:
        report[f"compile {name}"] = times[name]
    report["kernels loaded from Numba's cache"] = times["cache_hits"]
    report["kernels compiled"] = times["compiled"]
    return report


def _auto_prefers(op, x_shape, weight_shape, geom, groups) -> str | None:
    """Under ``auto``: 2-D pointwise (1x1, stride 1, no padding) ungrouped forwards go
    to ``numpy``, whose GEMMs on all cores measured faster than the per-item
    single-threaded GEMMs here (numba / numpy 0.97-2.03, eight layers from
    4x8x8x8 to 8x64x56x56 and 8x256x7x7, 2026-12-04; docs/benchmarks.md).  1-D and
    3-D were not measured: they stay here."""
    if op == "conv" and groups == 1 and geom.nd == 2 and geom.is_pointwise:
        return "numpy"
    return None


@hookimpl
def convcore_register_backends(register):
    """Register the ``numba`` backend (NumPy arrays on the CPU, float32/float64, 1-3-D)."""
    from convcore import BackendSpec

    movable = {"float32", "float64", *INTEGERS}

    register(
        BackendSpec(
            name="numba",
            load=_load,
            ops={"im2col", "col2im", "conv", "conv_backward", *POOLING},
            dtypes={"float32", "float64"},
            namespaces={"numpy"},
            devices={"cpu"},
            spatial_dims={1, 2, 3},
            op_dtypes={"im2col": movable, "col2im": movable},
            priority=20,
            version=_numba_version(),
            description=(
                "Numba kernels: per-core pipelines of im2col + single-threaded BLAS, "
                "1-D to 3-D, deterministic"
            ),
            check_available=_check_available,
            warmup=_spec_warmup,
            auto_prefers=_auto_prefers,
        )
    )
