"""Public operators of the convolution: im2col, col2im and conv (1-D to 3-D), forward and backward.

Each validates its arguments (:mod:`convcore._validation`), hands a
channels-first view of the caller's arrays to the backend that
:func:`convcore._dispatch.select` chooses, and returns the result in the
caller's layout, library, device and dtype.  Spatial rank, layout and half
precision are handled there, once, for every backend (see those modules).
"""

from __future__ import annotations

from math import prod
from typing import Any

from ._dispatch import resolve_backend, select
from ._padmodes import check_padding_mode, fold, pad, padded_geometry
from ._registry import dtype_name
from ._validation import (
    Layout,
    check_floating,
    check_groups,
    check_ndim,
    check_nonempty,
    check_same,
    common,
    device_of,
    kernel_labels,
    namespace,
    spatial_rank,
    zeros,
)
from .geometry import conv_geometry

Array = Any

__all__ = [
    "col2im",
    "col2im_backward",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_backward",
    "im2col",
    "reshape_gemm_output",
    "resolve_backend",
]


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
def im2col(
    x: Array,
    /,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> Array:
    """Unfold every receptive field of ``x`` into a column.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Input batch (NCHW); ``(N, C, W)`` for 1-D and ``(N, C, D, H, W)`` for 3-D
        data, or the same axes in the order ``layout`` names.  Any dtype the
        backend declares for ``im2col`` (integers too on the CPU backends: this
        is data movement).
    kernel_size : int or tuple of int
        ``(KH, KW)`` (one number per spatial axis, or one for all).
    stride, dilation : int or tuple of int, optional
        Per-axis step between receptive fields and between kernel taps.
    padding : int, (int, int), (top, bottom, left, right), "valid" or "same"
        Zero padding; ``"same"`` follows TensorFlow/JAX (also with stride > 1).
        In N-d: one int, ``nd`` ints, ``2*nd`` ints (before, after per axis) or
        ``nd`` pairs.
    padding_mode : str, optional
        What the padding holds: ``"zeros"`` (default), ``"reflect"`` (mirrored,
        edge not repeated), ``"symmetric"`` (mirrored, edge repeated: MATLAB
        ``padarray``'s), ``"replicate"`` (the edge repeated) or ``"circular"``
        (wrapped around), as in ``numpy.pad`` / ``torch.nn.functional.pad``.
    layout : str, optional
        Axis order of ``x``: ``"NCHW"`` (default, ``"channels_first"``),
        ``"NHWC"`` (``"channels_last"``), ``"NWC"``, ``"NDHWC"``, ...  The
        columns are the same for every layout.
    backend : str, optional
        Backend name; overrides the context, environment and configuration.

    Returns
    -------
    cols : array, shape (N, C*KH*KW, Ho*Wo)
        Row ``(c*KH + i)*KW + j`` holds tap ``(i, j)`` of channel ``c``; column
        ``oh*Wo + ow`` is output position ``(oh, ow)``.  This is PyTorch's
        ``torch.nn.functional.unfold`` order (in N-d: channel, then the taps in
        C order; columns in C order over the output positions).  (MATLAB's
        ``patch(:)`` order differs; :func:`convcore.matlab.im2col_ref` returns
        that one.)

    See Also
    --------
    col2im : the overlap-summing adjoint.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> convcore.im2col(x, 2, stride=2)[0]
    array([[ 0.,  2.,  8., 10.],
           [ 1.,  3.,  9., 11.],
           [ 4.,  6., 12., 14.],
           [ 5.,  7., 13., 15.]])
    >>> convcore.im2col(np.arange(5).reshape(1, 1, 5), 3)[0]  # 1-D, integers
    array([[0, 1, 2],
           [1, 2, 3],
           [2, 3, 4]])
    """
    xp = namespace(x=x)
    mode = check_padding_mode(padding_mode)
    nd = spatial_rank("x", x)
    lay = _layout(layout, nd)
    check_ndim("x", x, lay.labels)
    check_nonempty("x", tuple(x.shape), lay.labels)
    x = lay.to_first(xp, x)
    geom = conv_geometry(
        tuple(x.shape[2:]), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    n, c = x.shape[0], x.shape[1]
    plan = select("im2col", xp, x, backend, nd)
    if n == 0:
        return zeros(xp, (0, c * geom.kernel_numel, geom.output_numel), x)
    (xc,) = plan.cast(xp, x)
    if mode != "zeros":
        xc, geom = pad(xp, xc, geom, mode)
    return plan.uncast(xp, x.dtype, plan.im2col(xp, xc, geom))


def col2im(
    cols: Array,
    /,
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    dtype=None,
    reduction: str = "sum",
    backend: str | None = None,
) -> Array:
    """Sum columns back into an image: the adjoint of :func:`im2col`.

    Every column entry is added to the input pixel it was read from, so pixels
    covered by several receptive fields receive the sum (PyTorch's ``fold``).
    This is not an inverse of :func:`im2col`; it is what the convolution's
    input gradient needs.

    Parameters
    ----------
    cols : array, shape (N, C*KH*KW, Ho*Wo)
        Columns in :func:`im2col` order.
    input_size : tuple of int
        ``(H, W)`` of the unpadded image to rebuild (``(W,)`` in 1-D,
        ``(D, H, W)`` in 3-D).
    kernel_size, stride, padding, dilation, padding_mode, backend
        As for :func:`im2col`; they must describe the same geometry.  With a
        ``padding_mode`` other than zeros, the entries that :func:`im2col` read
        from the border are added onto the pixels the border holds (the adjoint).
    layout : str, optional
        Axis order of the result, as for :func:`im2col`.
    dtype : str or dtype, optional
        dtype of the sums and of the result: a name (``"int64"``) or a dtype
        of the columns' namespace.  By default integer columns are summed in
        the dtype the namespace's ``sum`` gives them, the 64-bit integer of
        their signedness as :func:`numpy.sum` does (int8 ... int64 -> int64,
        uint8 ... uint64 -> uint64; PyTorch sums every integer in int64), so
        overlapping sums do not wrap around; floating columns keep their dtype (float16
        and bfloat16 are summed in float32 where the backend lacks them and
        rounded once).  Integer columns take any integer or real floating
        ``dtype`` (a narrower integer wraps, as asked); floating columns take
        a real floating one (``"float64"`` sums float32 columns in double);
        anything else is a ``TypeError``, an unknown name a ``ValueError``.
        When ``dtype`` differs from the columns' dtype, the columns are cast
        to it (one copy) before the backend sums them, so the backend must
        declare col2im for ``dtype``.

    Returns
    -------
    x : array, shape (N, C, H, W)
        Padding rows and columns are dropped after summing.  In ``layout``'s
        axis order, with the dtype described under ``dtype``.

    reduction : {"sum", "mean"}, optional
        ``"sum"`` (default) adds every entry to its pixel; ``"mean"`` divides
        each pixel's sum by the number of entries that landed on it (pixels no
        window reaches stay 0), so ``col2im(im2col(x), ..., reduction="mean")``
        gives ``x`` back for any geometry whose windows cover every pixel: the
        averaging fold of patch stitching.  It needs floating-point columns
        (or a floating ``dtype``).  :func:`col2im_backward` is its adjoint.

    See Also
    --------
    reshape_gemm_output : the plain reshape the seed document calls "col2im".
    col2im_backward : the gradient with respect to the columns.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> cols = np.full((1, 2, 2), 200, np.uint8)  # two taps of a 2-wide kernel
    >>> convcore.col2im(cols, (3,), 2)  # the middle pixel is 200 + 200
    array([[[200, 400, 200]]], dtype=uint64)
    >>> convcore.col2im(cols, (3,), 2, dtype="uint8")  # wraps, as asked
    array([[[200, 144, 200]]], dtype=uint8)
    """
    xp = namespace(cols=cols)
    mode = check_padding_mode(padding_mode)
    check_ndim("cols", cols, "N, C*KH*KW, L")
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(
            f"input_size must be a tuple of spatial sizes such as (H, W), got {input_size!r}"
        )
    nd = len(input_size)
    if nd < 1:
        raise ValueError(f"input_size must name at least one spatial size, got {input_size!r}")
    lay = _layout(layout, nd)
    geom = conv_geometry(input_size, kernel_size, stride=stride, padding=padding, dilation=dilation)
    n, rows, length = cols.shape
    k = geom.kernel_numel
    if rows == 0 or rows % k:
        raise ValueError(
            f"cols has {rows} rows, expected a positive multiple of the kernel size "
            f"{geom.kernel_size} = {k} (C*KH*KW)"
        )
    if length != geom.output_numel:
        raise ValueError(
            f"cols has {length} columns, expected Ho*Wo = {geom.output_numel} for output size "
            f"{geom.output_size} (input_size {geom.input_size}, kernel_size {geom.kernel_size}, "
            f"stride {geom.stride}, padding {geom.padding}, dilation {geom.dilation})"
        )
    target = _col2im_dtype(xp, cols, dtype)
    mean = _reduction(reduction) == "mean"
    if mean and not xp.isdtype(target, "real floating"):
        raise TypeError(
            f"reduction='mean' needs real floating-point columns, got dtype "
            f"{dtype_name(xp, cols.dtype)}; pass dtype='float64' (or another floating dtype)"
        )
    recast = target != cols.dtype
    # the backend sees columns of the target dtype: select by an empty one
    ref = xp.astype(cols[:0, ...], target) if recast else cols
    plan = select("col2im", xp, ref, backend, nd)
    if n == 0:
        return lay.from_first(xp, zeros(xp, (0, rows // k, *geom.input_size), ref))
    (cc,) = plan.cast(xp, xp.astype(cols, target) if recast else cols)
    img = _fold_columns(xp, plan, cc, geom, mode)
    if mean:
        img = img / _coverage(xp, plan, cc, geom, mode)
    return lay.from_first(xp, plan.uncast(xp, target, img))


def _fold_columns(xp, plan, cols, geom, mode: str):
    """The backend's col2im of ``cols``, the padded border folded back for ``mode``."""
    if mode == "zeros":
        return plan.col2im(xp, cols, geom)
    return fold(xp, plan.col2im(xp, cols, padded_geometry(geom)), geom, mode)


def _coverage(xp, plan, like, geom, mode: str):
    """``(1, 1, *input_size)``: how many column entries land on each pixel, 1 where none
    does (those pixels sum to 0, and 0 / 1 keeps them 0)."""
    ones = xp.ones(
        (1, geom.kernel_numel, geom.output_numel), dtype=like.dtype, device=device_of(like)
    )
    count = _fold_columns(xp, plan, ones, geom, mode)
    return xp.where(count > 0, count, xp.ones_like(count))


_REDUCTIONS = ("sum", "mean")


def _reduction(value) -> str:
    if not isinstance(value, str) or value not in _REDUCTIONS:
        raise (TypeError if not isinstance(value, str) else ValueError)(
            f"reduction must be 'sum' or 'mean', got {value!r}"
        )
    return value


def col2im_backward(
    grad_out: Array,
    /,
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    dtype=None,
    reduction: str = "sum",
    backend: str | None = None,
) -> Array:
    """Gradient of :func:`col2im` with respect to its columns (its adjoint).

    With ``reduction="sum"`` this is :func:`im2col` of ``grad_out``; with
    ``"mean"`` it is :func:`im2col` of ``grad_out`` divided by how many column
    entries landed on each pixel.  The arguments are those of the :func:`col2im`
    call, with ``grad_out`` (the shape of its result) in place of the columns;
    ``dtype`` is accepted for symmetry and ignored (the gradient has
    ``grad_out``'s dtype).

    Examples
    --------
    >>> import numpy as np, convcore
    >>> g = convcore.col2im_backward(np.ones((1, 1, 3)), (3,), 2, reduction="mean")
    >>> g[0]                                     # the middle pixel was shared by two taps
    array([[1. , 0.5],
           [0.5, 1. ]])
    """
    xp = namespace(grad_out=grad_out)
    if _reduction(reduction) == "mean":
        check_floating(xp, "grad_out", grad_out, "col2im_backward")
        nd = spatial_rank("grad_out", grad_out)
        lay = _layout(layout, nd)
        geom = conv_geometry(
            input_size, kernel_size, stride=stride, padding=padding, dilation=dilation
        )
        ref = lay.to_first(xp, grad_out)
        plan = select("col2im", xp, ref, backend, nd)
        (gc,) = plan.cast(xp, ref)
        count = _coverage(xp, plan, gc, geom, check_padding_mode(padding_mode))
        scaled = plan.uncast(xp, grad_out.dtype, gc / count)
        grad_out = lay.from_first(xp, scaled)
    return im2col(
        grad_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode, layout=layout, backend=backend,
    )  # fmt: skip


#: dtype names :func:`col2im` takes for ``dtype``.
_INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _col2im_dtype(xp, cols, dtype):
    """The dtype :func:`col2im` sums ``cols`` in and returns (see its ``dtype``)."""
    src = cols.dtype
    integer = xp.isdtype(src, "integral")
    if dtype is None:
        # the namespace's own sum of integers: int64 / uint64 (PyTorch: int64)
        return xp.sum(cols[:0, ...]).dtype if integer else src
    names = {n: getattr(xp, n) for n in (*_INTEGERS, *_FLOATS) if hasattr(xp, n)}
    if isinstance(dtype, str):
        if dtype not in names:
            raise ValueError(
                f"dtype must name an integer or real floating dtype of the columns' "
                f"namespace ({', '.join(names)}), got {dtype!r}"
            )
        name = dtype
    else:
        try:
            name = next((n for n, d in names.items() if dtype == d), None)
        except Exception:  # an object that cannot be compared with dtypes
            name = None
        if name is None:
            raise TypeError(
                f"dtype must be an integer or real floating dtype of the columns' namespace "
                f"or its name ({', '.join(names)}), got {dtype!r}"
            )
    if not integer and name in _INTEGERS:
        raise TypeError(
            f"dtype={name!r} cannot hold the sums of floating columns ({src}); "
            "pass a floating dtype or none"
        )
    return names[name]


def reshape_gemm_output(y: Array, /, output_size) -> Array:
    """Reshape a GEMM result ``(N, F, Ho*Wo)`` to ``(N, F, Ho, Wo)``.

    This is the step the seed document calls "col2im": a plain reshape with no
    summation.  It is *not* :func:`col2im`, which sums overlapping patches.
    """
    xp = namespace(y=y)
    check_ndim("y", y, "N, F, L")
    size = tuple(output_size)
    if prod(size) != y.shape[2]:
        raise ValueError(
            f"output_size {size} has {prod(size)} positions but y has {y.shape[2]} columns"
        )
    return xp.reshape(y, (y.shape[0], y.shape[1], *size))


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
_FORWARD = object()  # grad_out of a forward call: no such argument


_MEMO_SIZE = 512
_layouts: dict = {}
_geometries: dict = {}


def _layout(layout, nd: int) -> Layout:
    """``Layout(layout, nd)``, memoized for string layouts (a Layout is never modified)."""
    if type(layout) is not str:
        return Layout(layout, nd)
    key = (layout, nd)
    lay = _layouts.get(key)
    if lay is None:
        lay = Layout(layout, nd)  # raises for a bad layout: nothing is stored
        if len(_layouts) < _MEMO_SIZE:
            _layouts[key] = lay
    return lay


def _plain(value) -> bool:
    """An int, a str or a tuple of ints: options whose equality means the same geometry.

    (``True == 1`` and ``1.0 == 1``, but ``stride=True`` is an error: only exact
    types are memoized, anything else is normalized afresh.)"""
    kind = type(value)
    if kind is int or kind is str:
        return True
    return kind is tuple and all(type(v) is int for v in value)


def _conv_geometry(size, kernel, stride, padding, dilation, kernels: str):
    """:func:`conv_geometry` of a convolution, memoized for plain options (a
    :class:`ConvGeometry` is frozen); normalizing them cost ~15 us a call."""
    key = None
    if _plain(stride) and _plain(padding) and _plain(dilation):
        key = (tuple(size), kernel, stride, padding, dilation)
        try:
            geom = _geometries.get(key)
        except TypeError:  # unhashable sizes
            key, geom = None, None
        if geom is not None:
            return geom
    geom = conv_geometry(
        size,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        kernel_name=f"weight's kernel size ({kernels})",
    )
    if key is not None and len(_geometries) < _MEMO_SIZE:
        _geometries[key] = geom
    return geom


_floating: dict = {}


def _check_floating(xp, x, func: str) -> None:
    """``check_floating(xp, "x", x, func)``, memoized per namespace and dtype (asking
    ``isdtype`` cost a few microseconds a call)."""
    try:
        key = (xp, x.dtype)
        known = _floating.get(key)
    except TypeError:  # an unhashable dtype
        key, known = None, None
    if known:
        return
    check_floating(xp, "x", x, func)  # raises for a dtype that is not real floating
    if key is not None and len(_floating) < _MEMO_SIZE:
        _floating[key] = True


_setups: dict = {}


def _ndarray(a) -> bool:
    """A NumPy ndarray (its shape and dtype say everything validation looks at)."""
    kind = type(a)
    return kind.__name__ == "ndarray" and kind.__module__ == "numpy"


def _setup_key(func, x, weight, bias, grad_out, groups, stride, padding, dilation, layout, nd):
    """The key of a memoized :func:`_conv_setup`, or None when the call cannot use one.

    Only calls whose arrays are all NumPy ndarrays and whose options are plain
    (:func:`_plain`) are memoized: their validation depends on nothing but the
    shapes, dtypes and options (NumPy arrays have one device), so a call with the
    same key passes the same checks and gets the same geometry.
    """
    if not (_ndarray(x) and _ndarray(weight)):
        return None
    if bias is not None and not _ndarray(bias):
        return None
    if grad_out is not _FORWARD and not _ndarray(grad_out):
        return None
    if not (_plain(stride) and _plain(padding) and _plain(dilation) and type(groups) is int):
        return None
    if type(layout) is not str or not (nd is None or type(nd) is int):
        return None
    return (
        func, x.shape, x.dtype, weight.shape, weight.dtype,
        None if bias is None else (bias.shape, bias.dtype),
        None if grad_out is _FORWARD else (grad_out.shape, grad_out.dtype),
        groups, stride, padding, dilation, layout, nd,
    )  # fmt: skip


def _conv_setup(
    func, x, weight, bias, groups, stride, padding, dilation, layout, nd, grad_out=_FORWARD
):
    """Validate a convolution call (memoized for NumPy arrays, see :func:`_setup_key`)."""
    key = _setup_key(func, x, weight, bias, grad_out, groups, stride, padding, dilation,
                     layout, nd)  # fmt: skip
    if key is not None:
        hit = _setups.get(key)
        if hit is not None:
            xp, geom, groups, lay = hit
            gf = None if grad_out is _FORWARD else lay.to_first(xp, grad_out)
            return xp, geom, groups, lay, lay.to_first(xp, x), weight, bias, gf
    out = _validate_conv(
        func, x, weight, bias, groups, stride, padding, dilation, layout, nd, grad_out
    )
    if key is not None and len(_setups) < _MEMO_SIZE:
        _setups[key] = out[:4]
    return out


def _validate_conv(
    func, x, weight, bias, groups, stride, padding, dilation, layout, nd, grad_out=_FORWARD
):
    """Validate a convolution call; return ``xp, geom, groups, layout``, the
    channels-first view of ``x``, ``weight``, ``bias`` and the channels-first
    view of ``grad_out`` (a backward call when ``grad_out`` is not ``_FORWARD``),
    all in ``xp``'s library (:func:`convcore._validation.common`)."""
    backward = grad_out is not _FORWARD
    if not backward:
        grad_out = None
    arrays = {"x": x, "weight": weight, "bias": bias}
    if backward:
        arrays = {"x": x, "weight": weight, "grad_out": grad_out}
    xp, converted = common(optional=("bias",), **arrays)
    if backward:
        x, weight, grad_out = converted
    else:
        x, weight, bias = converted
    nd = spatial_rank("x", x, nd)
    lay = _layout(layout, nd)
    check_ndim("x", x, lay.labels)
    kernels = kernel_labels(nd)
    check_ndim("weight", weight, f"F, C/groups, {kernels}")
    _check_floating(xp, x, func)
    check_same(xp, "x", x, weight=weight, bias=bias, grad_out=grad_out)
    groups = check_groups(groups)
    check_nonempty("x", tuple(x.shape), lay.labels)
    x = lay.to_first(xp, x)
    shape = tuple(x.shape)
    f, cg = weight.shape[0], weight.shape[1]
    if f < 1 or cg < 1:
        raise ValueError(f"weight must have F >= 1 and C/groups >= 1, got shape {weight.shape}")
    if f % groups:
        raise ValueError(
            f"weight has F={f} filters, which groups={groups} does not divide; "
            "F must be a multiple of groups"
        )
    if shape[1] != cg * groups:
        raise ValueError(
            f"x has C={shape[1]} channels but weight expects C/groups * groups = "
            f"{cg} * {groups} = {cg * groups} (weight shape {tuple(weight.shape)})"
        )
    if bias is not None and tuple(bias.shape) != (f,):
        raise ValueError(f"bias must have shape ({f},) for F={f} filters, got {tuple(bias.shape)}")
    geom = _conv_geometry(shape[2:], tuple(weight.shape[2:]), stride, padding, dilation, kernels)
    if backward:
        expected = lay.shape_from_first((shape[0], f, *geom.output_size))
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"grad_out must have shape {expected} ({lay.labels} with C = F filters and the "
                f"output size {geom.output_size}), got {tuple(grad_out.shape)}"
            )
        grad_out = lay.to_first(xp, grad_out)
    return xp, geom, groups, lay, x, weight, bias, grad_out


def _run_conv(
    func, x, weight, bias, stride, padding, dilation, groups, layout, backend, nd, padding_mode
):
    mode = check_padding_mode(padding_mode)
    xp, geom, groups, lay, xf, weight, bias, _ = _conv_setup(
        func, x, weight, bias, groups, stride, padding, dilation, layout, nd
    )
    shapes = (tuple(xf.shape), tuple(weight.shape), geom, groups)
    plan = select("conv", xp, xf, backend, geom.nd, prefer=shapes)
    n, f = xf.shape[0], weight.shape[0]
    if n == 0:
        return lay.from_first(xp, zeros(xp, (0, f, *geom.output_size), xf))
    xc, wc, bc = plan.cast(xp, xf, weight, bias)
    if mode != "zeros":
        xc, geom = pad(xp, xc, geom, mode)
    out = plan.conv(xp, xc, wc, bc, geom, groups)
    return lay.from_first(xp, plan.uncast(xp, xf.dtype, out))


def _run_conv_backward(
    func, grad_out, x, weight, stride, padding, dilation, groups, layout, backend, nd, padding_mode
):
    mode = check_padding_mode(padding_mode)
    xp, geom, groups, lay, xf, weight, _, gf = _conv_setup(
        func, x, weight, None, groups, stride, padding, dilation, layout, nd, grad_out=grad_out
    )
    plan = select("conv_backward", xp, xf, backend, geom.nd)
    if xf.shape[0] == 0:
        return (
            zeros(xp, tuple(x.shape), xf),
            zeros(xp, tuple(weight.shape), xf),
            zeros(xp, (weight.shape[0],), xf),
        )
    gc, xc, wc = plan.cast(xp, gf, xf, weight)
    if mode == "zeros":
        dx, dw, db = plan.conv_backward(xp, gc, xc, wc, geom, groups)
    else:
        xc, padded = pad(xp, xc, geom, mode)
        dx, dw, db = plan.conv_backward(xp, gc, xc, wc, padded, groups)
        dx = fold(xp, dx, geom, mode)
    dx, dw, db = (plan.uncast(xp, x.dtype, a) for a in (dx, dw, db))
    return lay.from_first(xp, dx), dw, db


def conv(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> Array:
    """N-d convolution (cross-correlation) via im2col + GEMM; the rank comes from ``x``.

    Parameters
    ----------
    x : array, shape (N, C, *spatial)
        1, 2 or 3 spatial axes (more where the backend declares them).
    weight : array, shape (F, C/groups, *kernel)
    bias : array, shape (F,), optional
    stride, dilation : int or tuple of int, optional
        Per-axis step between output positions and between kernel taps.
    padding : int, tuple of int, pairs, "valid" or "same"
        Zero padding: one int, one per axis, ``(before, after)`` per axis or
        pairs; ``"same"`` follows TensorFlow/JAX (also with stride > 1).
    padding_mode : str, optional
        What the padding holds: ``"zeros"`` (default), ``"reflect"`` (mirrored,
        edge not repeated), ``"symmetric"`` (mirrored, edge repeated: MATLAB
        ``padarray``'s), ``"replicate"`` (the edge repeated) or ``"circular"``
        (wrapped around), as in ``numpy.pad`` / ``torch.nn.functional.pad``.
    groups : int, optional
        Split channels and filters into ``groups`` independent convolutions.
    layout : str, optional
        Axis order of ``x`` and of the result: channels-first (default) or
        ``"channels_last"``.
    backend : str, optional
        Backend name; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, F, *output_spatial)
        Same namespace, device and dtype as ``x``.

    See Also
    --------
    conv1d, conv2d, conv3d : the same with the rank checked.
    """
    return _run_conv(
        "conv",
        x,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        None,
        padding_mode,
    )


def conv_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dw, db)`` of :func:`conv` with respect to input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, F, *output_spatial)
        Gradient of the loss with respect to the convolution's output.
    x, weight
        The forward inputs.
    stride, padding, dilation, groups, padding_mode, layout, backend
        The forward options.

    Returns
    -------
    dx : array, the shape of ``x``
        ``col2im(W^T @ grad_out)``.
    dw : array, the shape of ``weight``
        ``sum_n grad_out[n] @ im2col(x)[n]^T``.
    db : array, shape (F,)
        ``grad_out`` summed over batch and space.
    """
    return _run_conv_backward(
        "conv_backward",
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        None,
        padding_mode,
    )


def conv1d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> Array:
    """1-D convolution (cross-correlation, as in deep-learning libraries) via im2col + GEMM.

    Parameters
    ----------
    x : array, shape (N, C, W)
    weight : array, shape (F, C/groups, KW)
    bias : array, shape (F,), optional
    stride, dilation : int or tuple of int, optional
        Per-axis step between output positions and between kernel taps.
    padding : int, tuple of int, pairs, "valid" or "same"
        Zero padding: one int, one per axis, ``(before, after)`` per axis
        or pairs; ``"same"`` follows TensorFlow/JAX (also with
        stride > 1).  Output size per axis is
        ``floor((size + before + after - dilation*(K-1) - 1) / stride) + 1``.
    groups : int, optional
        Split channels and filters into ``groups`` independent convolutions
        (``groups = C`` is a depthwise convolution).
    layout : str, optional
        Axis order of ``x``, the result and ``grad_out``: channels-first
        (default) or ``"channels_last"``.  The weight keeps its layout.
    backend : str, optional
        Backend name; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, F, Wo)
        Same namespace, device and dtype as ``x``, in ``layout``'s axis order.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.conv1d(np.ones((1, 3, 10)), np.ones((2, 3, 3)), padding=1).shape
    (1, 2, 10)
    """
    return _run_conv(
        "conv1d",
        x,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        1,
        padding_mode,
    )


def conv1d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv1d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, F, Wo)
        Gradient of the loss with respect to the convolution's output.
    x, weight
        The forward inputs.
    stride, padding, dilation, groups, layout, backend
        The forward options.

    Returns
    -------
    dx : array, shape (N, C, W)
        ``col2im(W^T @ grad_out)``.
    dw : array, shape (F, C/groups, KW)
        ``sum_n grad_out[n] @ im2col(x)[n]^T``.
    db : array, shape (F,)
        ``grad_out`` summed over batch and space.
    """
    return _run_conv_backward(
        "conv1d_backward",
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        1,
        padding_mode,
    )


def conv2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> Array:
    """2-D convolution (cross-correlation, as in deep-learning libraries) via im2col + GEMM.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    weight : array, shape (F, C/groups, KH, KW)
    bias : array, shape (F,), optional
    stride, dilation : int or tuple of int, optional
        Per-axis step between output positions and between kernel taps.
    padding : int, tuple of int, pairs, "valid" or "same"
        Zero padding: one int, one per axis, ``(before, after)`` per axis
        (``(top, bottom, left, right)``) or pairs; ``"same"`` follows TensorFlow/JAX (also with
        stride > 1).  Output size per axis is
        ``floor((size + before + after - dilation*(K-1) - 1) / stride) + 1``.
    groups : int, optional
        Split channels and filters into ``groups`` independent convolutions
        (``groups = C`` is a depthwise convolution).
    layout : str, optional
        Axis order of ``x``, the result and ``grad_out``: channels-first
        (default) or ``"channels_last"``.  The weight keeps its layout.
    backend : str, optional
        Backend name; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, F, Ho, Wo)
        Same namespace, device and dtype as ``x``, in ``layout``'s axis order.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> x = np.ones((1, 3, 5, 5)); w = np.ones((2, 3, 3, 3))
    >>> convcore.conv2d(x, w, padding=1).shape
    (1, 2, 5, 5)
    >>> convcore.conv2d(np.ones((1, 5, 5, 3)), w, padding=1, layout="NHWC").shape
    (1, 5, 5, 2)
    """
    return _run_conv(
        "conv2d",
        x,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        2,
        padding_mode,
    )


def conv2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, F, Ho, Wo)
        Gradient of the loss with respect to the convolution's output.
    x, weight
        The forward inputs.
    stride, padding, dilation, groups, layout, backend
        The forward options.

    Returns
    -------
    dx : array, shape (N, C, H, W)
        ``col2im(W^T @ grad_out)``.
    dw : array, shape (F, C/groups, KH, KW)
        ``sum_n grad_out[n] @ im2col(x)[n]^T``.
    db : array, shape (F,)
        ``grad_out`` summed over batch and space.
    """
    return _run_conv_backward(
        "conv2d_backward",
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        2,
        padding_mode,
    )


def conv3d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> Array:
    """3-D convolution (cross-correlation, as in deep-learning libraries) via im2col + GEMM.

    Parameters
    ----------
    x : array, shape (N, C, D, H, W)
    weight : array, shape (F, C/groups, KD, KH, KW)
    bias : array, shape (F,), optional
    stride, dilation : int or tuple of int, optional
        Per-axis step between output positions and between kernel taps.
    padding : int, tuple of int, pairs, "valid" or "same"
        Zero padding: one int, one per axis, ``(before, after)`` per axis
        or pairs; ``"same"`` follows TensorFlow/JAX (also with
        stride > 1).  Output size per axis is
        ``floor((size + before + after - dilation*(K-1) - 1) / stride) + 1``.
    groups : int, optional
        Split channels and filters into ``groups`` independent convolutions
        (``groups = C`` is a depthwise convolution).
    layout : str, optional
        Axis order of ``x``, the result and ``grad_out``: channels-first
        (default) or ``"channels_last"``.  The weight keeps its layout.
    backend : str, optional
        Backend name; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, F, Do, Ho, Wo)
        Same namespace, device and dtype as ``x``, in ``layout``'s axis order.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.conv3d(np.ones((1, 1, 4, 5, 6)), np.ones((2, 1, 3, 3, 3))).shape
    (1, 2, 2, 3, 4)
    """
    return _run_conv(
        "conv3d",
        x,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        3,
        padding_mode,
    )


def conv3d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "channels_first",
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv3d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, F, Do, Ho, Wo)
        Gradient of the loss with respect to the convolution's output.
    x, weight
        The forward inputs.
    stride, padding, dilation, groups, layout, backend
        The forward options.

    Returns
    -------
    dx : array, shape (N, C, D, H, W)
        ``col2im(W^T @ grad_out)``.
    dw : array, shape (F, C/groups, KD, KH, KW)
        ``sum_n grad_out[n] @ im2col(x)[n]^T``.
    db : array, shape (F,)
        ``grad_out`` summed over batch and space.
    """
    return _run_conv_backward(
        "conv3d_backward",
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        groups,
        layout,
        backend,
        3,
        padding_mode,
    )
