"""Window geometry: one place that turns user options into concrete sizes.

Every operator of convcore slides a window over an image: a convolution and
:func:`convcore.im2col` (floor rule), pooling (floor or one of two ceil rules,
PyTorch's ``ceil_mode=True`` and Chainer's ``cover_all``) and the transposed
convolution (the input gradient of a convolution, sized by ``output_padding``).
All of them are resolved here, once, into the same frozen :class:`ConvGeometry`
that the kernels take, by :func:`conv_geometry`, :func:`pool_geometry` and
:func:`conv_transpose_geometry`; :func:`conv_output_size`,
:func:`pool_output_size` and :func:`conv_transpose_output_size` give the
output sizes alone.  The module is pure Python: it imports no array library.

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
    "CEIL_MODES",
    "ConvGeometry",
    "conv_geometry",
    "conv_output_size",
    "conv_transpose_geometry",
    "conv_transpose_output_size",
    "normalize_padding",
    "normalize_tuple",
    "pool_geometry",
    "pool_output_size",
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


def _padding_forms(nd: int, *strings: str) -> str:
    """``"an int, 2 ints (per axis), 4 ints (top, bottom, left, right) or 'valid'"``-style."""
    if nd == 1:
        forms = ["an int", "(before, after)"]
    elif nd == 2:
        forms = ["an int", "2 ints (per axis)", "4 ints (top, bottom, left, right)"]
    else:
        forms = ["an int", f"{nd} ints (per axis)", f"{2 * nd} ints (before, after per axis)"]
    forms += [repr(text) for text in strings]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def normalize_padding(padding, nd: int, *, same: bool = True) -> tuple[int, ...] | str:
    """Normalise ``padding`` to ``2 * nd`` ints ``(before0, after0, before1, ...)``.

    Accepted forms: an int (all sides), ``nd`` ints (symmetric per axis),
    ``2 * nd`` ints (``(top, bottom, left, right)`` in 2-D), ``nd`` pairs
    ``((top, bottom), (left, right))``, or the strings ``"valid"`` / ``"same"``
    (case-insensitive).  ``"same"`` is returned as the string ``"same"`` because
    its numbers depend on the input size; see :func:`conv_geometry`.  With
    ``same=False`` (pooling, transposed convolution) error messages do not offer
    ``"same"``; the caller refuses it with its reason.
    """
    strings = ("valid", "same") if same else ("valid",)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0,) * (2 * nd)
        if mode == "same":
            return "same"
        raise ValueError(f"padding must be {_padding_forms(nd, *strings)}, got {padding!r}")
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
            raise ValueError(f"padding must be {_padding_forms(nd, *strings)}, got {padding!r}")
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
    """Fully resolved geometry of the windows of one operator (any number of spatial axes).

    The windows of a convolution, of :func:`convcore.im2col`, of a pooling and of
    the convolution that a transposed convolution transposes: ``output_size``
    windows per axis, ``stride`` apart, each ``kernel_size`` taps ``dilation``
    apart, over the ``input_size`` image padded by ``padding``.  Every window
    lies inside the padded image, so the kernels need nothing else.

    Attributes
    ----------
    input_size : tuple of int
        Spatial size of the (unpadded) image, e.g. ``(H, W)``.  For a transposed
        convolution this is its *output* size (see :func:`conv_transpose_geometry`).
    kernel_size : tuple of int
        ``(KH, KW)``.
    stride, dilation : tuple of int
        Per spatial axis.
    padding : tuple of int
        ``(before, after)`` per axis, flattened: ``(top, bottom, left, right)`` in 2-D.
        For a ceil-mode pooling the after sides include the ``overhang``.
    output_size : tuple of int
        Number of windows per axis, ``(Ho, Wo)``.
    overhang : tuple of int
        Per axis, how many of the after-padding cells are not padding but the room a
        ceil-mode pooling window hangs over the edge with (zeros for a convolution).
        Kernels treat them as padding; the pooling divisor does not count them.
    output_padding : tuple of int
        Per axis, the transposed convolution's ``output_padding`` (zeros otherwise).
    """

    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_size: tuple[int, ...]
    overhang: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()

    def __post_init__(self):
        zeros = (0,) * len(self.kernel_size)
        for name in ("overhang", "output_padding"):
            if not getattr(self, name):
                object.__setattr__(self, name, zeros)

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
    def requested_padding(self) -> tuple[int, ...]:
        """``padding`` without the ceil overhang: the padding the caller asked for."""
        return tuple(
            p - (self.overhang[i // 2] if i % 2 else 0) for i, p in enumerate(self.padding)
        )

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

    def lifted(self) -> ConvGeometry:
        """The same windows with a leading spatial axis of size 1 (1-D run as 2-D)."""
        return ConvGeometry(
            (1, *self.input_size),
            (1, *self.kernel_size),
            (1, *self.stride),
            (0, 0, *self.padding),
            (1, *self.dilation),
            (1, *self.output_size),
            (0, *self.overhang),
            (0, *self.output_padding),
        )


def _axis_names(nd: int) -> tuple[str, ...]:
    return _SPATIAL_NAMES.get(nd, tuple(f"axis {i}" for i in range(nd)))


def _spatial_size(input_size, name: str = "input_size") -> tuple[int, ...]:
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"{name} must be a sequence of ints, got {input_size!r}")
    nd = len(input_size)
    if nd == 0:
        raise ValueError(f"{name} must have at least one spatial axis, got ()")
    return normalize_tuple(input_size, nd, name, minimum=1)


def _window_options(size, kernel_size, stride, dilation, kernel_name):
    nd = len(size)
    kernel = normalize_tuple(kernel_size, nd, kernel_name, minimum=1)
    strides = normalize_tuple(stride, nd, "stride", minimum=1)
    dilations = normalize_tuple(dilation, nd, "dilation", minimum=1)
    k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    return kernel, strides, dilations, k_eff


def conv_geometry(
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    kernel_name: str = "kernel_size",
) -> ConvGeometry:
    """Validate the options of a convolution and resolve them against an input size.

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
        ``output_size`` per axis is ``floor((size + before + after - e) / stride) + 1``
        with ``e = dilation * (kernel - 1) + 1``.

    Raises
    ------
    TypeError, ValueError
        Naming the offending parameter, its value and what was expected.
    """
    size = _spatial_size(input_size)
    nd = len(size)
    kernel, strides, dilations, k_eff = _window_options(
        size, kernel_size, stride, dilation, kernel_name
    )
    pads = normalize_padding(padding, nd)
    if pads == "same":
        pads = tuple(p for s, k, st in zip(size, k_eff, strides) for p in _same_padding(s, k, st))
    names = _axis_names(nd)
    out = []
    for i in range(nd):
        before, after = pads[2 * i], pads[2 * i + 1]
        if k_eff[i] > size[i] + before + after:
            dilated = f" with dilation {dilations!r}" if any(d > 1 for d in dilations) else ""
            raise ValueError(
                f"{kernel_name} {kernel!r}{dilated} spans {k_eff[i]} along "
                f"the {names[i]} axis, larger than the padded input size "
                f"{size[i] + before + after} (input {size[i]} + padding {before} + {after})"
            )
        out.append((size[i] + before + after - k_eff[i]) // strides[i] + 1)
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


#: The output-size rules of pooling: ``False`` (floor), ``True`` (PyTorch's ceil)
#: and ``"cover_all"`` (Chainer's ``cover_all``, the seed document's pooling rule).
CEIL_MODES = (False, True, "cover_all")


def _ceil_mode(value) -> bool | str:
    """``ceil_mode`` validated: False, True (NumPy bools too) or ``"cover_all"``."""
    expected = "False, True or 'cover_all'"
    if isinstance(value, str):
        if value == "cover_all":
            return value
        if value == "seed":
            raise ValueError(
                "ceil_mode='seed' is now called 'cover_all' (Chainer's name for the same "
                "rule, the seed document's pooling windows); pass ceil_mode='cover_all'"
            )
        raise ValueError(f"ceil_mode must be {expected}, got {value!r}")
    if isinstance(value, bool):
        return value
    if type(value).__name__ in ("bool_", "bool") and hasattr(value, "dtype"):
        return bool(value)
    raise TypeError(f"ceil_mode must be {expected}, got {value!r}")


def pool_geometry(
    input_size,
    kernel_size,
    *,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    limit_padding: bool = True,
    kernel_name: str = "kernel_size",
) -> ConvGeometry:
    """Validate the options of a pooling and resolve them against an input size.

    Parameters
    ----------
    input_size : sequence of int
        Spatial size of the input; its length sets the number of spatial axes.
    kernel_size : int or sequence of int
    stride : int or sequence of int, optional
        Defaults to ``kernel_size`` (PyTorch's rule).
    padding : int, sequence of int, "valid" or "same", optional
        As for :func:`conv_geometry`.  ``"same"`` is TensorFlow's rule:
        ``ceil(size / stride)`` windows per axis, the padding split evenly with
        the odd cell after; it needs ``ceil_mode=False`` and is not bound by
        ``limit_padding`` (every window still holds an input cell).
    dilation : int or sequence of int, optional
    ceil_mode : False, True or "cover_all", optional
        The output-size rule per axis, with ``e = dilation*(kernel - 1) + 1`` and
        ``p_b``, ``p_a`` the padding before and after:

        * ``False``: ``floor((H + p_b + p_a - e) / stride) + 1``;
        * ``True`` (PyTorch): ``ceil((H + p_b + p_a - e) / stride) + 1``, minus one
          when the last window would start at or beyond ``H + p_b`` (in the
          after-padding);
        * ``"cover_all"``: ``ceil((H + p_b + p_a - e) / stride) + 1``, no window
          dropped (Chainer's ``cover_all=True``, the seed document's pooling rule).

        A ceil window that hangs over the after edge gets the missing cells as
        ``overhang``: the geometry's ``padding`` includes it.
    limit_padding : bool, optional
        Enforce PyTorch's rule ``padding <= kernel_size // 2`` on every side (the
        pooling functions do); False for the seed's pooling columns, which take any
        padding.
    kernel_name : str, optional
        How error messages call the kernel size.

    Returns
    -------
    ConvGeometry

    Raises
    ------
    TypeError, ValueError
        Naming the offending parameter, its value and what was expected.

    Examples
    --------
    >>> g = pool_geometry((5, 5), 2, padding=1, ceil_mode="cover_all")
    >>> g.output_size, g.padding, g.overhang
    ((4, 4), (1, 2, 1, 2), (1, 1))
    >>> pool_geometry((5, 6), 3, stride=2, padding="same").padding
    (1, 1, 0, 1)
    """
    size = _spatial_size(input_size)
    nd = len(size)
    kernel, strides, dilations, k_eff = _window_options(
        size, kernel_size, kernel_size if stride is None else stride, dilation, kernel_name
    )
    pads = normalize_padding(padding, nd)
    mode = _ceil_mode(ceil_mode)
    names = _axis_names(nd)
    if pads == "same":
        if mode is not False:
            raise ValueError(
                f"ceil_mode must be False with padding='same' (the padding is chosen so that "
                f"the windows fit, output = ceil(size / stride)), got ceil_mode={ceil_mode!r}"
            )
        pads = tuple(p for n, k, st in zip(size, k_eff, strides) for p in _same_padding(n, k, st))
    elif limit_padding:
        for i, k in enumerate(kernel):
            if max(pads[2 * i], pads[2 * i + 1]) > k // 2:
                raise ValueError(
                    f"padding must be at most half the kernel size on every side (PyTorch's "
                    f"rule, pad <= kernel_size // 2), got padding={padding!r} with "
                    f"kernel_size={kernel} ({k} // 2 = {k // 2} along the {names[i]} axis)"
                )
    out, full, overhang = [], list(pads), []
    for i in range(nd):
        before, after, s = pads[2 * i], pads[2 * i + 1], strides[i]
        span = size[i] + before + after - k_eff[i]
        if mode is False:
            n = span // s + 1 if span >= 0 else 0
        else:
            n = -(-span // s) + 1
            # PyTorch drops a last window that starts in the after-padding; cover_all keeps it.
            if mode is True and (n - 1) * s - before >= size[i]:
                n -= 1
        if n < 1:
            raise ValueError(
                f"{kernel_name} {kernel} with dilation {dilations} spans {k_eff[i]} along the "
                f"{names[i]} axis, more than the input's {size[i]} plus padding {before} + "
                f"{after}: no window fits (ceil_mode={mode!r})"
            )
        extra = max(0, (n - 1) * s + k_eff[i] - (size[i] + before + after))
        full[2 * i + 1] += extra
        out.append(n)
        overhang.append(extra)
    return ConvGeometry(size, kernel, strides, tuple(full), dilations, tuple(out), tuple(overhang))


def pool_output_size(
    input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> tuple[int, ...]:
    """Spatial output size of a max or average pooling (any number of spatial axes).

    The rules are those of :func:`pool_geometry`; ``padding`` is at most
    ``kernel_size // 2`` on every side, as the pooling functions require.

    Examples
    --------
    >>> from convcore import pool_output_size
    >>> pool_output_size((5, 5), 2, padding=1, ceil_mode=True)
    (3, 3)
    >>> pool_output_size((5, 5), 2, padding=1, ceil_mode="cover_all")
    (4, 4)
    >>> pool_output_size((7,), 3, 2, ceil_mode=True)
    (3,)
    """
    return pool_geometry(
        input_size,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    ).output_size


def conv_transpose_geometry(
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    kernel_name: str = "kernel_size",
) -> ConvGeometry:
    """The geometry of a transposed convolution of an ``input_size`` image.

    A transposed convolution is the input gradient of a convolution, so it is
    described by that convolution: the returned geometry's ``input_size`` is the
    transposed convolution's *output* size (PyTorch's formula, with ``2*padding``
    split into its two sides)::

        (H - 1)*stride - before - after + dilation*(K - 1) + output_padding + 1

    and its ``output_size`` (the convolution's windows) is ``input_size`` per axis,
    plus ``output_padding // stride`` windows where ``output_padding >= stride``
    (which PyTorch allows when ``output_padding < dilation``): those windows read
    only output cells no input pixel reaches, and the transposed convolution
    gives them zeros.

    Parameters
    ----------
    input_size : sequence of int
        ``(H, W)`` of the transposed convolution's input.
    kernel_size, stride, dilation : int or sequence of int
    padding : int, sequence of int, "valid" or "same"
        Cropped from the full output, ``(before, after)`` per axis as for
        :func:`conv_geometry`.  ``"valid"`` is 0 (PyTorch's ``padding=0``;
        TensorFlow's ``"VALID"`` adds ``max(stride - kernel, 0)`` cells).
        ``"same"`` gives an output of ``input_size * stride`` per axis, as
        TensorFlow's and JAX's ``"SAME"``: the crop ``e - stride`` (``e`` the
        dilated kernel size) is split evenly with the odd cell after, and where
        the kernel is shorter than the stride the ``stride - e`` missing cells
        become ``output_padding``.  It is the transpose of a convolution with
        ``padding="same"`` on the ``input_size * stride`` image.
    output_padding : int or sequence of int, optional
        Added after the last row/column; smaller than ``stride`` or than
        ``dilation`` on every axis (PyTorch's rule).  Must be 0 with ``"same"``.

    Returns
    -------
    ConvGeometry
        With ``output_padding`` recorded.

    Examples
    --------
    >>> g = conv_transpose_geometry((4, 4), 3, stride=2, padding=1, output_padding=1)
    >>> g.input_size, g.output_size
    ((8, 8), (4, 4))
    >>> g = conv_transpose_geometry((4, 4), (4, 1), stride=2, padding="same")
    >>> g.input_size, g.padding, g.output_padding
    ((8, 8), (1, 1, 0, 0), (0, 1))
    """
    size = _spatial_size(input_size)
    nd = len(size)
    kernel, strides, dilations, k_eff = _window_options(
        size, kernel_size, stride, dilation, kernel_name
    )
    pads = normalize_padding(padding, nd)
    out_pad = normalize_tuple(output_padding, nd, "output_padding", minimum=0)
    if pads == "same":
        if any(out_pad):
            raise ValueError(
                f"output_padding must be 0 with padding='same' (the output size is then "
                f"input_size * stride), got output_padding={output_padding!r}"
            )
        pads, out_pad = _same_transpose_padding(k_eff, strides)
    for op, s, d in zip(out_pad, strides, dilations):
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation on every axis, "
                f"got output_padding={output_padding!r} with stride {strides} and dilation "
                f"{dilations}"
            )
    names = _axis_names(nd)
    image = []
    for i in range(nd):
        before, after = pads[2 * i], pads[2 * i + 1]
        n_out = (size[i] - 1) * strides[i] - before - after + k_eff[i] + out_pad[i]
        if n_out < 1:
            raise ValueError(
                f"padding {padding!r} leaves no output along the {names[i]} axis: "
                f"(input {size[i]} - 1) * stride {strides[i]} - padding {before} - {after} "
                f"+ dilation {dilations[i]} * (kernel {kernel[i]} - 1) + output_padding "
                f"{out_pad[i]} + 1 = {n_out}; it must be >= 1"
            )
        image.append(n_out)
    windows = tuple(
        (o + pads[2 * i] + pads[2 * i + 1] - k_eff[i]) // strides[i] + 1
        for i, o in enumerate(image)
    )
    return ConvGeometry(
        tuple(image), kernel, strides, pads, dilations, windows, output_padding=out_pad
    )


def _same_transpose_padding(k_eff, strides) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """TensorFlow / JAX "SAME" for a transposed convolution: output = input * stride.

    The crop of the full output is the padding of the forward convolution with
    ``padding="same"`` on the ``input * stride`` image: ``e - stride`` split
    evenly, the odd cell after; a kernel shorter than the stride leaves
    ``stride - e`` cells that output_padding adds.
    """
    pads, out_pad = [], []
    for k, s in zip(k_eff, strides):
        total = k - s
        if total >= 0:
            pads += [total // 2, total - total // 2]
            out_pad.append(0)
        else:
            pads += [0, 0]
            out_pad.append(-total)
    return tuple(pads), tuple(out_pad)


def conv_transpose_output_size(
    input_size, kernel_size, *, stride=1, padding=0, output_padding=0, dilation=1
) -> tuple[int, ...]:
    """Spatial output size of a transposed convolution.

    ``(H - 1)*stride - top - bottom + dilation*(KH - 1) + output_padding + 1`` per axis
    (PyTorch's formula, with ``2*padding`` split into the two sides); see
    :func:`conv_transpose_geometry`.

    Examples
    --------
    >>> from convcore import conv_transpose_output_size
    >>> conv_transpose_output_size((4, 4), 3, stride=2, padding=1, output_padding=1)
    (8, 8)
    >>> conv_transpose_output_size((10,), 4, stride=2, padding=1)
    (20,)
    """
    return conv_transpose_geometry(
        input_size,
        kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    ).input_size
