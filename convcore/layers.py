"""Layers with the seed's ForwardPropagation / BackwardPropagation contract, 1-D to 3-D.

Every layer keeps its options as attributes, runs the matching function of
convcore in :meth:`forward` (also ``layer(x)``) and caches what its
:meth:`backward` needs from the last forward call: a copy of the input
(convolutions and transposed convolutions; ``copy_input=False`` keeps a reference
instead), the winners' indices (max pooling) or the input's shape (average pooling).

The layers can be trained: a convolution or transposed convolution owns its
``weight`` and ``bias`` (given, or drawn by ``create`` from the shapes), keeps the
gradients of the last backward pass in ``grad_weight`` / ``grad_bias`` and lists
both in :meth:`parameters` / :meth:`gradients` (empty for pooling), so an SGD
step is one loop.  ``needs_input_grad=False`` (or ``backward(g, input_grad=False)``)
skips the input gradient of a first layer (see :meth:`Conv2D.backward`).

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

from math import prod, sqrt
from typing import Any

import numpy as np

from . import pooling, transpose
from ._api import (
    _conv_setup,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
)
from ._dispatch import select
from ._padmodes import check_padding_mode, pad
from ._validation import Layout, check_groups, flag, namespace, zeros
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

#: The initialisation schemes of ``create`` (see :meth:`Conv2D.create`).
_INITS = ("uniform", "he")


def _snapshot(x: Array) -> Array:
    """A copy of ``x`` in its own library, so later changes of ``x`` do not reach the cache."""
    return namespace(x=x).asarray(x, copy=True)


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
    copy_input: bool = True

    def parameters(self) -> dict[str, Array]:
        """The trainable arrays by name: ``{}`` (a pooling layer has none)."""
        return {}

    def gradients(self) -> dict[str, Array]:
        """The gradients of the last :meth:`backward` by name: ``{}`` (no parameters)."""
        return {}

    def _check_layout(self) -> None:
        """``layout`` names an array with this layer's number of spatial axes (or raise now)."""
        Layout(self.layout, self._nd)

    def _options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._option_names}

    def _keep(self, x: Array) -> Array:
        """What :meth:`forward` caches of its input: a copy, or ``x`` itself (``copy_input``)."""
        return _snapshot(x) if self.copy_input else x

    def _cached(self, value, what: str):
        """``value`` cached by :meth:`forward`, or a RuntimeError naming what is missing."""
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before forward(): no {what} is cached"
            )
        return value

    def _shown(self) -> list[str]:
        """``name=value`` for the repr: every option but the backend; the layout and the
        padding mode when they are not the defaults."""
        defaults = {"layout": _CHANNELS_FIRST, "padding_mode": "zeros"}
        shown = [
            f"{name}={getattr(self, name)!r}"
            for name in self._option_names
            if name != "backend" and (name not in defaults or getattr(self, name) != defaults[name])
        ]
        if not self.copy_input:
            shown.append("copy_input=False")
        return shown


# ---------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------
def _kernel_tuple(kernel_size, nd: int) -> tuple[int, ...]:
    """``kernel_size`` (one int, or ``nd`` of them) as ``nd`` positive ints."""
    sizes = (kernel_size,) * nd if isinstance(kernel_size, (int, np.integer)) else kernel_size
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = ()
    if (
        len(sizes) != nd
        or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in sizes)
        or any(k < 1 for k in sizes)
    ):
        raise ValueError(
            f"kernel_size must be a positive int or {nd} positive ints, got {kernel_size!r}"
        )
    return tuple(int(k) for k in sizes)


def _channels(name: str, value, groups: int) -> int:
    """A channel count: a positive int that ``groups`` divides."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value % groups:
        raise ValueError(f"{name}={value} must be a multiple of groups={groups}")
    return int(value)


#: The weight gradient without ``dx`` (``backward(..., input_grad=False)``) builds the
#: columns of at most this many bytes of float64 at a time (at least one image),
#: summing the per-chunk GEMMs, so its memory stays bounded for large batches.
_COLUMN_CHUNK_BYTES = 64 * 2**20


def _batch_ranges(n: int, column_entries_per_image: int) -> list[tuple[int, int]]:
    """``(start, stop)`` batch chunks whose columns fit :data:`_COLUMN_CHUNK_BYTES`."""
    step = max(1, min(n, _COLUMN_CHUNK_BYTES // max(1, 8 * column_entries_per_image)))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _initial(weight_shape, bias_size: int | None, init: str, rng, dtype):
    """``(weight, bias)`` drawn by ``init`` (see :meth:`Conv2D.create`), in ``dtype``.

    ``bias_size`` None: no bias.  ``fan_in`` is ``weight.shape[1] * prod(kernel)``,
    as in PyTorch (for a transposed convolution: output channels per group).
    """
    if init not in _INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, _INITS))}, got {init!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    rng = np.random.default_rng(rng)
    fan_in = weight_shape[1] * prod(weight_shape[2:])
    bound = 1 / sqrt(fan_in)
    # Drawn in float64 and rounded once: the same numbers for every dtype.
    bias = None
    if init == "uniform":
        weight = rng.uniform(-bound, bound, weight_shape)
        if bias_size is not None:
            bias = rng.uniform(-bound, bound, bias_size)
    else:
        weight = rng.normal(0.0, sqrt(2 / fan_in), weight_shape)
        if bias_size is not None:
            bias = np.zeros(bias_size)
    return weight.astype(dtype), None if bias is None else bias.astype(dtype)


class _WeightedLayer(_Layer):
    """A convolution or transposed convolution: weight, optional bias, cached input,
    the gradients of the last backward pass."""

    def _init_training(self, needs_input_grad, copy_input) -> None:
        self.needs_input_grad = flag("needs_input_grad", needs_input_grad)
        self.copy_input = flag("copy_input", copy_input)
        self.input: Array | None = None
        self.grad_weight: Array | None = None
        self.grad_bias: Array | None = None

    def __call__(self, x: Array, /) -> Array:
        return self.forward(x)

    def forward(self, x: Array, /) -> Array:
        """Run the layer on ``x`` (in ``layout``'s order) and remember it for :meth:`backward`.

        The layer keeps a copy of ``x`` (``input``; the memory of one more ``x``),
        so changing ``x`` afterwards does not change :meth:`backward`'s result.
        With ``copy_input=False`` it keeps ``x`` itself: no extra memory, but
        ``x`` must then stay unchanged until :meth:`backward`.
        """
        out = type(self)._forward(x, self.weight, self.bias, **self._options())
        self.input = self._keep(x)
        return out

    def backward(
        self, grad_out: Array, /, *, input_grad: bool | None = None
    ) -> tuple[Array | None, Array, Array]:
        """Gradients ``(dx, dw, db)`` for the input of the last :meth:`forward` call.

        ``dw`` and ``db`` are also kept as ``grad_weight`` and ``grad_bias``
        (replaced by every call; ``grad_bias`` is None for a layer without bias).
        ``db`` (the sum of ``grad_out`` over batch and space) is returned also
        for a layer without bias, as the backward functions do.

        Parameters
        ----------
        grad_out : array
            Gradient of the loss with respect to the last forward's output.
        input_grad : bool, optional
            Whether to compute ``dx``; default ``needs_input_grad`` (True unless
            set).  False (the first layer of a network, whose input is data)
            returns ``dx = None`` and does not compute it: ``dw`` is then one
            GEMM per group with the backend's im2col of the cached input
            (convolution; its col2im and the ``W^T @ grad_out`` GEMM are not
            run) or of ``grad_out`` (transposed convolution; its forward
            convolution of ``grad_out`` is not run), and ``db`` a sum.  The
            columns are built for batch chunks of at most 64 MiB (as float64;
            one image at least) and the chunks' GEMMs summed.
        """
        x = self._cached(self.input, "input")
        wanted = self.needs_input_grad if input_grad is None else flag("input_grad", input_grad)
        if wanted:
            dx, dw, db = type(self)._backward(grad_out, x, self.weight, **self._options())
        else:
            dx = None
            dw, db = self._weight_gradients(grad_out, x)
        self.grad_weight = dw
        self.grad_bias = None if self.bias is None else db
        return dx, dw, db

    def parameters(self) -> dict[str, Array]:
        """``{"weight": weight, "bias": bias}`` (no ``"bias"`` without one): the arrays themselves.

        An SGD step on NumPy arrays can update them in place; for immutable
        arrays set the attribute, ``setattr(layer, name, p - lr * g)``.
        """
        params = {"weight": self.weight}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def gradients(self) -> dict[str, Array]:
        """``{"weight": grad_weight, "bias": grad_bias}`` of the last :meth:`backward`.

        The keys of :meth:`parameters` at that call; a RuntimeError before any.
        """
        if self.grad_weight is None:
            raise RuntimeError(
                f"{type(self).__name__}.gradients() called before backward(): no gradient is kept"
            )
        grads = {"weight": self.grad_weight}
        if self.grad_bias is not None:
            grads["bias"] = self.grad_bias
        return grads

    @classmethod
    def create(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size,
        *,
        bias: bool = True,
        init: str = "uniform",
        rng=None,
        dtype=np.float32,
        **options,
    ):
        """Build the layer from its shapes, with weight and bias drawn at random.

        Parameters
        ----------
        in_channels, out_channels : int
            Channels of the input and of the output (multiples of ``groups``).
        kernel_size : int or tuple of int
            One size for every spatial axis, or one per axis.
        bias : bool, optional
            Whether the layer has a bias (default True).
        init : {"uniform", "he"}, optional
            ``"uniform"`` (default, PyTorch's initialisation of ``nn.Conv*d`` and
            ``nn.ConvTranspose*d``): weight and bias uniform in
            ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.  ``"he"``: weight normal with
            standard deviation ``sqrt(2/fan_in)`` (He et al., for ReLU networks),
            bias zero.  ``fan_in`` is ``weight.shape[1] * prod(kernel_size)``, as
            in PyTorch.
        rng : int, numpy.random.Generator or None, optional
            Seed or generator of the draw (None: a fresh, unseeded generator).
            The weight is drawn first, then the bias, in float64, and rounded to
            ``dtype`` once: a seed gives the same parameters (up to rounding) in
            every dtype.
        dtype : numpy dtype, optional
            Floating dtype of ``weight`` and ``bias`` (default float32).
        **options
            The constructor's keywords (``stride``, ``padding``, ``groups``,
            ``layout``, ``backend``, ``needs_input_grad``, ``copy_input``, ...).

        Returns
        -------
        layer
            A new layer whose ``weight`` and ``bias`` are NumPy arrays (convert
            them, e.g. with ``torch.from_numpy``, to train on another library).

        Examples
        --------
        >>> import convcore
        >>> conv = convcore.Conv2D.create(3, 8, 3, padding=1, rng=0)
        >>> conv.weight.shape, conv.bias.shape, conv.weight.dtype
        ((8, 3, 3, 3), (8,), dtype('float32'))
        >>> convcore.ConvTranspose1D.create(4, 6, 5, groups=2, bias=False, rng=0).weight.shape
        (4, 3, 5)
        """
        groups = check_groups(options.get("groups", 1))
        weight_shape, bias_size = cls._parameter_shapes(
            _channels("in_channels", in_channels, groups),
            _channels("out_channels", out_channels, groups),
            _kernel_tuple(kernel_size, cls._nd),
            groups,
        )
        weight, b = _initial(
            weight_shape, bias_size if flag("bias", bias) else None, init, rng, dtype
        )
        return cls(weight, b, **options)

    def _weight_gradients(self, grad_out: Array, x: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = [f"weight_shape={tuple(self.weight.shape)}", f"bias={self.bias is not None}"]
        if not self.needs_input_grad:
            shown.append("needs_input_grad=False")
        return f"{type(self).__name__}({', '.join(shown + self._shown())})"


class _Conv(_WeightedLayer):
    _option_names = ("stride", "padding", "dilation", "groups", "padding_mode", "layout", "backend")

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
        needs_input_grad: bool = True,
        copy_input: bool = True,
    ):
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.padding_mode = check_padding_mode(padding_mode)
        self.layout = layout
        self.backend = backend
        self._check_layout()
        self._init_training(needs_input_grad, copy_input)

    @staticmethod
    def _parameter_shapes(in_channels, out_channels, kernel, groups):
        """``(weight shape, bias size)`` of a convolution."""
        return (out_channels, in_channels // groups, *kernel), out_channels

    def _weight_gradients(self, grad_out: Array, x: Array) -> tuple[Array, Array]:
        """``(dw, db)`` without ``dx``: im2col of ``x``, one GEMM per group, a sum."""
        o = self._options()
        func = type(self)._backward.__name__
        xp, geom, groups, _, xf, weight, _, gf = _conv_setup(
            func,
            x,
            self.weight,
            None,
            o["groups"],
            o["stride"],
            o["padding"],
            o["dilation"],
            o["layout"],
            self._nd,
            grad_out=grad_out,
        )
        plan = select("im2col", xp, xf, o["backend"], geom.nd)
        n, c, f = xf.shape[0], xf.shape[1], weight.shape[0]
        if n == 0:
            return zeros(xp, tuple(weight.shape), xf), zeros(xp, (f,), xf)
        gc, xc = plan.cast(xp, gf, xf)
        if self.padding_mode != "zeros":
            xc, geom = pad(xp, xc, geom, self.padding_mode)
        length = geom.output_numel
        rows = (c // groups) * geom.kernel_numel
        go = xp.reshape(gc, (n, groups, f // groups, length))
        dw = None
        for a, b in _batch_ranges(n, groups * rows * length):
            cols = plan.im2col(xp, xc[a:b, ...], geom)  # (n, C*K, L)
            cols = xp.reshape(cols, (b - a, groups, rows, length))
            part = xp.sum(xp.matmul(go[a:b, ...], xp.matrix_transpose(cols)), axis=0)
            dw = part if dw is None else dw + part
        dw = xp.reshape(dw, tuple(weight.shape))
        db = xp.sum(gc, axis=(0, *range(2, 2 + geom.nd)))
        return plan.uncast(xp, xf.dtype, dw), plan.uncast(xp, xf.dtype, db)


class Conv1D(_Conv):
    """A 1-D convolution layer; :func:`convcore.conv1d` forward and backward.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KW)
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, padding_mode, layout, backend
        As for :func:`convcore.conv1d`.
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).
    """

    _nd = 1
    _forward = staticmethod(conv1d)
    _backward = staticmethod(conv1d_backward)


class Conv2D(_Conv):
    """A 2-D convolution layer that caches its input for the backward pass.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KH, KW)
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, padding_mode, layout, backend
        As for :func:`convcore.conv2d` (``layout="NHWC"`` for channels-last input).
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).

    Examples
    --------
    >>> import numpy as np, convcore
    >>> layer = convcore.Conv2D(np.ones((4, 3, 3, 3)), np.zeros(4), padding=1)
    >>> y = layer.forward(np.ones((2, 3, 8, 8)))
    >>> dx, dw, db = layer.backward(np.ones_like(y))
    >>> dx.shape, dw.shape, db.shape
    ((2, 3, 8, 8), (4, 3, 3, 3), (4,))

    Training: parameters drawn from the shapes, no ``dx`` for a first layer,
    the gradients kept, an SGD step as one loop.

    >>> first = convcore.Conv2D.create(3, 4, 3, padding=1, rng=0, needs_input_grad=False)
    >>> y = first(np.ones((2, 3, 8, 8), np.float32))
    >>> dx, dw, db = first.backward(np.ones_like(y))
    >>> dx is None, first.grad_weight is dw, sorted(first.gradients())
    (True, True, ['bias', 'weight'])
    >>> for name, p in first.parameters().items():
    ...     p -= 0.1 * first.gradients()[name]
    """

    _nd = 2
    _forward = staticmethod(conv2d)
    _backward = staticmethod(conv2d_backward)


class Conv3D(_Conv):
    """A 3-D convolution layer; :func:`convcore.conv3d` forward and backward.

    Parameters
    ----------
    weight : array, shape (F, C/groups, KD, KH, KW)
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (F,), optional
    stride, padding, dilation, groups, padding_mode, layout, backend
        As for :func:`convcore.conv3d`.
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).
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
        needs_input_grad: bool = True,
        copy_input: bool = True,
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
        self._init_training(needs_input_grad, copy_input)

    @staticmethod
    def _parameter_shapes(in_channels, out_channels, kernel, groups):
        """``(weight shape, bias size)`` of a transposed convolution."""
        return (in_channels, out_channels // groups, *kernel), out_channels

    def _weight_gradients(self, grad_out: Array, x: Array) -> tuple[Array, Array]:
        """``(dw, db)`` without ``dx``: im2col of ``grad_out``, one GEMM per group, a sum."""
        o = self._options()
        backend = o.pop("backend")
        func = type(self)._backward.__name__
        xp, geom, groups, _, xf, weight, _, gf = transpose._setup(
            func, x, self.weight, None, o, self._nd, grad_out
        )
        plan = select("im2col", xp, gf, backend, geom.nd)
        n, c_in = xf.shape[0], xf.shape[1]
        cog = weight.shape[1]
        c_out = cog * groups
        if n == 0:
            return zeros(xp, tuple(weight.shape), xf), zeros(xp, (c_out,), xf)
        gc, xc = plan.cast(xp, gf, xf)
        size = tuple(xf.shape[2:])
        k, length = geom.kernel_numel, prod(size)
        extra = any(transpose._extra(geom, xf))
        xg = xp.reshape(xc, (n, groups, c_in // groups, length))
        dw = None
        for a, b in _batch_ranges(n, c_out * k * geom.output_numel):
            dcols = plan.im2col(xp, gc[a:b, ...], geom)
            if extra:
                # Windows beyond x belong to the zero padding of x: drop them.
                dcols = xp.reshape(dcols, (b - a, c_out * k, *geom.output_size))
                dcols = transpose._crop(dcols, size)
            dcols = xp.reshape(dcols, (b - a, groups, cog * k, length))
            part = xp.sum(xp.matmul(xg[a:b, ...], xp.matrix_transpose(dcols)), axis=0)
            dw = part if dw is None else dw + part
        dw = xp.reshape(dw, tuple(weight.shape))
        db = xp.sum(gc, axis=(0, *range(2, 2 + geom.nd)))
        return plan.uncast(xp, xf.dtype, dw), plan.uncast(xp, xf.dtype, db)


class ConvTranspose1D(_ConvTranspose):
    """A 1-D transposed convolution layer; :func:`convcore.conv_transpose1d` and its backward.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KW)
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose1d`.
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).
    """

    _nd = 1
    _forward = staticmethod(transpose.conv_transpose1d)
    _backward = staticmethod(transpose.conv_transpose1d_backward)


class ConvTranspose2D(_ConvTranspose):
    """A 2-D transposed convolution layer that caches its input for the backward pass.

    Parameters
    ----------
    weight : array, shape (C_in, C_out/groups, KH, KW)
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose2d`.
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).

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
        The layer's parameter (settable); :meth:`create` draws one from shapes.
    bias : array, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation, layout, backend
        As for :func:`convcore.conv_transpose3d`.
    needs_input_grad : bool, optional
        False: :meth:`backward` does not compute ``dx`` (returns None), for a
        first layer; default True.
    copy_input : bool, optional
        True (default): :meth:`forward` caches a copy of its input; False: the
        input itself (it must then stay unchanged until :meth:`backward`).
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
    _option_names = (
        "stride",
        "padding",
        "dilation",
        "ceil_mode",
        "padding_mode",
        "layout",
        "backend",
    )

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        *,
        padding_mode: str = "zeros",
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceil_mode = ceil_mode
        self.padding_mode = check_padding_mode(padding_mode)
        self.layout = layout
        self.backend = backend
        self._validate()
        self.input: Array | None = None
        self.indices: Array | None = None

    def forward(self, x: Array, /) -> Array:
        """Pool ``x`` and remember where every window's maximum came from.

        The layer keeps the winners' indices (``indices``, as
        ``return_indices=True`` gives them: the output's shape, int64) and a
        reference to ``x`` (``input``) for its shape, dtype and device only:
        :meth:`backward` never reads ``x``'s values, so changing ``x``
        afterwards does not change its result, and nothing is copied.
        """
        out, self.indices = type(self)._forward(
            x, self.kernel_size, return_indices=True, **self._options()
        )
        self.input = x
        return out

    def backward(self, grad_out: Array, /) -> Array:
        """``dx`` for the input of the last :meth:`forward` call (from its indices)."""
        x = self._cached(self.input, "input")
        return type(self)._backward(
            grad_out, x, self.kernel_size, indices=self.indices, **self._options()
        )


class MaxPool1D(_MaxPool):
    """A 1-D max-pooling layer; :func:`convcore.max_pool1d` and its backward.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, padding_mode, layout, backend
        As for :func:`convcore.max_pool1d` (validated here, once).
    """

    _nd = 1
    _forward = staticmethod(pooling.max_pool1d)
    _backward = staticmethod(pooling.max_pool1d_backward)


class MaxPool2D(_MaxPool):
    """A 2-D max-pooling layer that caches its winners' indices for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, dilation, ceil_mode, padding_mode, layout, backend
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
    kernel_size, stride, padding, dilation, ceil_mode, padding_mode, layout, backend
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
        "padding_mode",
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
        padding_mode: str = "zeros",
        layout: str = _CHANNELS_FIRST,
        backend: str | None = None,
    ):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.padding_mode = check_padding_mode(padding_mode)
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
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, padding_mode,
    layout, backend
        As for :func:`convcore.avg_pool1d` (validated here, once).
    """

    _nd = 1
    _forward = staticmethod(pooling.avg_pool1d)
    _backward = staticmethod(pooling.avg_pool1d_backward)


class AvgPool2D(_AvgPool):
    """A 2-D average-pooling layer that caches its input's shape for the backward pass.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, padding_mode,
    layout, backend
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
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, padding_mode,
    layout, backend
        As for :func:`convcore.avg_pool3d` (validated here, once).
    """

    _nd = 3
    _forward = staticmethod(pooling.avg_pool3d)
    _backward = staticmethod(pooling.avg_pool3d_backward)
