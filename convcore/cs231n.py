"""The cs231n layer API on convcore: a student's notebook runs unchanged.

Stanford's CS231n assignments (and the seed document's Python example) write a
convolutional layer as a pair of functions: the forward pass takes the input,
the filters, the biases and a parameter dictionary and returns the output and
a ``cache``; the backward pass takes the upstream gradient and that cache and
returns the gradients::

    out, cache = conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})
    dx, dw, db = conv_backward_naive(dout, cache)

    out, cache = max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = max_pool_backward_fast(dout, cache)

This module provides those functions with the same names, arguments and return
values, computed by convcore (im2col + one GEMM, col2im for the gradient) on the
backend the selection chain picks, for NumPy arrays or any other array library.
Differences from the assignment's code, all on purpose:

* **No build step.**  The ``*_fast`` and ``*_im2col`` functions need no Cython
  extension (``python setup.py build_ext --inplace``).
* **No divisibility asserts.**  A geometry whose windows do not tile the
  padded input (``(W + 2*pad - WW) % stride != 0``) is computed as PyTorch and
  the naive loops do: the output size is rounded down and the last pixels that
  no window reaches get a zero gradient.
* **One rule for ties in max pooling.**  The gradient of a window goes to its
  first maximum (in row-major order), as in the naive loops and in PyTorch, on
  every path; the assignment's ``max_pool_backward_reshape`` splits it between
  tied maxima.
* **The caches are tuples** ``(x, w, b, conv_param)`` and ``(x, pool_param)``
  for every variant (the parameter dictionary is copied); every backward
  function takes the cache of any forward variant of its layer.
* **Checked parameters.**  A missing, unknown or invalid key of ``conv_param``
  or ``pool_param`` is a ``ValueError`` or ``TypeError`` naming it.

``im2col_indices`` and ``col2im_indices`` (the assignment's ``im2col.py``) are
here too, with its column order (``C*HH*WW`` rows, one column per output
position and image, the image index fastest).
"""

from __future__ import annotations

import operator
from typing import Any

from ._api import col2im, conv2d, conv2d_backward, im2col
from ._validation import common, namespace
from .pooling import max_pool2d, max_pool2d_backward

Array = Any

__all__ = [
    "col2im_indices",
    "conv_backward_fast",
    "conv_backward_im2col",
    "conv_backward_naive",
    "conv_backward_strides",
    "conv_forward_fast",
    "conv_forward_im2col",
    "conv_forward_naive",
    "conv_forward_strides",
    "im2col_indices",
    "max_pool_backward_fast",
    "max_pool_backward_im2col",
    "max_pool_backward_naive",
    "max_pool_backward_reshape",
    "max_pool_forward_fast",
    "max_pool_forward_im2col",
    "max_pool_forward_naive",
    "max_pool_forward_reshape",
]

_CONV_KEYS = ("stride", "pad")
_POOL_KEYS = ("pool_height", "pool_width", "stride")


# ---------------------------------------------------------------------------
# parameter dictionaries and caches
# ---------------------------------------------------------------------------
def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _params(name: str, params, keys: tuple[str, ...], minimum: dict) -> dict:
    """A checked copy of the parameter dictionary ``name`` with exactly ``keys``."""
    if not isinstance(params, dict):
        raise TypeError(
            f"{name} must be a dict with the keys {', '.join(map(repr, keys))}, "
            f"got {type(params).__name__}"
        )
    missing = [k for k in keys if k not in params]
    unknown = [k for k in params if k not in keys]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(f"unknown {', '.join(map(repr, unknown))}")
        raise ValueError(
            f"{name} must have the keys {', '.join(map(repr, keys))}: {'; '.join(problems)}"
        )
    return {k: _count(f"{name}[{k!r}]", params[k], minimum[k]) for k in keys}


def _conv_param(conv_param) -> dict:
    return _params("conv_param", conv_param, _CONV_KEYS, {"stride": 1, "pad": 0})


def _pool_param(pool_param) -> dict:
    return _params("pool_param", pool_param, _POOL_KEYS, dict.fromkeys(_POOL_KEYS, 1))


def _conv_cache(cache):
    """``x, w, conv_param`` from the cache of any conv forward variant."""
    if not isinstance(cache, tuple) or len(cache) not in (4, 5):
        raise TypeError(
            "cache must be the tuple (x, w, b, conv_param) that a conv_forward_* "
            f"function returned, got {type(cache).__name__}"
            + (f" of length {len(cache)}" if isinstance(cache, tuple) else "")
        )
    x, w, _, conv_param = cache[:4]
    return x, w, _conv_param(conv_param)


def _pool_cache(cache):
    """``x, pool_param`` from the cache of any max-pool forward variant."""
    if not isinstance(cache, tuple) or len(cache) != 2:
        raise TypeError(
            "cache must be the tuple (x, pool_param) that a max_pool_forward_* function "
            f"returned, got {type(cache).__name__}"
            + (f" of length {len(cache)}" if isinstance(cache, tuple) else "")
        )
    x, pool_param = cache
    return x, _pool_param(pool_param)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
def conv_forward_naive(x: Array, w: Array, b: Array, conv_param: dict):
    """Forward pass of a convolutional layer.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Input.
    w : array, shape (F, C, HH, WW)
        Filters.
    b : array, shape (F,)
        Biases.
    conv_param : dict
        ``'stride'``: pixels between adjacent receptive fields (both axes);
        ``'pad'``: zero padding on every side.

    Returns
    -------
    out : array, shape (N, F, H', W')
        ``H' = 1 + (H + 2*pad - HH) // stride`` and ``W' = 1 + (W + 2*pad - WW) // stride``.
    cache : tuple
        ``(x, w, b, conv_param)`` for :func:`conv_backward_naive`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.cs231n import conv_forward_naive, conv_backward_naive
    >>> x, w, b = np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.zeros(4)
    >>> out, cache = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    >>> out.shape, float(out[0, 0, 1, 1])
    ((2, 4, 3, 3), 27.0)
    >>> dx, dw, db = conv_backward_naive(np.ones_like(out), cache)
    >>> dx.shape, dw.shape, db.shape
    ((2, 3, 5, 5), (4, 3, 3, 3), (4,))
    """
    params = _conv_param(conv_param)
    # The checks of conv2d name x, w as "x", "weight": say which is which here.
    common(optional=("b",), x=x, w=w, b=b)
    out = conv2d(x, w, b, stride=params["stride"], padding=params["pad"])
    return out, (x, w, b, params)


def conv_backward_naive(dout: Array, cache: tuple):
    """Backward pass of a convolutional layer: ``dx, dw, db``.

    ``cache`` is the one :func:`conv_forward_naive` (or any other forward
    variant here) returned; ``dout`` has the forward output's shape.
    """
    x, w, params = _conv_cache(cache)
    namespace(dout=dout)
    return conv2d_backward(dout, x, w, stride=params["stride"], padding=params["pad"])


def conv_forward_im2col(x: Array, w: Array, b: Array, conv_param: dict):
    """:func:`conv_forward_naive` under the assignment's im2col name (no Cython needed)."""
    return conv_forward_naive(x, w, b, conv_param)


def conv_backward_im2col(dout: Array, cache: tuple):
    """:func:`conv_backward_naive` under the assignment's im2col name."""
    return conv_backward_naive(dout, cache)


def conv_forward_strides(x: Array, w: Array, b: Array, conv_param: dict):
    """:func:`conv_forward_naive` under the assignment's ``as_strided`` name."""
    return conv_forward_naive(x, w, b, conv_param)


def conv_backward_strides(dout: Array, cache: tuple):
    """:func:`conv_backward_naive` under the assignment's ``as_strided`` name."""
    return conv_backward_naive(dout, cache)


conv_forward_fast = conv_forward_strides
conv_backward_fast = conv_backward_strides


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------
def max_pool_forward_naive(x: Array, pool_param: dict):
    """Forward pass of a max-pooling layer.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Input.
    pool_param : dict
        ``'pool_height'``, ``'pool_width'``: the window; ``'stride'``: the step
        between windows (both axes).  No padding.

    Returns
    -------
    out : array, shape (N, C, H', W')
        ``H' = 1 + (H - pool_height) // stride``, ``W' = 1 + (W - pool_width) // stride``.
    cache : tuple
        ``(x, pool_param)`` for :func:`max_pool_backward_naive`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.cs231n import max_pool_forward_fast, max_pool_backward_fast
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, cache = max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    >>> out[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> max_pool_backward_fast(np.ones_like(out), cache)[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """
    params = _pool_param(pool_param)
    namespace(x=x)
    out = max_pool2d(x, _window(params), params["stride"])
    return out, (x, params)


def max_pool_backward_naive(dout: Array, cache: tuple):
    """Backward pass of a max-pooling layer: ``dx`` (each window's gradient to its
    first maximum)."""
    x, params = _pool_cache(cache)
    namespace(dout=dout)
    return max_pool2d_backward(dout, x, _window(params), params["stride"])


def _window(params: dict) -> tuple[int, int]:
    return params["pool_height"], params["pool_width"]


def max_pool_forward_fast(x: Array, pool_param: dict):
    """:func:`max_pool_forward_naive` under the assignment's fast name (one path for
    every window: windows that do not tile the input need no fallback)."""
    return max_pool_forward_naive(x, pool_param)


def max_pool_backward_fast(dout: Array, cache: tuple):
    """:func:`max_pool_backward_naive` under the assignment's fast name."""
    return max_pool_backward_naive(dout, cache)


def max_pool_forward_reshape(x: Array, pool_param: dict):
    """:func:`max_pool_forward_naive` under the assignment's reshape name (any window)."""
    return max_pool_forward_naive(x, pool_param)


def max_pool_backward_reshape(dout: Array, cache: tuple):
    """:func:`max_pool_backward_naive` under the assignment's reshape name."""
    return max_pool_backward_naive(dout, cache)


def max_pool_forward_im2col(x: Array, pool_param: dict):
    """:func:`max_pool_forward_naive` under the assignment's im2col name."""
    return max_pool_forward_naive(x, pool_param)


def max_pool_backward_im2col(dout: Array, cache: tuple):
    """:func:`max_pool_backward_naive` under the assignment's im2col name."""
    return max_pool_backward_naive(dout, cache)


# ---------------------------------------------------------------------------
# the assignment's im2col.py
# ---------------------------------------------------------------------------
def im2col_indices(
    x: Array, field_height: int, field_width: int, padding: int = 1, stride: int = 1
):
    """Columns ``(C*field_height*field_width, out_h*out_w*N)`` in the assignment's order.

    Row ``(c*field_height + i)*field_width + j`` is tap ``(i, j)`` of channel
    ``c``; column ``p*N + n`` is output position ``p`` (row-major) of image
    ``n``.  (:func:`convcore.im2col` returns ``(N, C*HH*WW, out_h*out_w)``: the
    same values, batch first.)

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.cs231n import im2col_indices
    >>> im2col_indices(np.arange(8.0).reshape(2, 1, 2, 2), 2, 2, padding=0)
    array([[0., 4.],
           [1., 5.],
           [2., 6.],
           [3., 7.]])
    """
    xp = namespace(x=x)
    kernel = (_count("field_height", field_height, 1), _count("field_width", field_width, 1))
    cols = im2col(
        x, kernel, stride=_count("stride", stride, 1), padding=_count("padding", padding, 0)
    )
    n, rows, length = cols.shape
    return xp.reshape(xp.permute_dims(cols, (1, 2, 0)), (rows, length * n))


def col2im_indices(
    cols: Array,
    x_shape,
    field_height: int = 3,
    field_width: int = 3,
    padding: int = 1,
    stride: int = 1,
):
    """Sum :func:`im2col_indices` columns back into an image of shape ``x_shape``.

    The adjoint of :func:`im2col_indices` (overlapping taps are added), with
    the padding cropped off.
    """
    xp = namespace(cols=cols)
    if isinstance(x_shape, (str, bytes)) or not hasattr(x_shape, "__len__") or len(x_shape) != 4:
        raise TypeError(f"x_shape must be the input's shape (N, C, H, W), got {x_shape!r}")
    n, c, h, w = (_count(f"x_shape[{i}]", s, 1) for i, s in enumerate(x_shape))
    kernel = (_count("field_height", field_height, 1), _count("field_width", field_width, 1))
    stride = _count("stride", stride, 1)
    padding = _count("padding", padding, 0)
    if cols.ndim != 2 or cols.shape[0] != c * kernel[0] * kernel[1] or cols.shape[1] % n:
        raise ValueError(
            f"cols must have shape (C*field_height*field_width, out_h*out_w*N) = "
            f"({c * kernel[0] * kernel[1]}, L*{n}) for x_shape {tuple(x_shape)}, "
            f"got {tuple(cols.shape)}"
        )
    batched = xp.permute_dims(xp.reshape(cols, (cols.shape[0], cols.shape[1] // n, n)), (2, 0, 1))
    return col2im(batched, (h, w), kernel, stride=stride, padding=padding)
