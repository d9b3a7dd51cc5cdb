"""What the CuPy backend knows without importing CuPy.

The CUDA source and the template instances the kernels are launched with, the
index-type choice with its overflow guard, and the workspace (batch chunk)
arithmetic.  Everything here is plain Python, so the test suite can check it
(and compile the source with ``nvcc``) on machines without a GPU.
"""

from __future__ import annotations

import os
from importlib.resources import files
from math import prod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convcore.geometry import ConvGeometry

__all__ = [
    "INDEX_TYPES",
    "KERNELS",
    "KERNEL_FILE",
    "NAME_EXPRESSIONS",
    "NVRTC_OPTIONS",
    "STORAGE_TYPES",
    "batch_chunks",
    "check_geometry",
    "columns_bytes",
    "index_type",
    "kernel_path",
    "kernel_source",
    "name_expression",
    "workspace_bytes",
]

#: The CUDA source file, shipped as package data next to this module.
KERNEL_FILE = "_kernels.cu"

#: The ``__global__`` function templates in :data:`KERNEL_FILE`.
KERNELS = ("convcore_im2col", "convcore_col2im")

#: CUDA storage type per dtype name (float16 travels as raw bits, see the .cu file).
STORAGE_TYPES = {"float16": "convcore_half", "float32": "float", "float64": "double"}

#: CUDA index type per index-type name.
INDEX_TYPES = {"int32": "int", "int64": "long long"}

#: Options for NVRTC (``cupy.RawModule`` adds the architecture itself).
NVRTC_OPTIONS = ("-std=c++17",)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_INDEX_MAX = {"int32": INT32_MAX, "int64": INT64_MAX}

_DEFAULT_WORKSPACE_MB = 256


def name_expression(kernel: str, dtype: str, index: str) -> str:
    """The C++ name of one template instance, e.g. ``convcore_im2col<float, int>``."""
    return f"{kernel}<{STORAGE_TYPES[dtype]}, {INDEX_TYPES[index]}>"


#: Every instance the backend may launch: 2 kernels x 3 dtypes x 2 index types.
NAME_EXPRESSIONS = tuple(
    name_expression(kernel, dtype, index)
    for kernel in KERNELS
    for dtype in STORAGE_TYPES
    for index in INDEX_TYPES
)


def kernel_path():
    """The packaged ``.cu`` file (an :mod:`importlib.resources` traversable)."""
    return files(__package__).joinpath(KERNEL_FILE)


def kernel_source() -> str:
    """Text of the CUDA source."""
    return kernel_path().read_text(encoding="utf-8")


# ----------------------------------------------------------------------- indexing


def index_type(extents, *, force: str | None = None) -> str:
    """Pick the kernels' index type for a launch, or refuse it.

    Parameters
    ----------
    extents : iterable of int
        Every index bound the launch can form: element counts of the arrays it
        touches and ``total + threads in the grid`` (the grid-stride loop steps
        past ``total`` once).
    force : {"int32", "int64"}, optional
        Use this type instead of choosing.  Defaults to the environment variable
        ``CONVCORE_CUPY_INDEX`` (``int32``, ``int64`` or ``auto``/unset).

    Returns
    -------
    str
        ``"int32"`` when every extent fits in a signed 32-bit int, else ``"int64"``.

    Raises
    ------
    ValueError
        If an extent does not fit the forced type, or does not fit in 64 bits, or
        ``CONVCORE_CUPY_INDEX`` holds something else.
    """
    need = max(int(e) for e in extents)
    if force is None:
        raw = os.environ.get("CONVCORE_CUPY_INDEX", "").strip().lower()
        if raw not in ("", "auto", *_INDEX_MAX):
            raise ValueError(f"CONVCORE_CUPY_INDEX must be 'int32', 'int64' or 'auto', got {raw!r}")
        force = raw if raw in _INDEX_MAX else None
    if force is not None and force not in _INDEX_MAX:
        raise ValueError(f"force must be 'int32' or 'int64', got {force!r}")
    chosen = force or ("int32" if need <= INT32_MAX else "int64")
    if need > _INDEX_MAX[chosen]:
        raise ValueError(
            f"the cupy backend's kernels cannot address {need} elements with {chosen} "
            f"indices (at most {_INDEX_MAX[chosen]}); "
            + (
                "unset CONVCORE_CUPY_INDEX or set it to 'int64'"
                if chosen == "int32"
                else "split the batch into smaller calls"
            )
        )
    return chosen


def check_geometry(geom: ConvGeometry, channels: int) -> tuple[int, ...]:
    """The 13 int kernel arguments of a 2-D geometry, checked to fit in 32 bits.

    Returns
    -------
    tuple of int
        ``(C, H, W, KH, KW, Ho, Wo, sh, sw, pt, pl, dh, dw)``.

    Raises
    ------
    ValueError
        If the geometry is not 2-D, or a size the kernels compute in ``int``
        (padded image side, kernel taps, channel count) exceeds 2**31 - 1.
    """
    if geom.nd != 2:
        raise ValueError(
            f"the cupy backend handles 2-D convolutions (N, C, H, W); got a {geom.nd}-D "
            f"geometry with input size {geom.input_size}"
        )
    (h, w), (kh, kw) = geom.input_size, geom.kernel_size
    (ho, wo), (sh, sw), (dh, dw) = geom.output_size, geom.stride, geom.dilation
    pt, _, pl, _ = geom.padding
    ints = (channels, h, w, kh, kw, ho, wo, sh, sw, pt, pl, dh, dw)
    bounded = {
        "padded height": geom.padded_size[0],
        "padded width": geom.padded_size[1],
        "stride": max(sh, sw),
        "dilated kernel extent": max(geom.effective_kernel_size),
        "kernel taps KH*KW": kh * kw,
        "channels": channels,
    }
    for what, value in bounded.items():
        if value > INT32_MAX:
            raise ValueError(
                f"the cupy backend computes the {what} in 32-bit ints, but it is {value} "
                f"(at most {INT32_MAX})"
            )
    return ints


# ---------------------------------------------------------------------- workspace


def workspace_bytes() -> int:
    """Column-buffer limit in bytes, from ``CONVCORE_WORKSPACE_MB`` (default 256)."""
    raw = os.environ.get("CONVCORE_WORKSPACE_MB", "")
    try:
        mb = float(raw) if raw.strip() else _DEFAULT_WORKSPACE_MB
    except ValueError:
        mb = _DEFAULT_WORKSPACE_MB
    return max(int(mb * 2**20), 1)


def batch_chunks(n: int, bytes_per_image: int, limit: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive ``(start, stop)`` chunks under ``limit``.

    A chunk holds at least one image, even when one image alone is over the limit.
    """
    step = max(1, min(n, limit // max(bytes_per_image, 1)))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def columns_bytes(geom: ConvGeometry, channels: int, itemsize: int) -> int:
    """Bytes of the columns of one image: ``C * KH * KW * Ho * Wo * itemsize``."""
    return channels * prod(geom.kernel_size) * prod(geom.output_size) * itemsize
