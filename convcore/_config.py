"""Which backend runs: the selection chain and the configuration files.

Highest priority first:

1. the ``backend=`` keyword of a call;
2. ``with convcore.use_backend(name):`` (a :class:`contextvars.ContextVar`, so each
   thread and each asyncio task sees its own value);
3. ``convcore.set_backend(name)`` (process default);
4. the ``CONVCORE_BACKEND`` environment variable;
5. ``convcore.toml`` in the working directory (``backend = "numpy"``);
6. ``pyproject.toml`` in the working directory, table ``[tool.convcore]``;
7. ``convcore.toml`` in the user configuration directory:
   ``$CONVCORE_CONFIG_DIR``, else ``%APPDATA%\\convcore`` on Windows, else
   ``$XDG_CONFIG_HOME/convcore`` (default ``~/.config/convcore``);
8. ``"auto"``: the highest-priority available backend that supports the input.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ._registry import get_registry
from .errors import UnknownBackendError

__all__ = ["get_backend", "set_backend", "use_backend", "config_files"]

AUTO = "auto"
ENV_VAR = "CONVCORE_BACKEND"

_context_backend: ContextVar[str | None] = ContextVar("convcore_backend", default=None)
_process_backend: str | None = None
_toml_cache: dict[str, tuple[tuple[int, int], dict]] = {}


def _check_name(name, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend from {source} must be a string, got {name!r}")
    name = name.strip()
    if name != AUTO:
        try:
            get_registry().spec(name)
        except UnknownBackendError as exc:
            raise UnknownBackendError(f"{exc} (the name came from {source})") from None
    return name


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the enclosed block with backend ``name`` (or ``"auto"``).

    The choice lives in a :class:`contextvars.ContextVar`: it is local to the
    current thread or asyncio task and restored on exit, also on error.

    Examples
    --------
    >>> import numpy as np, convcore
    >>> with convcore.use_backend("array_api"):
    ...     y = convcore.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    """
    name = _check_name(name, "use_backend()")
    token = _context_backend.set(name)
    try:
        yield name
    finally:
        _context_backend.reset(token)


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend; ``None`` clears it.

    Prefer :func:`use_backend` in libraries: it cannot leak into other code.
    """
    global _process_backend
    _process_backend = None if name is None else _check_name(name, "set_backend()")


def _user_config_dir() -> Path:
    explicit = os.environ.get("CONVCORE_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "convcore"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "convcore"


def config_files() -> list[tuple[Path, tuple[str, ...]]]:
    """Configuration files in the order they are consulted, with the table to read."""
    return [(Path(path), table) for path, table in _config_candidates(*_candidate_key())]


def _candidate_key() -> tuple:
    """What the configuration file paths depend on: the working directory and the environment."""
    env = os.environ
    return (
        os.getcwd(),
        env.get("CONVCORE_CONFIG_DIR"),
        env.get("APPDATA"),
        env.get("XDG_CONFIG_HOME"),
        env.get("HOME"),
        env.get("USERPROFILE"),  # Path.home() on Windows
        env.get("HOMEDRIVE"),
        env.get("HOMEPATH"),
    )


@functools.lru_cache(maxsize=16)
def _config_candidates(cwd, *_env) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The paths of :func:`config_files` as strings, cached per working directory and
    environment: every call without ``backend=`` looks the files up, and building
    the paths with pathlib took most of the 90 us that cost per call."""
    return (
        (os.path.join(cwd, "convcore.toml"), ()),
        (os.path.join(cwd, "pyproject.toml"), ("tool", "convcore")),
        (str(_user_config_dir() / "convcore.toml"), ()),
    )


def _read_toml(path: str) -> dict | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _toml_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read convcore configuration {path}: {exc}") from None
    _toml_cache[path] = (key, data)
    return data


def _from_config_files() -> tuple[str, str] | None:
    for path, table in _config_candidates(*_candidate_key()):
        data = _read_toml(path)
        if data is None:
            continue
        for key in table:
            data = data.get(key, {})
            if not isinstance(data, dict):
                data = {}
                break
        if "backend" in data:
            source = f"config:{path}"
            return _check_name(data["backend"], source), source
    return None


def get_backend() -> tuple[str, str]:
    """The backend that a call without ``backend=`` would use, and where that came from.

    Returns
    -------
    name : str
        A backend name or ``"auto"``.
    source : str
        ``"context"``, ``"set_backend"``, ``"env:CONVCORE_BACKEND"``,
        ``"config:<path>"`` or ``"default"``.
    """
    name = _context_backend.get()
    if name is not None:
        return name, "context"
    if _process_backend is not None:
        return _process_backend, "set_backend"
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return _check_name(env, f"the {ENV_VAR} environment variable"), f"env:{ENV_VAR}"
    found = _from_config_files()
    if found is not None:
        return found
    return AUTO, "default"


def requested_backend(backend: str | None) -> tuple[str, str]:
    """Resolve the keyword against the rest of the chain."""
    if backend is not None:
        return _check_name(backend, "the backend= keyword"), "keyword"
    return get_backend()
