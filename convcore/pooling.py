"""Max and average pooling, 1-D to 3-D in any layout, on the backends' im2col and col2im.

Pooling is im2col followed by a reduction over each column: the maximum or the
mean of every window.  The backward passes put the output gradient back into
the column matrix (a one-hot of the chosen tap per window for max pooling, the
gradient divided by the window's divisor for average pooling) and sum it onto
the image with the backend's col2im.  That sum is a gather on every backend,
so the gradients are deterministic: no atomics, no scatter with duplicate
indices.

A backend may instead implement the operators itself
(:data:`convcore._registry.OPERATOR_KERNELS`; the ``numba`` backend does): the
plan then calls its kernel with the validated, channels-first, padded input,
and ``max_pool_backward`` can take the forward's ``indices`` instead of
recomputing the winners.

The operators go the convolution's way: arguments validated by
:mod:`convcore._validation`, windows resolved by
:func:`convcore.geometry.pool_geometry`, a channels-first view of ``layout``'s
axes, and one :func:`convcore._dispatch.select` plan for the backend ops the
operator runs (:data:`convcore._registry.DERIVED_OPS`), so that a backend that
cannot run all of them is refused before any work, float16/bfloat16 runs in
float32 where the backend does not declare the half type, and 1-D runs as 2-D
where only 2-D kernels are declared.  The reductions are array-API operations
(through array-api-compat): pooling runs on every backend and array namespace
that runs im2col and col2im.

Names, defaults and semantics follow PyTorch's ``torch.nn.functional``
``max_pool1d/2d/3d`` and ``avg_pool1d/2d/3d`` (CPU kernels), including
``ceil_mode``, ``count_include_pad``, ``divisor_override``, the padding limit and
the treatment of NaN.  One rule is added: ``ceil_mode="cover_all"``, Chainer's
name for the seed document's (and convcore.matlab's ``is_conv=False``) plain
ceil.  See ``docs/pooling.md``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import array_api_compat

from ._api import _MEMO_SIZE, _plain
from ._dispatch import Plan, select
from ._padmodes import check_padding_mode, fold, original_index, pad, padded_geometry
from ._registry import namespace_name
from ._validation import Layout, device_of, flag, image_input, zeros
from .geometry import ConvGeometry, normalize_tuple, pool_geometry, pool_output_size

__all__ = [
    "avg_pool",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "avg_pool_backward",
    "max_pool",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "max_pool_backward",
    "pool_output_size",
]

Array = Any
ArrayNamespace = Any

_CHANNELS_FIRST = "channels_first"


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _divisor(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"divisor_override must be a nonzero integer or None, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"divisor_override must be a nonzero integer or None, got {value!r} of type "
            f"{type(value).__name__}"
        ) from None
    if value == 0:
        raise ValueError("divisor_override must be a nonzero integer or None, got 0")
    return value


def _check_grad_out(grad_out, expected, lay: Layout) -> None:
    if tuple(grad_out.shape) != tuple(expected):
        raise ValueError(
            f"grad_out must have the forward output's shape {tuple(expected)} "
            f"({lay.labels}), got {tuple(grad_out.shape)}"
        )


# ---------------------------------------------------------------------------
# columns and window tables
# ---------------------------------------------------------------------------
def _columns(xp, plan: Plan, x, geom: ConvGeometry):
    """``(N, C, K, L)``: the taps of every window, from the backend's im2col."""
    n, c = x.shape[0], x.shape[1]
    if n == 0:
        return zeros(xp, (0, c, geom.kernel_numel, geom.output_numel), x)
    cols = plan.im2col(xp, x, geom)
    return xp.reshape(cols, (n, c, geom.kernel_numel, geom.output_numel))


def _fold(xp, plan: Plan, dcols, geom: ConvGeometry):
    """``(N, C, K, L)`` window gradients summed onto the ``(N, C, *input_size)`` image."""
    n, c = dcols.shape[0], dcols.shape[1]
    if n == 0:
        return zeros(xp, (0, c, *geom.input_size), dcols)
    cols = xp.reshape(dcols, (n, c * geom.kernel_numel, geom.output_numel))
    return plan.col2im(xp, cols, geom)


def _taps(geom: ConvGeometry, i: int) -> list[list[int]]:
    """``pos[tap][window]``: the input index each tap of each window reads along axis ``i``."""
    s, before, d = geom.stride[i], geom.pad_before[i], geom.dilation[i]
    return [[o * s - before + t * d for o in range(geom.output_size[i])]
            for t in range(geom.kernel_size[i])]  # fmt: skip


def _index_dtype(xp):
    """int64; on JAX its indexing dtype, int32 unless ``jax_enable_x64`` is set (no int64)."""
    if array_api_compat.is_jax_namespace(xp):
        return xp.__array_namespace_info__().default_dtypes()["indexing"]
    return xp.int64


def _tap_tables(xp, geom: ConvGeometry, device):
    """Validity mask ``(K, L)`` (tap inside the image) and flat plane indices ``(K, L)``.

    Taps in C order over the kernel, windows in C order over the output (the
    column order of im2col); the flat index is C order over the input plane
    (``ih*W + iw`` in 2-D).
    """
    nd = geom.nd
    valid = flat = None
    step = 1
    for i in reversed(range(nd)):
        pos = xp.asarray(_taps(geom, i), dtype=_index_dtype(xp), device=device)
        shape = [1] * (2 * nd)
        shape[i], shape[nd + i] = geom.kernel_size[i], geom.output_size[i]
        pos = xp.reshape(pos, tuple(shape))
        inside = (pos >= 0) & (pos < geom.input_size[i])
        valid = inside if valid is None else valid & inside
        flat = pos * step if flat is None else flat + pos * step
        step *= geom.input_size[i]
    full = (*geom.kernel_size, *geom.output_size)
    table = (geom.kernel_numel, geom.output_numel)
    return (
        xp.reshape(xp.broadcast_to(valid, full), table),
        xp.reshape(xp.broadcast_to(flat, full), table),
    )


def _divisors(xp, geom: ConvGeometry, count_include_pad: bool, divisor_override, dtype, device):
    """The divisor of every window, ``(L,)``: PyTorch's ``avg_pool`` rule, per axis multiplied."""
    if divisor_override is not None:
        return xp.asarray(float(divisor_override), dtype=dtype, device=device)
    pads = geom.requested_padding
    table = None
    for i in range(geom.nd):
        size, k, s = geom.input_size[i], geom.kernel_size[i], geom.stride[i]
        before, after = pads[2 * i], pads[2 * i + 1]
        counts = []
        for o in range(geom.output_size[i]):
            start = o * s - before
            end = min(start + k, size + after)  # the ceil overhang is not counted
            if not count_include_pad:
                start, end = max(start, 0), min(end, size)
            counts.append(max(end - start, 0))
        axis = xp.asarray(counts, dtype=dtype, device=device)
        table = axis if table is None else xp.reshape(table[:, None] * axis[None, :], (-1,))
    # A window with nothing to count (only with ceil_mode="cover_all") has the sum 0; keep it 0.
    return xp.maximum(table, xp.ones((), dtype=dtype, device=device))


def _accumulator(xp, dtype):
    """float16 / bfloat16 sums and divisions run in float32, as PyTorch's CPU kernels do."""
    for name in ("float16", "bfloat16"):
        half = getattr(xp, name, None)  # not every namespace has these
        if half is not None and dtype == half:
            return xp.float32
    return dtype


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------
def _max_reduce(xp, cols, valid):
    """Window maxima ``(N, C, L)`` and ``has_nan``: NaN propagates, padding is -inf."""
    dev = device_of(cols)
    neg_inf = xp.asarray(-math.inf, dtype=cols.dtype, device=dev)
    is_nan = xp.isnan(cols)
    nan_at = valid & is_nan
    has_nan = xp.any(nan_at, axis=2)
    peak = xp.max(xp.where(valid & ~is_nan, cols, neg_inf), axis=2)
    out = xp.where(has_nan, xp.asarray(math.nan, dtype=cols.dtype, device=dev), peak)
    return out, peak, nan_at, has_nan


def _eager(xp) -> bool:
    """A namespace whose arrays hold their values now (asking ``bool(any(...))`` is
    cheap and allowed: not Dask's lazy graphs, not JAX's traced arrays)."""
    return (
        array_api_compat.is_numpy_namespace(xp)
        or array_api_compat.is_torch_namespace(xp)
        or array_api_compat.is_cupy_namespace(xp)
    )


def _max_choice(xp, cols, valid, peak, nan_at, has_nan):
    """One-hot ``(N, C, K, L)`` of the tap each window's maximum comes from.

    PyTorch's CPU rule: scan the taps in window order (row-major over the kernel)
    and take a value if it is greater than the best so far or NaN.  So: the first
    maximum, or the last NaN; padding taps are never chosen; a window whose real
    taps are all -inf picks its first real tap; a window with no real tap
    (``ceil_mode="cover_all"``, or a dilation stepping over a small input) picks none.
    """
    k = cols.shape[2]
    dev = device_of(cols)
    if _eager(xp) and not bool(xp.any(has_nan)) and not bool(xp.any(peak == -math.inf)):
        # Every window has a finite maximum among its real taps and no NaN: the
        # choice is the first real tap equal to it, found tap by tap (K passes over
        # (N, C, L) instead of the general rule's passes over (N, C, K, L)).
        return _first_hits(xp, valid & (cols == peak[:, :, None, :]))
    nan_w = has_nan[:, :, None, :]
    hit = xp.where(nan_w, nan_at, valid & (cols == peak[:, :, None, :]))
    tap = xp.arange(k, dtype=xp.int32, device=dev)[:, None]
    rank = xp.where(nan_w, tap + 1, k - tap)  # unique per tap: last NaN or first maximum wins
    score = xp.where(hit, rank, xp.zeros((), dtype=xp.int32, device=dev))
    return hit & (score == xp.max(score, axis=2, keepdims=True))


_geometries: dict = {}


def _geometry(size, kernel_size, stride, padding, dilation, ceil_mode) -> ConvGeometry:
    """:func:`pool_geometry`, memoized for plain options (ints, strings, tuples of ints,
    ``None``, bools; a :class:`ConvGeometry` is frozen): resolving them cost about as
    much as a small pooling's kernel."""
    options = (kernel_size, stride, padding, dilation)
    plain = all(o is None or _plain(o) for o in options) and type(ceil_mode) in (bool, str)
    key = (size, *options, ceil_mode) if plain else None
    geom = None if key is None else _geometries.get(key)
    if geom is None:
        geom = pool_geometry(
            size,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            ceil_mode=ceil_mode,
        )
        if key is not None and len(_geometries) < _MEMO_SIZE:
            _geometries[key] = geom
    return geom


def _max_geometry(xf, kernel_size, stride, padding, dilation, ceil_mode) -> ConvGeometry:
    return _geometry(tuple(xf.shape[2:]), kernel_size, stride, padding, dilation, ceil_mode)


def _max_pool(
    func,
    x,
    kernel_size,
    stride,
    padding,
    dilation,
    ceil_mode,
    return_indices,
    layout,
    backend,
    nd,
    padding_mode,
):
    xp, lay, xf = image_input(func, "x", x, layout, nd)
    mode = check_padding_mode(padding_mode)
    geom = _max_geometry(xf, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = flag("return_indices", return_indices)
    plan = select("max_pool", xp, xf, backend, geom.nd)
    n, c = xf.shape[0], xf.shape[1]
    (xc,) = plan.cast(xp, xf)
    full = geom
    if mode != "zeros":
        xc, geom = pad(xp, xc, geom, mode)
    if plan.has("max_pool"):  # the backend's own kernel
        out, index = plan.max_pool(xp, xc, geom, return_indices)
        out = lay.from_first(xp, plan.uncast(xp, x.dtype, out))
        if not return_indices:
            return out
        if mode != "zeros":
            index = original_index(xp, index, full, mode)
        return out, lay.from_first(xp, index)
    cols = _columns(xp, plan, xc, geom)
    dev = device_of(x)
    valid, flat = _tap_tables(xp, geom, dev)
    out, peak, nan_at, has_nan = _max_reduce(xp, cols, valid)
    out = lay.from_first(xp, plan.uncast(xp, x.dtype, xp.reshape(out, (n, c, *geom.output_size))))
    if not return_indices:
        return out
    choice = _max_choice(xp, cols, valid, peak, nan_at, has_nan)
    zero = xp.zeros((), dtype=_index_dtype(xp), device=dev)
    index = xp.sum(xp.where(choice, flat, zero), axis=2)
    index = xp.where(xp.any(choice, axis=2), index, zero - 1)
    if mode != "zeros":
        index = original_index(xp, index, full, mode)
    return out, lay.from_first(xp, xp.reshape(index, (n, c, *geom.output_size)))


def _check_indices(xp, indices, shape, plane: int, lay: Layout):
    """``indices`` (in ``layout``'s order) as a channels-first array of the namespace's
    index dtype, checked: an integer array of ``shape`` with values in ``[-1, plane)``."""
    if not array_api_compat.is_array_api_obj(indices):
        raise TypeError(
            "indices must be the array max_pool returned with return_indices=True, "
            f"got {type(indices).__name__}"
        )
    try:
        same = array_api_compat.array_namespace(indices) is xp
    except TypeError:
        same = False
    if not same:
        raise TypeError(
            f"indices must be an array of the library of x ({namespace_name(xp)}), "
            f"got {type(indices).__module__}.{type(indices).__name__}"
        )
    if not xp.isdtype(indices.dtype, "integral"):
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype}")
    if tuple(indices.shape) != tuple(shape):
        raise ValueError(
            f"indices must have the shape of the pooling output {tuple(shape)} ({lay.labels}), "
            f"got {tuple(indices.shape)}"
        )
    if _eager(xp) and math.prod(shape):
        low, high = int(xp.min(indices)), int(xp.max(indices))
        if low < -1 or high >= plane:
            raise ValueError(
                f"indices must lie in [-1, {plane}) (flat indices into an input plane of "
                f"{plane} cells, -1 for none), got values from {low} to {high}"
            )
    return xp.astype(lay.to_first(xp, indices), _index_dtype(xp))


def _first_hits(xp, hit):
    """``hit`` ``(N, C, K, L)`` with only the first True of every window kept."""
    parts, seen = [], None
    for t in range(hit.shape[2]):
        h = hit[:, :, t, :]
        parts.append(h if seen is None else h & ~seen)
        seen = h if seen is None else seen | h
    return xp.stack(parts, axis=2)


def _max_pool_backward(
    func,
    grad_out,
    x,
    kernel_size,
    stride,
    padding,
    dilation,
    ceil_mode,
    layout,
    backend,
    nd,
    padding_mode,
    indices=None,
):
    xp, lay, xf, grad_out = image_input(func, "x", x, layout, nd, grad_out=grad_out)
    mode = check_padding_mode(padding_mode)
    geom = _max_geometry(xf, kernel_size, stride, padding, dilation, ceil_mode)
    n, c = xf.shape[0], xf.shape[1]
    _check_grad_out(grad_out, lay.shape_from_first((n, c, *geom.output_size)), lay)
    if indices is not None:
        out_shape = lay.shape_from_first((n, c, *geom.output_size))
        indices = _check_indices(xp, indices, out_shape, math.prod(geom.input_size), lay)
    plan = select("max_pool_backward", xp, xf, backend, geom.nd)
    xc, gc = plan.cast(xp, xf, lay.to_first(xp, grad_out))
    full = geom
    if plan.has("max_pool_backward"):  # the backend's own kernel
        if indices is not None:  # flat indices into the planes of x itself: no padding
            dx = plan.max_pool_backward(xp, gc, xc, geom, indices)
            return lay.from_first(xp, plan.uncast(xp, x.dtype, dx))
        if mode != "zeros":
            xc, geom = pad(xp, xc, geom, mode)
        dx = plan.max_pool_backward(xp, gc, xc, geom, None)
    else:
        if mode != "zeros":
            xc, geom = pad(xp, xc, geom, mode)
        valid, flat = _tap_tables(xp, geom, device_of(x))
        if indices is not None:
            if mode != "zeros":  # the padded image's cells as cells of x
                flat = original_index(xp, flat, full, mode)
            idx = xp.reshape(indices, (n, c, 1, geom.output_numel))
            # A padded border repeats cells of x: keep the first tap that reads the winner.
            choice = _first_hits(xp, valid & (flat == idx))
        else:
            cols = _columns(xp, plan, xc, geom)
            _, peak, nan_at, has_nan = _max_reduce(xp, cols, valid)
            choice = _max_choice(xp, cols, valid, peak, nan_at, has_nan)
        g = xp.reshape(gc, (n, c, 1, geom.output_numel))
        dcols = xp.where(choice, g, zeros(xp, (), gc))
        dx = _fold(xp, plan, dcols, geom)
    if mode != "zeros":
        dx = fold(xp, dx, full, mode)
    return lay.from_first(xp, plan.uncast(xp, x.dtype, dx))


def max_pool(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
):
    """N-d max pooling: 1, 2 or 3 spatial axes (more where the backend declares them).

    Parameters
    ----------
    x : array, shape (N, C, *spatial)
        Real floating point: float32 and float64; float16 and bfloat16 are
        computed in float32 where the backend does not declare them.  In the
        order ``layout`` names.
    kernel_size : int or tuple of int
        Window size, one number for every axis or one per axis.
    stride : int or tuple of int, optional
        Step between windows; defaults to ``kernel_size`` (as in PyTorch).
    padding : int, tuple of int, (before, after) per axis, "valid" or "same", optional
        Implicit padding with ``-inf``: a padding cell is never the maximum.
        At most ``kernel_size // 2`` on every side (PyTorch's rule).  ``"same"``
        is TensorFlow's: ``ceil(size / stride)`` windows, the odd padding cell
        after (see :func:`convcore.pool_geometry`).
    padding_mode : str, optional
        ``"zeros"`` (default: the implicit ``-inf`` above), or ``"reflect"``,
        ``"symmetric"``, ``"replicate"``, ``"circular"``: the padding holds
        pixels of ``x`` (as ``numpy.pad`` would put them there) and can be the
        maximum; ``indices`` then point at the pixel itself.
    dilation : int or tuple of int, optional
        Step between the taps of a window.
    ceil_mode : False, True or "cover_all", optional
        Output size rule, see :func:`convcore.pool_output_size`: floor (default),
        PyTorch's ceil (``True``) or Chainer's ``cover_all`` (the seed's plain
        ceil).  Cells of the ceil overhang are ignored like padding.
    return_indices : bool, optional
        Also return, for every output, the flat index (C order, ``ih*W + iw`` in
        2-D) into the spatial plane of ``(n, c)`` the maximum was taken from
        (PyTorch's ``return_indices``); ``-1`` for a window none of whose taps
        reads an input cell (with ``ceil_mode="cover_all"``, or a dilation stepping
        over a small input; PyTorch returns an out-of-range index there).
    layout : str, optional
        Axis order of ``x``, the output and the indices: ``"channels_first"``
        (default, ``"NCHW"``), ``"channels_last"`` (``"NHWC"``, ``"NWC"``,
        ``"NDHWC"``) or any order of the letters (MATLAB's ``"HWCN"``).
    backend : str, optional
        Backend for im2col; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C, *output_spatial)
        Same namespace, device and dtype as ``x``, in ``layout``'s order.  A
        window holding a NaN gives NaN; a window with no input cell gives ``-inf``.
    indices : array of int64
        Only with ``return_indices=True`` (int32 on JAX without
        ``jax_enable_x64``, which has no 64-bit arrays).  Ties go to the first maximum in
        window order (row-major over the kernel taps), a NaN window to its
        last NaN: PyTorch's CPU kernel.

    See Also
    --------
    max_pool1d, max_pool2d, max_pool3d : the same with the rank checked.
    max_pool_backward : the gradient.
    """
    return _max_pool(
        "max_pool", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
        layout, backend, None, padding_mode,
    )  # fmt: skip


def max_pool_backward(
    grad_out: Array,
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
    indices: Array | None = None,
) -> Array:
    """Gradient of :func:`max_pool` with respect to its input.

    Every window's gradient goes to the one input cell its maximum came from
    (the index :func:`max_pool` returns with ``return_indices=True``), and the
    gradients of overlapping windows add up, deterministically.  Backends with
    pooling kernels of their own (``numba``) add them in place; on the others
    the gradients are put into the column matrix as a one-hot per window and
    summed onto the image by the backend's col2im.

    Parameters
    ----------
    grad_out : array, shape (N, C, *output_spatial)
        Gradient of the loss with respect to the pooling output; dtype and
        device of ``x``, in ``layout``'s order.
    x : array, shape (N, C, *spatial)
        The forward input.  Without ``indices`` the winners are recomputed from
        it; with ``indices`` only its shape, dtype and device are used.
    kernel_size, stride, padding, dilation, ceil_mode, padding_mode, layout, backend
        The forward options.
    indices : array, optional
        The winners' indices that ``max_pool(x, ..., return_indices=True)``
        returned with the same options (integer, the output's shape, flat
        indices into each input plane, -1 for none).  Skips recomputing the
        maxima: what the pooling layers do.  Indices outside ``[-1, H*W)`` are a
        ``ValueError`` (checked on NumPy, CuPy and PyTorch arrays).

    Returns
    -------
    dx : array, the shape of ``x``
    """
    return _max_pool_backward(
        "max_pool_backward", grad_out, x, kernel_size, stride, padding, dilation, ceil_mode,
        layout, backend, None, padding_mode, indices,
    )  # fmt: skip


def max_pool1d(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
):
    """1-D max pooling of an ``(N, C, W)`` batch (``"NWC"`` with ``layout``).

    The parameters and results are those of :func:`max_pool` with one spatial
    axis; ``torch.nn.functional.max_pool1d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.max_pool1d(np.array([[[1.0, 3.0, 2.0, 5.0, 4.0]]]), 2, ceil_mode=True)
    array([[[3., 5., 4.]]])
    """
    return _max_pool(
        "max_pool1d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
        layout, backend, 1, padding_mode,
    )  # fmt: skip


def max_pool2d(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
):
    """2-D max pooling of an ``(N, C, H, W)`` batch (``"NHWC"`` with ``layout``).

    The parameters and results are those of :func:`max_pool` with two spatial
    axes: ``kernel_size``, ``stride`` and ``dilation`` one number or ``(KH, KW)``,
    ``padding`` one number, ``(pad_h, pad_w)`` or ``(top, bottom, left, right)``;
    ``torch.nn.functional.max_pool2d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import max_pool2d
    >>> x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # all negative
    >>> max_pool2d(x, 2, padding=1)[0, 0]              # padding is -inf, not 0
    array([[ -1.,  -2.,  -4.],
           [ -5.,  -6.,  -8.],
           [-13., -14., -16.]])
    >>> max_pool2d(np.ones((2, 6, 6, 3)), 2, layout="NHWC").shape
    (2, 3, 3, 3)
    """
    return _max_pool(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
        layout, backend, 2, padding_mode,
    )  # fmt: skip


def max_pool3d(
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
):
    """3-D max pooling of an ``(N, C, D, H, W)`` batch (``"NDHWC"`` with ``layout``).

    The parameters and results are those of :func:`max_pool` with three spatial
    axes; ``torch.nn.functional.max_pool3d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.max_pool3d(np.ones((1, 2, 4, 4, 4)), 2).shape
    (1, 2, 2, 2, 2)
    """
    return _max_pool(
        "max_pool3d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
        layout, backend, 3, padding_mode,
    )  # fmt: skip


def max_pool1d_backward(
    grad_out: Array,
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
    indices: Array | None = None,
) -> Array:
    """Gradient of :func:`max_pool1d` with respect to its input; see :func:`max_pool_backward`."""
    return _max_pool_backward(
        "max_pool1d_backward", grad_out, x, kernel_size, stride, padding, dilation, ceil_mode,
        layout, backend, 1, padding_mode, indices,
    )  # fmt: skip


def max_pool2d_backward(
    grad_out: Array,
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
    indices: Array | None = None,
) -> Array:
    """Gradient of :func:`max_pool2d` with respect to its input; see :func:`max_pool_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import max_pool2d_backward
    >>> x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])            # a tie: 3 twice
    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)[0, 0]  # the first one wins
    array([[0., 1.],
           [0., 0.]])
    """
    return _max_pool_backward(
        "max_pool2d_backward", grad_out, x, kernel_size, stride, padding, dilation, ceil_mode,
        layout, backend, 2, padding_mode, indices,
    )  # fmt: skip


def max_pool3d_backward(
    grad_out: Array,
    x: Array,
    /,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    *,
    padding_mode: str = "zeros",
    layout: str = _CHANNELS_FIRST,
    backend: str | None = None,
    indices: Array | None = None,
) -> Array:
    """Gradient of :func:`max_pool3d` with respect to its input; see :func:`max_pool_backward`."""
    return _max_pool_backward(
        "max_pool3d_backward", grad_out, x, kernel_size, stride, padding, dilation, ceil_mode,
        layout, backend, 3, padding_mode, indices,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------
def _avg_geometry(size, kernel_size, stride, padding, ceil_mode) -> ConvGeometry:
    return _geometry(tuple(size), kernel_size, stride, padding, 1, ceil_mode)


def _avg_pool(
    func, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
    layout, backend, nd, padding_mode,
):  # fmt: skip
    xp, lay, xf = image_input(func, "x", x, layout, nd)
    mode = check_padding_mode(padding_mode)
    geom = _avg_geometry(tuple(xf.shape[2:]), kernel_size, stride, padding, ceil_mode)
    include = flag("count_include_pad", count_include_pad)
    override = _divisor(divisor_override)
    plan = select("avg_pool", xp, xf, backend, geom.nd)
    n, c = xf.shape[0], xf.shape[1]
    (xc,) = plan.cast(xp, xf)
    if mode != "zeros":
        xc, geom = pad(xp, xc, geom, mode)  # the border holds pixels: all of it is counted
    acc = _accumulator(xp, xc.dtype)
    divisor = _divisors(xp, geom, include, override, acc, device_of(x))
    if plan.has("avg_pool"):  # the backend's own kernel
        out = plan.avg_pool(xp, xc, geom, divisor)
    else:
        total = xp.sum(_columns(xp, plan, xc, geom), axis=2, dtype=acc)
        out = total / divisor
    out = xp.reshape(xp.astype(out, x.dtype), (n, c, *geom.output_size))
    return lay.from_first(xp, out)


def _input_size(func: str, input_size, grad_out, lay: Layout) -> tuple[int, ...]:
    """The spatial size from ``input_size``: ``nd`` sizes or the full shape in ``layout``."""
    nd = lay.nd
    forms = f"the forward input's spatial size ({nd} ints) or its shape ({lay.labels})"
    if array_api_compat.is_array_api_obj(input_size):
        raise TypeError(f"input_size must be {forms}, not an array; pass x.shape")
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be {forms}, got {input_size!r}")
    if len(input_size) not in (nd, nd + 2):
        raise ValueError(f"input_size must be {forms}, got {input_size!r}")
    size = normalize_tuple(input_size, len(input_size), "input_size", minimum=0)
    if len(size) == nd + 2:
        size = lay.shape_to_first(size)
        if tuple(grad_out.shape[:2]) != size[:2]:
            raise ValueError(
                f"{func}: grad_out has (N, C) = {tuple(grad_out.shape[:2])} but input_size "
                f"{tuple(input_size)} has (N, C) = {size[:2]}"
            )
        size = size[2:]
    if min(size) < 1:
        raise ValueError(f"input_size must have every spatial size >= 1, got {input_size!r}")
    return size


def _avg_pool_backward(
    func, grad_out, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
    divisor_override, layout, backend, nd, padding_mode,
):  # fmt: skip
    xp, lay, gf = image_input(func, "grad_out", grad_out, layout, nd)
    mode = check_padding_mode(padding_mode)
    size = _input_size(func, input_size, gf, lay)
    geom = _avg_geometry(size, kernel_size, stride, padding, ceil_mode)
    include = flag("count_include_pad", count_include_pad)
    override = _divisor(divisor_override)
    n, c = gf.shape[0], gf.shape[1]
    _check_grad_out(grad_out, lay.shape_from_first((n, c, *geom.output_size)), lay)
    plan = select("avg_pool_backward", xp, gf, backend, geom.nd)
    (gc,) = plan.cast(xp, gf)
    full = geom
    if mode != "zeros":
        geom = padded_geometry(geom)
    acc = _accumulator(xp, gc.dtype)
    divisor = _divisors(xp, geom, include, override, acc, device_of(grad_out))
    if plan.has("avg_pool_backward"):  # the backend's own kernel
        dx = plan.avg_pool_backward(xp, gc, geom, divisor)
    else:
        g = xp.reshape(xp.astype(gc, acc), (n, c, 1, geom.output_numel))
        g = xp.astype(g / divisor, gc.dtype)
        dcols = xp.broadcast_to(g, (n, c, geom.kernel_numel, geom.output_numel))
        dx = _fold(xp, plan, dcols, geom)
    if mode != "zeros":
        dx = fold(xp, dx, full, mode)
    return lay.from_first(xp, plan.uncast(xp, grad_out.dtype, dx))


def avg_pool(
    x: Array,
    /,
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
) -> Array:
    """N-d average pooling: 1, 2 or 3 spatial axes (more where the backend declares them).

    Parameters
    ----------
    x : array, shape (N, C, *spatial)
        Real floating point: float32 and float64; float16 and bfloat16 are
        computed in float32 where the backend does not declare them (and summed
        in float32 where it does).  In the order ``layout`` names.
    kernel_size : int or tuple of int
        Window size.
    stride : int or tuple of int, optional
        Defaults to ``kernel_size``.
    padding : int, tuple of int, (before, after) per axis, "valid" or "same", optional
        Zero padding, at most ``kernel_size // 2`` on every side; ``"same"`` is
        TensorFlow's rule (whose average does not count the padding: pass
        ``count_include_pad=False`` for its numbers).
    padding_mode : str, optional
        ``"zeros"`` (default), or ``"reflect"``, ``"symmetric"``,
        ``"replicate"``, ``"circular"``: the padding holds pixels of ``x`` and
        is always counted (``count_include_pad`` has no effect; a ceil window's
        overhang is still not counted).
    ceil_mode : False, True or "cover_all", optional
        Output size rule, see :func:`convcore.pool_output_size`.
    count_include_pad : bool, optional
        Whether padding cells count in the divisor.  The divisor is PyTorch's:
        per axis ``min(start + k, size + p_after) - start`` cells (``start`` may
        lie in the padding; cells of the ceil overhang beyond the padding never
        count), or, with ``count_include_pad=False``, the number of input cells
        in the window; multiplied over the axes.
    divisor_override : int, optional
        Nonzero; when given, every window sum is divided by it instead.
    layout : str, optional
        Axis order of ``x`` and the output, as for :func:`max_pool`.
    backend : str, optional
        Backend for im2col; see :func:`convcore.use_backend`.

    Returns
    -------
    out : array, shape (N, C, *output_spatial)
        Same namespace, device and dtype as ``x``, in ``layout``'s order.  A
        window with nothing to count (only with ``ceil_mode="cover_all"``) gives 0.

    See Also
    --------
    avg_pool1d, avg_pool2d, avg_pool3d : the same with the rank checked.
    avg_pool_backward : the gradient.
    """
    return _avg_pool(
        "avg_pool", x, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, layout, backend, None, padding_mode,
    )  # fmt: skip


def avg_pool_backward(
    grad_out: Array,
    input_size,
    /,
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
) -> Array:
    """Gradient of :func:`avg_pool` with respect to its input.

    Average pooling is linear, so the gradient needs only the input's size:
    every window spreads ``grad_out / divisor`` over its cells and the backend's
    col2im sums the windows (padding cells are dropped).

    Parameters
    ----------
    grad_out : array, shape (N, C, *output_spatial)
        Gradient of the loss with respect to the pooling output, in ``layout``'s
        order; its rank sets the number of spatial axes.
    input_size : tuple of int
        The forward input's spatial size, or its whole shape in ``layout``'s
        order (``x.shape`` works).
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, padding_mode
        The forward options (and ``layout``, ``backend``).

    Returns
    -------
    dx : array, shape (N, C, *input_size)
        Namespace, device and dtype of ``grad_out``, in ``layout``'s order.
    """
    return _avg_pool_backward(
        "avg_pool_backward", grad_out, input_size, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, layout, backend, None, padding_mode,
    )  # fmt: skip


def avg_pool1d(
    x: Array,
    /,
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
) -> Array:
    """1-D average pooling of an ``(N, C, W)`` batch (``"NWC"`` with ``layout``).

    The parameters and results are those of :func:`avg_pool` with one spatial
    axis; ``torch.nn.functional.avg_pool1d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 6.0]]]), 2)
    array([[[2., 4.]]])
    """
    return _avg_pool(
        "avg_pool1d", x, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, layout, backend, 1, padding_mode,
    )  # fmt: skip


def avg_pool2d(
    x: Array,
    /,
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
) -> Array:
    """2-D average pooling of an ``(N, C, H, W)`` batch (``"NHWC"`` with ``layout``).

    The parameters and results are those of :func:`avg_pool` with two spatial
    axes; ``torch.nn.functional.avg_pool2d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import avg_pool2d
    >>> x = np.ones((1, 1, 3, 3))
    >>> avg_pool2d(x, 2, ceil_mode=True)[0, 0]         # overhang not counted
    array([[1., 1.],
           [1., 1.]])
    >>> avg_pool2d(x, 2, padding=1)[0, 0]              # padding counted
    array([[0.25, 0.5 ],
           [0.5 , 1.  ]])
    """
    return _avg_pool(
        "avg_pool2d", x, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, layout, backend, 2, padding_mode,
    )  # fmt: skip


def avg_pool3d(
    x: Array,
    /,
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
) -> Array:
    """3-D average pooling of an ``(N, C, D, H, W)`` batch (``"NDHWC"`` with ``layout``).

    The parameters and results are those of :func:`avg_pool` with three spatial
    axes; ``torch.nn.functional.avg_pool3d`` gives the same numbers.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> convcore.avg_pool3d(np.ones((1, 4, 4, 4, 1)), 2, layout="NDHWC").shape
    (1, 2, 2, 2, 1)
    """
    return _avg_pool(
        "avg_pool3d", x, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override, layout, backend, 3, padding_mode,
    )  # fmt: skip


def avg_pool1d_backward(
    grad_out: Array,
    input_size,
    /,
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
) -> Array:
    """Gradient of :func:`avg_pool1d` with respect to its input; see :func:`avg_pool_backward`."""
    return _avg_pool_backward(
        "avg_pool1d_backward", grad_out, input_size, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, layout, backend, 1, padding_mode,
    )  # fmt: skip


def avg_pool2d_backward(
    grad_out: Array,
    input_size,
    /,
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
) -> Array:
    """Gradient of :func:`avg_pool2d` with respect to its input; see :func:`avg_pool_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import avg_pool2d_backward
    >>> avg_pool2d_backward(np.ones((1, 1, 2, 2)), (3, 3), 2, stride=1)[0, 0]
    array([[0.25, 0.5 , 0.25],
           [0.5 , 1.  , 0.5 ],
           [0.25, 0.5 , 0.25]])
    """
    return _avg_pool_backward(
        "avg_pool2d_backward", grad_out, input_size, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, layout, backend, 2, padding_mode,
    )  # fmt: skip


def avg_pool3d_backward(
    grad_out: Array,
    input_size,
    /,
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
) -> Array:
    """Gradient of :func:`avg_pool3d` with respect to its input; see :func:`avg_pool_backward`."""
    return _avg_pool_backward(
        "avg_pool3d_backward", grad_out, input_size, kernel_size, stride, padding, ceil_mode,
        count_include_pad, divisor_override, layout, backend, 3, padding_mode,
    )  # fmt: skip


def __getattr__(name: str):
    # The layer classes moved to convcore.layers; keep ``convcore.pooling.MaxPool2D`` working.
    if name in ("MaxPool2D", "AvgPool2D"):
        from . import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
