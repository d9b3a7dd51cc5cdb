"""Transposed convolution (PyTorch's ``conv_transpose1d/2d/3d``): the input gradient of conv.

A transposed convolution maps an image to the image of which a
:func:`convcore.conv` with the same kernel, stride, padding and dilation would
produce the input's size, and it does so with exactly the computation of that
convolution's input gradient:

1. a GEMM per group, ``cols_g = W_g^T @ x_g``, gives one column of
   ``C_out*prod(kernel)`` kernel contributions per input pixel;
2. the backend's col2im sums the columns into the output image (overlapping taps
   add up, deterministically on every backend);
3. the bias is added.

Its gradients are the forward pieces the other way round: ``dx`` is the
backend's forward convolution of ``grad_out`` with the same weight, ``dw`` a
GEMM of ``x`` with the backend's im2col of ``grad_out``.

The operators go the convolution's way: arguments validated by
:mod:`convcore._validation`, windows resolved by
:func:`convcore.geometry.conv_transpose_geometry`, a channels-first view of
``layout``'s axes, one :func:`convcore._dispatch.select` plan for the backend ops
each runs (col2im forward; conv and im2col backward), float16/bfloat16 computed
in float32 where the backend does not declare them, 1-D run as 2-D where only
2-D kernels are declared.  The GEMMs are array-API ``matmul``.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ._dispatch import select
from ._validation import (
    Layout,
    check_floating,
    check_groups,
    check_ndim,
    check_nonempty,
    check_same,
    common,
    kernel_labels,
    spatial_rank,
    zeros,
)
from .geometry import ConvGeometry, conv_transpose_geometry, conv_transpose_output_size

__all__ = [
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose3d",
    "conv_transpose3d_backward",
    "conv_transpose_backward",
    "conv_transpose_output_size",
]

Array = Any

_CHANNELS_FIRST = "channels_first"
_FORWARD = object()  # grad_out of a forward call: no such argument


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _setup(func, x, weight, bias, options, nd, grad_out=_FORWARD):
    """Validate a call; ``xp, geom, groups, layout``, channels-first ``x``, ``weight``,
    ``bias`` and channels-first ``grad_out``, all in ``xp``'s library."""
    backward = grad_out is not _FORWARD
    arrays = {"x": x, "weight": weight}
    if backward:
        arrays["grad_out"] = grad_out
    else:
        arrays["bias"] = bias
    xp, converted = common(optional=("bias",), **arrays)
    if backward:
        x, weight, grad_out = converted
    else:
        x, weight, bias = converted
    lay = Layout(options["layout"], spatial_rank("x", x, nd))
    nd = lay.nd
    kernels = kernel_labels(nd)
    weight_layout = f"C_in, C_out/groups, {kernels}"
    check_ndim("x", x, lay.labels_with("C_in"))
    check_ndim("weight", weight, weight_layout)
    check_floating(xp, "x", x, func)
    check_same(xp, "x", x, weight=weight, bias=None if backward else bias,
               grad_out=grad_out if backward else None)  # fmt: skip
    groups = check_groups(options["groups"])
    check_nonempty("x", tuple(x.shape), lay.labels_with("C_in"))
    xf = lay.to_first(xp, x)
    shape = tuple(xf.shape)
    c_in, cog = weight.shape[0], weight.shape[1]
    if c_in < 1 or cog < 1:
        raise ValueError(
            f"weight must have C_in >= 1 and C_out/groups >= 1 ({weight_layout}), "
            f"got shape {tuple(weight.shape)}"
        )
    if c_in % groups:
        raise ValueError(
            f"weight has C_in={c_in} input channels, which groups={groups} does not divide; "
            "C_in must be a multiple of groups"
        )
    if shape[1] != c_in:
        raise ValueError(
            f"x has C_in={shape[1]} channels but weight ({weight_layout}) has C_in={c_in} "
            f"(weight shape {tuple(weight.shape)})"
        )
    c_out = cog * groups
    if not backward and bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) for C_out = C_out/groups * groups = "
            f"{cog} * {groups} = {c_out} output channels, got {tuple(bias.shape)}"
        )
    geom = conv_transpose_geometry(
        shape[2:],
        tuple(weight.shape[2:]),
        stride=options["stride"],
        padding=options["padding"],
        output_padding=options["output_padding"],
        dilation=options["dilation"],
        kernel_name=f"weight's kernel size ({kernels})",
    )
    gf = None
    if backward:
        expected = lay.shape_from_first((shape[0], c_out, *geom.input_size))
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"grad_out must have shape {expected} ({lay.labels_with('C_out')}), "
                f"got {tuple(grad_out.shape)}"
            )
        gf = lay.to_first(xp, grad_out)
    return xp, geom, groups, lay, xf, weight, bias, gf


def _extra(geom: ConvGeometry, xf) -> tuple[int, ...]:
    """Windows of the transposed convolution beyond ``x`` (``output_padding >= stride``)."""
    return tuple(o - s for o, s in zip(geom.output_size, xf.shape[2:]))


def _append_zeros(xp, x, extra):
    """``x`` with ``extra[i]`` zero rows/columns appended along spatial axis ``i``."""
    for axis, count in enumerate(extra, start=2):
        if count:
            shape = (*x.shape[:axis], count, *x.shape[axis + 1 :])
            x = xp.concat([x, zeros(xp, shape, x)], axis=axis)
    return x


def _crop(a, size):
    """``a[:, :, :size[0], :size[1], ...]``."""
    return a[(slice(None), slice(None), *(slice(0, s) for s in size))]


# ---------------------------------------------------------------------------
# the computations
# ---------------------------------------------------------------------------
def _run(func, x, weight, bias, options, backend, nd):
    xp, geom, groups, lay, xf, weight, bias, _ = _setup(func, x, weight, bias, options, nd)
    plan = select("conv_transpose", xp, xf, backend, geom.nd)
    n, c_in = xf.shape[0], xf.shape[1]
    cog = weight.shape[1]
    c_out = cog * groups
    if n == 0:
        return lay.from_first(xp, zeros(xp, (0, c_out, *geom.input_size), xf))
    xc, wc, bc = plan.cast(xp, xf, weight, bias)
    extra = _extra(geom, xf)
    if any(extra):
        # output_padding >= stride: the convolution being transposed has more
        # windows than x has pixels; the extra ones hold zeros.
        xc = _append_zeros(xp, xc, extra)
    k, length = geom.kernel_numel, geom.output_numel
    xg = xp.reshape(xc, (n, groups, c_in // groups, length))
    wg = xp.reshape(wc, (groups, c_in // groups, cog * k))
    cols = xp.matmul(xp.matrix_transpose(wg), xg)  # (N, groups, C_out/groups*K, L)
    out = plan.col2im(xp, xp.reshape(cols, (n, c_out * k, length)), geom)
    if bc is not None:
        out = out + xp.reshape(bc, (1, c_out) + (1,) * geom.nd)
    return lay.from_first(xp, plan.uncast(xp, x.dtype, out))


def _run_backward(func, grad_out, x, weight, options, backend, nd):
    xp, geom, groups, lay, xf, weight, _, gf = _setup(func, x, weight, None, options, nd, grad_out)
    plan = select("conv_transpose_backward", xp, gf, backend, geom.nd)
    n, c_in = xf.shape[0], xf.shape[1]
    cog = weight.shape[1]
    c_out = cog * groups
    if n == 0:
        return (
            zeros(xp, tuple(x.shape), xf),
            zeros(xp, tuple(weight.shape), xf),
            zeros(xp, (c_out,), xf),
        )
    gc, xc, wc = plan.cast(xp, gf, xf, weight)
    size = tuple(xf.shape[2:])
    k, length = geom.kernel_numel, prod(size)
    dx = plan.conv(xp, gc, wc, None, geom, groups)
    dcols = plan.im2col(xp, gc, geom)
    if any(_extra(geom, xf)):
        # Windows beyond x belong to the zero padding of x: drop them.
        dx = _crop(dx, size)
        dcols = _crop(xp.reshape(dcols, (n, c_out * k, *geom.output_size)), size)
    dcols = xp.reshape(dcols, (n, groups, cog * k, length))
    xg = xp.reshape(xc, (n, groups, c_in // groups, length))
    dw = xp.sum(xp.matmul(xg, xp.matrix_transpose(dcols)), axis=0)  # (groups, C_in/g, ...)
    dw = xp.reshape(dw, tuple(weight.shape))
    db = xp.sum(gc, axis=(0, *range(2, 2 + geom.nd)))
    dx, dw, db = (plan.uncast(xp, x.dtype, a) for a in (dx, dw, db))
    return lay.from_first(xp, dx), dw, db


# ---------------------------------------------------------------------------
# public operators
# ---------------------------------------------------------------------------


def conv_transpose(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> Array:
    """N-d transposed convolution: 1, 2 or 3 spatial axes (more where the backend declares them).

    Every input pixel ``x[n, ci, i]`` (``i`` a spatial index) adds
    ``x[n, ci, i] * weight[ci, co]`` into the output window whose first tap is
    ``i*stride - before``, taps ``dilation`` apart.  This is the input gradient of
    :func:`convcore.conv` with the same weight and options, computed the same
    way: a GEMM per group, then the backend's col2im.

    Parameters
    ----------
    x : array, shape (N, C_in, *spatial)
        In the order ``layout`` names.  Real floating point: float32 and
        float64; float16 and bfloat16 are computed in float32 where the backend
        does not declare them.
    weight : array, shape (C_in, C_out/groups, *kernel)
        PyTorch's layout; it is also the layout of the weight of the convolution
        being transposed (``F = C_in`` filters over ``C_out`` channels).
    bias : array, shape (C_out,), optional
    stride, dilation : int or tuple of int, optional
    padding : int, tuple of int, (before, after) per axis, "valid" or "same"
        Cropped from the full output: ``padding=p`` is PyTorch's (``p`` on every
        side); ``(before, after)`` per axis (``(top, bottom, left, right)`` in
        2-D) crops each side separately, which is the transpose of
        :func:`convcore.conv` with that padding.  ``"same"`` gives
        ``input_size * stride`` per axis (TensorFlow's and JAX's ``"SAME"``; see
        :func:`convcore.conv_transpose_geometry`).
    output_padding : int or tuple of int, optional
        Added after the last row/column, to pick the output size when several map
        onto the same input size under the strided convolution.  Must be smaller
        than ``stride`` or than ``dilation`` on each axis (PyTorch's rule).
    groups : int, optional
        ``C_in`` and ``C_out`` split into ``groups`` independent transposed
        convolutions.
    layout : str, optional
        Axis order of ``x`` and the output (``"channels_last"``, ``"NHWC"``,
        ...); the weight keeps its layout.
    backend : str, optional
        Backend for col2im; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C_out, *output_spatial)
        Per axis ``(size - 1)*stride - before - after + dilation*(K - 1) +
        output_padding + 1`` (:func:`convcore.conv_transpose_output_size`).  Same
        namespace, device and dtype as ``x``, in ``layout``'s order.

    Raises
    ------
    TypeError, ValueError
        Naming the offending parameter, its value and what was expected.

    See Also
    --------
    conv_transpose1d, conv_transpose2d, conv_transpose3d : the same with the rank checked.
    conv_transpose_backward : its gradients.
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run("conv_transpose", x, weight, bias, options, backend, None)


def conv_transpose_backward(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv_transpose` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : array, shape (N, C_out, *output_spatial)
        Gradient of the loss with respect to the transposed convolution's
        output, in ``layout``'s order.
    x, weight
        The forward inputs.
    stride, padding, output_padding, groups, dilation, layout, backend
        The forward options (``backend`` runs the convolution and im2col).

    Returns
    -------
    dx : array, the shape of ``x``
        The forward convolution of ``grad_out`` with ``weight`` (same stride,
        padding, dilation and groups).  Entries of ``grad_out`` that no tap
        reached in the forward pass (``output_padding`` added past the last tap)
        do not affect it.
    dw : array, the shape of ``weight``
        ``sum_n x[n] @ im2col(grad_out)[n]^T`` per group.
    db : array, shape (C_out,)
        ``grad_out`` summed over batch and space (also when the forward had no bias).
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run_backward("conv_transpose_backward", grad_out, x, weight, options, backend, None)


def conv_transpose1d(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> Array:
    """1-D transposed convolution of an ``(N, C_in, W)`` batch (``"NWC"`` with ``layout``).

    ``weight`` is ``(C_in, C_out/groups, KW)``.  The parameters and results are those of
    :func:`conv_transpose` with one spatial axis;
    ``torch.nn.functional.conv_transpose1d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]])
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run("conv_transpose1d", x, weight, bias, options, backend, 1)


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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> Array:
    """2-D transposed convolution of an ``(N, C_in, H, W)`` batch (``"NHWC"`` with ``layout``).

    ``weight`` is ``(C_in, C_out/groups, KH, KW)``.  The parameters and results are those of
    :func:`conv_transpose` with two spatial axes;
    ``torch.nn.functional.conv_transpose2d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import conv_transpose2d
    >>> x = np.ones((1, 1, 2, 2)); w = np.ones((1, 1, 3, 3))
    >>> conv_transpose2d(x, w, stride=2)[0, 0]
    array([[1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.],
           [2., 2., 4., 2., 2.],
           [1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.]])
    >>> conv_transpose2d(np.ones((1, 2, 2, 1)), w, stride=2, layout="NHWC").shape
    (1, 5, 5, 1)
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run("conv_transpose2d", x, weight, bias, options, backend, 2)


def conv_transpose3d(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> Array:
    """3-D transposed convolution of an ``(N, C_in, D, H, W)`` batch (``"NDHWC"`` with ``layout``).

    ``weight`` is ``(C_in, C_out/groups, KD, KH, KW)``.  The parameters and results are those of
    :func:`conv_transpose` with three spatial axes;
    ``torch.nn.functional.conv_transpose3d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> x, w = np.ones((1, 2, 3, 3, 3)), np.ones((2, 4, 2, 2, 2))
    >>> convcore.conv_transpose3d(x, w, stride=2).shape
    (1, 4, 6, 6, 6)
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run("conv_transpose3d", x, weight, bias, options, backend, 3)


def conv_transpose1d_backward(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose1d`.

    See :func:`conv_transpose_backward`.
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run_backward("conv_transpose1d_backward", grad_out, x, weight, options, backend, 1)


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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose2d`.

    See :func:`conv_transpose_backward`.
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run_backward("conv_transpose2d_backward", grad_out, x, weight, options, backend, 2)


def conv_transpose3d_backward(
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
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose3d`.

    See :func:`conv_transpose_backward`.
    """
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "layout": layout,
    }
    return _run_backward("conv_transpose3d_backward", grad_out, x, weight, options, backend, 3)


def __getattr__(name: str):
    # The layer class moved to convcore.layers; keep ``convcore.transpose.ConvTranspose2D``.
    if name == "ConvTranspose2D":
        from . import layers

        return layers.ConvTranspose2D
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
