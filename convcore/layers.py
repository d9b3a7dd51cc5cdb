"""Layer objects with the seed's ForwardPropagation / BackwardPropagation contract."""

from __future__ import annotations

from typing import Any

from ._api import conv2d, conv2d_backward
from ._layer_base import _Layer

__all__ = ["Conv2D"]

Array = Any


class Conv2D(_Layer):
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
        layout: str = "channels_first",
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
        self.input: Array | None = None

    def forward(self, x: Array, /) -> Array:
        """Convolve ``x`` (N, C, H, W, or as ``layout`` says); remember it for :meth:`backward`."""
        out = conv2d(x, self.weight, self.bias, **self._options())
        self.input = x
        return out

    __call__ = forward

    def backward(self, grad_out: Array, /) -> tuple[Array, Array, Array]:
        """Gradients ``(dx, dw, db)`` for the input of the last :meth:`forward` call.

        ``db`` (the sum of ``grad_out`` over batch and space) is returned also
        for a layer without bias, as :func:`convcore.conv2d_backward` does.
        """
        x = self._cached(self.input, "input")
        return conv2d_backward(grad_out, x, self.weight, **self._options())

    def __repr__(self) -> str:
        shape = tuple(self.weight.shape)
        return (
            f"Conv2D(weight_shape={shape}, bias={self.bias is not None}, stride={self.stride!r}, "
            f"padding={self.padding!r}, dilation={self.dilation!r}, groups={self.groups!r}"
            + ("" if self.layout == "channels_first" else f", layout={self.layout!r}")
            + ")"
        )
