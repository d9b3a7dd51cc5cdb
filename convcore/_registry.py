"""The backend registry: discovery through pluggy, dispatch through a typed table.

Plugins are found once, lazily, through the entry-point group
``convcore.backends``; each registers :class:`BackendSpec` objects through the
``convcore_register_backends(register)`` hook.  After that, choosing a kernel is
a dictionary lookup plus a capability check: no pluggy call per convolution.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

import array_api_compat
import pluggy

from . import hookspecs
from .errors import BackendUnavailableError, UnknownBackendError

__all__ = [
    "ALL_OPS",
    "DERIVED_OPS",
    "INTEGER_DTYPES",
    "OPERATOR_KERNELS",
    "BackendInfo",
    "BackendSpec",
    "Support",
    "available_backends",
    "get_registry",
    "register_backend",
    "reload_registry",
]

#: The operations a backend may implement (see the kernel interface in the docs).
ALL_OPS = frozenset({"im2col", "col2im", "conv", "conv_backward"})

#: The operators the core builds on those ops, and the ops each one runs on the
#: backend: a backend that declares these runs the operator (pooling reduces
#: im2col's columns and sums its gradient with col2im; the transposed convolution
#: is a GEMM and col2im, its gradients a convolution and an im2col).
DERIVED_OPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "max_pool": ("im2col",),
        "max_pool_backward": ("im2col", "col2im"),
        "avg_pool": ("im2col",),
        "avg_pool_backward": ("col2im",),
        "conv_transpose": ("col2im",),
        "conv_transpose_backward": ("conv", "im2col"),
    }
)

#: Operators of :data:`DERIVED_OPS` that a backend may also implement as kernels
#: of its own (declared in ``BackendSpec.ops`` and returned by ``load``, with the
#: interface in docs/plugins.md).  The core then calls the backend's kernel
#: instead of building the operator from im2col and col2im, and the backend runs
#: the operator whether or not it implements the ops it is otherwise built from.
OPERATOR_KERNELS = frozenset({"max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward"})

_FLOATING = frozenset({"float16", "bfloat16", "float32", "float64"})

#: Half-precision dtypes that run in float32 (and are rounded back once) on a
#: backend that declares float32 but not them.
HALF_DTYPES = ("float16", "bfloat16")

#: The integer dtype names: what backends whose im2col/col2im only move data
#: declare for those ops in ``BackendSpec.op_dtypes``.
INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")

_DTYPE_NAMES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)


@dataclass(frozen=True)
class Support:
    """The answer of :meth:`BackendSpec.supports`: whether, and how, a backend runs a call.

    Attributes
    ----------
    reason : str or None
        None when the backend declares everything the call needs, else why not
        (``"it does not accept torch arrays (it accepts ['numpy'])"``).
    compute_dtype : str or None
        ``"float32"`` when a float16/bfloat16 call runs in float32 (the backend
        declares float32 but not the half type); None for the call's own dtype.
    lift : bool
        True when a 1-D call runs as 2-D with a height of 1 (the backend declares
        2-D but not 1-D kernels).

    ``bool(support)`` is True when the backend supports the call.
    """

    reason: str | None = None
    compute_dtype: str | None = None
    lift: bool = False

    def __bool__(self) -> bool:
        return self.reason is None


def _frozen(value, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"BackendSpec.{name} must be a collection of strings, got {value!r}")
    return frozenset(value)


@dataclass(frozen=True)
class BackendSpec:
    """What a backend declares when it registers.

    Parameters
    ----------
    name : str
        Name users select it by (``backend="name"``).
    load : callable
        ``load() -> Mapping[str, Callable]`` returns the kernels, keyed by op name
        (``"im2col"``, ``"col2im"``, ``"conv"``, ``"conv_backward"``, and any of
        the pooling kernels of :data:`OPERATOR_KERNELS`).  Called once, on first
        use: heavy imports belong here.
    ops : collection of str
        The ops ``load`` provides.
    dtypes : collection of str
        Supported dtype names, e.g. ``{"float32", "float64"}``.
    namespaces : collection of str or None
        Array namespaces it accepts (``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``,
        ``"dask"``, ``"array_api_strict"``, ...), or None for any array-API namespace.
    devices : collection of str or None
        Device kinds it accepts (``"cpu"``, ``"cuda"``), or None for any.
    priority : int
        ``auto`` prefers the highest priority among the backends that can run the input.
    version : str or None
        Version shown by :func:`available_backends`.
    description : str
        One line for listings.
    check_available : callable or None
        ``check_available() -> str | None``: None when the backend can run here,
        otherwise the reason it cannot (e.g. ``"cupy is not installed"``).  Called
        once, lazily.
    spatial_dims : collection of int or None
        Numbers of spatial axes the kernels take (``{2}`` by default; None for
        any).  A backend with 2-D but not 1-D kernels still runs 1-D calls: the
        core passes them as 2-D with a height of 1.
    op_dtypes : mapping of str to collection of str, or None
        Per-op dtype sets that replace ``dtypes`` for the ops named, e.g.
        ``{"im2col": {...integers...}}`` for kernels that move any data.
    warmup : callable or None
        ``warmup(dtypes) -> Mapping[str, float | int | str]``: compile or load
        everything the backend needs for the dtype names ``dtypes`` now, instead
        of on first use, and report what it did (step name to seconds, or to a
        count or a note).  ``convcore warmup`` calls it; None when there is
        nothing to prepare.
    auto_prefers : callable or None
        ``auto_prefers(op, x_shape, weight_shape, geom, groups) -> str | None``:
        asked when ``auto`` chose this backend for a convolution forward
        (``op="conv"``; ``x_shape`` and ``weight_shape`` channels first, ``geom``
        the resolved geometry), the name of another backend that measured faster
        on such a call, or None.  The other backend runs the call if it is
        available and supports it; otherwise this one does.  A backend named by
        the caller (``backend=``, the context, the variable, the files) is never
        replaced.
    """

    name: str
    load: Callable[[], Mapping[str, Callable[..., Any]]]
    ops: frozenset[str]
    dtypes: frozenset[str] = frozenset({"float32", "float64"})
    namespaces: frozenset[str] | None = None
    devices: frozenset[str] | None = frozenset({"cpu"})
    priority: int = 0
    version: str | None = None
    description: str = ""
    check_available: Callable[[], str | None] | None = None
    spatial_dims: frozenset[int] | None = frozenset({2})
    op_dtypes: Mapping[str, frozenset[str]] | None = None
    warmup: Callable[[Sequence[str]], Mapping[str, float | int | str]] | None = None
    auto_prefers: Callable[..., str | None] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"BackendSpec.name must be an identifier, got {self.name!r}")
        if self.name == "auto":
            raise ValueError("BackendSpec.name 'auto' is reserved")
        for attr in ("load", "check_available", "warmup", "auto_prefers"):
            value = getattr(self, attr)
            if (value is not None or attr == "load") and not callable(value):
                raise TypeError(f"BackendSpec.{attr} must be callable, got {value!r}")
        for attr in ("ops", "dtypes", "namespaces", "devices"):
            object.__setattr__(self, attr, _frozen(getattr(self, attr), attr))
        unknown = self.ops - ALL_OPS - OPERATOR_KERNELS
        if unknown:
            known = sorted(ALL_OPS | OPERATOR_KERNELS)
            raise ValueError(f"BackendSpec.ops has unknown ops {sorted(unknown)}; known: {known}")
        if self.spatial_dims is not None:
            dims = self.spatial_dims
            if isinstance(dims, (str, int)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims
            ):
                raise TypeError(
                    "BackendSpec.spatial_dims must be a collection of positive ints or None, "
                    f"got {dims!r}"
                )
            object.__setattr__(self, "spatial_dims", frozenset(dims))
        if self.op_dtypes is not None:
            if not isinstance(self.op_dtypes, Mapping):
                raise TypeError(
                    f"BackendSpec.op_dtypes must be a mapping of op names to dtype names, "
                    f"got {self.op_dtypes!r}"
                )
            bad = set(self.op_dtypes) - self.ops
            if bad:
                raise ValueError(
                    f"BackendSpec.op_dtypes names ops the backend does not provide: "
                    f"{sorted(bad)} (ops: {sorted(self.ops)})"
                )
            object.__setattr__(
                self,
                "op_dtypes",
                MappingProxyType(
                    {op: _frozen(d, f"op_dtypes[{op!r}]") for op, d in self.op_dtypes.items()}
                ),
            )

    def dtypes_for(self, op: str) -> frozenset[str]:
        """The dtype names ``op`` accepts: ``op_dtypes[op]`` when given, else ``dtypes``.

        For an operator of :data:`DERIVED_OPS`, the floating dtypes every op it runs
        accepts (pooling and the transposed convolution compute in floating point,
        also where im2col and col2im move integers), unless the backend implements
        the operator itself (:data:`OPERATOR_KERNELS`): then its own dtypes.
        """
        needed = None if op in self.ops else DERIVED_OPS.get(op)
        if needed is not None:
            common = frozenset.intersection(*(self.dtypes_for(o) for o in needed))
            return common & _FLOATING
        if self.op_dtypes is not None and op in self.op_dtypes:
            return self.op_dtypes[op]
        return self.dtypes

    def supports(
        self,
        op: str | None,
        *,
        namespace: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        nd: int | None = None,
    ) -> Support:
        """Whether this backend declares what a call needs, and how it runs it.

        The one capability rule of convcore: dispatch, ``convcore info``,
        ``convcore check``, the documentation and the tests all ask this method.
        A criterion left as None is not checked.

        Parameters
        ----------
        op : str or None
            An op of :data:`ALL_OPS` or an operator of :data:`DERIVED_OPS`
            (``"max_pool"``, ``"conv_transpose_backward"``, ...), which needs the
            ops it runs on the backend, or only itself where the backend declares
            it (:data:`OPERATOR_KERNELS`); None for the backend as a whole (its
            ``dtypes``).
        namespace : str, optional
            Array namespace name (``"numpy"``, ``"torch"``, ...).
        device : str, optional
            Device kind (``"cpu"``, ``"cuda"``).
        dtype : str, optional
            dtype name.  float16 and bfloat16 are supported where float32 is and
            computed in float32 (``compute_dtype``).
        nd : int, optional
            Number of spatial axes.  1 is supported where 2 is, as 2-D with a
            height of 1 (``lift``).

        Returns
        -------
        Support
            Falsy, with the ``reason``, when something is not declared.
        """
        if op is None:
            needed = ()
        elif op in self.ops:  # an op, or an operator the backend has a kernel for
            needed = (op,)
        else:
            needed = DERIVED_OPS.get(op, (op,))
        missing = [o for o in needed if o not in self.ops]
        if missing:
            which = f"{op!r}" if needed == (op,) else f"{missing[0]!r}, which {op} needs"
            return Support(f"it does not implement {which} (it implements {sorted(self.ops)})")
        if namespace is not None and self.namespaces is not None:
            if namespace not in self.namespaces:
                return Support(
                    f"it does not accept {namespace} arrays (it accepts {sorted(self.namespaces)})"
                )
        if device is not None and self.devices is not None and device not in self.devices:
            return Support(
                f"it does not run on {device!r} devices (it runs on {sorted(self.devices)})"
            )
        compute = None
        if dtype is not None:
            dtypes = self.dtypes if op is None else self.dtypes_for(op)
            if dtype not in dtypes:
                if dtype not in HALF_DTYPES or "float32" not in dtypes:
                    what = "" if op is None else f" for {op}"
                    return Support(
                        f"it does not support dtype {dtype}{what} (it supports {sorted(dtypes)})"
                    )
                compute = "float32"
        lift = False
        dims = self.spatial_dims
        if nd is not None and dims is not None and nd not in dims:
            if nd != 1 or 2 not in dims:
                return Support(
                    f"it does not support {nd} spatial axes (it supports "
                    f"{', '.join(f'{d}-D' for d in sorted(dims))})"
                )
            lift = True
        return Support(None, compute, lift)


@dataclass(frozen=True)
class BackendInfo:
    """A backend as reported by :func:`available_backends`."""

    name: str
    available: bool
    reason: str | None
    version: str | None
    priority: int
    description: str
    ops: frozenset[str]
    dtypes: frozenset[str]
    namespaces: frozenset[str] | None
    devices: frozenset[str] | None
    plugin: str = field(default="")
    spatial_dims: frozenset[int] | None = None
    op_dtypes: Mapping[str, frozenset[str]] | None = None
    spec: BackendSpec | None = field(default=None, repr=False, compare=False)

    def supports(self, op: str, **criteria) -> Support:
        """:meth:`BackendSpec.supports` of the backend's declaration."""
        if self.spec is None:
            raise ValueError(f"BackendInfo {self.name!r} carries no BackendSpec to ask")
        return self.spec.supports(op, **criteria)


def namespace_name(xp) -> str:
    """Short name of an array namespace (``"numpy"``, ``"torch"``, ...)."""
    checks = (
        ("numpy", array_api_compat.is_numpy_namespace),
        ("cupy", array_api_compat.is_cupy_namespace),
        ("torch", array_api_compat.is_torch_namespace),
        ("dask", array_api_compat.is_dask_namespace),
        ("jax", array_api_compat.is_jax_namespace),
        ("array_api_strict", array_api_compat.is_array_api_strict_namespace),
        ("ndonnx", array_api_compat.is_ndonnx_namespace),
        ("sparse", array_api_compat.is_pydata_sparse_namespace),
    )
    for name, check in checks:
        if check(xp):
            return name
    return getattr(xp, "__name__", type(xp).__name__)


def device_kind(xp_name: str, x) -> str:
    """Kind of device an array lives on (``"cpu"``, ``"cuda"``, ...)."""
    if xp_name in ("numpy", "array_api_strict"):
        return "cpu"
    if xp_name == "cupy":
        return "cuda"
    if xp_name == "dask":
        meta = getattr(x, "_meta", None)
        return "cuda" if array_api_compat.is_cupy_array(meta) else "cpu"
    try:
        dev = array_api_compat.device(x)
    except (AttributeError, TypeError):  # a JAX tracer refusing ``.device`` (older JAX)
        if xp_name != "jax":
            raise
        dev = None
    if dev is None and xp_name == "jax":
        # A traced JAX array (inside jit, grad, vmap) has no device yet: the traced
        # program runs on JAX's default backend.
        import jax

        dev = jax.devices()[0]
    kind = getattr(dev, "type", None) or getattr(dev, "platform", None) or str(dev)
    return "cuda" if kind == "gpu" else str(kind)


def dtype_name(xp, dtype) -> str:
    """Standard name of ``dtype`` in namespace ``xp`` (``"float32"``, ...)."""
    for name in _DTYPE_NAMES:
        candidate = getattr(xp, name, None)
        if candidate is not None and dtype == candidate:
            return name
    return str(dtype)


class BackendRegistry:
    """Backends by name, their lazily loaded kernels and availability."""

    def __init__(self, disabled: frozenset[str] = frozenset()):
        self.disabled = disabled
        self._specs: dict[str, BackendSpec] = {}
        self._plugin_of: dict[str, str] = {}
        self._kernels: dict[str, Mapping[str, Callable[..., Any]]] = {}
        self._reasons: dict[str, str | None] = {}
        self._lock = threading.RLock()
        #: Counts registrations: what was derived from the backends (the
        #: configuration's checked names, dispatch's memo) is redone when it moves.
        self.generation = 0
        #: Dispatch's memo (choices, Support answers, plans), emptied by every
        #: registration; a reloaded registry starts with an empty one.
        self.memo: dict = {}

    # -- registration -------------------------------------------------------
    def register(self, spec: BackendSpec, *, plugin: str = "<runtime>") -> None:
        """Add ``spec``; a backend named in ``CONVCORE_DISABLED_BACKENDS`` is skipped."""
        if not isinstance(spec, BackendSpec):
            raise TypeError(f"register() expects a BackendSpec, got {type(spec).__name__}")
        if spec.name in self.disabled:
            return
        with self._lock:
            if spec.name in self._specs:
                raise ValueError(
                    f"backend {spec.name!r} is already registered "
                    f"(by plugin {self._plugin_of[spec.name]!r})"
                )
            self._specs[spec.name] = spec
            self._plugin_of[spec.name] = plugin
            self.generation += 1
            self.memo.clear()

    def load_plugins(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> None:
        """Import the entry points of ``group`` (except disabled ones) and call their hook."""
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            if ep.name in self.disabled or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break convcore
                self._broken_plugin(ep.name, f"plugin {ep.value!r} failed to import: {exc!r}")
                continue
            pm.register(plugin, name=ep.name)
        for impl in pm.hook.convcore_register_backends.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(spec: BackendSpec, _plugin=plugin_name) -> None:
                self.register(spec, plugin=_plugin)

            impl.function(register=register)

    def _broken_plugin(self, name: str, reason: str) -> None:
        def load():
            raise BackendUnavailableError(reason)

        spec = BackendSpec(
            name=name if name.isidentifier() else "broken_plugin",
            load=load,
            ops=frozenset(),
            description="plugin that failed to import",
            check_available=lambda: reason,
        )
        if spec.name not in self._specs:
            self.register(spec, plugin=name)

    # -- queries ------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._specs, key=lambda n: (-self._specs[n].priority, n))

    def spec(self, name: str) -> BackendSpec:
        try:
            return self._specs[name]
        except KeyError:
            names = ["auto", *self.names()]
            close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownBackendError(
                f"unknown backend {name!r}; available backends: {', '.join(names)}{hint}"
            ) from None

    def unavailable_reason(self, name: str) -> str | None:
        """None when backend ``name`` can run here, else why not (cached)."""
        with self._lock:
            if name not in self._reasons:
                check = self.spec(name).check_available
                try:
                    reason = check() if check is not None else None
                except Exception as exc:
                    reason = f"availability check failed: {exc!r}"
                self._reasons[name] = reason
            return self._reasons[name]

    def kernels(self, name: str) -> Mapping[str, Callable[..., Any]]:
        """The kernels of backend ``name``, loading them on first use."""
        kernels = self._kernels.get(name)
        if kernels is not None:
            return kernels
        reason = self.unavailable_reason(name)
        if reason is not None:
            raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
        with self._lock:
            if name not in self._kernels:
                self._kernels[name] = dict(self.spec(name).load())
            return self._kernels[name]

    def info(self, name: str) -> BackendInfo:
        spec = self.spec(name)
        reason = self.unavailable_reason(name)
        return BackendInfo(
            name=spec.name,
            available=reason is None,
            reason=reason,
            version=spec.version,
            priority=spec.priority,
            description=spec.description,
            ops=spec.ops,
            dtypes=spec.dtypes,
            namespaces=spec.namespaces,
            devices=spec.devices,
            plugin=self._plugin_of[name],
            spatial_dims=spec.spatial_dims,
            op_dtypes=spec.op_dtypes,
            spec=spec,
        )


_registry: BackendRegistry | None = None
_registry_lock = threading.Lock()


def _disabled_from_env() -> frozenset[str]:
    raw = os.environ.get("CONVCORE_DISABLED_BACKENDS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def get_registry() -> BackendRegistry:
    """The process-wide registry, built on first use."""
    global _registry
    registry = _registry
    if registry is None:
        with _registry_lock:
            if _registry is None:
                registry = BackendRegistry(_disabled_from_env())
                registry.load_plugins()
                _registry = registry
            registry = _registry
    return registry


def reload_registry() -> BackendRegistry:
    """Forget every backend and discover the plugins again.

    Re-reads ``CONVCORE_DISABLED_BACKENDS`` and the installed entry points; backends
    added with :func:`register_backend` are dropped.  Meant for tests and for
    sessions that install a plugin while running.
    """
    global _registry
    with _registry_lock:
        _registry = None
    return get_registry()


def register_backend(spec: BackendSpec) -> None:
    """Register a backend at run time, without an entry point.

    Handy in notebooks and tests; packages should use the entry-point group
    ``convcore.backends`` so that their backend is found without being imported
    by hand.
    """
    get_registry().register(spec)


def available_backends() -> list[BackendInfo]:
    """Every registered backend, best first, with availability and capabilities.

    Returns
    -------
    list of BackendInfo
        ``name``, ``available`` and ``reason`` (why not, when unavailable),
        ``version``, ``priority``, ``description``, ``ops``, ``dtypes``,
        ``namespaces`` (None = any array-API namespace), ``devices`` and the
        ``plugin`` (entry-point name) that registered it.
    """
    registry = get_registry()
    return [registry.info(name) for name in registry.names()]
