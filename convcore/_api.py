"""Public functions: validate, infer the namespace, pick a backend, call its kernel."""

from __future__ import annotations

import operator
from math import prod
from typing import TYPE_CHECKING, Any

import array_api_compat

from ._config import AUTO, requested_backend
from ._registry import device_kind, dtype_name, get_registry, namespace_name
from .errors import BackendCapabilityError, BackendUnavailableError
from .geometry import conv_geometry

if TYPE_CHECKING:
    from collections.abc import Callable

Array = Any
ArrayNamespace = Any

__all__ = [
    "col2im",
    "conv2d",
    "conv2d_backward",
    "im2col",
    "reshape_gemm_output",
    "resolve_backend",
]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _namespace(**arrays) -> ArrayNamespace:
    """The common array namespace of the named arrays (None values are skipped)."""
    spaces = {}
    for name, arr in arrays.items():
        if arr is None:
            continue
        if not array_api_compat.is_array_api_obj(arr):
            raise TypeError(
                f"{name} must be an array (NumPy, CuPy, PyTorch, JAX, Dask or another "
                f"array-API library), got {type(arr).__name__}"
            )
        spaces[name] = array_api_compat.array_namespace(arr)
    first_name, xp = next(iter(spaces.items()))
    for name, other in spaces.items():
        if other is not xp:
            raise TypeError(
                f"{name} is a {namespace_name(other)} array but {first_name} is a "
                f"{namespace_name(xp)} array; convert them to one array library first"
            )
    return xp


def _check_ndim(name: str, arr, layout: str) -> None:
    if arr.ndim != len(layout.split(", ")):
        raise ValueError(
            f"{name} must be {len(layout.split(', '))}-D ({layout}), got shape {tuple(arr.shape)}"
        )


def _check_same(xp, ref_name: str, ref, **others) -> None:
    """dtype and device of every array in ``others`` must equal those of ``ref``."""
    for name, arr in others.items():
        if arr is None:
            continue
        if arr.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {dtype_name(xp, arr.dtype)} but {ref_name} has dtype "
                f"{dtype_name(xp, ref.dtype)}; they must match"
            )
        if array_api_compat.device(arr) != array_api_compat.device(ref):
            raise ValueError(
                f"{name} is on device {array_api_compat.device(arr)!r} but {ref_name} is on "
                f"{array_api_compat.device(ref)!r}; they must be on the same device"
            )


def _check_floating(xp, name: str, arr, func: str) -> None:
    if not xp.isdtype(arr.dtype, "real floating"):
        raise TypeError(
            f"{func} needs a real floating-point {name}, got dtype {dtype_name(xp, arr.dtype)}"
        )


def _check_nonempty(name: str, shape, layout: str) -> None:
    """Every axis but the batch axis must be known and non-empty."""
    labels = layout.split(", ")
    for label, size in list(zip(labels, shape))[1:]:
        if size is None:
            raise ValueError(f"{name} has an unknown size along its {label} axis: {shape}")
        if size < 1:
            raise ValueError(
                f"{name} must have a non-empty {label} axis ({layout}), got shape {shape}"
            )


def _check_groups(groups) -> int:
    if isinstance(groups, bool):
        raise TypeError(f"groups must be a positive integer, got {groups!r}")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"groups must be a positive integer, got {groups!r}") from None
    if groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups}")
    return groups


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=array_api_compat.device(like))


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------
def _select(op: str, xp, ref, backend: str | None) -> tuple[str, Callable]:
    name = _choose(op, xp, ref, backend)
    return name, get_registry().kernels(name)[op]


def _choose(op: str, xp, ref, backend: str | None) -> str:
    """The backend that runs ``op`` on ``ref``, without loading its kernels."""
    name, source = requested_backend(backend)
    registry = get_registry()
    xp_name = namespace_name(xp)
    device = device_kind(xp_name, ref)
    dtype = dtype_name(xp, ref.dtype)
    if name == AUTO:
        declined = []
        for candidate in registry.names():
            # Declared capabilities first: checking them imports nothing, so a backend
            # that cannot take this input (cupy for NumPy arrays) is never probed.
            reason = registry.capability_problem(candidate, op, xp_name, device, dtype)
            if reason is None:
                reason = registry.unavailable_reason(candidate)
            if reason is None:
                return candidate
            declined.append(f"{candidate}: {reason}")
        raise BackendCapabilityError(
            f"no backend can run {op} on {xp_name} {dtype} arrays on {device!r}; "
            + "; ".join(declined)
        )
    reason = registry.unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend {name!r} (selected by {source}) is unavailable: {reason}"
        )
    problem = registry.capability_problem(name, op, xp_name, device, dtype)
    if problem is not None:
        raise BackendCapabilityError(
            f"backend {name!r} (selected by {source}) cannot run {op} on {xp_name} {dtype} "
            f"arrays on {device!r}: {problem}"
        )
    return name


def resolve_backend(op: str, x: Array, /, *, backend: str | None = None) -> str:
    """Name of the backend that would run ``op`` on ``x`` (``"conv"``, ``"im2col"``, ...).

    Applies the full selection chain (keyword, context, :func:`set_backend`,
    ``CONVCORE_BACKEND``, configuration files, ``auto``) and raises the same
    errors the operation itself would.
    """
    xp = _namespace(x=x)
    return _choose(op, xp, x, backend)


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
    backend: str | None = None,
) -> Array:
    """Unfold every receptive field of ``x`` into a column.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
        Input batch (NCHW).
    kernel_size : int or (int, int)
        ``(KH, KW)``.
    stride, dilation : int or (int, int), optional
        Per-axis step between receptive fields and between kernel taps.
    padding : int, (int, int), (top, bottom, left, right), "valid" or "same"
        Zero padding; ``"same"`` follows TensorFlow/JAX (also with stride > 1).
    backend : str, optional
        Backend name; overrides the context, environment and configuration.

    Returns
    -------
    cols : array, shape (N, C*KH*KW, Ho*Wo)
        Row ``(c*KH + i)*KW + j`` holds tap ``(i, j)`` of channel ``c``; column
        ``oh*Wo + ow`` is output position ``(oh, ow)``.  This is PyTorch's
        ``torch.nn.functional.unfold`` order.  (MATLAB's ``patch(:)`` order
        differs; :func:`convcore.matlab.im2col_ref` returns that one.)

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
    """
    xp = _namespace(x=x)
    _check_ndim("x", x, "N, C, H, W")
    _check_nonempty("x", tuple(x.shape), "N, C, H, W")
    geom = conv_geometry(
        tuple(x.shape[2:]), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    n, c = x.shape[0], x.shape[1]
    _, kernel = _select("im2col", xp, x, backend)
    if n == 0:
        return _zeros(xp, (0, c * geom.kernel_numel, geom.output_numel), x)
    return kernel(xp, x, geom)


def col2im(
    cols: Array,
    /,
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
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
    input_size : (int, int)
        ``(H, W)`` of the unpadded image to rebuild.
    kernel_size, stride, padding, dilation, backend
        As for :func:`im2col`; they must describe the same geometry.

    Returns
    -------
    x : array, shape (N, C, H, W)
        Padding rows and columns are dropped after summing.

    See Also
    --------
    reshape_gemm_output : the plain reshape the seed document calls "col2im".
    """
    xp = _namespace(cols=cols)
    _check_ndim("cols", cols, "N, C*KH*KW, L")
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be a pair (H, W), got {input_size!r}")
    if len(input_size) != 2:
        raise ValueError(f"input_size must be a pair (H, W), got {input_size!r}")
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
    _, kernel = _select("col2im", xp, cols, backend)
    if n == 0:
        return _zeros(xp, (0, rows // k, *geom.input_size), cols)
    return kernel(xp, cols, geom)


def reshape_gemm_output(y: Array, /, output_size) -> Array:
    """Reshape a GEMM result ``(N, F, Ho*Wo)`` to ``(N, F, Ho, Wo)``.

    This is the step the seed document calls "col2im": a plain reshape with no
    summation.  It is *not* :func:`col2im`, which sums overlapping patches.
    """
    xp = _namespace(y=y)
    _check_ndim("y", y, "N, F, L")
    size = tuple(output_size)
    if prod(size) != y.shape[2]:
        raise ValueError(
            f"output_size {size} has {prod(size)} positions but y has {y.shape[2]} columns"
        )
    return xp.reshape(y, (y.shape[0], y.shape[1], *size))


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
def _conv_setup(func, x, weight, bias, groups, stride, padding, dilation, grad_out=None):
    xp = _namespace(x=x, weight=weight, bias=bias, grad_out=grad_out)
    _check_ndim("x", x, "N, C, H, W")
    _check_ndim("weight", weight, "F, C/groups, KH, KW")
    _check_floating(xp, "x", x, func)
    _check_same(xp, "x", x, weight=weight, bias=bias, grad_out=grad_out)
    groups = _check_groups(groups)
    shape = tuple(x.shape)
    _check_nonempty("x", shape, "N, C, H, W")
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
    geom = conv_geometry(
        shape[2:],
        tuple(weight.shape[2:]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        kernel_name="weight's kernel size (KH, KW)",
    )
    if grad_out is not None:
        expected = (shape[0], f, *geom.output_size)
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"grad_out must have shape {expected} (N, F, Ho, Wo), got {tuple(grad_out.shape)}"
            )
    return xp, geom, groups


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
    backend: str | None = None,
) -> Array:
    """2-D convolution (cross-correlation, as in deep-learning libraries) via im2col + GEMM.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    weight : array, shape (F, C/groups, KH, KW)
    bias : array, shape (F,), optional
    stride, dilation : int or (int, int), optional
    padding : int, (int, int), (top, bottom, left, right), "valid" or "same"
        Output size is ``floor((H + top + bottom - dilation*(KH-1) - 1) / stride) + 1``.
    groups : int, optional
        Split channels and filters into ``groups`` independent convolutions
        (``groups = C`` is a depthwise convolution).
    backend : str, optional
        Backend name; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, F, Ho, Wo)
        Same namespace, device and dtype as ``x``.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> x = np.ones((1, 3, 5, 5)); w = np.ones((2, 3, 3, 3))
    >>> convcore.conv2d(x, w, padding=1).shape
    (1, 2, 5, 5)
    """
    xp, geom, groups = _conv_setup("conv2d", x, weight, bias, groups, stride, padding, dilation)
    _, kernel = _select("conv", xp, x, backend)
    if x.shape[0] == 0:
        return _zeros(xp, (0, weight.shape[0], *geom.output_size), x)
    return kernel(xp, x, weight, bias, geom, groups)


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
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, F, Ho, Wo)
        Gradient of the loss with respect to the convolution's output.
    x, weight
        The forward inputs.
    stride, padding, dilation, groups, backend
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
    xp, geom, groups = _conv_setup(
        "conv2d_backward", x, weight, None, groups, stride, padding, dilation, grad_out=grad_out
    )
    _, kernel = _select("conv_backward", xp, x, backend)
    if x.shape[0] == 0:
        return (
            _zeros(xp, tuple(x.shape), x),
            _zeros(xp, tuple(weight.shape), x),
            _zeros(xp, (weight.shape[0],), x),
        )
    return kernel(xp, grad_out, x, weight, geom, groups)
