"""Shared fixtures: backends, array namespaces, dtypes and tolerances.

* ``backend`` runs a test once per registered backend; an unavailable backend is
  a skipped param whose reason is the backend's own ``reason``.  What a backend
  can run (ops, namespaces, dtypes) comes from its :class:`convcore.BackendInfo`
  declaration: :meth:`BackendUnderTest.require` skips the combinations it does
  not declare, so the skips follow the backend rather than a list kept here.
* ``ns`` runs a test once per array namespace (numpy, array-api-strict, dask,
  torch); a namespace whose library is not installed is skipped.  It converts
  NumPy arrays into the namespace and back.
* ``dtype`` is float32 / float64 and ``assert_close`` holds the per-dtype
  tolerances (stated once, here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import convcore

# --------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------

#: ``(rtol, atol)`` per dtype.  ``atol`` is scaled by the magnitude of the
#: expected values (``max(1, max|expected|)``): a sum of k terms carries a
#: rounding error proportional to the size of its terms, not to the (possibly
#: cancelled) result.  float32 sums in the suite have at most a few hundred terms
#: of O(1) size (the 11x11x3 AlexNet filter: 363), so about
#: ``sqrt(363) * 6e-8 ~ 1e-6`` relative error is typical and 1e-5 is ample.
TOLERANCES = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def _assert_close(actual, expected, dtype=None, *, err_msg=""):
    """``assert_allclose`` with the suite's tolerance for ``dtype``.

    ``dtype`` defaults to the dtype of ``actual`` (which must be a NumPy array).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    dtype = np.dtype(dtype if dtype is not None else actual.dtype)
    rtol, atol = TOLERANCES[dtype]
    assert actual.shape == expected.shape, (
        f"shape {actual.shape} != expected {expected.shape} {err_msg}"
    )
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=err_msg)


@pytest.fixture(scope="session")
def assert_close():
    """The tolerance-aware comparison ``assert_close(actual, expected, dtype=None)``."""
    return _assert_close


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"], scope="session")
def dtype(request):
    """The floating dtypes convcore supports (as NumPy dtypes)."""
    return np.dtype(request.param)


# --------------------------------------------------------------------------
# Array namespaces
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """An array library under test, named as convcore names namespaces.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"array_api_strict"``, ``"dask"`` or ``"torch"`` (the names
        used in ``BackendInfo.namespaces``).
    module : module
        The imported library (``numpy``, ``array_api_strict``, ``dask.array``,
        ``torch``).
    """

    name: str
    module: Any

    def asarray(self, a):
        """A copy of the NumPy array ``a`` in this namespace."""
        a = np.array(a, copy=True)
        if self.name == "numpy":
            return a
        if self.name == "array_api_strict":
            return self.module.asarray(a, copy=True)
        if self.name == "dask":
            # Split the leading (batch) axis over two chunks where possible.
            lead = a.shape[0] if a.ndim else 1
            chunks = (max(1, math.ceil(lead / 2)),) + (-1,) * (a.ndim - 1) if a.ndim else -1
            return self.module.from_array(a, chunks=chunks)
        if self.name == "torch":
            return self.module.from_numpy(a)
        raise AssertionError(self.name)

    def to_numpy(self, a):
        """``a`` (an array of this namespace) as a NumPy array."""
        if self.name == "dask":
            import dask

            (a,) = dask.compute(a)
            return np.asarray(a)
        if self.name == "torch":
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def is_native(self, a) -> bool:
        """Whether ``a`` is an array of this namespace (not e.g. a NumPy array)."""
        import array_api_compat as aac

        if self.name == "numpy":
            return isinstance(a, np.ndarray)
        if self.name == "array_api_strict":
            return aac.is_array_api_strict_namespace(aac.array_namespace(a))
        if self.name == "dask":
            return aac.is_dask_array(a)
        if self.name == "torch":
            return aac.is_torch_array(a)
        raise AssertionError(self.name)


#: (convcore namespace name, module to import)
NAMESPACES = [
    ("numpy", "numpy"),
    ("array_api_strict", "array_api_strict"),
    ("dask", "dask.array"),
    ("torch", "torch"),
]


@pytest.fixture(params=[pytest.param(n, id=n[0]) for n in NAMESPACES], scope="session")
def ns(request):
    """Each array namespace; skipped when its library is not installed."""
    name, module = request.param
    return Namespace(name, pytest.importorskip(module))


@pytest.fixture(scope="session")
def np_ns():
    """The NumPy namespace alone, for tests that are about backends, not namespaces."""
    return Namespace("numpy", np)


@pytest.fixture(scope="session")
def make_ns():
    """``make_ns(name)``: the :class:`Namespace` called ``name`` (skip if not installed)."""
    modules = dict(NAMESPACES)

    def make(name):
        return Namespace(name, pytest.importorskip(modules[name]))

    return make


# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendUnderTest:
    """A registered backend plus its declared capabilities."""

    info: Any  # convcore.BackendInfo

    @property
    def name(self) -> str:
        return self.info.name

    def supports(self, *ops, ns=None, dtype=None, nd=None) -> str | None:
        """None when the backend declares support for all of these, else the reason.

        Asks the backend's declaration (:meth:`convcore.BackendSpec.supports`),
        the rule dispatch itself follows.
        """
        name = (
            None if dtype is None else (dtype if isinstance(dtype, str) else np.dtype(dtype).name)
        )
        for op in ops or (None,):
            support = self.info.supports(
                op, namespace=None if ns is None else ns.name, dtype=name, nd=nd
            )
            if not support:
                return f"backend {self.info.name!r}: {support.reason}"
        return None

    def require(self, *ops, ns=None, dtype=None, nd=None) -> None:
        """Skip the running test unless the backend declares support for all of these.

        Parameters
        ----------
        *ops : str
            Op names (``"conv"``, ``"conv_backward"``, ``"im2col"``, ``"col2im"``).
        ns : Namespace, optional
            The array namespace the test feeds the backend.
        dtype : dtype or str, optional
        nd : int, optional
            Number of spatial axes of the input.
        """
        reason = self.supports(*ops, ns=ns, dtype=dtype, nd=nd)
        if reason is not None:
            pytest.skip(reason)


def _backend_params():
    params = []
    for info in convcore.available_backends():
        marks = ()
        if not info.available:
            marks = pytest.mark.skip(reason=f"backend {info.name!r} unavailable: {info.reason}")
        params.append(pytest.param(BackendUnderTest(info), id=info.name, marks=marks))
    return params


@pytest.fixture(params=_backend_params(), scope="session")
def backend(request):
    """Each registered backend (unavailable ones skipped, with their reason)."""
    return request.param
