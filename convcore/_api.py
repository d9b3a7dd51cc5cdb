"""Public functions: validate, infer the namespace, pick a backend, call its kernel.

Three things are handled here once, for every backend:

* **Spatial rank.**  ``im2col``, ``col2im``, ``conv`` and ``conv_backward`` take
  1, 2 or 3 spatial axes (any number, where the backend declares it).  A
  backend that declares 2-D but not 1-D kernels runs a 1-D call as 2-D with a
  height of 1 (a reshape, no copy).
* **Layout.**  ``layout="NHWC"`` (channels last; ``"NWC"``, ``"NDHWC"``) or any
  order of the letters ``N``, ``C`` and the spatial letters: the kernels see a
  channels-first view (``permute_dims``, no copy) and the result is handed back
  as a view in the caller's layout.  Backends that need contiguous input copy it.
* **Half precision.**  float16 / bfloat16 input on a backend that declares
  float32 but not the half type is computed in float32 (accumulation included)
  and rounded back once at the end.
"""

from __future__ import annotations

import operator
from math import prod
from typing import TYPE_CHECKING, Any

import array_api_compat

from ._config import AUTO, requested_backend
from ._registry import device_kind, dtype_name, get_registry, namespace_name
from .errors import BackendCapabilityError, BackendUnavailableError
from .geometry import ConvGeometry, conv_geometry

if TYPE_CHECKING:
    pass

Array = Any
ArrayNamespace = Any

__all__ = [
    "col2im",
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
    for label, size in zip(labels, shape):
        if label == "N":
            continue
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
# layouts
# ---------------------------------------------------------------------------
_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}
_CHANNELS_FIRST = {nd: "NC" + letters for nd, letters in _SPATIAL_LETTERS.items()}
_CHANNELS_LAST = {nd: "N" + letters + "C" for nd, letters in _SPATIAL_LETTERS.items()}


class _Layout:
    """Where N, C and the spatial axes sit in the caller's arrays.

    ``perm`` takes a caller array to channels-first ``(N, C, *spatial)`` with
    ``permute_dims`` (a view); ``inverse`` takes a channels-first result back.
    Both are None for channels-first input, which is passed through untouched.
    """

    def __init__(self, layout, nd: int, name: str = "layout"):
        if not isinstance(layout, str):
            raise TypeError(f"{name} must be a string such as 'NCHW' or 'NHWC', got {layout!r}")
        spelled = layout.strip()
        key = spelled.lower()
        if key in ("channels_first", "ncl"):
            letters = _CHANNELS_FIRST.get(nd, "")
        elif key in ("channels_last", "nlc"):
            letters = _CHANNELS_LAST.get(nd, "")
        else:
            letters = spelled.upper()
        spatial = _SPATIAL_LETTERS.get(nd)
        expected = (
            f"{_CHANNELS_FIRST[nd]!r}, {_CHANNELS_LAST[nd]!r}, 'channels_first', "
            f"'channels_last', or another order of the letters N, C, {', '.join(spatial)}"
            if spatial
            else "'channels_first' (more than 3 spatial axes have no letters)"
        )
        ok = (
            spatial is not None
            and len(letters) == nd + 2
            and sorted(letters) == sorted("NC" + spatial)
            and [c for c in letters if c in spatial] == list(spatial)
        ) or (key == "channels_first")
        if not ok:
            raise ValueError(
                f"{name}={layout!r} does not describe an array with {nd} spatial "
                f"ax{'is' if nd == 1 else 'es'}; expected {expected}"
            )
        if key == "channels_first" and spatial is None:
            letters = "NC" + "".join(f"{i}" for i in range(nd))
        self.letters = letters
        self.nd = nd
        order = [letters.index("N"), letters.index("C")]
        order += [i for i, c in enumerate(letters) if c not in "NC"]
        identity = order == list(range(nd + 2))
        self.perm = None if identity else tuple(order)
        self.inverse = None if identity else tuple(order.index(i) for i in range(nd + 2))

    @property
    def labels(self) -> str:
        """``"N, H, W, C"``-style labels for error messages."""
        return ", ".join(self.letters)

    def shape_from_first(self, shape) -> tuple:
        """The caller-layout shape of a channels-first shape."""
        return tuple(shape) if self.inverse is None else tuple(shape[i] for i in self.inverse)

    def to_first(self, xp, a):
        return a if self.perm is None else xp.permute_dims(a, self.perm)

    def from_first(self, xp, a):
        return a if self.inverse is None else xp.permute_dims(a, self.inverse)


def _spatial_rank(name: str, arr, minimum: int = 3) -> int:
    if arr.ndim < minimum:
        raise ValueError(
            f"{name} must have a batch axis, a channel axis and at least one spatial axis "
            f"(3-D for 1-D data, 4-D for images, 5-D for volumes), got shape {tuple(arr.shape)}"
        )
    return arr.ndim - 2


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------
_HALF = ("float16", "bfloat16")


class _Plan:
    """How a backend runs one call: its kernel, compute dtype and spatial rank."""

    __slots__ = ("compute_dtype", "kernel", "lift", "name")

    def __init__(self, name, kernel, compute_dtype, lift):
        self.name = name
        self.kernel = kernel
        self.compute_dtype = compute_dtype  # None: the input's own dtype
        self.lift = lift  # True: a 1-D call runs as 2-D with a height of 1


def _declared(spec, op: str, dtype: str, nd: int):
    """``(compute_dtype or None, lift)`` when ``spec`` can run this, else the reason."""
    dtypes = spec.dtypes_for(op)
    if dtype in dtypes:
        compute = None
    elif dtype in _HALF and "float32" in dtypes:
        compute = "float32"
    else:
        return f"it does not support dtype {dtype} for {op} (it supports {sorted(dtypes)})"
    dims = spec.spatial_dims
    if dims is None or nd in dims:
        lift = False
    elif nd == 1 and 2 in dims:
        lift = True
    else:
        return (
            f"it does not support {nd} spatial axes (it supports "
            f"{', '.join(f'{d}-D' for d in sorted(dims))})"
        )
    return compute, lift


def _problem(registry, name, op, xp_name, device, dtype, nd):
    reason = registry.capability_problem(name, op, xp_name, device, None)
    if reason is not None:
        return reason
    return _declared(registry.spec(name), op, dtype, nd)


def _select(op: str, xp, ref, backend: str | None, nd: int = 2) -> _Plan:
    name, found = _choose(op, xp, ref, backend, nd)
    kernel = get_registry().kernels(name)[op]
    return _Plan(name, kernel, *found)


def _choose(op: str, xp, ref, backend: str | None, nd: int = 2):
    """The backend that runs ``op`` on ``ref`` and its plan, without loading its kernels."""
    name, source = requested_backend(backend)
    registry = get_registry()
    xp_name = namespace_name(xp)
    device = device_kind(xp_name, ref)
    dtype = dtype_name(xp, ref.dtype)
    rank = "" if nd == 2 else f" with {nd} spatial ax{'is' if nd == 1 else 'es'}"
    what = f"{op} on {xp_name} {dtype} arrays{rank} on {device!r}"
    if name == AUTO:
        declined = []
        for candidate in registry.names():
            # Declared capabilities first: checking them imports nothing, so a backend
            # that cannot take this input (cupy for NumPy arrays) is never probed.
            found = _problem(registry, candidate, op, xp_name, device, dtype, nd)
            if not isinstance(found, str):
                reason = registry.unavailable_reason(candidate)
                if reason is None:
                    return candidate, found
                found = reason
            declined.append(f"{candidate}: {found}")
        raise BackendCapabilityError(f"no backend can run {what}; " + "; ".join(declined))
    reason = registry.unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend {name!r} (selected by {source}) is unavailable: {reason}"
        )
    found = _problem(registry, name, op, xp_name, device, dtype, nd)
    if isinstance(found, str):
        raise BackendCapabilityError(
            f"backend {name!r} (selected by {source}) cannot run {what}: {found}"
        )
    return name, found


def resolve_backend(op: str, x: Array, /, *, backend: str | None = None) -> str:
    """Name of the backend that would run ``op`` on ``x`` (``"conv"``, ``"im2col"``, ...).

    Applies the full selection chain (keyword, context, :func:`set_backend`,
    ``CONVCORE_BACKEND``, configuration files, ``auto``) and raises the same
    errors the operation itself would.  ``x`` is channels-first; its number of
    spatial axes is ``x.ndim - 2``.
    """
    xp = _namespace(x=x)
    nd = max(1, x.ndim - 2)
    return _choose(op, xp, x, backend, nd)[0]


def _cast(xp, plan: _Plan, *arrays):
    if plan.compute_dtype is None:
        return arrays
    target = getattr(xp, plan.compute_dtype)
    return tuple(None if a is None else xp.astype(a, target) for a in arrays)


def _uncast(xp, plan: _Plan, dtype, result):
    if plan.compute_dtype is None:
        return result
    return xp.astype(result, dtype)


def _lift(xp, a, insert_at: int = 2):
    """``(N, C, W)`` -> ``(N, C, 1, W)`` (a reshape: no copy)."""
    shape = tuple(a.shape)
    return xp.reshape(a, (*shape[:insert_at], 1, *shape[insert_at:]))


def _lift_geometry(geom: ConvGeometry) -> ConvGeometry:
    """The 2-D geometry (height 1) that a 1-D geometry runs as."""
    return conv_geometry(
        (1, *geom.input_size),
        (1, *geom.kernel_size),
        stride=(1, *geom.stride),
        padding=(0, 0, *geom.padding),
        dilation=(1, *geom.dilation),
    )


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
    xp = _namespace(x=x)
    nd = _spatial_rank("x", x)
    lay = _Layout(layout, nd)
    _check_ndim("x", x, lay.labels)
    _check_nonempty("x", tuple(x.shape), lay.labels)
    x = lay.to_first(xp, x)
    geom = conv_geometry(
        tuple(x.shape[2:]), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    n, c = x.shape[0], x.shape[1]
    plan = _select("im2col", xp, x, backend, nd)
    if n == 0:
        return _zeros(xp, (0, c * geom.kernel_numel, geom.output_numel), x)
    (xc,) = _cast(xp, plan, x)
    if plan.lift:
        xc, geom = _lift(xp, xc), _lift_geometry(geom)
    return _uncast(xp, plan, x.dtype, plan.kernel(xp, xc, geom))


def col2im(
    cols: Array,
    /,
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout: str = "channels_first",
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
    kernel_size, stride, padding, dilation, backend
        As for :func:`im2col`; they must describe the same geometry.
    layout : str, optional
        Axis order of the result, as for :func:`im2col`.

    Returns
    -------
    x : array, shape (N, C, H, W)
        Padding rows and columns are dropped after summing.  In ``layout``'s
        axis order.

    See Also
    --------
    reshape_gemm_output : the plain reshape the seed document calls "col2im".
    """
    xp = _namespace(cols=cols)
    _check_ndim("cols", cols, "N, C*KH*KW, L")
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(
            f"input_size must be a tuple of spatial sizes such as (H, W), got {input_size!r}"
        )
    nd = len(input_size)
    if nd < 1:
        raise ValueError(f"input_size must name at least one spatial size, got {input_size!r}")
    lay = _Layout(layout, nd)
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
    plan = _select("col2im", xp, cols, backend, nd)
    if n == 0:
        return lay.from_first(xp, _zeros(xp, (0, rows // k, *geom.input_size), cols))
    (cc,) = _cast(xp, plan, cols)
    if plan.lift:
        out = plan.kernel(xp, cc, _lift_geometry(geom))
        out = xp.reshape(out, (n, rows // k, *geom.input_size))
    else:
        out = plan.kernel(xp, cc, geom)
    return lay.from_first(xp, _uncast(xp, plan, cols.dtype, out))


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
def _conv_setup(
    func, x, weight, bias, groups, stride, padding, dilation, layout, nd, grad_out=None
):
    """Validate a convolution call; return ``xp, geom, groups, layout`` and the
    channels-first views of ``x`` and ``grad_out``."""
    xp = _namespace(x=x, weight=weight, bias=bias, grad_out=grad_out)
    if nd is None:
        nd = _spatial_rank("x", x)
    lay = _Layout(layout, nd)
    spatial = _SPATIAL_LETTERS.get(nd, "")
    _check_ndim("x", x, lay.labels)
    kernel_labels = ", ".join(f"K{c}" for c in spatial) if spatial else f"{nd} kernel sizes"
    _check_ndim("weight", weight, f"F, C/groups, {kernel_labels}")
    _check_floating(xp, "x", x, func)
    _check_same(xp, "x", x, weight=weight, bias=bias, grad_out=grad_out)
    groups = _check_groups(groups)
    _check_nonempty("x", tuple(x.shape), lay.labels)
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
    geom = conv_geometry(
        shape[2:],
        tuple(weight.shape[2:]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        kernel_name=f"weight's kernel size ({kernel_labels})",
    )
    if grad_out is not None:
        expected = lay.shape_from_first((shape[0], f, *geom.output_size))
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"grad_out must have shape {expected} ({lay.labels} with C = F filters and the "
                f"output size {geom.output_size}), got {tuple(grad_out.shape)}"
            )
        grad_out = lay.to_first(xp, grad_out)
    return xp, geom, groups, lay, x, grad_out


def _run_conv(func, x, weight, bias, stride, padding, dilation, groups, layout, backend, nd):
    xp, geom, groups, lay, xf, _ = _conv_setup(
        func, x, weight, bias, groups, stride, padding, dilation, layout, nd
    )
    nd = geom.nd
    plan = _select("conv", xp, xf, backend, nd)
    n, f = xf.shape[0], weight.shape[0]
    if n == 0:
        return lay.from_first(xp, _zeros(xp, (0, f, *geom.output_size), x))
    xc, wc, bc = _cast(xp, plan, xf, weight, bias)
    if plan.lift:
        out = plan.kernel(xp, _lift(xp, xc), _lift(xp, wc), bc, _lift_geometry(geom), groups)
        out = xp.reshape(out, (n, f, *geom.output_size))
    else:
        out = plan.kernel(xp, xc, wc, bc, geom, groups)
    return lay.from_first(xp, _uncast(xp, plan, x.dtype, out))


def _run_conv_backward(
    func, grad_out, x, weight, stride, padding, dilation, groups, layout, backend, nd
):
    xp, geom, groups, lay, xf, gf = _conv_setup(
        func, x, weight, None, groups, stride, padding, dilation, layout, nd, grad_out=grad_out
    )
    plan = _select("conv_backward", xp, xf, backend, geom.nd)
    if xf.shape[0] == 0:
        return (
            _zeros(xp, tuple(x.shape), x),
            _zeros(xp, tuple(weight.shape), x),
            _zeros(xp, (weight.shape[0],), x),
        )
    gc, xc, wc = _cast(xp, plan, gf, xf, weight)
    if plan.lift:
        dx, dw, db = plan.kernel(
            xp, _lift(xp, gc), _lift(xp, xc), _lift(xp, wc), _lift_geometry(geom), groups
        )
        dx, dw = xp.reshape(dx, tuple(xf.shape)), xp.reshape(dw, tuple(weight.shape))
    else:
        dx, dw, db = plan.kernel(xp, gc, xc, wc, geom, groups)
    dx, dw, db = (_uncast(xp, plan, x.dtype, a) for a in (dx, dw, db))
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
        "conv", x, weight, bias, stride, padding, dilation, groups, layout, backend, None
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
    stride, padding, dilation, groups, layout, backend
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
        "conv1d", x, weight, bias, stride, padding, dilation, groups, layout, backend, 1
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
        "conv2d", x, weight, bias, stride, padding, dilation, groups, layout, backend, 2
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
        "conv3d", x, weight, bias, stride, padding, dilation, groups, layout, backend, 3
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
    )
