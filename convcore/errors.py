"""Exceptions raised by convcore.

Every error convcore raises for a user mistake is a ``ValueError`` or a
``TypeError`` (or ``RuntimeError`` for a backend that cannot run on this
machine, and ``MemoryError`` for a call that ``CONVCORE_WORKSPACE_MB`` is too
small for), so ordinary ``except`` clauses keep working; the subclasses below let
callers tell backend problems apart.
"""

from __future__ import annotations

__all__ = [
    "BackendCapabilityError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConvcoreError",
    "UnknownBackendError",
    "WorkspaceLimitError",
]


class ConvcoreError(Exception):
    """Base class of the backend-related errors raised by convcore."""


class UnknownBackendError(ConvcoreError, ValueError):
    """A backend name that no installed (and enabled) plugin registers."""


class ConfigurationError(ConvcoreError, ValueError):
    """A malformed convcore setting: an unknown key in a configuration file, or a
    ``CONVCORE_BACKEND`` / ``backend`` value that is not a name or a per-namespace mapping."""


class BackendUnavailableError(ConvcoreError, RuntimeError):
    """The backend is registered but cannot run here (library or device missing)."""


class BackendCapabilityError(ConvcoreError, TypeError):
    """The selected backend does not support this input (namespace, device, dtype or op)."""


class WorkspaceLimitError(ConvcoreError, MemoryError):
    """``CONVCORE_WORKSPACE_MB`` is below the smallest chunk a backend can cut the call into.

    Raised before the call allocates anything large; the message names the
    setting, its value and the bytes needed.  A ``MemoryError``, like the
    allocation failure it replaces.
    """
