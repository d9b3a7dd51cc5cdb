"""Convolution geometry: one place that turns user options into concrete sizes.

Everything that depends on ``kernel_size``, ``stride``, ``padding`` and ``dilation``
is computed here, once, and carried to the kernels in a frozen
:class:`ConvGeometry`.  The module is pure Python: it imports no array library.

Padding is stored as ``2 * nd`` numbers in ``(before, after)`` order per spatial
axis.  For two spatial axes that is ``(top, bottom, left, right)``, which maps one
to one onto MATLAB/MatConvNet's ``[T B L R]``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

__all__ = [
    "ConvGeometry",
    "conv_geometry",
    "conv_output_size",
    "normalize_padding",
    "normalize_tuple",
]

_SPATIAL_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _as_int(value, name: str) -> int:
    """Return ``value`` as a Python int, rejecting bools, floats and strings."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        ) from None


def _is_sequence(value) -> bool:
    """True for lists, tuples and 1-D arrays; False for scalars (incl. NumPy ints)."""
    if isinstance(value, (str, bytes)):
        return False
    ndim = getattr(value, "ndim", None)  # NumPy (and other) arrays and array scalars
    if ndim is not None:
        return ndim > 0
    return isinstance(value, Sequence)


def normalize_tuple(value, nd: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Normalise an int or a sequence of ``nd`` ints to a tuple of ``nd`` ints.

    Parameters
    ----------
    value : int or sequence of int
        One number for every spatial axis, or one number per axis.
    nd : int
        Number of spatial axes.
    name : str
        Parameter name used in error messages.
    minimum : int, optional
        Smallest allowed value (1 for sizes, strides and dilations).

    Returns
    -------
    tuple of int

    Raises
    ------
    TypeError
        If an entry is not an integer.
    ValueError
        If the length is wrong or an entry is below ``minimum``.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a sequence of {nd} ints, got {value!r}")
    if _is_sequence(value):
        items = list(value)
        if len(items) != nd:
            raise ValueError(
                f"{name} must be an int or a sequence of {nd} ints, got {value!r} "
                f"with {len(items)} entries"
            )
        out = tuple(_as_int(v, name) for v in items)
    else:
        out = (_as_int(value, name),) * nd
    for v in out:
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum} on every axis, got {value!r}")
    return out


def normalize_padding(padding, nd: int) -> tuple[int, ...] | str:
    """Normalise ``padding`` to ``2 * nd`` ints ``(before0, after0, before1, ...)``.

    Accepted forms: an int (all sides), ``nd`` ints (symmetric per axis),
    ``2 * nd`` ints (``(top, bottom, left, right)`` in 2-D), ``nd`` pairs
    ``((top, bottom), (left, right))``, or the strings ``"valid"`` / ``"same"``
    (case-insensitive).  ``"same"`` is returned as the string ``"same"`` because
    its numbers depend on the input size; see :func:`conv_geometry`.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0,) * (2 * nd)
        if mode == "same":
            return "same"
        raise ValueError(f"padding must be an int, a sequence, 'valid' or 'same', got {padding!r}")
    if _is_sequence(padding):
        items = list(padding)
        if len(items) == nd and all(_is_sequence(p) for p in items):
            flat = []
            for p in items:
                if len(p) != 2:
                    raise ValueError(
                        f"padding given as pairs needs (before, after) per axis, got {padding!r}"
                    )
                flat.extend(p)
            items = flat
        if len(items) == nd:
            per_axis = [_as_int(p, "padding") for p in items]
            out = tuple(p for p in per_axis for _ in range(2))
        elif len(items) == 2 * nd:
            out = tuple(_as_int(p, "padding") for p in items)
        else:
            expected = (
                "an int, 2 ints (per axis) or 4 ints (top, bottom, left, right)"
                if nd == 2
                else f"an int, {nd} ints or {2 * nd} ints"
            )
            raise ValueError(f"padding must be {expected}, 'valid' or 'same', got {padding!r}")
    else:
        out = (_as_int(padding, "padding"),) * (2 * nd)
    if any(p < 0 for p in out):
        raise ValueError(f"padding must be >= 0 on every side, got {padding!r}")
    return out


def _same_padding(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    # TensorFlow / JAX "SAME": output = ceil(size / stride), extra pad goes after.
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class ConvGeometry:
    """Fully resolved geometry of one convolution (any number of spatial axes).

    Attributes
    ----------
    input_size : tuple of int
        Spatial size of the (unpadded) input, e.g. ``(H, W)``.
    kernel_size : tuple of int
        ``(KH, KW)``.
    stride, dilation : tuple of int
        Per spatial axis.
    padding : tuple of int
        ``(before, after)`` per axis, flattened: ``(top, bottom, left, right)`` in 2-D.
    output_size : tuple of int
        ``(Ho, Wo)``, floored as in the seed.
    """

    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_size: tuple[int, ...]

    @property
    def nd(self) -> int:
        """Number of spatial axes."""
        return len(self.kernel_size)

    @property
    def pad_before(self) -> tuple[int, ...]:
        return self.padding[0::2]

    @property
    def pad_after(self) -> tuple[int, ...]:
        return self.padding[1::2]

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(s + b + a for s, b, a in zip(self.input_size, self.pad_before, self.pad_after))

    @property
    def effective_kernel_size(self) -> tuple[int, ...]:
        """Extent of the dilated kernel: ``dilation * (k - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @property
    def kernel_numel(self) -> int:
        return prod(self.kernel_size)

    @property
    def output_numel(self) -> int:
        return prod(self.output_size)

    @property
    def is_pointwise(self) -> bool:
        """True when im2col is the identity (1x1 kernel, stride 1, no padding)."""
        return (
            all(k == 1 for k in self.kernel_size)
            and all(s == 1 for s in self.stride)
            and not any(self.padding)
        )


def conv_geometry(
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    kernel_name: str = "kernel_size",
) -> ConvGeometry:
    """Validate the options and resolve them against an input size.

    Parameters
    ----------
    input_size : sequence of int
        Spatial size of the input, ``(H, W)`` for 2-D.  Its length sets the
        number of spatial axes.
    kernel_size : int or sequence of int
    stride, dilation : int or sequence of int, optional
        Positive, per axis.
    padding : int, sequence of int, "valid" or "same", optional
        See :func:`normalize_padding`.  ``"same"`` follows TensorFlow/JAX: the
        output has ``ceil(input / stride)`` entries per axis and an odd total pad
        puts the extra row/column at the bottom/right.
    kernel_name : str, optional
        How error messages call the kernel size (``"weight kernel (KH, KW)"`` when
        it comes from a weight array).

    Returns
    -------
    ConvGeometry

    Raises
    ------
    TypeError, ValueError
        Naming the offending parameter, its value and what was expected.
    """
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
    k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    if pads == "same":
        pads = tuple(p for s, k, st in zip(size, k_eff, strides) for p in _same_padding(s, k, st))
    names = _SPATIAL_NAMES.get(nd, tuple(f"axis {i}" for i in range(nd)))
    out = []
    for i in range(nd):
        padded = size[i] + pads[2 * i] + pads[2 * i + 1]
        if k_eff[i] > padded:
            raise ValueError(
                f"{kernel_name} {kernel!r} with dilation {dilations!r} spans {k_eff[i]} along "
                f"the {names[i]} axis, larger than the padded input size {padded} "
                f"(input {size[i]} + padding {pads[2 * i]} + {pads[2 * i + 1]})"
            )
        out.append((padded - k_eff[i]) // strides[i] + 1)
    return ConvGeometry(size, kernel, strides, pads, dilations, tuple(out))


def conv_output_size(input_size, kernel_size, *, stride=1, padding=0, dilation=1):
    """Spatial output size of a convolution: ``floor((H + pads - d*(k-1) - 1) / s) + 1``.

    >>> conv_output_size((227, 227), 11, stride=4)
    (55, 55)
    >>> conv_output_size((7, 7), 3, stride=2, padding="same")
    (4, 4)
    """
    return conv_geometry(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation
    ).output_size
