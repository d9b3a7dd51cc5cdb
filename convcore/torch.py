"""convcore's operators for PyTorch tensors, with autograd.

``convcore.torch.conv2d(x, w)`` is :func:`convcore.conv2d` for ``torch.Tensor``
arguments, wrapped in a :class:`torch.autograd.Function` whose backward pass is
convcore's backward operator (:func:`convcore.conv2d_backward` and friends).  The
functions have the signatures of the NumPy-level ones (same parameters, same
defaults) and leave validation to them, so a mistake gets the same message.

Data path:

* **CPU tensors** are handed to convcore as NumPy views (``t.detach().numpy()``:
  no copy, strides kept), so the backend is the one convcore selects for NumPy
  arrays (``numba`` under ``auto``, or whatever ``backend=``, ``use_backend``,
  ``CONVCORE_BACKEND`` or a configuration file names); the results come back
  through ``torch.from_numpy`` (no copy).
* **CUDA tensors** go to CuPy through DLPack (``cupy.from_dlpack``, on the
  tensor's device and torch's current stream), run on the ``cupy`` backend and
  come back through ``torch.from_dlpack``.  CuPy must be installed.
* **bfloat16** has no NumPy (or CuPy) dtype: it is computed in float32 and
  rounded back once.  float16 goes through NumPy's / CuPy's float16.

Inputs are never modified; results are new tensors on the input's device, in
its dtype.  This module is the only part of convcore that imports torch, and
``import convcore`` does not import it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

import array_api_compat
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import _api, pooling, transpose
from ._config import requested_backend
from ._validation import Layout
from .errors import BackendUnavailableError

__all__ = [
    "Conv2d",
    "avg_pool",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "col2im",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "im2col",
    "max_pool",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
]

Tensor = Any

_DEVICES = ("cpu", "cuda")


# ---------------------------------------------------------------------------
# tensors <-> arrays
# ---------------------------------------------------------------------------
def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_tensors(func: str, tensors: dict) -> None:
    """Every tensor of ``tensors`` (name -> tensor) on the first one's device, in its dtype.

    The NumPy-level function checks this too, but bfloat16 (computed in float32)
    would get past it, and a CPU tensor with a CUDA one would be two libraries.
    """
    (ref_name, ref), *others = tensors.items()
    kind = ref.device.type
    if kind not in _DEVICES:
        raise ValueError(
            f"{func}: {ref_name} is on device {str(ref.device)!r}; convcore.torch runs on "
            "'cpu' tensors (through NumPy) and 'cuda' tensors (through CuPy) only"
        )
    for name, t in others:
        if t.device != ref.device:
            raise ValueError(
                f"{name} is on device {str(t.device)!r} but {ref_name} is on "
                f"{str(ref.device)!r}; they must be on the same device"
            )
        if t.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {_dtype_name(t.dtype)} but {ref_name} has dtype "
                f"{_dtype_name(ref.dtype)}; they must match"
            )


def _cupy(what: str):
    """The cupy module, or a clear error: CUDA tensors run through CuPy."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{what} is a CUDA tensor; convcore.torch runs CUDA tensors on convcore's cupy "
            "backend, and CuPy is not installed (pip install 'convcore[cupy]' for CUDA 12, "
            f"'convcore[cupy-cuda13]' for CUDA 13): {exc}"
        ) from exc
    return cupy


def _to_array(t: Tensor):
    """A NumPy (CPU) or CuPy (CUDA) view of ``t``; bfloat16 as a float32 copy."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    if t.is_neg():  # a lazily negated view: numpy() refuses it
        t = t.resolve_neg()
    if t.device.type == "cpu":
        return t.numpy()
    return _cupy("the tensor").from_dlpack(t)


def _to_tensor(a, like: Tensor, inputs=()) -> Tensor:
    """``a`` (a convcore result) as a tensor on ``like``'s device, in ``like``'s dtype.

    A result that is a view of one of ``inputs`` (the arrays handed to convcore),
    or that torch cannot wrap (read-only, negative strides), is copied first, so
    the result never aliases an input.
    """
    if like.device.type == "cpu":
        a = np.asarray(a)
        if (
            not a.flags.writeable
            or any(s < 0 for s in a.strides)
            or any(np.may_share_memory(a, b) for b in inputs)
        ):
            a = a.copy()
        t = torch.from_numpy(a)
    else:
        cupy = _cupy("the tensor")
        if any(cupy.may_share_memory(a, b) for b in inputs):
            a = a.copy()
        t = torch.from_dlpack(a)
    if like.dtype == torch.bfloat16 and t.dtype == torch.float32:
        t = t.to(torch.bfloat16)  # computed in float32, rounded back once
    return t


@contextlib.contextmanager
def _on(device):
    """Run CuPy work on ``device`` and torch's current stream there (nothing for CPU)."""
    if device.type != "cuda":
        yield
        return
    cupy = _cupy("the tensor")
    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    from_external = getattr(cupy.cuda.Stream, "from_external", None)  # CuPy >= 14
    if from_external is not None and hasattr(stream, "__cuda_stream__"):
        shared = from_external(stream)
    else:  # ExternalStream is deprecated from CuPy 14 on
        shared = cupy.cuda.ExternalStream(stream.cuda_stream, index)
    with cupy.cuda.Device(index), shared:
        yield


# ---------------------------------------------------------------------------
# one call: arguments, conversion, the NumPy-level function
# ---------------------------------------------------------------------------
_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY


@functools.cache
def _positional_only(func) -> tuple[str, ...]:
    sig = inspect.signature(func)
    return tuple(n for n, p in sig.parameters.items() if p.kind is _POSITIONAL_ONLY)


def _call(func, params: dict):
    """``func`` called with ``params`` (name -> value), positional-only ones by position."""
    names = _positional_only(func)
    kwargs = {n: v for n, v in params.items() if n not in names}
    return func(*(params[n] for n in names), **kwargs)


class _Call:
    """One operator call: the NumPy-level function, its options, the tensors' device.

    ``options`` are the call's other arguments by name; ``backend`` is the
    backend the forward pass was requested with (the keyword, or what the
    context / default chain said at forward time): the backward pass, which may
    run outside a ``use_backend`` block, asks for the same.
    """

    __slots__ = ("arrays", "backend", "device", "func", "options")

    def __init__(self, func, arrays: tuple[str, ...], options: dict, device):
        self.func = func
        self.arrays = arrays
        self.options = options
        self.device = device
        self.backend = None

    def option(self, name):
        return self.options[name]

    def run(self, func, tensors: dict, like, options: dict):
        """``func`` on the tensors' arrays (and ``options``); the results as tensors."""
        with _on(self.device):
            arrays = {n: None if t is None else _to_array(t) for n, t in tensors.items()}
            out = _call(func, {**options, **arrays})
            inputs = [a for a in arrays.values() if a is not None]
            if isinstance(out, tuple):
                return tuple(_to_tensor(a, like, inputs) for a in out)
            return _to_tensor(out, like, inputs)

    def forward(self, *tensors, like):
        out = self.run(self.func, dict(zip(self.arrays, tensors)), like, self.options)
        self.backend = requested_backend(self.options["backend"])[0]
        return out

    def backward(self, func, tensors: dict, like, *drop, **extra):
        """``func`` with the forward options (less ``drop``, plus ``extra``) and its backend."""
        options = {n: v for n, v in self.options.items() if n not in drop}
        options.update(extra, backend=self.backend)
        return self.run(func, tensors, like, options)


def _library(a) -> str:
    if isinstance(a, np.ndarray):
        return "a NumPy array"
    try:
        name = array_api_compat.array_namespace(a).__name__.split(".")[0]
    except TypeError:
        name = type(a).__module__.split(".")[0]
    return f"a {name} array"


def _prepare(func, params: dict, names: tuple[str, ...]):
    """The device of the tensors among ``params[names]``, after checking them.

    Another library's array is a TypeError naming the argument.  When one of
    them is not an array at all (None, a list), the NumPy-level function is
    called as is, to raise its own error naming it.
    """
    tensors = {}
    other = False
    for name in names:
        value = params[name]
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        elif value is None and name == "bias":
            continue
        elif array_api_compat.is_array_api_obj(value):
            raise TypeError(
                f"{name} is {_library(value)}, but convcore.torch.{func.__name__} takes torch "
                f"tensors; convert it with torch.as_tensor (convcore.{func.__name__} takes "
                "arrays of any one library)"
            )
        else:
            other = True
    if other or not tensors:
        _call(func, {n: _to_array(v) if n in tensors else v for n, v in params.items()})
        raise TypeError(f"convcore.torch.{func.__name__}: {', '.join(names)} must be tensors")
    _check_tensors(func.__name__, tensors)
    return next(iter(tensors.values())).device


def _operator(func, function, arrays: tuple[str, ...]):
    """The public operator: ``func``'s signature, ``function`` (an autograd Function) inside."""
    sig = inspect.signature(func)

    def operator(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        params = dict(bound.arguments)
        device = _prepare(func, params, arrays)
        options = {n: v for n, v in params.items() if n not in arrays}
        call = _Call(func, arrays, options, device)
        return function.apply(call, *(params[n] for n in arrays))

    operator.__name__ = operator.__qualname__ = func.__name__
    operator.__module__ = __name__
    operator.__signature__ = sig
    operator.__doc__ = _doc(func)
    return operator


def _doc(func) -> str:
    name = func.__name__
    return (
        f"convcore.{name} for torch tensors, differentiable by autograd.\n\n"
        f"The parameters, defaults, results and errors are those of :func:`convcore.{name}`;\n"
        "the arrays are ``torch.Tensor`` s on one device (CPU: through NumPy views; CUDA:\n"
        "through CuPy), the results are new tensors on that device in the input's dtype.\n"
        "The backward pass is convcore's backward operator (see ``docs/torch.md``)."
    )


# ---------------------------------------------------------------------------
# the autograd Functions
# ---------------------------------------------------------------------------
class _Conv(torch.autograd.Function):
    """conv forward; backward: conv_backward (db alone: a sum)."""

    @staticmethod
    def forward(ctx, call, x, weight, bias):
        out = call.forward(x, weight, bias, like=x)
        ctx.call = call
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        call = ctx.call
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        lay = Layout(call.option("layout"), x.ndim - 2)
        return (None, *_backward(call, grad_out, x, weight, need_x, need_w, need_b, lay))


def _backward(call: _Call, grad_out, x, weight, need_x, need_w, need_b, lay: Layout):
    """``(dx, dw, db)`` of a convolution or transposed convolution, None where not needed.

    convcore's backward operator computes the three in one call (there is no
    convcore operator for dx or dw alone), and computing dx or dw alone with the
    other operators was measured slower than the whole backward (the
    32x64x28x28 3x3 layer on the numba backend: dx alone through conv_transpose
    4-5x, dw alone through im2col and a GEMM 2-2.5x the time of all three, on a
    loaded 2-CPU machine).
    So the backward operator runs whenever dx or dw is needed, and ``db`` alone (a
    frozen layer's bias) is a sum of ``grad_out``.
    """
    if need_x or need_w:
        tensors = {"grad_out": grad_out, "x": x, "weight": weight}
        dx, dw, db = call.backward(_BACKWARD[call.func], tensors, x, "bias")
        return dx if need_x else None, dw if need_w else None, db if need_b else None
    return None, None, _bias_grad(grad_out, lay) if need_b else None


def _bias_grad(grad_out, lay: Layout):
    """``grad_out`` summed over every axis but the channels (in float32 for half types)."""
    axes = tuple(i for i in range(grad_out.ndim) if i != lay.channel_axis)
    acc = torch.float32 if grad_out.dtype in (torch.float16, torch.bfloat16) else None
    return grad_out.sum(dim=axes, dtype=acc).to(grad_out.dtype)


class _ConvTranspose(torch.autograd.Function):
    """conv_transpose forward; backward: conv_transpose_backward (db alone: a sum)."""

    @staticmethod
    def forward(ctx, call, x, weight, bias):
        out = call.forward(x, weight, bias, like=x)
        ctx.call = call
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        call = ctx.call
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[1:4]
        lay = Layout(call.option("layout"), x.ndim - 2)
        return (None, *_backward(call, grad_out, x, weight, need_x, need_w, need_b, lay))


class _MaxPool(torch.autograd.Function):
    """max_pool forward (and indices); backward: max_pool_backward."""

    @staticmethod
    def forward(ctx, call, x):
        out = call.forward(x, like=x)
        ctx.call = call
        ctx.save_for_backward(x)
        if isinstance(out, tuple):
            ctx.mark_non_differentiable(out[1])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, *_):
        (x,) = ctx.saved_tensors
        call = ctx.call
        func = _BACKWARD[call.func]
        return None, call.backward(func, {"grad_out": grad_out, "x": x}, x, "return_indices")


class _AvgPool(torch.autograd.Function):
    """avg_pool forward; backward: avg_pool_backward (needs only the input's shape)."""

    @staticmethod
    def forward(ctx, call, x):
        ctx.call = call
        ctx.shape = tuple(x.shape)
        ctx.like = torch.empty((), dtype=x.dtype, device=x.device)
        return call.forward(x, like=x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        call = ctx.call
        func = _BACKWARD[call.func]
        tensors = {"grad_out": grad_out}
        return None, call.backward(func, tensors, ctx.like, input_size=ctx.shape)


class _Im2col(torch.autograd.Function):
    """im2col forward; backward: col2im (its adjoint)."""

    @staticmethod
    def forward(ctx, call, x):
        ctx.call = call
        ctx.shape = tuple(x.shape)
        ctx.like = torch.empty((), dtype=x.dtype, device=x.device)
        return call.forward(x, like=x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cols):
        call = ctx.call
        lay = Layout(call.option("layout"), len(ctx.shape) - 2)
        size = lay.shape_to_first(ctx.shape)[2:]
        return None, call.backward(_api.col2im, {"cols": grad_cols}, ctx.like, input_size=size)


class _Col2im(torch.autograd.Function):
    """col2im forward; backward: :func:`convcore.col2im_backward` (im2col, its adjoint)."""

    @staticmethod
    def forward(ctx, call, cols):
        ctx.call = call
        ctx.like = torch.empty((), dtype=cols.dtype, device=cols.device)
        return call.forward(cols, like=cols)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        return None, ctx.call.backward(_api.col2im_backward, {"grad_out": grad_x}, ctx.like)


_BACKWARD = {
    _api.conv: _api.conv_backward,
    _api.conv1d: _api.conv1d_backward,
    _api.conv2d: _api.conv2d_backward,
    _api.conv3d: _api.conv3d_backward,
    transpose.conv_transpose: transpose.conv_transpose_backward,
    transpose.conv_transpose1d: transpose.conv_transpose1d_backward,
    transpose.conv_transpose2d: transpose.conv_transpose2d_backward,
    transpose.conv_transpose3d: transpose.conv_transpose3d_backward,
    pooling.max_pool: pooling.max_pool_backward,
    pooling.max_pool1d: pooling.max_pool1d_backward,
    pooling.max_pool2d: pooling.max_pool2d_backward,
    pooling.max_pool3d: pooling.max_pool3d_backward,
    pooling.avg_pool: pooling.avg_pool_backward,
    pooling.avg_pool1d: pooling.avg_pool1d_backward,
    pooling.avg_pool2d: pooling.avg_pool2d_backward,
    pooling.avg_pool3d: pooling.avg_pool3d_backward,
}

_CONV = ("x", "weight", "bias")

# ---------------------------------------------------------------------------
# the public operators
# ---------------------------------------------------------------------------
conv = _operator(_api.conv, _Conv, _CONV)
conv1d = _operator(_api.conv1d, _Conv, _CONV)
conv2d = _operator(_api.conv2d, _Conv, _CONV)
conv3d = _operator(_api.conv3d, _Conv, _CONV)
conv_transpose = _operator(transpose.conv_transpose, _ConvTranspose, _CONV)
conv_transpose1d = _operator(transpose.conv_transpose1d, _ConvTranspose, _CONV)
conv_transpose2d = _operator(transpose.conv_transpose2d, _ConvTranspose, _CONV)
conv_transpose3d = _operator(transpose.conv_transpose3d, _ConvTranspose, _CONV)
max_pool = _operator(pooling.max_pool, _MaxPool, ("x",))
max_pool1d = _operator(pooling.max_pool1d, _MaxPool, ("x",))
max_pool2d = _operator(pooling.max_pool2d, _MaxPool, ("x",))
max_pool3d = _operator(pooling.max_pool3d, _MaxPool, ("x",))
avg_pool = _operator(pooling.avg_pool, _AvgPool, ("x",))
avg_pool1d = _operator(pooling.avg_pool1d, _AvgPool, ("x",))
avg_pool2d = _operator(pooling.avg_pool2d, _AvgPool, ("x",))
avg_pool3d = _operator(pooling.avg_pool3d, _AvgPool, ("x",))
im2col = _operator(_api.im2col, _Im2col, ("x",))
col2im = _operator(_api.col2im, _Col2im, ("cols",))


# ---------------------------------------------------------------------------
# a module
# ---------------------------------------------------------------------------
class Conv2d(torch.nn.Conv2d):
    """:class:`torch.nn.Conv2d` whose forward pass is :func:`conv2d` (convcore's).

    Takes :class:`torch.nn.Conv2d`'s arguments (``in_channels, out_channels,
    kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
    padding_mode="zeros", device=None, dtype=None``), its initialisation and its
    parameters (a ``state_dict`` moves between the two), plus ``backend=`` (see
    :func:`convcore.use_backend`).  Only ``padding_mode="zeros"`` is supported.
    """

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(
                f"padding_mode={self.padding_mode!r} is not supported by convcore.torch.Conv2d; "
                "it pads with zeros only (padding_mode='zeros')"
            )
        self.backend = backend

    def forward(self, input):
        return conv2d(
            input,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.backend is None else f"{extra}, backend={self.backend!r}"
