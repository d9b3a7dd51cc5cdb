"""Dispatch: which backend runs a call, and how (compute dtype, spatial rank).

Every public operator asks :func:`select` for a :class:`Plan` once it has
validated its arguments.  The plan is the backend's answer to
:meth:`convcore.BackendSpec.supports` for this call plus the backend's kernels,
and it applies the two rules convcore keeps for every backend:

* **Spatial rank.**  A backend that declares 2-D but not 1-D kernels runs a 1-D
  call as 2-D with a height of 1 (a reshape, no copy): :meth:`Plan.im2col` and
  the other kernel calls lift and drop that axis.
* **Half precision.**  float16 / bfloat16 input on a backend that declares
  float32 but not the half type is computed in float32 (accumulation included)
  and rounded back once at the end: :meth:`Plan.cast` and :meth:`Plan.uncast`.

Operators that the core builds on the backends' ops (pooling, the transposed
convolution: :data:`convcore._registry.DERIVED_OPS`) get one plan for all the
ops they run, so they are refused, before any work, by a backend that lacks one.
"""

from __future__ import annotations

from typing import Any

from ._config import AUTO, per_namespace_hint, requested_backend
from ._registry import device_kind, dtype_name, get_registry, namespace_name
from ._validation import namespace
from .errors import BackendCapabilityError, BackendUnavailableError
from .geometry import ConvGeometry

__all__ = ["Plan", "resolve_backend", "select"]

Array = Any


def _lift(xp, a, insert_at: int = 2):
    """``(N, C, W)`` -> ``(N, C, 1, W)`` (a reshape: no copy)."""
    shape = tuple(a.shape)
    return xp.reshape(a, (*shape[:insert_at], 1, *shape[insert_at:]))


class Plan:
    """How one backend runs one call: its kernels, the compute dtype and the rank rule."""

    __slots__ = ("compute_dtype", "kernels", "lift", "name")

    def __init__(self, name: str, kernels, compute_dtype: str | None, lift: bool):
        self.name = name
        self.kernels = kernels
        self.compute_dtype = compute_dtype  # None: the input's own dtype
        self.lift = lift  # True: a 1-D call runs as 2-D with a height of 1

    def cast(self, xp, *arrays):
        """``arrays`` (None kept) in the compute dtype."""
        if self.compute_dtype is None:
            return arrays
        target = getattr(xp, self.compute_dtype)
        return tuple(None if a is None else xp.astype(a, target) for a in arrays)

    def uncast(self, xp, dtype, result):
        """``result`` rounded back to the caller's ``dtype`` (once)."""
        return result if self.compute_dtype is None else xp.astype(result, dtype)

    # -- the backend's ops, with 1-D calls lifted to 2-D where needed ----------
    def im2col(self, xp, x, geom: ConvGeometry):
        kernel = self.kernels["im2col"]
        if self.lift:
            return kernel(xp, _lift(xp, x), geom.lifted())
        return kernel(xp, x, geom)

    def col2im(self, xp, cols, geom: ConvGeometry):
        kernel = self.kernels["col2im"]
        if not self.lift:
            return kernel(xp, cols, geom)
        out = kernel(xp, cols, geom.lifted())
        return xp.reshape(out, (out.shape[0], out.shape[1], *geom.input_size))

    def conv(self, xp, x, weight, bias, geom: ConvGeometry, groups: int):
        kernel = self.kernels["conv"]
        if not self.lift:
            return kernel(xp, x, weight, bias, geom, groups)
        out = kernel(xp, _lift(xp, x), _lift(xp, weight), bias, geom.lifted(), groups)
        return xp.reshape(out, (x.shape[0], weight.shape[0], *geom.output_size))

    def conv_backward(self, xp, grad_out, x, weight, geom: ConvGeometry, groups: int):
        kernel = self.kernels["conv_backward"]
        if not self.lift:
            return kernel(xp, grad_out, x, weight, geom, groups)
        dx, dw, db = kernel(
            xp, _lift(xp, grad_out), _lift(xp, x), _lift(xp, weight), geom.lifted(), groups
        )
        return xp.reshape(dx, tuple(x.shape)), xp.reshape(dw, tuple(weight.shape)), db

    # -- pooling kernels of the backend's own (convcore._registry.OPERATOR_KERNELS) --
    def has(self, op: str) -> bool:
        """Whether the backend has a kernel of its own for ``op``."""
        return op in self.kernels

    def max_pool(self, xp, x, geom: ConvGeometry, return_indices: bool):
        kernel = self.kernels["max_pool"]
        if not self.lift:
            return kernel(xp, x, geom, return_indices)
        out, index = kernel(xp, _lift(xp, x), geom.lifted(), return_indices)
        shape = (x.shape[0], x.shape[1], *geom.output_size)
        return xp.reshape(out, shape), None if index is None else xp.reshape(index, shape)

    def max_pool_backward(self, xp, grad_out, x, geom: ConvGeometry, indices=None):
        kernel = self.kernels["max_pool_backward"]
        if not self.lift:
            return kernel(xp, grad_out, x, geom, indices)
        lifted = None if indices is None else _lift(xp, indices)
        dx = kernel(xp, _lift(xp, grad_out), _lift(xp, x), geom.lifted(), lifted)
        return xp.reshape(dx, tuple(x.shape))

    def avg_pool(self, xp, x, geom: ConvGeometry, divisor):
        kernel = self.kernels["avg_pool"]
        if not self.lift:
            return kernel(xp, x, geom, divisor)
        out = kernel(xp, _lift(xp, x), geom.lifted(), divisor)
        return xp.reshape(out, (x.shape[0], x.shape[1], *geom.output_size))

    def avg_pool_backward(self, xp, grad_out, geom: ConvGeometry, divisor):
        kernel = self.kernels["avg_pool_backward"]
        if not self.lift:
            return kernel(xp, grad_out, geom, divisor)
        dx = kernel(xp, _lift(xp, grad_out), geom.lifted(), divisor)
        return xp.reshape(dx, (grad_out.shape[0], grad_out.shape[1], *geom.input_size))


def _describe(op: str, criteria: dict) -> str:
    nd = criteria["nd"]
    rank = "" if nd == 2 else f" with {nd} spatial ax{'is' if nd == 1 else 'es'}"
    return (
        f"{op} on {criteria['namespace']} {criteria['dtype']} arrays{rank} "
        f"on {criteria['device']!r}"
    )


def _criteria(xp, ref) -> tuple[str, str, str]:
    """``(namespace, device kind, dtype name)`` of ``ref``; the names are memoized per
    namespace and dtype (asking array-api-compat and comparing dtypes took several
    microseconds a call)."""
    names = _NAMES
    try:
        key = (xp, ref.dtype)
        hit = names.get(key)
    except TypeError:  # an unhashable dtype: no memo
        key, hit = None, None
    if hit is None:
        xp_name = namespace_name(xp)
        hit = (xp_name, dtype_name(xp, ref.dtype))
        if key is not None and len(names) < 256:
            names[key] = hit
    xp_name, dtype = hit
    return xp_name, device_kind(xp_name, ref), dtype


_NAMES: dict = {}


def choose(op: str, xp, ref, backend: str | None, nd: int = 2):
    """The backend that runs ``op`` on ``ref`` and its :class:`Support` (see :func:`_choose`)."""
    name, support, _ = _choose(op, xp, ref, backend, nd)
    return name, support


def _choose(op: str, xp, ref, backend: str | None, nd: int = 2):
    """The backend that runs ``op`` on ``ref`` and its :class:`Support`, loading no kernels.

    Follows the selection chain (keyword, context, :func:`convcore.set_backend`,
    ``CONVCORE_BACKEND``, configuration files, ``auto``), for the namespace of
    ``ref`` (the environment and the files may choose per namespace).  A backend
    chosen by name that cannot run the call is an error; ``auto`` takes the
    highest-priority available backend that declares it.

    Successful answers are memoized in the registry per (requested name, op,
    namespace, device, dtype, nd); a registration or :func:`reload_registry`
    forgets them.
    """
    registry = get_registry()
    xp_name, device, dtype = _criteria(xp, ref)
    name, source = requested_backend(backend, xp_name)
    key = ("choose", name, op, xp_name, device, dtype, nd)
    memo = registry.memo
    hit = memo.get(key)
    if hit is not None:
        return hit
    criteria = {"namespace": xp_name, "device": device, "dtype": dtype, "nd": nd}
    if name == AUTO:
        declined = []
        for candidate in registry.names():
            # Declarations first: asking them imports nothing, so a backend that
            # cannot take this input (cupy for NumPy arrays) is never probed.
            support = registry.spec(candidate).supports(op, **criteria)
            reason = support.reason or registry.unavailable_reason(candidate)
            if reason is None:
                memo[key] = (candidate, support, True)
                return candidate, support, True
            declined.append(f"{candidate}: {reason}")
        raise BackendCapabilityError(
            f"no backend can run {_describe(op, criteria)}; " + "; ".join(declined)
        )
    reason = registry.unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend {name!r} (selected by {source}) is unavailable: {reason}"
        )
    support = registry.spec(name).supports(op, **criteria)
    if not support:
        raise BackendCapabilityError(
            f"backend {name!r} (selected by {source}) cannot run "
            f"{_describe(op, criteria)}: {support.reason}"
            f"{per_namespace_hint(name, source, xp_name)}"
        )
    memo[key] = (name, support, False)
    return name, support, False


def _preferred(registry, op: str, xp, ref, name: str, nd: int):
    """``(name, support)`` when backend ``name`` is registered, available and supports
    ``op`` on ``ref``, else None (memoized like :func:`choose`)."""
    xp_name, device, dtype = _criteria(xp, ref)
    key = ("prefer", name, op, xp_name, device, dtype, nd)
    memo = registry.memo
    if key in memo:
        return memo[key]
    found = None
    if name in registry.names() and registry.unavailable_reason(name) is None:
        criteria = {"namespace": xp_name, "device": device, "dtype": dtype, "nd": nd}
        support = registry.spec(name).supports(op, **criteria)
        if support:
            found = (name, support)
    memo[key] = found
    return found


def select(op: str, xp, ref, backend: str | None, nd: int = 2, *, prefer=None) -> Plan:
    """The :class:`Plan` for running ``op`` (an op or a derived operator) on ``ref``.

    ``prefer`` is ``(x_shape, weight_shape, geom, groups)`` of a convolution: when
    ``auto`` chose the backend, its ``BackendSpec.auto_prefers`` may hand the call
    to a backend that measured faster on such shapes.
    """
    name, support, by_auto = _choose(op, xp, ref, backend, nd)
    registry = get_registry()
    if by_auto and prefer is not None:
        hook = registry.spec(name).auto_prefers
        other = None if hook is None else hook(op, *prefer)
        if other is not None and other != name:
            found = _preferred(registry, op, xp, ref, other, nd)
            if found is not None:
                name, support = found
    key = ("plan", name, support)
    plan = registry.memo.get(key)
    if plan is None:
        kernels = registry.kernels(name)
        plan = Plan(name, kernels, support.compute_dtype, support.lift)
        registry.memo[key] = plan
    return plan


def resolve_backend(op: str, x: Array, /, *, backend: str | None = None) -> str:
    """Name of the backend that would run ``op`` on ``x``.

    ``op`` is a backend op (``"conv"``, ``"conv_backward"``, ``"im2col"``,
    ``"col2im"``) or an operator built on them (``"max_pool"``, ``"avg_pool"``,
    ``"conv_transpose"`` and their ``"_backward"``).  Applies the full selection
    chain (keyword, context, :func:`set_backend`, ``CONVCORE_BACKEND``,
    configuration files, ``auto``) and raises the same errors the operation
    itself would.  ``x`` is channels-first; its number of spatial axes is
    ``x.ndim - 2``.
    """
    xp = namespace(x=x)
    nd = max(1, x.ndim - 2)
    return choose(op, xp, x, backend, nd)[0]
