"""Layers with the seed's ForwardPropagation / BackwardPropagation contract, 1-D to 3-D.

Every layer keeps its options as attributes, runs the matching function of
convcore in :meth:`forward` (also ``layer(x)``) and caches what its
:meth:`backward` needs from the last forward call: the input (convolutions,
transposed convolutions, max pooling) or its shape (average pooling).

* ``Conv1D``, ``Conv2D``, ``Conv3D``: :func:`convcore.conv1d` (2d, 3d) and its
  backward, which returns ``(dx, dw, db)``;
* ``ConvTranspose1D``, ``ConvTranspose2D``, ``ConvTranspose3D``:
  :func:`convcore.conv_transpose1d` (2d, 3d), backward ``(dx, dw, db)``;
* ``MaxPool1D``, ``MaxPool2D``, ``MaxPool3D``: :func:`convcore.max_pool1d` (2d, 3d),
  backward ``dx``;
* ``AvgPool1D``, ``AvgPool2D``, ``AvgPool3D``: :func:`convcore.avg_pool1d` (2d, 3d),
  backward ``dx``.
"""

from __future__ import annotations

from typing import Any

from . import pooling, transpose
from ._api import conv1d, conv1d_backward, conv2d, conv2d_backward, conv3d, conv3d_backward
from ._validation import Layout, flag
from .geometry import pool_geometry

__all__ = [
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
]

Array = Any

_CHANNELS_FIRST = "channels_first"


class _Layer:
    """A layer that keeps its keyword options as attributes and caches what
    :meth:`backward` needs from the last :meth:`forward` call.

    Subclasses name the attributes passed as keywords to their functions in
    ``_option_names`` and the functions themselves in ``_forward`` /
    ``_backward``.
    """

    _option_names: tuple[str, ...] = ()
    _nd: int
    _forward: Any
    _backward: Any

    def _check_layout(self) -> None:
        """``layout`` names an array with this layer's number of spatial axes (or raise now)."""
        Layout(self.layout, self._nd)

    def _options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._option_names}

    def _cached(self, value, what: str):
        """``value`` cached by :meth:`forward`, or a RuntimeError naming what is missing."""
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before forward(): no {what} is cached"
            )
        return value

    def _shown(self) -> list[str]:
        """``name=value`` for the repr: every option but the backend, the layout if set."""
        return [
            f"{name}={getattr(self, name)!r}"
            for name in self._option_names
            if name != "backend" and (name != "layout" or self.layout != _CHANNELS_FIRST)
        ]


# ---------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------
class _WeightedLayer(_Layer):
    """A convolution or transposed convolution: weight, optional bias, cached input."""

    def __call__(self, x: Array, /) -> Array:
        return self.forward(x)

    def forward(self, x: Array, /) -> Array:
        """Run the layer on ``x`` (in ``layout``'s order) and remember it for :meth:`backward`."""
        out = type(self)._forward(x, self.weight, self.bias, **self._options())
        self.input = x
        return out

    def backward(self, grad_out: Array, /) -> tuple[Array, Array, Array]:
        """Gradients ``(dx, dw, db)`` for the input of the last :meth:`forward` call.

        ``db`` (the sum of ``grad_out`` over batch and space) is returned also
        for a layer without bias, as the backward functions do.
        """
        x = self._cached(self.input, "input")
        return type(self)._backward(grad_out, x, self.weight, **self._options())

    def __repr__(self) -> str:
        shown = [f"weight_shape={tuple(self.weight.shape)}", f"bias={self.bias is not None}"]
        return f"{type(self).__name__}({', '.join(shown + self._shown())})"


class _Conv(_WeightedLayer):
    _option_names = ("stride", "padding", "dilation", "groups", "layout", "backend")

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.layout = layout
        self.backend = backend
        self._check_layout()
        self.input: Array | None = None


class Conv1D(_Conv):
    """A 1-D convolution layer; :func:`convcore.conv1d` forward and backward.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KW)
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, layout, backend
        As for :func:`convcore.conv1d`.
    """

    _nd = 1
    _forward = staticmethod(conv1d)
    _backward = staticmethod(conv1d_backward)


class Conv2D(_Conv):
    """A 2-D convolution layer that caches its input for the backward pass.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KH, KW)
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, layout, backend
        As for :func:`convcore.conv2d` (``layout="NHWC"`` for channels-last input).

    Examples
    --------
    >>> import numpy as np, convcore
    >>> layer = convcore.Conv2D(np.ones((4, 3, 3, 3)), np.zeros(4), padding=1)
    >>> y = layer.forward(np.ones((2, 3, 8, 8)))
    >>> dx, dw, db = layer.backward(np.ones_like(y))
    >>> dx.shape, dw.shape, db.shape
    ((2, 3, 8, 8), (4, 3, 3, 3), (4,))
    """

    _nd = 2
    _forward = staticmethod(conv2d)
    _backward = staticmethod(conv2d_backward)


class Conv3D(_Conv):
    """A 3-D convolution layer; :func:`convcore.conv3d` forward and backward.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KD, KH, KW)
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, layout, backend
        As for :func:`convcore.conv3d`.
    """

    _nd = 3
    _forward = staticmethod(conv3d)
    _backward = staticmethod(conv3d_backward)


class _ConvTranspose(_WeightedLayer):
    _option_names = (
        "stride",
        "padding",
        "output_padding",
        "groups",
        "dilation",
        "layout",
        "backend",
    )

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
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.groups = groups
        self.dilation = dilation
        self.layout = layout
        self.backend = backend
        self._check_layout()
        self.input: Array | None = None


class ConvTranspose1D(_ConvTranspose):
    """A 1-D transposed convolution layer; :func:`convcore.conv_transpose1d` and its backward.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KW)
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose1d`.
    """

    _nd = 1
    _forward = staticmethod(transpose.conv_transpose1d)
    _backward = staticmethod(transpose.conv_transpose1d_backward)


class ConvTranspose2D(_ConvTranspose):
    """A 2-D transposed convolution layer that caches its input for the backward pass.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KH, KW)
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ConvTranspose2D
    >>> layer = ConvTranspose2D(np.ones((4, 3, 3, 3)), np.zeros(3), stride=2, padding=1)
    >>> y = layer.forward(np.ones((2, 4, 5, 5)))
    >>> y.shape
    (2, 3, 9, 9)
    >>> dx, dw, db = layer.backward(np.ones_like(y))
    >>> dx.shape, dw.shape, db.shape
    ((2, 4, 5, 5), (4, 3, 3, 3), (3,))
    """

    _nd = 2
    _forward = staticmethod(transpose.conv_transpose2d)
    _backward = staticmethod(transpose.conv_transpose2d_backward)


class ConvTranspose3D(_ConvTranspose):
    """A 3-D transposed convolution layer; :func:`convcore.conv_transpose3d` and its backward.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KD, KH, KW)
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose3d`.
    """

    _nd = 3
    _forward = staticmethod(transpose.conv_transpose3d)
    _backward = staticmethod(transpose.conv_transpose3d_backward)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------
class _Pool(_Layer):
    """A pooling layer: the options are validated once, in ``__init__``."""

    def _validate(self) -> None:
        # Any input size large enough for a window shows every option error now.
        self._check_layout()
        o = self._options()
        pool_geometry(
            (2**31,) * self._nd,
            self.kernel_size,
            stride=o["stride"],
            padding=o["padding"],
            dilation=o.get("dilation", 1),
            ceil_mode=o["ceil_mode"],
        )

    def __call__(self, x: Array, /) -> Array:
        return self.forward(x)

    def __repr__(self) -> str:
        shown = [f"kernel_size={self.kernel_size!r}", *self._shown()]
        return f"{type(self).__name__}({', '.join(shown)})"


class _MaxPool(_Pool):
    _option_names = ("stride", "padding", "dilation", "ceil_mode", "layout", "backend")

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        *,
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode
        self.layout = layout
        self.backend = backend
        self._validate()
        self.input: Array | None = None

    def forward(self, x: Array, /) -> Array:
        """Pool ``x`` and remember it for :meth:`backward`."""
        out = type(self)._forward(x, self.kernel_size, **self._options())
        self.input = x
        return out

    def backward(self, grad_out: Array, /) -> Array:
        """``dx`` for the input of the last :meth:`forward` call."""
        x = self._cached(self.input, "input")
        return type(self)._backward(grad_out, x, self.kernel_size, **self._options())


class MaxPool1D(_MaxPool):
    """A 1-D max-pooling layer; :func:`convcore.max_pool1d` and its backward.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, layout, backend
        As for :func:`convcore.max_pool1d` (validated here, once).
    """

    _nd = 1
    _forward = staticmethod(pooling.max_pool1d)
    _backward = staticmethod(pooling.max_pool1d_backward)


class MaxPool2D(_MaxPool):
    """A 2-D max-pooling layer that caches its input for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, layout, backend
        As for :func:`convcore.max_pool2d` (validated here, once).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import MaxPool2D
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

    _nd = 2
    _forward = staticmethod(pooling.max_pool2d)
    _backward = staticmethod(pooling.max_pool2d_backward)


class MaxPool3D(_MaxPool):
    """A 3-D max-pooling layer; :func:`convcore.max_pool3d` and its backward.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, layout, backend
        As for :func:`convcore.max_pool3d` (validated here, once).
    """

    _nd = 3
    _forward = staticmethod(pooling.max_pool3d)
    _backward = staticmethod(pooling.max_pool3d_backward)


class _AvgPool(_Pool):
    _option_names = (
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
        "layout",
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
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.layout = layout
        self.backend = backend
        self._validate()
        pooling._divisor(divisor_override)
        flag("count_include_pad", count_include_pad)
        self.input_shape: tuple[int, ...] | None = None

    def forward(self, x: Array, /) -> Array:
        """Pool ``x`` and remember its shape for :meth:`backward`."""
        out = type(self)._forward(x, self.kernel_size, **self._options())
        self.input_shape = tuple(x.shape)
        return out

    def backward(self, grad_out: Array, /) -> Array:
        """``dx`` for the input of the last :meth:`forward` call."""
        shape = self._cached(self.input_shape, "input shape")
        return type(self)._backward(grad_out, shape, self.kernel_size, **self._options())


class AvgPool1D(_AvgPool):
    """A 1-D average-pooling layer; :func:`convcore.avg_pool1d` and its backward.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layout, backend
        As for :func:`convcore.avg_pool1d` (validated here, once).
    """

    _nd = 1
    _forward = staticmethod(pooling.avg_pool1d)
    _backward = staticmethod(pooling.avg_pool1d_backward)


class AvgPool2D(_AvgPool):
    """A 2-D average-pooling layer that caches its input's shape for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layout, backend
        As for :func:`convcore.avg_pool2d` (validated here, once).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import AvgPool2D
    >>> pool = AvgPool2D(2)
    >>> y = pool.forward(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> pool.backward(np.ones_like(y)).shape
    (1, 1, 4, 4)
    """

    _nd = 2
    _forward = staticmethod(pooling.avg_pool2d)
    _backward = staticmethod(pooling.avg_pool2d_backward)


class AvgPool3D(_AvgPool):
    """A 3-D average-pooling layer; :func:`convcore.avg_pool3d` and its backward.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layout, backend
        As for :func:`convcore.avg_pool3d` (validated here, once).
    """

    _nd = 3
    _forward = staticmethod(pooling.avg_pool3d)
    _backward = staticmethod(pooling.avg_pool3d_backward)
