"""Transposed convolution (PyTorch's ``conv_transpose2d``): the input gradient of conv2d.

A transposed convolution maps an ``(H, W)`` image to the ``(Ho, Wo)`` image of
which a :func:`convcore.conv2d` with the same kernel, stride, padding and
dilation would produce an ``(H, W)`` output, and it does so with exactly the
computation of that convolution's input gradient:

1. a GEMM per group, ``cols_g = W_g^T @ x_g``, gives one column of ``C_out*KH*KW``
   kernel contributions per input pixel;
2. :func:`convcore.col2im` sums the columns into the ``(Ho, Wo)`` image
   (overlapping taps add up, deterministically on every backend);
3. the bias is added.

Its gradients are the forward pieces the other way round: ``dx`` is a forward
:func:`convcore.conv2d` of ``grad_out`` with the same weight, ``dw`` is a GEMM of
``x`` with :func:`convcore.im2col` of ``grad_out``.

Only the public functions of convcore and the array API standard are used, so
the module runs on every namespace and backend that runs ``col2im`` (forward) or
``conv`` and ``im2col`` (backward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._api import col2im, conv2d, im2col, resolve_backend
from ._layer_base import _Layer
from ._registry import dtype_name
from ._validation import check_floating as _check_floating
from ._validation import check_groups as _check_groups
from ._validation import check_ndim as _check_ndim
from ._validation import check_nonempty as _check_nonempty
from ._validation import check_same as _check_same
from ._validation import namespace as _namespace
from ._validation import zeros as _zeros
from .geometry import ConvGeometry, conv_geometry, normalize_padding, normalize_tuple

__all__ = [
    "ConvTranspose2D",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose_output_size",
]

Array = Any

_AXIS_NAMES = ("height", "width")
_WEIGHT_LAYOUT = "C_in, C_out/groups, KH, KW"
_KERNEL_NAME = "weight's kernel size (KH, KW)"


# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _TransposeGeometry:
    """A transposed convolution described by the convolution it transposes.

    Attributes
    ----------
    input_size : tuple of int
        ``(H, W)`` of the transposed convolution's input ``x``.
    output_size : tuple of int
        ``(Ho, Wo)`` of its output.
    conv : ConvGeometry
        The convolution of an ``output_size`` image whose input gradient this is
        (its ``input_size`` is our ``output_size``).
    extra : tuple of int
        ``conv.output_size - input_size`` per axis: zero rows/columns appended to
        ``x`` so the column count matches.  Non-zero only when ``output_padding``
        is at least ``stride`` (which PyTorch allows when it is below ``dilation``).
    """

    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    conv: ConvGeometry
    extra: tuple[int, ...]


def _transpose_geometry(
    input_size,
    kernel_size,
    *,
    stride,
    padding,
    output_padding,
    dilation,
    kernel_name: str = "kernel_size",
) -> _TransposeGeometry:
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be a sequence of ints, got {input_size!r}")
    nd = len(input_size)
    if nd == 0:
        raise ValueError("input_size must have at least one spatial axis, got ()")
    size = normalize_tuple(input_size, nd, "input_size", minimum=1)
    kernel = normalize_tuple(kernel_size, nd, kernel_name, minimum=1)
    strides = normalize_tuple(stride, nd, "stride", minimum=1)
    dilations = normalize_tuple(dilation, nd, "dilation", minimum=1)
    pads = normalize_padding(padding, nd)
    if pads == "same":
        raise ValueError(
            f"padding={padding!r} is not supported by a transposed convolution (its output "
            "size is set by stride, padding and output_padding); give the padding as numbers: "
            "an int, one int per axis or (top, bottom, left, right)"
        )
    out_pad = normalize_tuple(output_padding, nd, "output_padding", minimum=0)
    for op, s, d in zip(out_pad, strides, dilations):
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation on every axis, "
                f"got output_padding={output_padding!r} with stride {strides} and dilation "
                f"{dilations}"
            )
    names = _AXIS_NAMES if nd == 2 else tuple(f"axis {i}" for i in range(nd))
    out = []
    for i in range(nd):
        before, after = pads[2 * i], pads[2 * i + 1]
        n_out = (size[i] - 1) * strides[i] - before - after
        n_out += dilations[i] * (kernel[i] - 1) + out_pad[i] + 1
        if n_out < 1:
            raise ValueError(
                f"padding {padding!r} leaves no output along the {names[i]} axis: "
                f"(input {size[i]} - 1) * stride {strides[i]} - padding {before} - {after} "
                f"+ dilation {dilations[i]} * (kernel {kernel[i]} - 1) + output_padding "
                f"{out_pad[i]} + 1 = {n_out}; it must be >= 1"
            )
        out.append(n_out)
    conv = conv_geometry(
        tuple(out),
        kernel,
        stride=strides,
        padding=pads,
        dilation=dilations,
        kernel_name=kernel_name,
    )
    extra = tuple(o - s for o, s in zip(conv.output_size, size))
    return _TransposeGeometry(size, tuple(out), conv, extra)


def conv_transpose_output_size(
    input_size, kernel_size, *, stride=1, padding=0, output_padding=0, dilation=1
) -> tuple[int, ...]:
    """Spatial output size of a transposed convolution.

    ``(H - 1)*stride - top - bottom + dilation*(KH - 1) + output_padding + 1`` per axis
    (PyTorch's formula, with ``2*padding`` split into the two sides).

    Parameters
    ----------
    input_size : sequence of int
        ``(H, W)`` of the transposed convolution's input.
    kernel_size, stride, dilation : int or sequence of int
    padding : int, sequence of int or "valid"
        As for :func:`convcore.conv2d`, except ``"same"``.
    output_padding : int or sequence of int, optional
        Rows/columns added at the bottom/right; smaller than ``stride`` or than
        ``dilation`` on every axis.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> conv_transpose_output_size((4, 4), 3, stride=2, padding=1, output_padding=1)
    (8, 8)
    """
    return _transpose_geometry(
        input_size,
        kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    ).output_size


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _setup(func, x, weight, bias, options, grad_out=None):
    arrays = {"x": x, "weight": weight, "bias": bias}
    if grad_out is not None:
        arrays["grad_out"] = grad_out
    xp = _namespace(optional=("bias",), **arrays)
    _check_ndim("x", x, "N, C_in, H, W")
    _check_ndim("weight", weight, _WEIGHT_LAYOUT)
    _check_floating(xp, "x", x, func)
    _check_same(xp, "x", x, weight=weight, bias=bias, grad_out=grad_out)
    groups = _check_groups(options["groups"])
    shape = tuple(x.shape)
    _check_nonempty("x", shape, "N, C_in, H, W")
    c_in, cog = weight.shape[0], weight.shape[1]
    if c_in < 1 or cog < 1:
        raise ValueError(
            f"weight must have C_in >= 1 and C_out/groups >= 1 ({_WEIGHT_LAYOUT}), "
            f"got shape {tuple(weight.shape)}"
        )
    if c_in % groups:
        raise ValueError(
            f"weight has C_in={c_in} input channels, which groups={groups} does not divide; "
            "C_in must be a multiple of groups"
        )
    if shape[1] != c_in:
        raise ValueError(
            f"x has C_in={shape[1]} channels but weight ({_WEIGHT_LAYOUT}) has C_in={c_in} "
            f"(weight shape {tuple(weight.shape)})"
        )
    c_out = cog * groups
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) for C_out = C_out/groups * groups = "
            f"{cog} * {groups} = {c_out} output channels, got {tuple(bias.shape)}"
        )
    geom = _transpose_geometry(
        shape[2:],
        tuple(weight.shape[2:]),
        stride=options["stride"],
        padding=options["padding"],
        output_padding=options["output_padding"],
        dilation=options["dilation"],
        kernel_name=_KERNEL_NAME,
    )
    if grad_out is not None:
        expected = (shape[0], c_out, *geom.output_size)
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"grad_out must have shape {expected} (N, C_out, Ho, Wo), "
                f"got {tuple(grad_out.shape)}"
            )
    return xp, geom, groups


def _is_half(xp, x) -> bool:
    """float16 / bfloat16 input: computed in float32 (the GEMM here is the core's own)."""
    return dtype_name(xp, x.dtype) in ("float16", "bfloat16")


def _append_zeros(xp, x, extra):
    """``x`` with ``extra[i]`` zero rows/columns appended along spatial axis ``i``."""
    for axis, count in enumerate(extra, start=2):
        if count:
            shape = (*x.shape[:axis], count, *x.shape[axis + 1 :])
            x = xp.concat([x, _zeros(xp, shape, x)], axis=axis)
    return x


def _conv_options(geom: _TransposeGeometry) -> dict:
    """stride / padding / dilation of the convolution being transposed."""
    conv = geom.conv
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}


# ---------------------------------------------------------------------------
# transposed convolution and its gradients
# ---------------------------------------------------------------------------
def conv_transpose2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    backend: str | None = None,
) -> Array:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    Every input pixel ``x[n, ci, i, j]`` adds ``x[n, ci, i, j] * weight[ci, co]`` into
    the output window whose top-left tap is ``(i*stride - top, j*stride - left)``,
    taps ``dilation`` apart.  This is the input gradient of :func:`convcore.conv2d`
    with the same weight and options, computed the same way: a GEMM per group then
    :func:`convcore.col2im`.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_in, C_out/groups, KH, KW)
        PyTorch's layout; it is also the layout of the weight of the convolution
        being transposed (``F = C_in`` filters over ``C_out`` channels).
    bias : array, shape (C_out,), optional
    stride, dilation : int or (int, int), optional
    padding : int, (int, int), (top, bottom, left, right) or "valid"
        Rows and columns cropped from the full output: ``padding=p`` is PyTorch's
        (``p`` on every side); four numbers crop each side separately, which is the
        transpose of :func:`convcore.conv2d` with that padding.  ``"same"`` is
        refused (ValueError).  ``((top, bottom), (left, right))`` is accepted too.
    output_padding : int or (int, int), optional
        Rows/columns added at the bottom/right, to pick the output size when several
        map onto the same input size under the strided convolution.  Must be smaller
        than ``stride`` or than ``dilation`` on each axis (PyTorch's rule).
    groups : int, optional
        ``C_in`` and ``C_out`` split into ``groups`` independent transposed
        convolutions.
    backend : str, optional
        Backend for :func:`convcore.col2im`; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C_out, Ho, Wo)
        ``Ho = (H - 1)*stride - top - bottom + dilation*(KH - 1) + output_padding + 1``
        (likewise ``Wo``).  Same namespace, device and dtype as ``x``.

    Raises
    ------
    TypeError, ValueError
        Naming the offending parameter, its value and what was expected.

    See Also
    --------
    conv_transpose2d_backward : its gradients.
    conv_transpose_output_size : the output size alone.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.transpose import conv_transpose2d
    >>> x = np.ones((1, 1, 2, 2)); w = np.ones((1, 1, 3, 3))
    >>> conv_transpose2d(x, w, stride=2)[0, 0]
    array([[1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.],
           [2., 2., 4., 2., 2.],
           [1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.]])
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
        "groups": groups,
    }
    xp, geom, groups = _setup("conv_transpose2d", x, weight, bias, options)
    # Fail before the GEMM when the backend cannot run col2im (no silent fallback).
    resolve_backend("col2im", x, backend=backend)
    if _is_half(xp, x):  # float32 accumulation, one rounding at the end (like conv2d)
        f32 = [None if a is None else xp.astype(a, xp.float32) for a in (x, weight, bias)]
        return xp.astype(conv_transpose2d(*f32, **options, backend=backend), x.dtype)
    n, c_in = x.shape[0], x.shape[1]
    cog = weight.shape[1]
    c_out = cog * groups
    if n == 0:
        return _zeros(xp, (0, c_out, *geom.output_size), x)
    if any(geom.extra):
        # output_padding >= stride: the convolution being transposed has more
        # output positions than x has pixels; the extra ones hold zeros.
        x = _append_zeros(xp, x, geom.extra)
    k = geom.conv.kernel_numel
    length = geom.conv.output_numel
    xg = xp.reshape(x, (n, groups, c_in // groups, length))
    wg = xp.reshape(weight, (groups, c_in // groups, cog * k))
    cols = xp.matmul(xp.matrix_transpose(wg), xg)  # (N, groups, C_out/groups*KH*KW, L)
    cols = xp.reshape(cols, (n, c_out * k, length))
    out = col2im(
        cols, geom.output_size, geom.conv.kernel_size, backend=backend, **_conv_options(geom)
    )
    if bias is not None:
        out = out + xp.reshape(bias, (1, c_out, 1, 1))
    return out


def conv_transpose2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv_transpose2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, C_out, Ho, Wo)
        Gradient of the loss with respect to the transposed convolution's output.
    x, weight
        The forward inputs.
    stride, padding, output_padding, groups, dilation, backend
        The forward options (``backend`` runs :func:`convcore.conv2d` and
        :func:`convcore.im2col`).

    Returns
    -------
    dx : array, shape (N, C_in, H, W)
        ``conv2d(grad_out, weight, stride, padding, dilation, groups)``, the
        forward convolution (cropped to ``(H, W)`` when ``output_padding >=
        stride``).  Entries of ``grad_out`` that no tap reached in the forward
        pass (rows/columns ``output_padding`` added past the last tap) do not
        affect it.
    dw : array, shape (C_in, C_out/groups, KH, KW)
        ``sum_n x[n] @ im2col(grad_out)[n]^T`` per group.
    db : array, shape (C_out,)
        ``grad_out`` summed over batch and space (also when the forward had no bias).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.transpose import conv_transpose2d, conv_transpose2d_backward
    >>> x = np.ones((2, 4, 5, 5)); w = np.ones((4, 3, 3, 3))
    >>> y = conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    >>> y.shape
    (2, 3, 10, 10)
    >>> dx, dw, db = conv_transpose2d_backward(
    ...     np.ones_like(y), x, w, stride=2, padding=1, output_padding=1)
    >>> dx.shape, dw.shape, db.shape
    ((2, 4, 5, 5), (4, 3, 3, 3), (3,))
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
        "groups": groups,
    }
    xp, geom, groups = _setup(
        "conv_transpose2d_backward", x, weight, None, options, grad_out=grad_out
    )
    resolve_backend("conv", grad_out, backend=backend)
    resolve_backend("im2col", grad_out, backend=backend)
    if _is_half(xp, x):  # float32 accumulation, one rounding at the end (like conv2d)
        f32 = [xp.astype(a, xp.float32) for a in (grad_out, x, weight)]
        grads = conv_transpose2d_backward(*f32, **options, backend=backend)
        return tuple(xp.astype(a, x.dtype) for a in grads)
    n, c_in = x.shape[0], x.shape[1]
    cog = weight.shape[1]
    c_out = cog * groups
    if n == 0:
        return (
            _zeros(xp, tuple(x.shape), x),
            _zeros(xp, tuple(weight.shape), x),
            _zeros(xp, (c_out,), x),
        )
    conv_options = _conv_options(geom)
    h, w = geom.input_size
    dx = conv2d(grad_out, weight, groups=groups, backend=backend, **conv_options)
    dcols = im2col(grad_out, geom.conv.kernel_size, backend=backend, **conv_options)
    k = geom.conv.kernel_numel
    if any(geom.extra):
        # Output positions beyond (H, W) belong to the zero padding of x: drop them.
        dx = dx[:, :, :h, :w]
        dcols = xp.reshape(dcols, (n, c_out * k, *geom.conv.output_size))[:, :, :h, :w]
        dcols = xp.reshape(dcols, (n, c_out * k, h * w))
    dcols = xp.reshape(dcols, (n, groups, cog * k, h * w))
    xg = xp.reshape(x, (n, groups, c_in // groups, h * w))
    dw = xp.sum(xp.matmul(xg, xp.matrix_transpose(dcols)), axis=0)  # (groups, C_in/g, ...)
    dw = xp.reshape(dw, tuple(weight.shape))
    db = xp.sum(grad_out, axis=(0, 2, 3))
    return dx, dw, db


# ---------------------------------------------------------------------------
# layer
# ---------------------------------------------------------------------------
class ConvTranspose2D(_Layer):
    """A 2-D transposed convolution layer that caches its input for the backward pass.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KH, KW)
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, backend
        As for :func:`conv_transpose2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.transpose import ConvTranspose2D
    >>> layer = ConvTranspose2D(np.ones((4, 3, 3, 3)), np.zeros(3), stride=2, padding=1)
    >>> y = layer.forward(np.ones((2, 4, 5, 5)))
    >>> y.shape
    (2, 3, 9, 9)
    >>> dx, dw, db = layer.backward(np.ones_like(y))
    >>> dx.shape, dw.shape, db.shape
    ((2, 4, 5, 5), (4, 3, 3, 3), (3,))
    """

    _option_names = ("stride", "padding", "output_padding", "groups", "dilation", "backend")

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        *,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        dilation=1,
        backend: str | None = None,
    ):
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.groups = groups
        self.dilation = dilation
        self.backend = backend
        self.input: Array | None = None

    def forward(self, x: Array, /) -> Array:
        """Transposed-convolve ``x`` (N, C_in, H, W) and remember it for :meth:`backward`."""
        out = conv_transpose2d(x, self.weight, self.bias, **self._options())
        self.input = x
        return out

    __call__ = forward

    def backward(self, grad_out: Array, /) -> tuple[Array, Array, Array]:
        """Gradients ``(dx, dw, db)`` for the input of the last :meth:`forward` call.

        ``db`` is returned also for a layer without bias.
        """
        x = self._cached(self.input, "input")
        return conv_transpose2d_backward(grad_out, x, self.weight, **self._options())

    def __repr__(self) -> str:
        return (
            f"ConvTranspose2D(weight_shape={tuple(self.weight.shape)}, "
            f"bias={self.bias is not None}, stride={self.stride!r}, padding={self.padding!r}, "
            f"output_padding={self.output_padding!r}, groups={self.groups!r}, "
            f"dilation={self.dilation!r})"
        )
