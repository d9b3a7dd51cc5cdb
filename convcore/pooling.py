"""Max and average pooling (NCHW) through :func:`convcore.im2col` / :func:`convcore.col2im`.

Pooling is im2col followed by a reduction over each column: the maximum or the
mean of every window.  The backward passes put the output gradient back into
the column matrix (a one-hot of the chosen tap per window for max pooling, the
gradient divided by the window's divisor for average pooling) and sum it onto
the image with :func:`convcore.col2im`.  That sum is a gather on every backend,
so the gradients are deterministic: no atomics, no scatter with duplicate
indices.

Only the public :func:`convcore.im2col` / :func:`convcore.col2im` and array-API
operations (through array-api-compat) are used, so pooling runs on every
backend that implements those two ops, on any array namespace it accepts, and
the ``backend=`` keyword / :func:`convcore.use_backend` choose which.

Names, defaults and semantics follow PyTorch's ``torch.nn.functional.max_pool2d``
and ``avg_pool2d`` (CPU kernels), including ``ceil_mode``, ``count_include_pad``,
``divisor_override``, the padding limit and the treatment of NaN.  One option is
added: ``ceil_mode="seed"``, the seed document's (and convcore.matlab's
``is_conv=False``) plain ceil rule.  See ``docs/pooling.md``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import array_api_compat

from ._api import col2im, im2col
from ._layer_base import _Layer
from ._registry import dtype_name
from ._validation import check_floating as _check_floating
from ._validation import namespace as _namespace
from .geometry import normalize_padding, normalize_tuple

__all__ = [
    "AvgPool2D",
    "MaxPool2D",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "pool_output_size",
]

Array = Any
ArrayNamespace = Any

_AXES = ("height", "width")
_CEIL_MODES = "False, True or 'seed'"


# ---------------------------------------------------------------------------
# options and geometry (pure Python)
# ---------------------------------------------------------------------------
def _flag(name: str, value) -> bool:
    """A bool option; NumPy bools are accepted, ints and strings are not."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ in ("bool_", "bool") and hasattr(value, "dtype"):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def _ceil_mode(value) -> bool | str:
    if isinstance(value, str):
        if value == "seed":
            return "seed"
        raise ValueError(f"ceil_mode must be {_CEIL_MODES}, got {value!r}")
    try:
        return _flag("ceil_mode", value)
    except TypeError:
        raise TypeError(f"ceil_mode must be {_CEIL_MODES}, got {value!r}") from None


def _divisor(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"divisor_override must be a nonzero integer or None, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"divisor_override must be a nonzero integer or None, got {value!r} of type "
            f"{type(value).__name__}"
        ) from None
    if value == 0:
        raise ValueError("divisor_override must be a nonzero integer or None, got 0")
    return value


@dataclass(frozen=True)
class _Options:
    """Validated pooling options that do not depend on the input size."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dilation: tuple[int, int]
    ceil_mode: bool | str


def _options(kernel_size, stride, padding, dilation, ceil_mode) -> _Options:
    kernel = normalize_tuple(kernel_size, 2, "kernel_size")
    strides = kernel if stride is None else normalize_tuple(stride, 2, "stride")
    dilations = normalize_tuple(dilation, 2, "dilation")
    pads = normalize_padding(padding, 2)
    if isinstance(pads, str):
        raise ValueError(
            f"padding must be an int, (pad_h, pad_w) or (top, bottom, left, right), got "
            f"{padding!r}; 'same' is a convolution option, pooling follows PyTorch"
        )
    for axis, k in enumerate(kernel):
        if max(pads[2 * axis], pads[2 * axis + 1]) > k // 2:
            raise ValueError(
                f"padding must be at most half the kernel size on every side (PyTorch's "
                f"rule, pad <= kernel_size // 2), got padding={padding!r} with "
                f"kernel_size={kernel} ({k} // 2 = {k // 2} along the {_AXES[axis]} axis)"
            )
    return _Options(kernel, strides, pads, dilations, _ceil_mode(ceil_mode))


def _output_length(size, k, s, before, after, d, ceil_mode) -> int:
    """Number of windows along one axis (PyTorch's ``pooling_output_shape``)."""
    span = size + before + after - (d * (k - 1) + 1)
    if ceil_mode is False:
        return span // s + 1
    out = -(-span // s) + 1
    # PyTorch drops a last window that starts in the bottom/right padding; the seed keeps it.
    if ceil_mode is True and (out - 1) * s - before >= size:
        out -= 1
    return out


@dataclass(frozen=True)
class _PoolGeometry:
    """Options resolved against an input size ``(H, W)``.

    ``im2col_padding`` is ``padding`` with the bottom/right sides extended by the
    ceil overhang, so that im2col's floor geometry yields exactly ``output_size``.
    """

    options: _Options
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    im2col_padding: tuple[int, int, int, int]

    @property
    def kernel_numel(self) -> int:
        return self.options.kernel_size[0] * self.options.kernel_size[1]

    @property
    def output_numel(self) -> int:
        return self.output_size[0] * self.output_size[1]

    def axis(self, i: int):
        o = self.options
        return (
            self.input_size[i],
            o.kernel_size[i],
            o.stride[i],
            o.padding[2 * i],
            o.padding[2 * i + 1],
            o.dilation[i],
            self.output_size[i],
        )

    def im2col_kwargs(self) -> dict:
        o = self.options
        return {"stride": o.stride, "padding": self.im2col_padding, "dilation": o.dilation}


def _geometry(options: _Options, input_size, func: str) -> _PoolGeometry:
    out, pads = [], list(options.padding)
    for i in range(2):
        size, k = input_size[i], options.kernel_size[i]
        s, d = options.stride[i], options.dilation[i]
        before, after = options.padding[2 * i], options.padding[2 * i + 1]
        n = _output_length(size, k, s, before, after, d, options.ceil_mode)
        if n < 1:
            raise ValueError(
                f"{func}: kernel_size {options.kernel_size} with dilation {options.dilation} "
                f"spans {d * (k - 1) + 1} along the {_AXES[i]} axis, more than the input's "
                f"{size} plus padding {before} + {after}: no window fits "
                f"(ceil_mode={options.ceil_mode!r})"
            )
        out.append(n)
        pads[2 * i + 1] += max(0, (n - 1) * s + d * (k - 1) + 1 - (size + before + after))
    return _PoolGeometry(options, tuple(input_size), tuple(out), tuple(pads))


def pool_output_size(
    input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> tuple[int, int]:
    """Spatial output size ``(Ho, Wo)`` of :func:`max_pool2d` / :func:`avg_pool2d`.

    Per axis, with ``e = dilation*(kernel_size - 1) + 1`` and ``p_b, p_a`` the
    padding before and after:

    * ``ceil_mode=False``: ``floor((H + p_b + p_a - e) / stride) + 1``;
    * ``ceil_mode=True`` (PyTorch): ``ceil((H + p_b + p_a - e) / stride) + 1``,
      minus one when the last window would start at or beyond ``H + p_b``
      (in the bottom/right padding);
    * ``ceil_mode="seed"``: ``ceil((H + p_b + p_a - e) / stride) + 1``, no
      window dropped (the seed document's rule, Chainer's ``cover_all``).

    Examples
    --------
    >>> from convcore.pooling import pool_output_size
    >>> pool_output_size((5, 5), 2, padding=1, ceil_mode=True)
    (3, 3)
    >>> pool_output_size((5, 5), 2, padding=1, ceil_mode="seed")
    (4, 4)
    """
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be a pair (H, W), got {input_size!r}")
    if len(input_size) != 2:
        raise ValueError(f"input_size must be a pair (H, W), got {input_size!r}")
    size = normalize_tuple(input_size, 2, "input_size")
    options = _options(kernel_size, stride, padding, dilation, ceil_mode)
    return _geometry(options, size, "pool_output_size").output_size


# ---------------------------------------------------------------------------
# array checks
# ---------------------------------------------------------------------------
def _check_input(xp, x, func: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{func}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if any(s is None or s < 1 for s in x.shape[1:]):
        raise ValueError(
            f"{func}: x must have non-empty C, H and W axes (N, C, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    _check_floating(xp, "x", x, func)


def _check_grad_out(xp, grad_out, expected, func: str, ref=None) -> None:
    if ref is not None:
        if grad_out.dtype != ref.dtype:
            raise TypeError(
                f"{func}: grad_out has dtype {dtype_name(xp, grad_out.dtype)} but x has dtype "
                f"{dtype_name(xp, ref.dtype)}; they must match"
            )
        if array_api_compat.device(grad_out) != array_api_compat.device(ref):
            raise ValueError(
                f"{func}: grad_out is on device {array_api_compat.device(grad_out)!r} but x is "
                f"on {array_api_compat.device(ref)!r}; they must be on the same device"
            )
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(
            f"{func}: grad_out must have the forward output's shape {tuple(expected)} "
            f"(N, C, Ho, Wo), got {tuple(grad_out.shape)}"
        )


# ---------------------------------------------------------------------------
# window tables (small, per axis, built in Python then broadcast)
# ---------------------------------------------------------------------------
def _taps(geom: _PoolGeometry, i: int):
    """``pos[tap][window]``: the input row (column) each tap of each window reads."""
    _, k, s, before, _, d, n = geom.axis(i)
    return [[o * s - before + t * d for o in range(n)] for t in range(k)]


def _tap_tables(xp, geom: _PoolGeometry, device):
    """Validity mask ``(K, L)`` (tap inside the image) and flat indices ``ih*W + iw``."""
    h, w = geom.input_size
    ph, pw = _taps(geom, 0), _taps(geom, 1)
    rows = xp.asarray(ph, dtype=xp.int64, device=device)[:, None, :, None]
    cols = xp.asarray(pw, dtype=xp.int64, device=device)[None, :, None, :]
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    shape = (geom.kernel_numel, geom.output_numel)
    return xp.reshape(valid, shape), xp.reshape(rows * w + cols, shape)


def _divisors(xp, geom: _PoolGeometry, count_include_pad: bool, divisor_override, dtype, device):
    """The divisor of every window, ``(L,)``: PyTorch's ``avg_pool2d`` rule."""
    if divisor_override is not None:
        return xp.asarray(float(divisor_override), dtype=dtype, device=device)
    per_axis = []
    for i in range(2):
        size, k, s, before, after, _, n = geom.axis(i)
        counts = []
        for o in range(n):
            start = o * s - before
            end = min(start + k, size + after)  # the ceil overhang is not counted
            if not count_include_pad:
                start, end = max(start, 0), min(end, size)
            counts.append(max(end - start, 0))
        per_axis.append(counts)
    # A window with nothing to count (only with ceil_mode="seed") has the sum 0; keep it 0.
    table = [max(a * b, 1) for a in per_axis[0] for b in per_axis[1]]
    return xp.asarray(table, dtype=dtype, device=device)


def _accumulator(xp, dtype):
    """float16 sums and divisions run in float32, as PyTorch's CPU kernels do."""
    half = getattr(xp, "float16", None)  # not every namespace has float16
    return xp.float32 if half is not None and dtype == half else dtype


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------
def _max_setup(func, x, kernel_size, stride, padding, dilation, ceil_mode):
    xp = _namespace(x=x)
    _check_input(xp, x, func)
    options = _options(kernel_size, stride, padding, dilation, ceil_mode)
    return xp, _geometry(options, tuple(x.shape[2:]), func)


def _max_columns(xp, x, geom: _PoolGeometry, backend):
    n, c = x.shape[0], x.shape[1]
    cols = im2col(x, geom.options.kernel_size, backend=backend, **geom.im2col_kwargs())
    return xp.reshape(cols, (n, c, geom.kernel_numel, geom.output_numel))


def _max_reduce(xp, cols, valid):
    """Window maxima ``(N, C, L)`` and ``has_nan``: NaN propagates, padding is -inf."""
    dev = array_api_compat.device(cols)
    neg_inf = xp.asarray(-math.inf, dtype=cols.dtype, device=dev)
    is_nan = xp.isnan(cols)
    nan_at = valid & is_nan
    has_nan = xp.any(nan_at, axis=2)
    peak = xp.max(xp.where(valid & ~is_nan, cols, neg_inf), axis=2)
    out = xp.where(has_nan, xp.asarray(math.nan, dtype=cols.dtype, device=dev), peak)
    return out, peak, nan_at, has_nan


def _max_choice(xp, cols, valid, peak, nan_at, has_nan):
    """One-hot ``(N, C, K, L)`` of the tap each window's maximum comes from.

    PyTorch's CPU rule: scan the taps in window order (row-major over the kernel)
    and take a value if it is greater than the best so far or NaN.  So: the first
    maximum, or the last NaN; padding taps are never chosen; a window whose real
    taps are all -inf picks its first real tap; a window with no real tap
    (``ceil_mode="seed"``, or a dilation stepping over a small input) picks none.
    """
    k = cols.shape[2]
    dev = array_api_compat.device(cols)
    nan_w = has_nan[:, :, None, :]
    hit = xp.where(nan_w, nan_at, valid & (cols == peak[:, :, None, :]))
    tap = xp.arange(k, dtype=xp.int32, device=dev)[:, None]
    rank = xp.where(nan_w, tap + 1, k - tap)  # unique per tap: last NaN or first maximum wins
    score = xp.where(hit, rank, xp.zeros((), dtype=xp.int32, device=dev))
    return hit & (score == xp.max(score, axis=2, keepdims=True))


def max_pool2d(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
    *,
    backend: str | None = None,
):
    """2-D max pooling of an NCHW batch, through :func:`convcore.im2col`.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Real floating point (float32, float64; float16 where the backend
        declares it).
    kernel_size : int or (int, int)
        Window size ``(KH, KW)``.
    stride : int or (int, int), optional
        Step between windows; defaults to ``kernel_size`` (as in PyTorch).
    padding : int, (int, int) or (top, bottom, left, right), optional
        Implicit padding with ``-inf``: a padding cell is never the maximum.
        At most ``kernel_size // 2`` on every side (PyTorch's rule).
    dilation : int or (int, int), optional
        Step between the taps of a window.
    ceil_mode : bool or "seed", optional
        Output size rule, see :func:`pool_output_size`: floor (default),
        PyTorch's ceil (``True``) or the seed's plain ceil (``"seed"``).
        Cells of the ceil overhang are ignored like padding.
    return_indices : bool, optional
        Also return, for every output, the flat index ``ih*W + iw`` into the
        ``H*W`` plane of ``(n, c)`` the maximum was taken from (PyTorch's
        ``return_indices``); ``-1`` for a window none of whose taps reads an
        input cell (with ``ceil_mode="seed"``, or a dilation stepping over a
        small input; PyTorch returns an out-of-range index there).
    backend : str, optional
        Backend for im2col; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C, Ho, Wo)
        Same namespace, device and dtype as ``x``.  A window holding a NaN
        gives NaN; a window with no input cell gives ``-inf``.
    indices : array of int64, shape (N, C, Ho, Wo)
        Only with ``return_indices=True``.  Ties go to the first maximum in
        window order (row-major over the kernel taps), a NaN window to its
        last NaN: PyTorch's CPU kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import max_pool2d
    >>> x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # all negative
    >>> max_pool2d(x, 2, padding=1)[0, 0]              # padding is -inf, not 0
    array([[ -1.,  -2.,  -4.],
           [ -5.,  -6.,  -8.],
           [-13., -14., -16.]])
    """
    xp, geom = _max_setup("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = _flag("return_indices", return_indices)
    n, c = x.shape[0], x.shape[1]
    cols = _max_columns(xp, x, geom, backend)
    valid, flat = _tap_tables(xp, geom, array_api_compat.device(x))
    out, peak, nan_at, has_nan = _max_reduce(xp, cols, valid)
    out = xp.reshape(out, (n, c, *geom.output_size))
    if not return_indices:
        return out
    choice = _max_choice(xp, cols, valid, peak, nan_at, has_nan)
    zero = xp.zeros((), dtype=xp.int64, device=array_api_compat.device(x))
    index = xp.sum(xp.where(choice, flat, zero), axis=2)
    index = xp.where(xp.any(choice, axis=2), index, zero - 1)
    return out, xp.reshape(index, (n, c, *geom.output_size))


def max_pool2d_backward(
    grad_out: Array,
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    *,
    backend: str | None = None,
) -> Array:
    """Gradient of :func:`max_pool2d` with respect to its input.

    Every window's gradient goes to the one input cell its maximum came from
    (the index :func:`max_pool2d` returns with ``return_indices=True``): the
    gradients are put into the column matrix as a one-hot per window and summed
    onto the image by :func:`convcore.col2im`, deterministically.

    Parameters
    ----------
    grad_out : array, shape (N, C, Ho, Wo)
        Gradient of the loss with respect to the pooling output; dtype and
        device of ``x``.
    x : array, shape (N, C, H, W)
        The forward input (the chosen taps are recomputed from it).
    kernel_size, stride, padding, dilation, ceil_mode, backend
        The forward options.

    Returns
    -------
    dx : array, shape (N, C, H, W)

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import max_pool2d_backward
    >>> x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])            # a tie: 3 twice
    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)[0, 0]  # the first one wins
    array([[0., 1.],
           [0., 0.]])
    """
    func = "max_pool2d_backward"
    xp = _namespace(grad_out=grad_out, x=x)
    _, geom = _max_setup(func, x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c = x.shape[0], x.shape[1]
    _check_grad_out(xp, grad_out, (n, c, *geom.output_size), func, ref=x)
    cols = _max_columns(xp, x, geom, backend)
    valid, _ = _tap_tables(xp, geom, array_api_compat.device(x))
    _, peak, nan_at, has_nan = _max_reduce(xp, cols, valid)
    choice = _max_choice(xp, cols, valid, peak, nan_at, has_nan)
    g = xp.reshape(grad_out, (n, c, 1, geom.output_numel))
    zero = xp.zeros((), dtype=grad_out.dtype, device=array_api_compat.device(grad_out))
    dcols = xp.where(choice, g, zero)
    dcols = xp.reshape(dcols, (n, c * geom.kernel_numel, geom.output_numel))
    opts = geom.options
    return col2im(dcols, geom.input_size, opts.kernel_size, backend=backend, **geom.im2col_kwargs())


# ---------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------
def _avg_options(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    options = _options(kernel_size, stride, padding, 1, ceil_mode)
    return options, _flag("count_include_pad", count_include_pad), _divisor(divisor_override)


def avg_pool2d(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    *,
    backend: str | None = None,
) -> Array:
    """2-D average pooling of an NCHW batch, through :func:`convcore.im2col`.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Real floating point (float32, float64; float16 where the backend
        declares it, summed in float32).
    kernel_size : int or (int, int)
        Window size ``(KH, KW)``.
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int, (int, int) or (top, bottom, left, right), optional
        Zero padding, at most ``kernel_size // 2`` on every side.
    ceil_mode : bool or "seed", optional
        Output size rule, see :func:`pool_output_size`.
    count_include_pad : bool, optional
        Whether padding cells count in the divisor.  The divisor is
        PyTorch's: per axis ``min(start + k, H + p_after) - start`` cells
        (``start`` may lie in the padding; cells of the ceil overhang beyond
        the padding never count), or, with ``count_include_pad=False``, the
        number of input cells in the window.
    divisor_override : int, optional
        Nonzero; when given, every window sum is divided by it instead.
    backend : str, optional
        Backend for im2col; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C, Ho, Wo)
        Same namespace, device and dtype as ``x``.  A window with nothing to
        count (only with ``ceil_mode="seed"``) gives 0.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import avg_pool2d
    >>> x = np.ones((1, 1, 3, 3))
    >>> avg_pool2d(x, 2, ceil_mode=True)[0, 0]         # overhang not counted
    array([[1., 1.],
           [1., 1.]])
    >>> avg_pool2d(x, 2, padding=1)[0, 0]              # padding counted
    array([[0.25, 0.5 ],
           [0.5 , 1.  ]])
    """
    func = "avg_pool2d"
    xp = _namespace(x=x)
    _check_input(xp, x, func)
    options, include, override = _avg_options(
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    geom = _geometry(options, tuple(x.shape[2:]), func)
    n, c = x.shape[0], x.shape[1]
    cols = im2col(x, options.kernel_size, backend=backend, **geom.im2col_kwargs())
    cols = xp.reshape(cols, (n, c, geom.kernel_numel, geom.output_numel))
    acc = _accumulator(xp, x.dtype)
    dev = array_api_compat.device(x)
    total = xp.sum(cols, axis=2, dtype=acc)
    out = total / _divisors(xp, geom, include, override, acc, dev)
    return xp.reshape(xp.astype(out, x.dtype), (n, c, *geom.output_size))


def _input_size(input_size, grad_out):
    """``(H, W)`` from ``input_size``, given as (H, W) or the full (N, C, H, W) shape."""
    if array_api_compat.is_array_api_obj(input_size):
        raise TypeError(
            "input_size must be the forward input's shape (N, C, H, W) or its (H, W), not an "
            "array; pass x.shape"
        )
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be (H, W) or (N, C, H, W), got {input_size!r}")
    if len(input_size) not in (2, 4):
        raise ValueError(f"input_size must be (H, W) or (N, C, H, W), got {input_size!r}")
    size = normalize_tuple(input_size, len(input_size), "input_size", minimum=0)
    if len(size) == 4 and tuple(grad_out.shape[:2]) != size[:2]:
        raise ValueError(
            f"avg_pool2d_backward: grad_out has (N, C) = {tuple(grad_out.shape[:2])} but "
            f"input_size {tuple(input_size)} has (N, C) = {size[:2]}"
        )
    if min(size[-2:]) < 1:
        raise ValueError(f"input_size must have H >= 1 and W >= 1, got {input_size!r}")
    return size[-2:]


def avg_pool2d_backward(
    grad_out: Array,
    input_size,
    /,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    *,
    backend: str | None = None,
) -> Array:
    """Gradient of :func:`avg_pool2d` with respect to its input.

    Average pooling is linear, so the gradient needs only the input's size:
    every window spreads ``grad_out / divisor`` over its cells and
    :func:`convcore.col2im` sums the windows (padding cells are dropped).

    Parameters
    ----------
    grad_out : array, shape (N, C, Ho, Wo)
        Gradient of the loss with respect to the pooling output.
    input_size : (H, W) or (N, C, H, W)
        Size of the forward input; ``x.shape`` works.
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, backend
        The forward options.

    Returns
    -------
    dx : array, shape (N, C, H, W)
        Namespace, device and dtype of ``grad_out``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import avg_pool2d_backward
    >>> avg_pool2d_backward(np.ones((1, 1, 2, 2)), (3, 3), 2, stride=1)[0, 0]
    array([[0.25, 0.5 , 0.25],
           [0.5 , 1.  , 0.5 ],
           [0.25, 0.5 , 0.25]])
    """
    func = "avg_pool2d_backward"
    xp = _namespace(grad_out=grad_out)
    if grad_out.ndim != 4:
        raise ValueError(
            f"{func}: grad_out must be 4-D (N, C, Ho, Wo), got shape {tuple(grad_out.shape)}"
        )
    _check_floating(xp, "grad_out", grad_out, func)
    size = _input_size(input_size, grad_out)
    options, include, override = _avg_options(
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    geom = _geometry(options, size, func)
    n, c = grad_out.shape[0], grad_out.shape[1]
    _check_grad_out(xp, grad_out, (n, c, *geom.output_size), func)
    if c < 1:
        raise ValueError(f"{func}: grad_out must have C >= 1, got shape {tuple(grad_out.shape)}")
    acc = _accumulator(xp, grad_out.dtype)
    dev = array_api_compat.device(grad_out)
    g = xp.reshape(xp.astype(grad_out, acc), (n, c, 1, geom.output_numel))
    g = xp.astype(g / _divisors(xp, geom, include, override, acc, dev), grad_out.dtype)
    dcols = xp.broadcast_to(g, (n, c, geom.kernel_numel, geom.output_numel))
    dcols = xp.reshape(dcols, (n, c * geom.kernel_numel, geom.output_numel))
    return col2im(dcols, size, options.kernel_size, backend=backend, **geom.im2col_kwargs())


# ---------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------
class MaxPool2D(_Layer):
    """A max-pooling layer that caches its input for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, backend
        As for :func:`max_pool2d` (validated here, once).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import MaxPool2D
    >>> pool = MaxPool2D(2)
    >>> y = pool.forward(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> pool.backward(np.ones_like(y))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]])
    """

    _option_names = ("stride", "padding", "dilation", "ceil_mode", "backend")

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        *,
        backend: str | None = None,
    ):
        _options(kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode
        self.backend = backend
        self.input: Array | None = None

    def forward(self, x: Array, /) -> Array:
        """Pool ``x`` (N, C, H, W) and remember it for :meth:`backward`."""
        out = max_pool2d(x, self.kernel_size, **self._options())
        self.input = x
        return out

    __call__ = forward

    def backward(self, grad_out: Array, /) -> Array:
        """``dx`` for the input of the last :meth:`forward` call."""
        x = self._cached(self.input, "input")
        return max_pool2d_backward(grad_out, x, self.kernel_size, **self._options())

    def __repr__(self) -> str:
        return (
            f"MaxPool2D(kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}, dilation={self.dilation!r}, "
            f"ceil_mode={self.ceil_mode!r})"
        )


class AvgPool2D(_Layer):
    """An average-pooling layer that caches its input's shape for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, backend
        As for :func:`avg_pool2d` (validated here, once).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.pooling import AvgPool2D
    >>> pool = AvgPool2D(2)
    >>> y = pool.forward(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> pool.backward(np.ones_like(y)).shape
    (1, 1, 4, 4)
    """

    _option_names = (
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
        "backend",
    )

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
        *,
        backend: str | None = None,
    ):
        _avg_options(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.backend = backend
        self.input_shape: tuple[int, ...] | None = None

    def forward(self, x: Array, /) -> Array:
        """Pool ``x`` (N, C, H, W) and remember its shape for :meth:`backward`."""
        out = avg_pool2d(x, self.kernel_size, **self._options())
        self.input_shape = tuple(x.shape)
        return out

    __call__ = forward

    def backward(self, grad_out: Array, /) -> Array:
        """``dx`` for the input of the last :meth:`forward` call."""
        shape = self._cached(self.input_shape, "input shape")
        return avg_pool2d_backward(grad_out, shape, self.kernel_size, **self._options())

    def __repr__(self) -> str:
        return (
            f"AvgPool2D(kernel_size={self.kernel_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}, ceil_mode={self.ceil_mode!r}, "
            f"count_include_pad={self.count_include_pad!r}, "
            f"divisor_override={self.divisor_override!r})"
        )
