"""convcore's CuPy backend: CUDA im2col/col2im kernels and cuBLAS GEMMs for CuPy arrays.

Registered through the entry-point group ``convcore.backends`` like any
third-party plugin.  Importing this module is cheap: it does not import CuPy.
CuPy is imported by ``check_available`` (when convcore asks whether the backend
can run, which it only does for CuPy input, an explicit ``backend="cupy"`` or a
listing such as ``convcore info``) and by ``load`` on first use; the CUDA
kernels are compiled on the first launch on each device.

The backend accepts CuPy arrays only (namespace ``cupy``, device ``cuda``), so
``auto`` sends GPU arrays here and NumPy arrays never move to the GPU.  See
``docs/cupy.md`` for the design and how it is tested.
"""

from __future__ import annotations

import importlib.util

from convcore.hookspecs import hookimpl

__all__ = ["convcore_register_backends"]

#: Distributions that provide the ``cupy`` module, most likely first.
_CUPY_DISTRIBUTIONS = ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy")

_INSTALL_HINT = "pip install 'convcore[cupy]' for CUDA 12, 'convcore[cupy-cuda13]' for CUDA 13"


def _load():
    from . import _ops

    return {
        "im2col": _ops.im2col,
        "col2im": _ops.col2im,
        "conv": _ops.conv,
        "conv_backward": _ops.conv_backward,
    }


def _cupy_version() -> str | None:
    """Version of the installed CuPy distribution, from its metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in _CUPY_DISTRIBUTIONS:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
        except Exception:  # broken metadata must not break registration
            return None
    return None


def _cupy_installed() -> bool:
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):  # a blocked or half-imported module
        return False


def _probe() -> str | None:
    if not _cupy_installed():
        return f"cupy is not installed ({_INSTALL_HINT})"
    try:
        import cupy
    except Exception as exc:
        return f"cupy is installed but failed to import: {exc!r}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA device (cupy.cuda.runtime.getDeviceCount() failed: {exc}){_driver(cupy)}"
    if count < 1:
        return "no CUDA device (cupy.cuda.runtime.getDeviceCount() returned 0)"
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as exc:
        return (
            "CUDA's run-time compiler NVRTC cannot be loaded, and the kernels are "
            f"compiled with it: {exc}"
        )
    return None


def _driver(cupy) -> str:
    """``"; CUDA driver ..., CuPy built for CUDA runtime ..."`` when known."""
    parts = []
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
        parts.append(f"CUDA driver version {driver}" if driver else "no CUDA driver found")
    except Exception:
        pass
    try:
        parts.append(f"CuPy built for CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    except Exception:
        pass
    return f"; {', '.join(parts)}" if parts else ""


def _check_available() -> str | None:
    """None when the backend can run here, else the precise reason; never raises."""
    try:
        return _probe()
    except Exception as exc:  # the probe itself must not break convcore
        return f"availability check failed: {exc!r}"


@hookimpl
def convcore_register_backends(register):
    """Register the ``cupy`` backend (CuPy arrays on CUDA, float16/float32/float64)."""
    from convcore import BackendSpec

    register(
        BackendSpec(
            name="cupy",
            load=_load,
            ops={"im2col", "col2im", "conv", "conv_backward"},
            dtypes={"float16", "float32", "float64"},
            namespaces={"cupy"},
            devices={"cuda"},
            priority=30,
            version=_cupy_version(),
            description=(
                "CUDA kernels (NVRTC): im2col, gather col2im (no atomics, deterministic), "
                "cuBLAS GEMMs"
            ),
            check_available=_check_available,
        )
    )
