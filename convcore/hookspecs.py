"""Plugin hook specifications for convcore backends.

A backend plugin is a module (or object) listed under the entry-point group
``convcore.backends`` that implements::

    from convcore.hookspecs import hookimpl

    @hookimpl
    def convcore_register_backends(register):
        register(BackendSpec(name="mybackend", load=_load, ...))

Built-in backends (``array_api``, ``numpy``) register exactly this way.  The hook
is called once, when the registry is first needed; convolutions never go
through pluggy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._registry import BackendSpec

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "convcore_register_backends"]

PROJECT_NAME = "convcore"
ENTRY_POINT_GROUP = "convcore.backends"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def convcore_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register one or more backends.

    Parameters
    ----------
    register : callable
        ``register(spec)`` adds a :class:`convcore.BackendSpec` to the registry.
        Call it once per backend the plugin provides.  Registering a name that
        is already taken raises ``ValueError``.

    Notes
    -----
    Keep the plugin module cheap to import: import heavy libraries (numba, cupy)
    inside ``spec.load`` and ``spec.check_available``, which run only when the
    backend is first used or inspected.
    """
