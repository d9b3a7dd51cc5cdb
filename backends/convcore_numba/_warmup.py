"""Compile every kernel of the ``numba`` backend ahead of time (``convcore warmup``)."""

from __future__ import annotations

import time

__all__ = ["warmup"]

_FLOATS = ("float32", "float64")


def _exercise(dtype) -> None:
    """Run every driver path once on tiny arrays of ``dtype``.

    One compiled kernel per dtype serves 1-, 2- and 3-D calls (2-D runs as 3-D
    with a depth of 1), so the 3-D calls at the end compile nothing new; they
    check that.
    """
    import numpy as np

    from convcore.geometry import conv_geometry

    from . import _ops

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    w = rng.standard_normal((8, 2, 3, 3)).astype(dtype)  # > 4 filters: im2col + GEMM
    w1 = rng.standard_normal((8, 2, 1, 1)).astype(dtype)  # pointwise
    wd = rng.standard_normal((2, 1, 3, 3)).astype(dtype)  # depthwise: direct kernel
    b = rng.standard_normal(8).astype(dtype)
    geom = conv_geometry((6, 6), (3, 3), padding=1)
    point = conv_geometry((6, 6), (1, 1))
    for bias in (b, None):
        y = _ops.conv(None, x, w, bias, geom, 1)
        y1 = _ops.conv(None, x, w1, bias, point, 1)
        yd = _ops.conv(None, x, wd, None if bias is None else bias[:2], geom, 2)
    if np.dtype(dtype) == np.float32:  # the default Winograd kernels (float32 only)
        from . import _winograd

        xw = rng.standard_normal((1, 8, 6, 6)).astype(dtype)
        _winograd.conv_winograd(xw, w.repeat(4, axis=1), b, geom, tile=_winograd.TILE)
    _ops.conv_backward(None, y, x, w, geom, 1)
    _ops.conv_backward(None, y1, x, w1, point, 1)
    _ops.conv_backward(None, yd, x, wd, geom, 2)  # direct backward
    cols = _ops.im2col(None, x, geom)
    _ops.col2im(None, cols, geom)
    x3 = rng.standard_normal((2, 2, 3, 4, 5)).astype(dtype)
    geom3 = conv_geometry((3, 4, 5), (2, 2, 2), padding=1)
    for f, groups in ((8, 1), (2, 2)):  # im2col + GEMM, then the direct kernels
        w3 = rng.standard_normal((f, 2 // groups, 2, 2, 2)).astype(dtype)
        y3 = _ops.conv(None, x3, w3, None, geom3, groups)
        _ops.conv_backward(None, y3, x3, w3, geom3, groups)
    _ops.col2im(None, _ops.im2col(None, x3, geom3), geom3)
    _exercise_pooling(x, geom)
    _exercise_pooling(x3, geom3)


def _exercise_pooling(x, geom) -> None:
    """The pooling kernels (one compiled kernel per dtype serves every rank)."""
    from . import _pool

    out, index = _pool.max_pool(None, x, geom, True)
    _pool.max_pool_backward(None, out, x, geom)
    _pool.max_pool_backward(None, out, x, geom, index)
    y = _pool.avg_pool(None, x, geom, 4.0)
    _pool.avg_pool_backward(None, y, geom, 4.0)


def _exercise_data_movement(dtype) -> None:
    """im2col and col2im of ``dtype`` (any dtype: these only move and add data)."""
    import numpy as np

    from convcore.geometry import conv_geometry

    from . import _ops

    x = np.arange(2 * 2 * 5 * 5).astype(dtype).reshape(2, 2, 5, 5)
    geom = conv_geometry((5, 5), (2, 2), padding=1)
    _ops.col2im(None, _ops.im2col(None, x, geom), geom)


def _kernels():
    from . import _kernels, _pool, _winograd

    return [
        *(getattr(_kernels, name) for name in _kernels.__all__),
        *_pool.KERNELS,
        *_winograd.warmup_kernels(),
    ]


def warmup(dtypes=_FLOATS) -> dict[str, float]:
    """Compile (or load from Numba's on-disk cache) the kernels for ``dtypes``.

    ``float32`` and ``float64`` compile every kernel; an integer dtype (see
    ``convcore_numba.INTEGERS``) compiles the two kernels that ``im2col`` and
    ``col2im`` use.  Returns the seconds spent per step: ``"import"``, then one
    entry per dtype, and the counts ``"cache_hits"`` / ``"compiled"`` of the
    cached kernels.
    """
    import numpy as np

    from . import INTEGERS

    times: dict[str, float] = {}
    start = time.perf_counter()
    kernels = _kernels()
    times["import"] = time.perf_counter() - start
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype.name not in _FLOATS + INTEGERS:
            raise ValueError(
                f"dtypes must be float32, float64 or one of {', '.join(INTEGERS)}, got {name!r}"
            )
        start = time.perf_counter()
        if dtype.name in _FLOATS:
            _exercise(dtype)
        else:
            _exercise_data_movement(dtype)
        times[dtype.name] = time.perf_counter() - start
    hits = misses = 0
    for kernel in kernels:
        stats = getattr(kernel, "stats", None)
        if stats is not None:
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
    times["cache_hits"] = hits
    times["compiled"] = misses
    return times
