"""The ``CONVCORE_WORKSPACE_MB`` setting: how much scratch memory a kernel call may use.

One reader for the backends that bound their column buffers by it (the ``numpy``
backend and the portable ``array_api`` backend; the Numba and CuPy backends keep
their own readers and defaults).  The value is read from the environment on
every call (a dictionary lookup), so changing it, or ``monkeypatch.setenv`` in a
test, takes effect at the next call.

Unset, empty, unparsable, zero, negative or NaN values give the backend's
default; ``inf`` means no limit.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from itertools import product
from math import prod
from typing import NamedTuple

from .errors import WorkspaceLimitError
from .geometry import ConvGeometry

__all__ = [
    "ENV",
    "Chunk",
    "ChunkPlan",
    "WorkspaceLimitError",
    "plan_chunks",
    "sub_geometry",
    "workspace_bytes",
    "workspace_error",
]

#: Name of the environment variable.
ENV = "CONVCORE_WORKSPACE_MB"


def workspace_bytes(default_mb: float) -> int:
    """The workspace limit in bytes: ``CONVCORE_WORKSPACE_MB`` MiB, else ``default_mb``.

    ``inf`` gives :data:`sys.maxsize` (no limit).
    """
    raw = os.environ.get(ENV, "").strip()
    try:
        mb = float(raw) if raw else default_mb
    except ValueError:
        mb = default_mb
    if not mb > 0:
        mb = default_mb
    if math.isinf(mb):
        return sys.maxsize
    return max(1, int(mb * 2**20))


def workspace_error(backend: str, op: str, needed: int, limit: int, what: str):
    """The :class:`WorkspaceLimitError` for a call whose smallest chunk needs ``needed`` bytes.

    Parameters
    ----------
    backend, op : str
        Backend and op names, for the message.
    needed, limit : int
        Bytes the smallest chunk needs, and the limit in force.
    what : str
        What the smallest chunk is, e.g. ``"one output position of one group"``.
    """
    raw = os.environ.get(ENV)
    setting = f"{ENV}={raw!r}" if raw is not None else f"{ENV} unset"
    return WorkspaceLimitError(
        f"{op} on the {backend!r} backend needs at least {needed} bytes "
        f"({needed / 2**20:.4g} MiB) of workspace for its smallest chunk ({what}), but the "
        f"limit is {limit} bytes ({limit / 2**20:.4g} MiB; {setting}); raise {ENV}"
    )


# ----------------------------------------------------------------------- chunk plans


class Chunk(NamedTuple):
    """One piece of a convolution call: images, groups and a box of output positions.

    Attributes
    ----------
    images : tuple of int
        ``(start, stop)`` along the batch.
    groups : tuple of int
        ``(start, stop)`` range of channel groups.
    out : tuple of slice
        The box of output positions, one slice per spatial axis.
    inp : tuple of slice
        The input region those windows read, clipped to the image (the kernel
        halo included, so neighbouring chunks' regions overlap).
    geom : ConvGeometry
        The geometry of the chunk alone: ``inp``'s size as input, the padding
        the windows reach past the image's edges, ``out``'s size as output.
        ``geom`` itself for chunks of whole images.
    """

    images: tuple[int, int]
    groups: tuple[int, int]
    out: tuple[slice, ...]
    inp: tuple[slice, ...]
    geom: ConvGeometry


class ChunkPlan(NamedTuple):
    """How a call is cut: the chunks (an iterable), the largest chunk, and whether it is cut."""

    chunks: Iterable[Chunk]
    max_positions: int  # images x output positions of the largest chunk
    groups_per_chunk: int
    count: int
    whole_images: bool  # True: every chunk is a range of whole images


def _span(out: int, k: int, s: int, d: int) -> int:
    """Input extent (padding included) that ``out`` windows along one axis read."""
    return (out - 1) * s + d * (k - 1) + 1


@lru_cache(maxsize=4096)
def _axis_window(size, k, s, pb, d, lo, hi):
    """Input slice and padding of output positions ``[lo, hi)`` along one axis."""
    start = lo * s - pb
    stop = (hi - 1) * s - pb + d * (k - 1) + 1
    in_lo, in_hi = min(max(start, 0), size), min(max(stop, 0), size)
    if in_hi <= in_lo:  # the windows read padding only
        return slice(0, 0), stop - start, 0
    return slice(in_lo, in_hi), in_lo - start, stop - in_hi


def sub_geometry(geom: ConvGeometry, box) -> tuple[tuple[slice, ...], ConvGeometry]:
    """Input region and geometry of the output box ``box`` (``(lo, hi)`` per axis)."""
    inp, padding = [], []
    for a, (lo, hi) in enumerate(box):
        sl, before, after = _axis_window(
            geom.input_size[a],
            geom.kernel_size[a],
            geom.stride[a],
            geom.pad_before[a],
            geom.dilation[a],
            lo,
            hi,
        )
        inp.append(sl)
        padding += [before, after]
    sub = ConvGeometry(
        input_size=tuple(sl.stop - sl.start for sl in inp),
        kernel_size=geom.kernel_size,
        stride=geom.stride,
        padding=tuple(padding),
        dilation=geom.dilation,
        output_size=tuple(hi - lo for lo, hi in box),
    )
    return tuple(inp), sub


def plan_chunks(
    geom: ConvGeometry,
    n: int,
    groups: int,
    itemsize: int,
    limit: int,
    *,
    rows: int,
    aux: int,
    channels: int = 0,
    backend: str,
    op: str,
) -> ChunkPlan:
    """Cut a convolution call into chunks whose scratch memory stays under ``limit`` bytes.

    The scratch of a chunk is, per group, ``rows + aux`` values per output
    position (the column rows and the GEMM's other side) plus ``channels``
    values per position of the padded input region the chunk reads (for
    backends that copy it).  In order of preference a chunk is:

    1. a range of whole images (the batch is cut, as few chunks as fit);
    2. one image, all groups, a box of output positions: a slab of rows of
       the outermost output axis (an input slab plus the kernel halo); when one
       such row is too large, one row of it and a slab of the next axis, and
       so on down to a run of positions along the last axis;
    3. the same, one group at a time.

    The smallest chunk the scheme has is one output position of one group;
    when even that does not fit, :class:`WorkspaceLimitError` is raised, before
    anything is allocated.

    Parameters
    ----------
    geom : ConvGeometry
        The call's geometry.
    n, groups : int
        Batch size and number of groups.
    itemsize : int
        Bytes per value.
    limit : int
        Bytes (:func:`workspace_bytes`).
    rows, aux, channels : int
        Values per group, as above.
    backend, op : str
        For the error message.
    """
    out_size, nd = geom.output_size, geom.nd
    L = geom.output_numel
    spans = [
        _span(o, k, s, d)
        for o, k, s, d in zip(out_size, geom.kernel_size, geom.stride, geom.dilation)
    ]
    per_image = itemsize * groups * ((rows + aux) * L + channels * prod(spans))
    if per_image <= limit:
        step = max(1, min(n, limit // per_image))
        full = tuple(slice(0, o) for o in out_size)
        inp = tuple(slice(0, s) for s in geom.input_size)
        chunks = [
            Chunk((i, min(i + step, n)), (0, groups), full, inp, geom) for i in range(0, n, step)
        ]
        return ChunkPlan(chunks, step * L, groups, len(chunks), True)
    for g in dict.fromkeys((groups, 1)):
        for a in range(nd):
            r = _rows_that_fit(geom, spans, a, g, itemsize, limit, rows + aux, channels)
            if r >= 1:
                tail = prod(out_size[a + 1 :])
                heads = prod(out_size[:a])
                count = heads * -(-out_size[a] // r) * n * (groups // g)
                return ChunkPlan(_box_chunks(geom, n, groups, g, a, r), r * tail, g, count, False)
    smallest = itemsize * (
        (rows + aux)
        + channels * prod(_span(1, k, 1, d) for k, d in zip(geom.kernel_size, geom.dilation))
    )
    raise workspace_error(backend, op, smallest, limit, "one output position of one group")


def _rows_that_fit(geom, spans, a, g, itemsize, limit, per_position, channels) -> int:
    """Largest slab along axis ``a`` (one position on the axes before it) under ``limit``."""
    out_size = geom.output_size
    tail = prod(out_size[a + 1 :])
    before = prod(_span(1, k, 1, d) for k, d in zip(geom.kernel_size[:a], geom.dilation[:a]))
    q = before * prod(spans[a + 1 :])
    s, k, d = geom.stride[a], geom.kernel_size[a], geom.dilation[a]

    def cost(r):
        return itemsize * g * (per_position * r * tail + channels * q * _span(r, k, s, d))

    budget = limit / (itemsize * g) - channels * q * (d * (k - 1) + 1 - s)
    r = int(min(out_size[a], max(0, budget // (per_position * tail + channels * q * s))))
    while r > 0 and cost(r) > limit:
        r -= 1
    while r < out_size[a] and cost(r + 1) <= limit:
        r += 1
    return r


def _box_chunks(geom, n, groups, g, a, r):
    """Chunks of one image, ``g`` groups and boxes of ``r`` positions along axis ``a``."""
    out_size = geom.output_size
    heads = product(*(range(o) for o in out_size[:a]))
    tail = tuple((0, o) for o in out_size[a + 1 :])
    for head in heads:
        for lo in range(0, out_size[a], r):
            box = (*((h, h + 1) for h in head), (lo, min(lo + r, out_size[a])), *tail)
            inp, sub = sub_geometry(geom, box)
            out = tuple(slice(lo_, hi_) for lo_, hi_ in box)
            for i in range(n):
                for g0 in range(0, groups, g):
                    yield Chunk((i, i + 1), (g0, g0 + g), out, inp, sub)
