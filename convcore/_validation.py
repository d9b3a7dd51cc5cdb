"""Argument checks and array layouts shared by every public operator.

Every public function of convcore (convolution, im2col/col2im, pooling, the
transposed convolution, the MATLAB adapter) validates its arrays with these
helpers, so the same mistake gets the same message everywhere: a ``TypeError``
or ``ValueError`` naming the parameter, the value received and what was
expected.  Nothing here imports an array library; arrays are inspected through
array-api-compat.

:class:`Layout` is the axis order of the caller's arrays (``"NCHW"``,
``"NHWC"``, ``"NWC"``, ``"NDHWC"``, MATLAB's ``"HWCN"``, any order of the
letters): the operators work on a channels-first view and hand results back in
the caller's order, both by ``permute_dims`` (views, no copies).
"""

from __future__ import annotations

import operator
from typing import Any

import array_api_compat

from ._registry import dtype_name, namespace_name

__all__ = [
    "SPATIAL_LETTERS",
    "Layout",
    "check_floating",
    "check_groups",
    "check_ndim",
    "check_nonempty",
    "check_same",
    "common",
    "device_of",
    "flag",
    "image_input",
    "kernel_labels",
    "namespace",
    "spatial_rank",
    "zeros",
]

Array = Any
ArrayNamespace = Any

_LIBRARIES = "NumPy, CuPy, PyTorch, JAX, Dask or another array-API library"


def namespace(*, optional: tuple[str, ...] = (), **arrays) -> ArrayNamespace:
    """The common array namespace of the named arrays.

    Every keyword names one argument of the public function.  Those named in
    ``optional`` may be None (skipped); any other that is not an array is a
    ``TypeError`` naming it.  Arrays of two libraries are a ``TypeError`` too,
    but for the mixes :func:`common` converts.
    """
    return common(optional=optional, **arrays)[0]


def common(*, optional: tuple[str, ...] = (), **arrays) -> tuple[ArrayNamespace, tuple]:
    """The common namespace of the named arrays and the arrays in it, in keyword order.

    Arrays of two libraries are a ``TypeError`` naming both arguments and how to
    convert, except where the array library itself mixes them: NumPy arrays
    next to a Dask array of NumPy chunks become (single-chunk) Dask arrays, as
    they do in Dask's own arithmetic (``dask_array + numpy_array``).  Nothing
    else is copied between libraries; in particular NumPy arrays are never
    moved to a GPU behind the caller's back.
    """
    spaces = {}
    for name, arr in arrays.items():
        if arr is None and name in optional:
            continue
        if not array_api_compat.is_array_api_obj(arr):
            got = "None" if arr is None else type(arr).__name__
            raise TypeError(f"{name} must be an array ({_LIBRARIES}), got {got}")
        spaces[name] = array_api_compat.array_namespace(arr)
    first_name, xp = next(iter(spaces.items()))
    if all(other is xp for other in spaces.values()):
        return xp, tuple(arrays.values())
    lead = next((n for n in spaces if _is_numpy_dask(arrays[n])), None)
    if lead is not None:
        xp = spaces[lead]
        first_name = lead
    out = dict(arrays)
    for name, other in spaces.items():
        if other is xp:
            continue
        if lead is not None and array_api_compat.is_numpy_array(arrays[name]):
            out[name] = xp.asarray(arrays[name])
            continue
        raise TypeError(
            f"{name} is a {namespace_name(other)} array but {first_name} is a "
            f"{namespace_name(xp)} array; convcore does not copy between array libraries "
            f"or devices: {_conversion_hint(xp, name, first_name, arrays[first_name])}"
        )
    return xp, tuple(out.values())


def _is_numpy_dask(arr) -> bool:
    """A Dask array whose chunks are NumPy arrays (Dask mixes those with NumPy arrays)."""
    return array_api_compat.is_dask_array(arr) and array_api_compat.is_numpy_array(
        getattr(arr, "_meta", None)
    )


def _conversion_hint(xp, name: str, ref: str, ref_array=None) -> str:
    """How to bring argument ``name`` into ``xp``'s library (and onto argument ``ref``'s device)."""
    lib = namespace_name(xp)
    if lib == "cupy":
        return f"move {name} to the GPU first, e.g. cupy.asarray({name})"
    if lib == "torch":
        return f"convert {name} first, e.g. torch.as_tensor({name}, device={ref}.device)"
    if lib == "jax":
        return f"convert {name} first, e.g. jax.numpy.asarray({name})"
    if lib == "dask" and array_api_compat.is_cupy_array(getattr(ref_array, "_meta", None)):
        return (
            f"move {name} to the GPU first, e.g. cupy.asarray({name}) "
            f"({ref} is a Dask array of CuPy chunks)"
        )
    if lib == "dask":
        return f"convert {name} first, e.g. dask.array.asarray({name})"
    if lib == "numpy":
        return (
            f"convert {name} to NumPy first (cupy.asnumpy({name}) for a CuPy array, "
            f"{name}.numpy(force=True) for a torch tensor, numpy.asarray({name}) otherwise)"
        )
    return f"convert {name} to {lib} arrays first"


def check_ndim(name: str, arr, labels: str) -> None:
    """``arr`` has one axis per comma-separated label of ``labels``."""
    count = len(labels.split(", "))
    if arr.ndim != count:
        raise ValueError(f"{name} must be {count}-D ({labels}), got shape {tuple(arr.shape)}")


def device_of(arr):
    """The device of ``arr``, or None where it has none to inspect.

    A JAX array being traced (inside ``jax.jit``, ``jax.grad``, ``jax.vmap``) is
    an abstract value with no committed device: array-api-compat gives None for
    it (older JAX releases raise instead).  Its computation runs wherever JAX
    places the traced program, so None means "unknown", not "different".
    """
    try:
        return array_api_compat.device(arr)
    except (AttributeError, TypeError):  # a JAX tracer that refuses ``.device``
        if array_api_compat.is_jax_array(arr):
            return None
        raise


def check_same(xp, ref_name: str, ref, **others) -> None:
    """dtype and device of every array in ``others`` (None skipped) equal those of ``ref``.

    An array whose device is unknown (:func:`device_of` is None: a traced JAX
    array) is compatible with any device; the known devices must all be equal
    (each is compared with the first known one, ``ref``'s where it is known).
    """
    known_name, known = ref_name, device_of(ref)
    for name, arr in others.items():
        if arr is None:
            continue
        if arr.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {dtype_name(xp, arr.dtype)} but {ref_name} has dtype "
                f"{dtype_name(xp, ref.dtype)}; they must match"
            )
        device = device_of(arr)
        if device is None:
            continue
        if known is None:
            known_name, known = name, device
        elif device != known:
            raise ValueError(
                f"{name} is on device {device!r} but {known_name} is on "
                f"{known!r}; they must be on the same device"
            )


def check_floating(xp, name: str, arr, func: str) -> None:
    if not xp.isdtype(arr.dtype, "real floating"):
        raise TypeError(
            f"{func} needs a real floating-point {name}, got dtype {dtype_name(xp, arr.dtype)}"
        )


def check_nonempty(name: str, shape, labels: str) -> None:
    """Every axis but the batch axis must be known and non-empty."""
    for label, size in zip(labels.split(", "), shape):
        if label == "N":
            continue
        if size is None:
            raise ValueError(f"{name} has an unknown size along its {label} axis: {shape}")
        if size < 1:
            raise ValueError(
                f"{name} must have a non-empty {label} axis ({labels}), got shape {shape}"
            )


def check_groups(groups) -> int:
    if isinstance(groups, bool):
        raise TypeError(f"groups must be a positive integer, got {groups!r}")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"groups must be a positive integer, got {groups!r}") from None
    if groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups}")
    return groups


def flag(name: str, value) -> bool:
    """A bool option; NumPy bools are accepted, ints and strings are not."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ in ("bool_", "bool") and hasattr(value, "dtype"):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def zeros(xp, shape, like):
    """Zeros of ``like``'s dtype and device (the default device where it is unknown)."""
    return xp.zeros(shape, dtype=like.dtype, device=device_of(like))


def spatial_rank(name: str, arr, nd: int | None = None) -> int:
    """The number of spatial axes of ``arr`` (``nd`` when the function fixes it)."""
    if nd is not None:
        return nd  # the caller checks the number of axes against its layout's labels
    if arr.ndim < 3:
        raise ValueError(
            f"{name} must have a batch axis, a channel axis and at least one spatial axis "
            f"(3-D for 1-D data, 4-D for images, 5-D for volumes), got shape {tuple(arr.shape)}"
        )
    return arr.ndim - 2


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------
SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}
_CHANNELS_FIRST = {nd: "NC" + letters for nd, letters in SPATIAL_LETTERS.items()}
_CHANNELS_LAST = {nd: "N" + letters + "C" for nd, letters in SPATIAL_LETTERS.items()}


def kernel_labels(nd: int) -> str:
    """``"KH, KW"``-style labels of a weight's kernel axes (``"K0, K1, ..."`` beyond 3-D)."""
    spatial = SPATIAL_LETTERS.get(nd)
    return ", ".join(f"K{c}" for c in spatial) if spatial else ", ".join(f"K{i}" for i in range(nd))


class Layout:
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
        spatial = SPATIAL_LETTERS.get(nd)
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

    def labels_with(self, channels: str) -> str:
        """:attr:`labels` with the channel axis called ``channels`` (``"C_in"``, ``"F"``)."""
        return ", ".join(channels if c == "C" else c for c in self.letters)

    @property
    def channel_axis(self) -> int:
        return self.letters.index("C")

    def shape_from_first(self, shape) -> tuple:
        """The caller-layout shape of a channels-first shape."""
        return tuple(shape) if self.inverse is None else tuple(shape[i] for i in self.inverse)

    def shape_to_first(self, shape) -> tuple:
        """The channels-first shape of a caller-layout shape."""
        return tuple(shape) if self.perm is None else tuple(shape[i] for i in self.perm)

    def to_first(self, xp, a):
        return a if self.perm is None else xp.permute_dims(a, self.perm)

    def from_first(self, xp, a):
        return a if self.inverse is None else xp.permute_dims(a, self.inverse)


def image_input(func: str, name: str, arr, layout, nd: int | None, **others):
    """Validate the floating-point image argument ``name`` (and same-dtype/device ``others``).

    ``arr`` must be an array with a batch, a channel and ``nd`` spatial axes (any
    number when ``nd`` is None) in the order ``layout`` names, non-empty but for
    the batch.  Returns ``xp``, the :class:`Layout`, the channels-first view and
    then each of ``others`` in its library (see :func:`common`), as given.
    """
    xp, (arr, *converted) = common(**{name: arr}, **others)
    others = dict(zip(others, converted))
    lay = Layout(layout, spatial_rank(name, arr, nd))
    check_ndim(name, arr, lay.labels)
    check_floating(xp, name, arr, func)
    check_nonempty(name, tuple(arr.shape), lay.labels)
    check_same(xp, name, arr, **others)
    return xp, lay, lay.to_first(xp, arr), *others.values()
