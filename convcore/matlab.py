"""The seed's MATLAB reference functions, in MATLAB layout, on top of convcore.

Course code written in MATLAB stores a batch as ``(H, W, C, N)`` (rows,
columns, channels, batch), filters as ``(HH, WW, C, F)`` and flattens a patch
with ``patch(:)``, MATLAB's column-major order.  This module offers the seed
document's functions under their own names and argument order, on arrays
indexed the MATLAB way, so that such code can be ported line by line and its
results compared number for number with ``matlab_ref/`` running in GNU Octave:

- ``reshape_row_major``: reshape in row-major (C) element order;
- ``im2col_ref``: one image to the ``(HH*WW*C) x (H'*W')`` matrix;
- ``im2col_back_ref``: the adjoint of ``im2col_ref`` (sums patches back);
- ``forward_propagation``: convolution layer forward, ``(H', W', F, N)``;
- ``backward_propagation``: gradients ``.input``, ``.weight``, ``.bias``;
- ``ConvolutionLayer``: the seed's layer, cached forward, then backward;
- ``max_pool``, ``avg_pool`` and their ``*_backward``: pooling on the seed's
  ``im2col_ref(..., isConv=0)`` windows (ceil sizes, zeros in the padding and
  the overhang), ``(H', W', C, N)``.

Where the seed warns that a stride or padding is invalid for the input (the
output size ``(H + T + B - HH) / SY + 1`` is not an integer), these functions
emit an :class:`OutputSizeWarning` and go on (floor for a convolution, ceil for
pooling); inside ``with convcore.matlab.strict():`` they raise ``ValueError``
instead.

Everything runs through the public API (:func:`convcore.im2col`,
:func:`convcore.col2im`, :func:`convcore.conv2d`,
:func:`convcore.conv2d_backward`) and the selected backend (``backend=``
keyword, :func:`convcore.use_backend`, ...), on any array-API library.  The
layout changes are axis permutations; outputs keep all four dimensions also
when N = 1 or F = 1.  Options take MATLAB's forms: a stride is a scalar or
``[SY SX]``, a padding a scalar, ``[PY PX]`` or ``[T B L R]``; integral
floats (MATLAB's doubles, e.g. values read with ``scipy.io.loadmat``) are
accepted as integers.

The seed's bugs and how the functions here depart from it are listed in
``matlab_ref/DEVIATIONS.md``; see also ``docs/matlab.md``.

Examples
--------
The seed's smaller example, a 3x3 image unfolded for a 2x2 kernel; each
column is one window flattened as MATLAB's ``patch(:)`` (down the columns):

>>> import numpy as np
>>> from convcore import matlab
>>> img = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
>>> matlab.im2col_ref(img, 2, 2, 1, 0)
array([[1., 2., 4., 5.],
       [4., 5., 7., 8.],
       [2., 3., 5., 6.],
       [5., 6., 8., 9.]])
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from math import prod
from typing import Any

import array_api_compat

from ._api import col2im, conv2d, conv2d_backward, im2col
from ._validation import common as _common
from ._validation import namespace as _namespace
from ._validation import zeros as _zeros
from .geometry import conv_geometry, conv_transpose_output_size, pool_geometry

__all__ = [
    "ConvolutionLayer",
    "Gradient",
    "OutputSizeWarning",
    "avg_pool",
    "avg_pool_backward",
    "backward_propagation",
    "forward_propagation",
    "im2col_back_ref",
    "im2col_ref",
    "max_pool",
    "max_pool_backward",
    "reshape_row_major",
    "strict",
]

Array = Any

#: NCHW <-> MATLAB layout.  (H, W, C, N) -> (N, C, H, W) and (HH, WW, C, F) ->
#: (F, C, HH, WW) is the same axis permutation; so is the way back.
_TO_CORE = (3, 2, 0, 1)
#: How errors call the kernel sizes.
_FILTERS = "the filters (weights) of size (HH, WW)"
_WINDOW = "the window (k_height, k_width)"
#: MATLAB's (H, W, C, N) as a convcore layout: the core permutes with the same machinery
#: it uses for NHWC.
_LAYOUT = "HWCN"
_TO_MATLAB = (2, 3, 1, 0)


# ---------------------------------------------------------------------------
# the seed's output-size warning
# ---------------------------------------------------------------------------
class OutputSizeWarning(UserWarning):
    """The output size ``(H + T + B - HH) / SY + 1`` is not an integer (the seed's warning).

    The seed's ``im2col_ref`` warns ``Invalid stride or pad for input`` and goes on:
    a convolution takes the floor (the last rows or columns of the padded input
    are not read), pooling the ceil (the last windows hang over the bottom or right
    edge and read zeros there).  The functions of :mod:`convcore.matlab` do the
    same and say which sizes and what was done; ``matlab_ref/*.m`` warn with the
    identifier ``convcore:outputSize``.  Inside :func:`strict` it is a ``ValueError``
    instead.  Silence it the usual way, e.g. ``warnings.simplefilter("ignore",
    convcore.matlab.OutputSizeWarning)``.
    """


_strict: ContextVar[bool] = ContextVar("convcore_matlab_strict", default=False)


@contextmanager
def strict(enabled=True) -> Iterator[bool]:
    """Within the block a non-integer output size is a ``ValueError``, not a warning.

    Like :func:`convcore.use_backend` the setting lives in a
    :class:`contextvars.ContextVar`: local to the thread or asyncio task, and
    restored on exit.  ``strict(False)`` turns it off again inside a strict block.
    The MATLAB side's equivalent is ``warning('error', 'convcore:outputSize')``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import matlab
    >>> with matlab.strict():
    ...     matlab.forward_propagation(np.ones((5, 5)), np.ones((2, 2)), None, 2, 0)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: forward_propagation: invalid stride or pad for the input: (H + T + B - HH) ...
    """
    token = _strict.set(_flag("enabled", enabled))
    try:
        yield _strict.get()
    finally:
        _strict.reset(token)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this module, for ``warnings.warn``."""
    frame, level = sys._getframe(1), 1  # the function calling warnings.warn
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_output_size(func: str, size, kernel, strides, pads, is_conv: bool, windows) -> None:
    """Warn (or raise, under :func:`strict`) where ``(H + T + B - HH) / SY + 1`` is fractional.

    ``windows`` is the output size used: floor (convolution) or ceil (pooling).
    """
    terms = []
    for i, (h, t, b, hh, sy) in enumerate(
        (("H", "T", "B", "HH", "SY"), ("W", "L", "R", "WW", "SX"))
    ):
        span = size[i] + pads[2 * i] + pads[2 * i + 1] - kernel[i]
        if span % strides[i]:
            terms.append(
                f"({h} + {t} + {b} - {hh}) / {sy} + 1 = ({size[i]} + {pads[2 * i]} + "
                f"{pads[2 * i + 1]} - {kernel[i]}) / {strides[i]} + 1 = "
                f"{span / strides[i] + 1:g}"
            )
    if not terms:
        return
    shown = " is not an integer, nor ".join(terms) if len(terms) == 2 else terms[0]
    what = f"{func}: invalid stride or pad for the input: {shown}"
    if len(terms) == 1:
        what += " is not an integer"
    ho, wo = windows
    if is_conv:
        left = []
        for i, word in enumerate(("row", "column")):
            unread = (size[i] + pads[2 * i] + pads[2 * i + 1] - kernel[i]) % strides[i]
            if unread:
                left.append(_plural(unread, word))
        done = (
            f"the convolution {{}} the floor: H' x W' = {ho} x {wo}, the last "
            f"{' and '.join(left)} of the padded input unread"
        )
    else:
        done = (
            f"pooling {{}} the ceil: H' x W' = {ho} x {wo}, the last windows hanging over the "
            "bottom/right edge and reading zeros there"
        )
    if _strict.get():
        raise ValueError(f"{what} (strict() is on; otherwise {done.format('would take')})")
    warnings.warn(
        f"{what}; {done.format('takes')}", OutputSizeWarning, stacklevel=_caller_stacklevel()
    )


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------
def _integer(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; integral floats (MATLAB doubles) are accepted."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    if getattr(value, "ndim", 0) > 0 and prod(value.shape) == 1:  # a 1x1 MATLAB value
        value = _flatten(value)[0]
    if getattr(value, "ndim", None) == 0 and not isinstance(value, numbers.Number):
        # a 0-d array (NumPy, PyTorch, ...): an integer, or a float that may be integral
        try:
            value = operator.index(value)
        except TypeError:
            value = float(value)
    try:
        out = operator.index(value)
    except TypeError:
        if not isinstance(value, numbers.Real):
            raise TypeError(
                f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
            ) from None
        if not float(value).is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        out = int(value)
    if out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def _flatten(value) -> list:
    """Scalars, nested sequences and arrays (e.g. a 1x2 MATLAB row) as a flat list."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected numbers, got the string {value!r}")
    if getattr(value, "ndim", 1 if isinstance(value, Sequence) else 0) == 0:
        return [value]
    return [item for part in value for item in _flatten(part)]


def _integers(name: str, value, counts: tuple[int, ...], forms: str, minimum: int) -> list[int]:
    try:
        items = _flatten(value)
    except TypeError:
        raise TypeError(f"{name} must be {forms}, got {value!r}") from None
    if len(items) not in counts:
        raise ValueError(f"{name} must be {forms}, got {value!r} with {len(items)} values")
    return [_integer(name, item, minimum) for item in items]


def _stride(stride) -> tuple[int, int]:
    s = _integers("stride", stride, (1, 2), "a positive integer or [SY SX]", 1)
    return (s[0], s[-1])


def _pad(pad) -> tuple[int, int, int, int]:
    p = _integers("pad", pad, (1, 2, 4), "an integer >= 0, [PY PX] or [T B L R]", 0)
    if len(p) == 1:
        return (p[0],) * 4
    if len(p) == 2:
        return (p[0], p[0], p[1], p[1])
    return tuple(p)


def _flag(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    flag = _integer(name, value, 0)
    if flag not in (0, 1):
        raise ValueError(f"{name} must be true/false or 1/0, got {value!r}")
    return bool(flag)


def _matlab4d(xp, name: str, arr, layout: str):
    """``arr`` with MATLAB's dropped trailing singleton dimensions restored (4-D)."""
    if not 2 <= arr.ndim <= 4:
        raise ValueError(
            f"{name} must be {layout} (2 to 4 dimensions; trailing singleton dimensions may be "
            f"left out as in MATLAB), got shape {tuple(arr.shape)}"
        )
    shape = tuple(arr.shape)
    return xp.reshape(arr, shape + (1,) * (4 - arr.ndim)) if arr.ndim < 4 else arr


def _same_dtype(ref_name: str, ref, **others) -> None:
    for name, arr in others.items():
        if arr is not None and arr.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {ref_name} has dtype {ref.dtype}; "
                "they must match"
            )


def _bias(xp, bias, f: int):
    """``bias`` as ``(F,)`` (or None) and the shape its gradient gets.

    The gradient keeps the shape of the bias given (``(F,)``, ``F x 1`` or ``1 x F``), and
    is ``F x 1`` without a bias, as ``backward_propagation.m`` returns it.
    """
    if bias is None or prod(bias.shape) == 0:
        return None, (f, 1)
    shape = tuple(bias.shape)
    if shape not in ((f,), (f, 1), (1, f)):
        raise ValueError(
            f"bias must have shape ({f},), ({f}, 1) or (1, {f}) for F={f} filters (or be None "
            f"or empty), got {shape}"
        )
    return xp.reshape(bias, (f,)), shape


def _conv_args(func, xp, x, weights, bias, stride, pad):
    x4 = _matlab4d(xp, "x", x, "(H, W, C, N)")
    w4 = _matlab4d(xp, "weights", weights, "(HH, WW, C, F)")
    _same_dtype("x", x, weights=weights, bias=bias)
    h, w, c = x4.shape[:3]
    hh, ww, cw, f = w4.shape
    if c != cw:
        raise ValueError(
            f"x has C={c} channels (x is (H, W, C, N) = {tuple(x4.shape)}) but weights expect "
            f"C={cw} (weights is (HH, WW, C, F) = {tuple(w4.shape)})"
        )
    core = {"stride": _stride(stride), "padding": _pad(pad)}
    out = conv_geometry((h, w), (hh, ww), **core, kernel_name=_FILTERS).output_size
    bias1, bias_shape = _bias(xp, bias, f)
    _check_output_size(func, (h, w), (hh, ww), core["stride"], core["padding"], True, out)
    return x4, w4, bias1, bias_shape, out, core


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------
def _shape(shape, size: int) -> tuple[int, ...]:
    """``shape`` for ``size`` elements; its one ``-1`` or ``None`` (MATLAB's ``[]``) is inferred."""
    forms = "a sequence of integers >= 0 with at most one -1 or None (the inferred size)"
    try:
        items = _flatten(shape)
    except TypeError:
        raise TypeError(f"shape must be {forms}, got {shape!r}") from None
    if not 1 <= len(items) <= 32:
        raise ValueError(f"shape must be {forms}, got {shape!r} with {len(items)} values")

    def inferred(item) -> bool:
        if item is None:
            return True
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            return False  # _integer names the type
        return item == -1

    unknown = [i for i, item in enumerate(items) if inferred(item)]
    if len(unknown) > 1:
        raise ValueError(
            f"shape may infer one dimension (-1 or None), got {len(unknown)} in {shape!r}"
        )
    dims = [None if i in unknown else _integer("shape", item, 0) for i, item in enumerate(items)]
    shown = "(" + ", ".join("-1" if d is None else str(d) for d in dims) + ")"
    known = prod(d for d in dims if d is not None)
    if unknown:
        if known == 0:
            raise ValueError(f"shape {shown} cannot infer a dimension: the others multiply to 0")
        if size % known:
            raise ValueError(
                f"shape {shown} does not fit x's {size} elements: {size} is not divisible by "
                f"the product of the other dimensions, {known}"
            )
        dims[unknown[0]] = size // known
    elif known != size:
        raise ValueError(f"shape {shown} has {known} elements but x has {size}")
    return tuple(dims)


def reshape_row_major(x: Array, shape, *dims) -> Array:
    """Reshape in row-major (C) element order, for arrays indexed the MATLAB way.

    MATLAB's ``reshape`` reads and fills in column-major order (first index
    fastest).  ``reshape_row_major`` reads and fills in row-major order (last
    index fastest), which on an array indexed the same way in both languages
    is NumPy's ``x.reshape(shape)``; ``matlab_ref/reshape_row_major.m`` is the
    MATLAB side.

    Parameters
    ----------
    x : array
    shape : sequence of int, or int
        The new shape.  One dimension may be ``-1`` or ``None`` (MATLAB's
        ``[]``): it is inferred from the number of elements, which the other
        dimensions must divide.  Otherwise the product must equal the number
        of elements of ``x``.
    *dims : int or None
        The MATLAB form ``reshape_row_major(x, d1, d2, ...)``: the dimensions as
        separate arguments, ``shape`` being the first (``reshape_row_major(x,
        None, 3)`` is MATLAB's ``reshape_row_major(x, [], 3)``).

    Returns
    -------
    array
        Same namespace, dtype and device as ``x``.

    Raises
    ------
    ValueError
        If the shape does not fit the elements of ``x``, or infers more than one
        dimension.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import reshape_row_major
    >>> reshape_row_major(np.array([[1, 2, 3], [4, 5, 6]]), (3, 2))
    array([[1, 2],
           [3, 4],
           [5, 6]])
    >>> reshape_row_major(np.arange(6), None, 3)           # MATLAB: reshape_row_major(x, [], 3)
    array([[0, 1, 2],
           [3, 4, 5]])
    >>> reshape_row_major(np.arange(6), (3, -1)).shape
    (3, 2)
    """
    xp = _namespace(x=x)
    new_shape = _shape((shape, *dims) if dims else shape, prod(x.shape))
    # through 1-D: some libraries (Dask) only merge or split whole axes in one reshape
    return xp.reshape(xp.reshape(x, (-1,)), new_shape)


def _windows(size, kernel, strides, pads, is_conv):
    """The windows of ``im2col_ref``: a convolution's, or the seed's pooling windows.

    Pooling takes the seed's ceil rule (``cover_all``, any padding): windows
    hanging over the bottom/right edge read zeros there, which the geometry's
    overhang (part of its padding) provides.
    """
    if is_conv:
        return conv_geometry(size, kernel, stride=strides, padding=pads, kernel_name=_WINDOW)
    return pool_geometry(
        size,
        kernel,
        stride=strides,
        padding=pads,
        ceil_mode="cover_all",
        limit_padding=False,
        kernel_name=_WINDOW,
    )


def im2col_ref(
    img: Array,
    k_height,
    k_width,
    stride=1,
    pad=0,
    is_conv=True,
    *,
    backend: str | None = None,
) -> Array:
    """Unfold every window of one image into a column, as the seed's MATLAB ``im2col_ref``.

    Parameters
    ----------
    img : array, shape (H, W, C) or (H, W)
        One image in MATLAB layout.
    k_height, k_width : int
        Kernel (window) size ``HH x WW``.
    stride : int or [SY SX], optional
    pad : int, [PY PX] or [T B L R], optional
        Zero padding.
    is_conv : bool or 0/1, optional
        True (convolution): ``H' = floor((H + T + B - HH) / SY) + 1``.  False
        (pooling): ``H' = ceil(...) + 1``, and windows hanging over the bottom
        or right edge read zeros there.
    backend : str, optional
        convcore backend; see :func:`convcore.use_backend`.

    Returns
    -------
    array, shape (HH*WW*C, H'*W')
        Column ``r*W' + c`` (0-based) is the window at output position
        ``(r, c)`` flattened as MATLAB's ``patch(:)``: row ``i + HH*j +
        HH*WW*ch`` holds tap ``(i, j)`` of channel ``ch``.  Windows go row by
        row, as the seed's loop (``r`` outer, ``c`` inner).  This differs from
        :func:`convcore.im2col` (PyTorch ``unfold`` rows ``(ch*HH + i)*WW + j``).

    Warns
    -----
    OutputSizeWarning
        When ``(H + T + B - HH) / SY + 1`` (or the same across) is not an
        integer: the seed's ``warning('warning: Invalid stride or pad for
        input')``.  The floor (convolution) or the ceil (pooling) is taken as
        said above.  Inside :func:`strict` a ``ValueError`` instead.

    Examples
    --------
    Pooling windows hanging over the edge (a 3x3 image, 2x2 windows, stride
    2: ``ceil(1/2) + 1 = 2`` windows per axis).  ``(3 - 2) / 2 + 1`` is not an
    integer, so it warns as the seed does:

    >>> import warnings
    >>> import numpy as np
    >>> from convcore.matlab import OutputSizeWarning, im2col_ref
    >>> img = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", OutputSizeWarning)
    ...     cols = im2col_ref(img, 2, 2, 2, 0, is_conv=False)
    >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
    im2col_ref: invalid stride or pad for the input: (H + T + B - HH) / SY + 1 = (3 + 0 + 0 - 2) / 2
    + 1 = 1.5 is not an integer, nor (W + L + R - WW) / SX + 1 = (3 + 0 + 0 - 2) / 2 + 1 = 1.5;
    pooling takes the ceil: H' x W' = 2 x 2, the last windows hanging over the bottom/right edge
    and reading zeros there
    >>> cols
    array([[1., 3., 7., 9.],
           [4., 6., 0., 0.],
           [2., 0., 8., 0.],
           [5., 0., 0., 0.]])
    """
    xp = _namespace(img=img)
    if img.ndim not in (2, 3):
        raise ValueError(
            f"img must be one image, (H, W, C) or (H, W), got shape {tuple(img.shape)}; "
            "loop over the batch as the seed does"
        )
    h, w = img.shape[0], img.shape[1]
    c = img.shape[2] if img.ndim == 3 else 1
    if min(h, w, c) < 1:
        raise ValueError(f"img must be non-empty, got shape {tuple(img.shape)}")
    kh = _integer("k_height", k_height, 1)
    kw = _integer("k_width", k_width, 1)
    strides, pads, conv = _stride(stride), _pad(pad), _flag("is_conv", is_conv)
    geom = _windows((h, w), (kh, kw), strides, pads, conv)
    ho, wo = geom.output_size
    _check_output_size("im2col_ref", (h, w), (kh, kw), strides, pads, conv, (ho, wo))
    x = xp.expand_dims(xp.permute_dims(xp.reshape(img, (h, w, c)), (2, 0, 1)), axis=0)
    cols = im2col(x, (kh, kw), stride=strides, padding=geom.padding, backend=backend)
    # rows (ch, i, j) -> (ch, j, i): MATLAB's patch(:) runs down the columns
    cols = xp.permute_dims(xp.reshape(cols, (c, kh, kw, ho * wo)), (0, 2, 1, 3))
    return xp.reshape(cols, (c * kw * kh, ho * wo))


def _back_padding(size, windows, kernel, strides, pads):
    """The padding of the forward ``im2col_ref`` call that gave ``windows`` windows per axis.

    Along each axis the count is a convolution's (floor) or the seed's pooling
    one (ceil, with an overhang after the padding); anything else cannot come
    from an image of ``size``.
    """
    pooled = _windows(size, kernel, strides, pads, False)
    try:
        floor = _windows(size, kernel, strides, pads, True).output_size
    except ValueError:  # the kernel is larger than the padded image: pooling only
        floor = (None, None)
    padding = list(pads)
    for i, name in enumerate(("dout_h", "dout_w")):
        if windows[i] == pooled.output_size[i]:
            padding[2 * i + 1] = pooled.padding[2 * i + 1]
        elif windows[i] != floor[i]:
            raise ValueError(
                f"{name}={windows[i]} windows do not fit a {size[0]}x{size[1]} image padded to "
                f"{size[0] + pads[0] + pads[1]}x{size[1] + pads[2] + pads[3]} with a "
                f"{kernel[0]}x{kernel[1]} window and stride {list(strides)}"
            )
    return tuple(padding)


def im2col_back_ref(
    dcols: Array,
    dout_h,
    dout_w,
    stride,
    hh,
    ww,
    c,
    pad=None,
    img_h=None,
    img_w=None,
    *,
    backend: str | None = None,
) -> Array:
    """Backpropagation of :func:`im2col_ref`: add every window's gradient back.

    Parameters
    ----------
    dcols : array, shape (dout_h*dout_w, hh*ww*c)
        One row per window in :func:`im2col_ref` order, each row in
        ``patch(:)`` order: the transpose of :func:`im2col_ref`'s output, as
        the seed passes it.
    dout_h, dout_w : int
        Number of windows down and across (``H'``, ``W'``).
    stride : int or [SY SX]
    hh, ww, c : int
        Window size and channels.
    pad : int, [PY PX] or [T B L R], optional
        The padding ``im2col_ref`` was called with; needs ``img_h``, ``img_w``.
    img_h, img_w : int, optional
        Size of the unpadded image.
    backend : str, optional
        convcore backend; see :func:`convcore.use_backend`.

    Returns
    -------
    array, shape (H, W, c)
        Overlapping windows are summed.  Without ``img_h``/``img_w`` (the
        seed's seven arguments): the gradient of the region the windows
        cover, ``H = (dout_h - 1)*SY + hh`` rows by ``(dout_w - 1)*SX + ww``
        columns.  With them: the ``img_h x img_w`` gradient of the unpadded
        image (padding and pooling overhang cut off, rows no window reached
        zero), the exact adjoint of ``im2col_ref(img, hh, ww, stride, pad,
        is_conv)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import im2col_back_ref
    >>> im2col_back_ref(np.ones((4, 4)), 2, 2, 1, 2, 2, 1)[:, :, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    xp = _namespace(dcols=dcols)
    ho = _integer("dout_h", dout_h, 1)
    wo = _integer("dout_w", dout_w, 1)
    sy, sx = _stride(stride)
    kh = _integer("hh", hh, 1)
    kw = _integer("ww", ww, 1)
    ch = _integer("c", c, 1)
    if tuple(dcols.shape) != (ho * wo, kh * kw * ch):
        raise ValueError(
            f"dcols must have shape (dout_h*dout_w, hh*ww*c) = ({ho * wo}, {kh * kw * ch}), "
            f"got {tuple(dcols.shape)}"
        )
    if img_h is None and img_w is None:
        if pad is not None and any(_pad(pad)):
            raise ValueError(
                "pad needs img_h and img_w (the unpadded image size) to cut the padding off"
            )
        # the region the windows cover: the image col2im of the windows fills
        size = conv_transpose_output_size((ho, wo), (kh, kw), stride=(sy, sx))
        padding = (0, 0, 0, 0)
    elif img_h is None or img_w is None:
        raise ValueError("img_h and img_w must be given together")
    else:
        size = (_integer("img_h", img_h, 1), _integer("img_w", img_w, 1))
        padding = _back_padding(size, (ho, wo), (kh, kw), (sy, sx), _pad(0 if pad is None else pad))
    # rows (ch, j, i) in patch(:) order -> convcore's (ch, i, j)
    cols = xp.reshape(xp.permute_dims(dcols, (1, 0)), (ch, kw, kh, ho * wo))
    cols = xp.reshape(xp.permute_dims(cols, (0, 2, 1, 3)), (1, ch * kh * kw, ho * wo))
    img = col2im(cols, size, (kh, kw), stride=(sy, sx), padding=padding, backend=backend)
    return xp.permute_dims(img[0, ...], (1, 2, 0))


def forward_propagation(
    x: Array,
    weights: Array,
    bias: Array | None = None,
    stride=1,
    pad=0,
    *,
    backend: str | None = None,
) -> Array:
    """Convolution layer forward pass in MATLAB layout (the seed's ``ForwardPropagation``).

    Parameters
    ----------
    x : array, shape (H, W, C, N)
        Input batch; ``(H, W, C)`` or ``(H, W)`` also work (MATLAB's dropped
        trailing singletons).
    weights : array, shape (HH, WW, C, F)
    bias : array, shape (F,), (F, 1) or (1, F), optional
        None or an empty array means no bias.
    stride : int or [SY SX], optional
    pad : int, [PY PX] or [T B L R], optional
    backend : str, optional
        convcore backend; see :func:`convcore.use_backend`.

    Returns
    -------
    array, shape (H', W', F, N)
        Always 4-D.  ``H' = floor((H + T + B - HH) / SY) + 1``.  Cross-correlation,
        as in the seed and every deep-learning library.

    Warns
    -----
    OutputSizeWarning
        When ``(H + T + B - HH) / SY + 1`` (or the same across) is not an
        integer, as the seed's ``im2col_ref``; a ``ValueError`` inside :func:`strict`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import forward_propagation
    >>> x = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])      # 3x3, C = N = 1
    >>> w = np.array([[1.0, 0], [0, -1]])                      # 2x2, F = 1
    >>> y = forward_propagation(x, w, np.array([10.0]), 1, 0)
    >>> y.shape
    (2, 2, 1, 1)
    >>> y[:, :, 0, 0]
    array([[6., 6.],
           [6., 6.]])
    """
    xp, (x, weights, bias) = _common(optional=("bias",), x=x, weights=weights, bias=bias)
    x4, w4, bias1, _, _, core = _conv_args("forward_propagation", xp, x, weights, bias, stride, pad)
    # The core takes MATLAB's (H, W, C, N) as the layout "HWCN" (views, no copies)
    # and returns (H', W', F, N); only the filters are permuted here.
    w_core = xp.permute_dims(w4, _TO_CORE)
    return conv2d(x4, w_core, bias1, **core, layout=_LAYOUT, backend=backend)


@dataclass(frozen=True)
class Gradient:
    """Gradients of a convolution layer, as the seed's ``gradient`` struct.

    Attributes
    ----------
    input : array, shape (H, W, C, N)
    weight : array, shape (HH, WW, C, F)
    bias : array, shape (F, 1), (F,) or (1, F)
        The shape of the bias given; ``(F, 1)`` when there was none (as
        ``backward_propagation.m`` returns it), so that ``bias - lr * db`` never
        broadcasts.
    """

    input: Array
    weight: Array
    bias: Array


def backward_propagation(
    dout: Array,
    x: Array,
    weights: Array,
    bias: Array | None = None,
    stride=1,
    pad=0,
    *,
    backend: str | None = None,
) -> Gradient:
    """Convolution layer backward pass in MATLAB layout (the seed's ``BackwardPropagation``).

    Parameters
    ----------
    dout : array, shape (H', W', F, N), or an object with an ``input`` field
        Gradient of the loss with respect to :func:`forward_propagation`'s
        output; a :class:`Gradient` (the next layer's result, as the seed
        passes it) is unwrapped.
    x, weights, bias, stride, pad
        The forward arguments.  ``bias`` only fixes the shape of the bias
        gradient.
    backend : str, optional
        convcore backend; see :func:`convcore.use_backend`.

    Returns
    -------
    Gradient
        ``.input`` (H, W, C, N), ``.weight`` (HH, WW, C, F), ``.bias`` in the
        shape of ``bias`` (``(F,)``, ``(F, 1)`` or ``(1, F)``), ``(F, 1)`` without one.

    Warns
    -----
    OutputSizeWarning
        As :func:`forward_propagation`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import backward_propagation
    >>> x = np.ones((3, 3)); w = np.ones((2, 2))
    >>> g = backward_propagation(np.ones((2, 2, 1, 1)), x, w, None, 1, 0)
    >>> g.input[:, :, 0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> g.weight.shape, g.bias                                  # no bias: F x 1
    ((2, 2, 1, 1), array([[4.]]))
    """
    if not array_api_compat.is_array_api_obj(dout) and hasattr(dout, "input"):
        dout = dout.input
    xp, (dout, x, weights, bias) = _common(
        optional=("bias",), dout=dout, x=x, weights=weights, bias=bias
    )
    x4, w4, _, bias_shape, out, core = _conv_args(
        "backward_propagation", xp, x, weights, bias, stride, pad
    )
    _same_dtype("x", x, dout=dout)
    d4 = _matlab4d(xp, "dout", dout, "(H', W', F, N)")
    expected = (*out, w4.shape[3], x4.shape[3])
    if tuple(d4.shape) != expected:
        raise ValueError(
            f"dout must have shape (H', W', F, N) = {expected} for these x, weights, stride and "
            f"pad, got {tuple(dout.shape)}"
        )
    dx, dw, db = conv2d_backward(
        d4, x4, xp.permute_dims(w4, _TO_CORE), **core, layout=_LAYOUT, backend=backend
    )
    return Gradient(
        input=dx,
        weight=xp.permute_dims(dw, _TO_MATLAB),
        bias=xp.reshape(db, bias_shape),
    )


class ConvolutionLayer:
    """The seed's convolution layer: the forward pass caches, the backward pass uses the cache.

    Parameters
    ----------
    stride : int or [SY SX], optional
        The seed's ``m_stride``.
    padding : int, [PY PX] or [T B L R], optional
        The seed's ``m_padding``.
    backend : str, optional
        convcore backend for both passes.

    Attributes
    ----------
    activations, weights, biases, previous_input
        What the last forward pass cached (None before the first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import ConvolutionLayer
    >>> layer = ConvolutionLayer(stride=1, padding=1)
    >>> y = layer.forward_propagation(np.ones((4, 5, 3, 2)), np.ones((3, 3, 3, 8)), np.zeros(8))
    >>> y.shape
    (4, 5, 8, 2)
    >>> g = layer.backward_propagation(np.ones_like(y))
    >>> g.input.shape, g.weight.shape, g.bias.shape
    ((4, 5, 3, 2), (3, 3, 3, 8), (8,))
    """

    def __init__(self, stride=1, padding=0, *, backend: str | None = None):
        self.stride = _stride(stride)
        self.padding = _pad(padding)
        self.backend = backend
        self.activations: Array | None = None
        self.weights: Array | None = None
        self.biases: Array | None = None
        self.previous_input: Array | None = None

    def forward_propagation(self, x: Array, weights: Array, bias: Array | None = None) -> Array:
        """:func:`forward_propagation` with this layer's options; caches its arguments."""
        activations = forward_propagation(
            x, weights, bias, self.stride, self.padding, backend=self.backend
        )
        self.activations, self.weights, self.biases = activations, weights, bias
        self.previous_input = x
        return activations

    def backward_propagation(self, dout) -> Gradient:
        """:func:`backward_propagation` for the input of the last forward pass."""
        if self.previous_input is None:
            raise RuntimeError(
                "ConvolutionLayer.backward_propagation() called before forward_propagation(): "
                "no input is cached"
            )
        return backward_propagation(
            dout,
            self.previous_input,
            self.weights,
            self.biases,
            self.stride,
            self.padding,
            backend=self.backend,
        )

    #: The seed's method names.
    ForwardPropagation = forward_propagation
    BackwardPropagation = backward_propagation

    def __repr__(self) -> str:
        return (
            f"ConvolutionLayer(stride={list(self.stride)}, padding={list(self.padding)}, "
            f"backend={self.backend!r})"
        )


# ---------------------------------------------------------------------------
# pooling on the seed's im2col_ref(..., isConv = 0) windows
# ---------------------------------------------------------------------------
def _pool_args(func: str, xp, x, k_height, k_width, stride, pad):
    """``x`` as 4-D, the window, the strides and the seed's pooling geometry (checked)."""
    x4 = _matlab4d(xp, "x", x, "(H, W, C, N)")
    if not xp.isdtype(x4.dtype, "real floating"):
        raise TypeError(f"x must have a real floating-point dtype, got {x4.dtype}")
    if min(x4.shape) < 1:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    kernel = (_integer("k_height", k_height, 1), _integer("k_width", k_width, 1))
    strides = kernel if stride is None else _stride(stride)
    pads = _pad(pad)
    size = tuple(x4.shape[:2])
    geom = _windows(size, kernel, strides, pads, False)
    _check_output_size(func, size, kernel, strides, pads, False, geom.output_size)
    return x4, kernel, strides, geom


def _pool_columns(xp, x4, kernel, strides, geom, backend):
    """The windows of every image and channel, ``(N, C, HH*WW, H'*W')``, taps in ``patch(:)``
    order (``i + HH*j``, down the kernel's columns), padding and overhang read as zeros."""
    n, c = x4.shape[3], x4.shape[2]
    kh, kw = kernel
    cols = im2col(x4, kernel, stride=strides, padding=geom.padding, layout=_LAYOUT, backend=backend)
    cols = xp.permute_dims(xp.reshape(cols, (n, c, kh, kw, geom.output_numel)), (0, 1, 3, 2, 4))
    return xp.reshape(cols, (n, c, kh * kw, geom.output_numel))


def _pool_result(xp, out, geom):
    """``(N, C, H'*W')`` -> MATLAB's ``(H', W', C, N)``."""
    n, c = out.shape[0], out.shape[1]
    return xp.permute_dims(xp.reshape(out, (n, c, *geom.output_size)), _TO_MATLAB)


def _pool_dout(func: str, xp, dout, c: int, n: int, geom):
    """``dout`` (H', W', C, N) checked, as ``(N, C, 1, H'*W')``."""
    d4 = _matlab4d(xp, "dout", dout, "(H', W', C, N)")
    expected = (*geom.output_size, c, n)
    if tuple(d4.shape) != expected:
        raise ValueError(
            f"{func}: dout must have shape (H', W', C, N) = {expected} for this input, window, "
            f"stride and pad, got {tuple(dout.shape)}"
        )
    return xp.reshape(xp.permute_dims(d4, _TO_CORE), (n, c, 1, geom.output_numel))


def _pool_backward_image(xp, dcols, size, kernel, strides, geom, backend):
    """``(N, C, HH*WW, L)`` gradients in ``patch(:)`` order summed onto ``(H, W, C, N)``.

    col2im drops whatever lands in the padding or the overhang, as the seed's
    ``im2col_back_ref(..., P, H, W)`` crops it off.
    """
    n, c = dcols.shape[0], dcols.shape[1]
    kh, kw = kernel
    dcols = xp.reshape(dcols, (n, c, kw, kh, geom.output_numel))
    dcols = xp.reshape(xp.permute_dims(dcols, (0, 1, 3, 2, 4)), (n, c * kh * kw, -1))
    return col2im(
        dcols, size, kernel, stride=strides, padding=geom.padding, layout=_LAYOUT, backend=backend
    )


def _unwrap(dout):
    """The seed passes the next layer's gradient struct; its ``input`` field is the array."""
    if not array_api_compat.is_array_api_obj(dout) and hasattr(dout, "input"):
        return dout.input
    return dout


def _max_columns(xp, cols):
    """MATLAB's ``[m, i] = max(cols)`` per window: the maximum and a one-hot of its tap.

    NaN is skipped, as MATLAB's and Octave's ``max`` do; a window of NaN only gives
    NaN and its first tap.  Ties go to the first maximum in ``patch(:)`` order.
    """
    dev = array_api_compat.device(cols)
    neg_inf = xp.asarray(-math.inf, dtype=cols.dtype, device=dev)
    is_nan = xp.isnan(cols)
    masked = xp.where(is_nan, neg_inf, cols)
    peak = xp.max(masked, axis=2)
    all_nan = xp.all(is_nan, axis=2)
    out = xp.where(all_nan, xp.asarray(math.nan, dtype=cols.dtype, device=dev), peak)
    k = cols.shape[2]
    hit = (masked == peak[:, :, None, :]) & (~is_nan | all_nan[:, :, None, :])
    tap = xp.arange(k, 0, -1, dtype=xp.int32, device=dev)[:, None]  # the first tap scores most
    score = xp.where(hit, tap, xp.zeros((), dtype=xp.int32, device=dev))
    return out, hit & (score == xp.max(score, axis=2, keepdims=True))


def max_pool(
    x: Array,
    k_height,
    k_width,
    stride=None,
    pad=0,
    *,
    backend: str | None = None,
) -> Array:
    """Max pooling in MATLAB layout on the seed's pooling windows: ``max(im2col_ref(im, ..., 0))``.

    The windows are :func:`im2col_ref`'s with ``is_conv=False``: ``H' = ceil((H
    + T + B - HH) / SY) + 1``, and windows hanging over the bottom or right edge
    read zeros there, as the padding does.  So a window whose input values are
    all negative but that holds a padding or overhang cell has the maximum 0.
    (:func:`convcore.max_pool2d` never takes a padding cell, and propagates NaN.)

    Parameters
    ----------
    x : array, shape (H, W, C, N)
        Real floating point; ``(H, W, C)`` or ``(H, W)`` also work.
    k_height, k_width : int
        The window ``HH x WW``.
    stride : int or [SY SX], optional
        Defaults to the window size.
    pad : int, [PY PX] or [T B L R], optional
        Zero padding.
    backend : str, optional
        convcore backend; see :func:`convcore.use_backend`.

    Returns
    -------
    array, shape (H', W', C, N)
        Every window's maximum, each channel on its own.  NaN is skipped as by
        MATLAB's ``max`` (a window of NaN only gives NaN).

    Warns
    -----
    OutputSizeWarning
        When ``(H + T + B - HH) / SY + 1`` (or the same across) is not an integer;
        a ``ValueError`` inside :func:`strict`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import max_pool
    >>> x = np.array([[1.0, -2, 3, 0], [4, 5, -6, 1], [7, 8, 9, -1], [0, 2, 3, 4]])
    >>> max_pool(x, 2, 2)[:, :, 0, 0]
    array([[5., 3.],
           [8., 9.]])
    """
    xp = _namespace(x=x)
    x4, kernel, strides, geom = _pool_args("max_pool", xp, x, k_height, k_width, stride, pad)
    out, _ = _max_columns(xp, _pool_columns(xp, x4, kernel, strides, geom, backend))
    return _pool_result(xp, out, geom)


def max_pool_backward(
    dout: Array,
    x: Array,
    k_height,
    k_width,
    stride=None,
    pad=0,
    *,
    backend: str | None = None,
) -> Array:
    """Gradient of :func:`max_pool`: each window's gradient to its first maximum.

    The seed's way: ``[m, i] = max(cols)`` over each window's column of
    ``im2col_ref(im, ..., 0)`` picks the first maximum in ``patch(:)`` order (down
    the window's columns: tap ``(i, j)`` is number ``i + HH*j``), the gradient is
    put there, and ``im2col_back_ref(..., P, H, W)`` sums the windows back.  A
    maximum in the padding or the overhang passes its gradient to nothing.
    (:func:`convcore.max_pool2d_backward` takes the first maximum in row-major
    order, PyTorch's, and never a padding cell.)

    Parameters
    ----------
    dout : array, shape (H', W', C, N), or an object with an ``input`` field
        Gradient of the loss with respect to :func:`max_pool`'s output (the next
        layer's :class:`Gradient` is unwrapped).
    x : array, shape (H, W, C, N)
        The forward input (the maxima are found again).
    k_height, k_width, stride, pad, backend
        The forward arguments.

    Returns
    -------
    array, shape (H, W, C, N)
        Always 4-D.

    Examples
    --------
    A tie goes to the first maximum down the columns: ``x(2, 1)``, not ``x(1, 2)``.

    >>> import numpy as np
    >>> from convcore.matlab import max_pool_backward
    >>> x = np.array([[1.0, 5], [5, 2]])
    >>> max_pool_backward(np.ones((1, 1)), x, 2, 2)[:, :, 0, 0]
    array([[0., 0.],
           [1., 0.]])
    """
    dout = _unwrap(dout)
    xp, (dout, x) = _common(dout=dout, x=x)
    _same_dtype("x", x, dout=dout)
    x4, kernel, strides, geom = _pool_args(
        "max_pool_backward", xp, x, k_height, k_width, stride, pad
    )
    h, w, c, n = x4.shape
    g = _pool_dout("max_pool_backward", xp, dout, c, n, geom)
    _, choice = _max_columns(xp, _pool_columns(xp, x4, kernel, strides, geom, backend))
    dcols = xp.where(choice, g, _zeros(xp, (), g))
    return _pool_backward_image(xp, dcols, (h, w), kernel, strides, geom, backend)


def avg_pool(
    x: Array,
    k_height,
    k_width,
    stride=None,
    pad=0,
    *,
    backend: str | None = None,
) -> Array:
    """Average pooling in MATLAB layout on the seed's windows: ``mean(im2col_ref(im, ..., 0))``.

    The windows are :func:`max_pool`'s (ceil sizes, zeros in the padding and the
    overhang), and every window sum is divided by ``HH*WW``, whatever the window
    covers.  :func:`convcore.avg_pool2d` with ``ceil_mode="cover_all"`` and
    ``divisor_override=HH*WW`` gives the same numbers where its padding limit
    (``kernel // 2``) allows the padding.

    Parameters
    ----------
    x : array, shape (H, W, C, N)
        Real floating point; ``(H, W, C)`` or ``(H, W)`` also work.
    k_height, k_width : int
    stride : int or [SY SX], optional
        Defaults to the window size.
    pad : int, [PY PX] or [T B L R], optional
    backend : str, optional

    Returns
    -------
    array, shape (H', W', C, N)

    Warns
    -----
    OutputSizeWarning
        As :func:`max_pool`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import avg_pool
    >>> x = np.arange(1.0, 17).reshape(4, 4)
    >>> avg_pool(x, 2, 2)[:, :, 0, 0]
    array([[ 3.5,  5.5],
           [11.5, 13.5]])
    """
    xp = _namespace(x=x)
    x4, kernel, strides, geom = _pool_args("avg_pool", xp, x, k_height, k_width, stride, pad)
    cols = _pool_columns(xp, x4, kernel, strides, geom, backend)
    return _pool_result(xp, xp.sum(cols, axis=2) / (kernel[0] * kernel[1]), geom)


def _input_size(xp, x, dout) -> tuple[int, int, int, int]:
    """``avg_pool_backward``'s ``x``: the forward input or its MATLAB ``size``, as (H, W, C, N)."""
    if array_api_compat.is_array_api_obj(x):
        _same_dtype("dout", dout, x=x)
        return tuple(_matlab4d(xp, "x", x, "(H, W, C, N)").shape)
    forms = "the forward input or its size [H W C N] (trailing ones may be left out)"
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"x must be {forms}, got {type(x).__name__}")
    size = _integers("x", x, (2, 3, 4), forms, 1)
    return tuple(size) + (1,) * (4 - len(size))


def avg_pool_backward(
    dout: Array,
    x,
    k_height,
    k_width,
    stride=None,
    pad=0,
    *,
    backend: str | None = None,
) -> Array:
    """Gradient of :func:`avg_pool`: every window spreads ``dout / (HH*WW)`` over its cells.

    The seed's way: the gradient of each column's mean is ``dout / (HH*WW)`` on
    every tap, and ``im2col_back_ref(..., P, H, W)`` sums the windows back;
    padding and overhang taps pass theirs to nothing.

    Parameters
    ----------
    dout : array, shape (H', W', C, N), or an object with an ``input`` field
    x : array, shape (H, W, C, N), or its size
        The forward input, or only its size ``[H W C N]`` (MATLAB's ``size(x)``;
        trailing ones may be left out) as a tuple or list of integers: average
        pooling is linear.  An array is always taken as the input itself.
    k_height, k_width, stride, pad, backend
        The forward arguments.

    Returns
    -------
    array, shape (H, W, C, N)
        Namespace, dtype and device of ``dout``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.matlab import avg_pool_backward
    >>> avg_pool_backward(np.ones((1, 2)), (2, 4), 2, 2)[:, :, 0, 0]
    array([[0.25, 0.25, 0.25, 0.25],
           [0.25, 0.25, 0.25, 0.25]])
    """
    dout = _unwrap(dout)
    if array_api_compat.is_array_api_obj(x):
        xp, (dout, x) = _common(dout=dout, x=x)
    else:
        xp = _namespace(dout=dout)
    h, w, c, n = _input_size(xp, x, dout)
    if not xp.isdtype(dout.dtype, "real floating"):
        raise TypeError(f"dout must have a real floating-point dtype, got {dout.dtype}")
    kernel = (_integer("k_height", k_height, 1), _integer("k_width", k_width, 1))
    strides = kernel if stride is None else _stride(stride)
    pads = _pad(pad)
    geom = _windows((h, w), kernel, strides, pads, False)
    _check_output_size("avg_pool_backward", (h, w), kernel, strides, pads, False, geom.output_size)
    g = _pool_dout("avg_pool_backward", xp, dout, c, n, geom) / (kernel[0] * kernel[1])
    dcols = xp.broadcast_to(g, (n, c, kernel[0] * kernel[1], geom.output_numel))
    return _pool_backward_image(xp, dcols, (h, w), kernel, strides, geom, backend)
