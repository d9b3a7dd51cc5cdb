"""Shared fixtures: backends, array namespaces, dtypes and tolerances.

* ``backend`` runs a test once per registered backend, and with ``ns`` and
  ``dtype`` once per combination **the backend declares** (asked through
  :meth:`convcore.BackendSpec.supports`, the rule dispatch follows; the ops and
  rank a test needs are named with ``@pytest.mark.declares("conv", nd=3)``, and
  ``namespaces=`` / ``dtypes=`` narrow the namespaces and dtypes it is fed,
  ``cases={"jax": ids}`` the cases one namespace is fed: :data:`JAX_SUBSET_REASON`).
  Undeclared combinations are not generated, so a skip always means something:
  the backend is unavailable here (its own ``reason``) or the namespace's library
  is not installed or cannot make arrays here.
* ``ns`` runs a test once per array namespace (numpy, array-api-strict, dask,
  torch, cupy, jax); it converts NumPy arrays into the namespace and back.
* ``dtype`` is float32 / float64 and ``assert_close`` holds the per-dtype
  tolerances (stated once, here).

JAX and float64: JAX makes 64-bit arrays only with ``jax_enable_x64`` set, and
without it converts float64 / int64 input to float32 / int32 (a warning where
the dtype is asked for by name).  The suite leaves JAX in its default mode, the
one most JAX programs run in, and does not flip the global flag: a JAX float64
(or other 64-bit) combination is generated but skipped with that reason
(:func:`namespace_dtype_problem`), and :meth:`Namespace.asarray` skips a test
that hands JAX a 64-bit array.  ``JAX_ENABLE_X64=1 python -m pytest`` runs them
all; ``tests/test_jax.py`` checks float64 under ``jax.enable_x64`` itself.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
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


# --------------------------------------------------------------------------
# Array namespaces
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """An array library under test, named as convcore names namespaces.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"array_api_strict"``, ``"dask"``, ``"torch"``, ``"cupy"`` or
        ``"jax"`` (the names used in ``BackendInfo.namespaces``).
    module : module
        The imported library (``numpy``, ``array_api_strict``, ``dask.array``,
        ``torch``, ``cupy``, ``jax.numpy``).
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
        if self.name == "cupy":
            return self.module.asarray(a)
        if self.name == "jax":
            problem = namespace_dtype_problem("jax", a.dtype)
            if problem is not None:
                pytest.skip(problem)
            return self.module.asarray(a)
        raise AssertionError(self.name)

    def to_numpy(self, a):
        """``a`` (an array of this namespace) as a NumPy array."""
        if self.name == "dask":
            import dask

            (a,) = dask.compute(a)
            return np.asarray(a)
        if self.name == "torch":
            return a.detach().cpu().numpy()
        if self.name == "cupy":
            return a.get()
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
        if self.name == "cupy":
            return aac.is_cupy_array(a)
        if self.name == "jax":
            return aac.is_jax_array(a)
        raise AssertionError(self.name)


#: (convcore namespace name, module to import)
NAMESPACES = [
    ("numpy", "numpy"),
    ("array_api_strict", "array_api_strict"),
    ("dask", "dask.array"),
    ("torch", "torch"),
    ("cupy", "cupy"),
    ("jax", "jax.numpy"),
]

#: The floating dtypes of the ``dtype`` fixture.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.cache
def namespace_problem(name: str) -> str | None:
    """None when arrays of namespace ``name`` can be made here, else why not."""
    module = dict(NAMESPACES)[name]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return f"{module} is not installed"
    if name == "cupy":
        try:
            import cupy

            cupy.zeros(1)
        except Exception as exc:  # cupy without a GPU: CUDARuntimeError
            return f"cupy cannot make arrays here: {type(exc).__name__}: {exc}"
    return None


#: Why the parity tests over a table of cases feed JAX only some of them
#: (``@pytest.mark.declares(cases={"jax": ...})``).
JAX_SUBSET_REASON = (
    "eager JAX compiles every array operation for every new shape (about a second per "
    "op and geometry on CPU), so a case costs JAX 10-100 times what it costs NumPy; the "
    "portable backend runs the same code on every namespace, so JAX gets a few cases that "
    "cover the geometry rules (groups, strides, asymmetric padding, 'same', dilation) and "
    "every namespace-agnostic test, and tests/test_jax.py its transforms"
)

#: The dtypes JAX has only with ``jax_enable_x64``.
_X64_DTYPES = ("float64", "int64", "uint64", "complex128")


def namespace_dtype_problem(name: str, dtype) -> str | None:
    """None when namespace ``name`` has arrays of ``dtype`` here, else why not.

    Only JAX lacks some: without ``jax_enable_x64`` it has no 64-bit dtypes (see
    the module docstring for why the suite does not set the flag).
    """
    if name != "jax" or dtype is None:
        return None
    name64 = getattr(dtype, "name", str(dtype))
    if name64 not in _X64_DTYPES:
        return None
    import jax

    if jax.config.jax_enable_x64:
        return None
    return (
        f"JAX has no {name64} arrays without jax_enable_x64 (the suite keeps JAX's "
        "default; JAX_ENABLE_X64=1 runs these)"
    )


def _namespace(name: str) -> Namespace:
    return Namespace(name, importlib.import_module(dict(NAMESPACES)[name]))


@pytest.fixture
def two_threads():
    """Numba's threads set to 2 for the test (and put back); a skip where it has fewer."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS < 2: cannot compare thread counts")
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="session")
def np_ns():
    """The NumPy namespace alone, for tests that are about backends, not namespaces."""
    return Namespace("numpy", np)


@pytest.fixture(scope="session")
def make_ns():
    """``make_ns(name)``: the :class:`Namespace` called ``name`` (skip if it cannot make arrays)."""
    modules = dict(NAMESPACES)

    def make(name):
        module = pytest.importorskip(modules[name])
        if namespace_problem(name) is not None:
            pytest.skip(namespace_problem(name))
        return Namespace(name, module)

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
        if reason is None and ns is not None:
            reason = namespace_dtype_problem(ns.name, np.dtype(dtype) if dtype else None)
        if reason is not None:
            pytest.skip(reason)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "declares(*ops, nd=None, namespaces=None, dtypes=None, cases=None): generate only the "
        "backend x namespace x dtype combinations whose backend declares these ops (and number "
        "of spatial axes), among these namespaces and dtypes (default: all; float32, float64); "
        "cases={namespace: ids} feeds that namespace only the `case` parameters with these ids",
    )


def pytest_collection_modifyitems(config, items):
    """Deselect the cases that ``declares(cases={namespace: ids})`` does not feed a namespace.

    Used for JAX (see :data:`JAX_SUBSET_REASON`): the test runs on JAX for the
    listed values of its ``case`` parameter (matched by ``case.id``, else
    ``str(case)``), or of its ``name`` parameter where it has no ``case``, and on
    every other namespace for all of them.
    """
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("declares")
        narrowed = marker.kwargs.get("cases") if marker else None
        callspec = getattr(item, "callspec", None)
        params = {} if callspec is None else callspec.params
        key = "case" if "case" in params else "name"
        if narrowed and key in params:
            ns = params.get("ns")
            case = params[key]
            ids = narrowed.get(getattr(ns, "name", None))
            if ids is not None and getattr(case, "id", str(case)) not in ids:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _combination(info, ns_name, dtype, ops, nd, *, with_ns: bool):
    """``pytest.param`` of one declared combination, or None when it is not declared."""
    dtype_name = _dtype_name(dtype)
    for op in ops:
        if not info.supports(op, namespace=ns_name, dtype=dtype_name, nd=nd):
            return None
    marks = ()
    if not info.available:
        marks = pytest.mark.skip(reason=f"backend {info.name!r} unavailable: {info.reason}")
    elif ns_name is not None and namespace_problem(ns_name) is not None:
        marks = pytest.mark.skip(reason=namespace_problem(ns_name))
    elif ns_name is not None and namespace_dtype_problem(ns_name, dtype) is not None:
        marks = pytest.mark.skip(reason=namespace_dtype_problem(ns_name, dtype))
    values = [BackendUnderTest(info)]
    ids = [info.name]
    if with_ns:
        values.append(None if marks else _namespace(ns_name))
        ids.append(ns_name)
    if dtype is not None:
        values.append(dtype)
        ids.append(dtype_name)
    return pytest.param(*values, id="-".join(ids), marks=marks)


def _dtype_name(dtype) -> str | None:
    return None if dtype is None else getattr(dtype, "name", dtype)


def _dtypes(marker) -> list:
    """Values of the ``dtype`` fixture: :data:`DTYPES`, or the marker's ``dtypes``.

    A name NumPy knows becomes its ``np.dtype``; others (``"bfloat16"``) stay names.
    """
    names = marker.kwargs.get("dtypes") if marker else None
    if names is None:
        return list(DTYPES)
    out = []
    for name in names:
        try:
            out.append(np.dtype(name))
        except TypeError:
            out.append(name)
    return out


def _given(metafunc) -> set[str]:
    """Argument names the test parametrises itself (``@pytest.mark.parametrize``)."""
    names = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0]
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc):
    """Parametrise ``backend`` (with ``ns`` / ``np_ns`` and ``dtype``) by the declarations.

    Without ``backend``: ``ns`` runs once per array namespace (skipped where it
    cannot make arrays) and ``dtype`` once per float dtype of :data:`DTYPES`.
    ``@pytest.mark.declares(namespaces=..., dtypes=...)`` narrows both, with or
    without ``backend``.
    """
    fixtures = set(metafunc.fixturenames) - _given(metafunc)
    marker = metafunc.definition.get_closest_marker("declares")
    wanted = marker.kwargs.get("namespaces") if marker else None
    if "backend" not in fixtures:
        if "ns" in fixtures:
            metafunc.parametrize(
                "ns",
                [
                    pytest.param(
                        None if namespace_problem(n) else _namespace(n),
                        id=n,
                        marks=pytest.mark.skip(reason=namespace_problem(n))
                        if namespace_problem(n)
                        else (),
                    )
                    for n, _ in NAMESPACES
                    if wanted is None or n in wanted
                ],
            )
        if "dtype" in fixtures:
            dtypes = _dtypes(marker)
            metafunc.parametrize("dtype", dtypes, ids=[_dtype_name(d) for d in dtypes])
        return
    ops = (marker.args or (None,)) if marker else (None,)
    nd = marker.kwargs.get("nd") if marker else None
    names = ["backend"]
    if "ns" in fixtures:
        names.append("ns")
        spaces = [name for name, _ in NAMESPACES if wanted is None or name in wanted]
    else:
        spaces = ["numpy" if "np_ns" in fixtures else None]
    dtypes = [None]
    if "dtype" in fixtures:
        names.append("dtype")
        dtypes = _dtypes(marker)
    params = []
    for info in convcore.available_backends():
        for ns_name in spaces:
            for dtype in dtypes:
                param = _combination(info, ns_name, dtype, ops, nd, with_ns="ns" in names)
                if param is not None:
                    params.append(param)
    metafunc.parametrize(names, params)
