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

Levels 4-7 may choose per array namespace: ``CONVCORE_BACKEND="numba,torch=array_api"``
(``numba`` for every namespace not named, ``array_api`` for torch; ``*=numba`` spells
the default entry too) or ``backend = { numpy = "numba", torch = "array_api" }`` in a
file.  The chain is walked per namespace: a level answers for a namespace when it has
an entry for it or a default entry; otherwise the next level down is asked.

The environment and the files are read once and cached: every call re-checks only
the values of the environment variables the chain depends on, the working directory
and (when the environment does not decide every namespace) one ``stat`` of each of
the three configuration files; a change to any of them makes the next call re-read.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ._registry import get_registry
from .errors import ConfigurationError, UnknownBackendError

__all__ = ["get_backend", "set_backend", "use_backend", "config_files"]

AUTO = "auto"
ENV_VAR = "CONVCORE_BACKEND"
#: The key of a per-namespace mapping that applies to every namespace not named.
DEFAULT_ENTRY = "*"
#: The keys a configuration file (``convcore.toml``, ``[tool.convcore]``) may set.
KNOWN_KEYS = ("backend",)
#: Namespace names convcore tells apart (``convcore._registry.namespace_name``);
#: those that registered backends declare are accepted too.
KNOWN_NAMESPACES = (
    "numpy",
    "cupy",
    "torch",
    "dask",
    "jax",
    "array_api_strict",
    "ndonnx",
    "sparse",
)

_context_backend: ContextVar[str | None] = ContextVar("convcore_backend", default=None)
_process_backend: str | None = None
_toml_cache: dict[str, tuple[tuple[int, ...], dict]] = {}


class Setting(NamedTuple):
    """The backend setting of one level of the chain (environment or a file)."""

    default: str | None  # the backend for namespaces not named (None: ask the next level)
    by_namespace: Mapping[str, str]
    source: str  # "env:CONVCORE_BACKEND" or "config:<path>"
    origin: str  # how error messages name the level

    def lookup(self, namespace: str | None) -> str | None:
        if namespace is not None:
            name = self.by_namespace.get(namespace)
            if name is not None:
                return name
        return self.default


def _registry_version(registry) -> tuple:
    # Backends are only ever added to a registry, so (which registry, how many
    # registrations) changes whenever a checked name could become (in)valid.  The
    # registry itself is kept, not its id: a new one cannot pass for a dead one.
    return (registry, registry.generation)


def _suggestion(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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


def _known_namespaces() -> set[str]:
    known = set(KNOWN_NAMESPACES)
    registry = get_registry()
    for name in registry.names():
        declared = registry.spec(name).namespaces
        if declared:
            known |= declared
    return known


def _check_namespace(namespace, origin: str) -> str:
    known = _known_namespaces()
    if not isinstance(namespace, str) or namespace.strip() not in known:
        hint = _suggestion(namespace, known) if isinstance(namespace, str) else ""
        raise ConfigurationError(
            f"unknown array namespace {namespace!r} in the backend setting of {origin}; "
            f"known namespaces: {', '.join(sorted(known))} "
            f"(and {DEFAULT_ENTRY!r} for every other one){hint}"
        )
    return namespace.strip()


_SYNTAX = (
    'a backend name ("numba"), or comma-separated entries NAMESPACE=BACKEND with at most '
    'one default entry BACKEND or *=BACKEND ("numba,torch=array_api")'
)


def _parse_string(text: str, origin: str) -> tuple[str | None, dict[str, str]]:
    """``"numba"``, ``"numpy=numba,torch=array_api"``, ``"numba,torch=auto"``, ``"*=numba"``."""
    default = None
    mapping: dict[str, str] = {}
    entries = text.split(",")
    for raw in entries:
        entry = raw.strip()
        if not entry:
            raise ConfigurationError(
                f"malformed backend setting {text!r} in {origin}: empty entry; expected {_SYNTAX}"
            )
        namespace, sep, name = entry.partition("=")
        namespace, name = namespace.strip(), name.strip()
        if not sep:
            namespace, name = DEFAULT_ENTRY, namespace
        if not namespace or not name or "=" in name:
            raise ConfigurationError(
                f"malformed backend setting {text!r} in {origin}: entry {entry!r}; "
                f"expected {_SYNTAX}"
            )
        if namespace == DEFAULT_ENTRY:
            if default is not None:
                raise ConfigurationError(
                    f"malformed backend setting {text!r} in {origin}: more than one default "
                    f"entry ({default!r} and {name!r})"
                )
            default = _check_name(name, origin)
            continue
        namespace = _check_namespace(namespace, origin)
        if namespace in mapping:
            raise ConfigurationError(
                f"malformed backend setting {text!r} in {origin}: namespace {namespace!r} "
                "is given twice"
            )
        mapping[namespace] = _check_name(name, origin)
    return default, mapping


def _parse_table(table: dict, origin: str) -> tuple[str | None, dict[str, str]]:
    """``backend = { numpy = "numba", torch = "array_api", "*" = "auto" }``."""
    default = None
    mapping: dict[str, str] = {}
    for key, name in table.items():
        if not isinstance(name, str):
            raise ConfigurationError(
                f"malformed backend setting in {origin}: the backend for {key!r} must be a "
                f"string, got {name!r}"
            )
        if key.strip() == DEFAULT_ENTRY:
            default = _check_name(name, origin)
        else:
            mapping[_check_namespace(key, origin)] = _check_name(name, origin)
    return default, mapping


def _setting(value, source: str, origin: str) -> Setting:
    if isinstance(value, str):
        default, mapping = _parse_string(value, origin)
    elif isinstance(value, dict):
        default, mapping = _parse_table(value, origin)
    else:
        raise ConfigurationError(
            f"malformed backend setting in {origin}: expected a string or a table of "
            f"namespace = backend, got {value!r}"
        )
    return Setting(default, MappingProxyType(mapping), source, origin)


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


#: The environment variables the chain depends on: the setting itself, then those
#: that locate the user configuration directory (``Path.home()`` included).
_ENV_NAMES = (
    ENV_VAR,
    "CONVCORE_CONFIG_DIR",
    "APPDATA",
    "XDG_CONFIG_HOME",
    "HOME",
    "USERPROFILE",
    "HOMEDRIVE",
    "HOMEPATH",
)
_ENVIRON_TYPE = type(os.environ)
try:
    _ENV_KEYS = tuple(os.environ.encodekey(name) for name in _ENV_NAMES)
except AttributeError:  # pragma: no cover - not CPython's os._Environ
    _ENV_KEYS = None


def _env_snapshot() -> tuple:
    """The values of :data:`_ENV_NAMES` (raw, for comparison only).

    Reads CPython's ``os.environ._data`` directly when it can: eight lookups
    through ``os.environ.get`` (which encodes each key) took longer than the rest
    of the cached chain together.  ``os.environ[...] = ...`` and ``del`` update
    that dictionary, so a change is seen; ``os.putenv`` is invisible to
    ``os.environ`` itself, so it is not seen here either.
    """
    env = os.environ
    data = getattr(env, "_data", None) if type(env) is _ENVIRON_TYPE else None
    if data is not None and _ENV_KEYS is not None:
        return tuple(map(data.get, _ENV_KEYS))
    return tuple(map(env.get, _ENV_NAMES))


def _candidate_key() -> tuple:
    """What the configuration file paths depend on: the working directory and the environment."""
    env = os.environ
    return (os.getcwd(), *(env.get(name) for name in _ENV_NAMES[1:]))


@functools.lru_cache(maxsize=16)
def _config_candidates(cwd, *_env) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The paths of :func:`config_files` as strings, cached per working directory and
    environment: building the paths with pathlib took most of the 90 us that
    looking the files up cost per call."""
    return (
        (os.path.join(cwd, "convcore.toml"), ()),
        (os.path.join(cwd, "pyproject.toml"), ("tool", "convcore")),
        (str(_user_config_dir() / "convcore.toml"), ()),
    )


def _signature(path: str) -> tuple[int, ...] | None:
    """What tells a changed file apart (None: no file): mtime, size, inode, ctime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _read_toml(path: str, signature: tuple[int, ...] | None = None) -> dict | None:
    key = _signature(path) if signature is None else signature
    if key is None:
        return None
    cached = _toml_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read convcore configuration {path}: {exc}") from None
    _toml_cache[path] = (key, data)
    return data


def _file_setting(path: str, table: tuple[str, ...], signature) -> Setting | None:
    data = _read_toml(path, signature)
    if data is None:
        return None
    for key in table:
        data = data.get(key, {})
        if not isinstance(data, dict):
            return None
    where = f"[{'.'.join(table)}] of {path}" if table else path
    unknown = [key for key in data if key not in KNOWN_KEYS]
    if unknown:
        key = unknown[0]
        raise ConfigurationError(
            f"unknown key {key!r} in convcore configuration {where}; known keys: "
            f"{', '.join(KNOWN_KEYS)}{_suggestion(key, KNOWN_KEYS)}"
        )
    if "backend" not in data:
        return None
    return _setting(data["backend"], f"config:{path}", f"{where} (key 'backend')")


class _Levels(NamedTuple):
    """The levels of :func:`configured_levels` and what they were read from."""

    registry: object  # the registry the names were checked against (kept: no id reuse)
    generation: int
    snapshot: tuple  # _env_snapshot()
    cwd: str | None  # None: the environment decided every namespace, no file was looked at
    paths: tuple[str, ...]
    signatures: tuple
    levels: tuple[Setting, ...]


_levels: _Levels | None = None


def _read_levels(registry, generation: int, snapshot: tuple) -> _Levels:
    raw = os.environ.get(ENV_VAR)
    env = None
    if raw is not None and raw.strip():
        env = _setting(raw, f"env:{ENV_VAR}", f"the {ENV_VAR} environment variable")
    if env is not None and env.default is not None:
        return _Levels(registry, generation, snapshot, None, (), (), (env,))
    cwd = os.getcwd()
    candidates = _config_candidates(cwd, *snapshot[1:])
    paths = tuple(path for path, _ in candidates)
    signatures = tuple(map(_signature, paths))
    levels = [] if env is None else [env]
    for (path, table), signature in zip(candidates, signatures):
        found = _file_setting(path, table, signature)
        if found is not None:
            levels.append(found)
            if found.default is not None:
                break  # it answers for every namespace: the files below never matter
    return _Levels(registry, generation, snapshot, cwd, paths, signatures, tuple(levels))


def configured_levels() -> tuple[Setting, ...]:
    """The environment and file levels of the chain that set a backend, highest first.

    Stops after the first level with a default entry (the levels below it are not
    read).  Cached: re-read only when :func:`_env_snapshot`, the working directory,
    a file's :func:`_signature` or the registry changed.  A setting that is an
    error is not cached (every call raises again).
    """
    global _levels
    registry = get_registry()
    snapshot = _env_snapshot()
    cached = _levels
    if (
        cached is not None
        and cached.registry is registry
        and cached.generation == registry.generation
        and cached.snapshot == snapshot
        and (
            cached.cwd is None
            or (
                cached.cwd == os.getcwd()
                and tuple(map(_signature, cached.paths)) == cached.signatures
            )
        )
    ):
        return cached.levels
    _levels = _read_levels(registry, registry.generation, snapshot)
    return _levels.levels


def _resolve(namespace: str | None) -> tuple[str, str, Setting | None]:
    name = _context_backend.get()
    if name is not None:
        return name, "context", None
    if _process_backend is not None:
        return _process_backend, "set_backend", None
    for setting in configured_levels():
        name = setting.lookup(namespace)
        if name is not None:
            return name, setting.source, setting
    return AUTO, "default", None


def get_backend(namespace: str | None = None) -> tuple[str, str]:
    """The backend that a call without ``backend=`` would use, and where that came from.

    Parameters
    ----------
    namespace : str, optional
        An array namespace name (``"numpy"``, ``"torch"``, ...): the answer for
        arrays of that library, taking per-namespace settings
        (``CONVCORE_BACKEND="numpy=numba,torch=array_api"``) into account.  Without
        it, the answer for a namespace that no setting names.

    Returns
    -------
    name : str
        A backend name or ``"auto"``.
    source : str
        ``"context"``, ``"set_backend"``, ``"env:CONVCORE_BACKEND"``,
        ``"config:<path>"`` or ``"default"``.
    """
    name, source, _ = _resolve(namespace)
    return name, source


def namespace_backends() -> dict[str, tuple[str, str]]:
    """Every namespace a per-namespace setting names: ``{namespace: (name, source)}``.

    As :func:`get_backend` answers for that namespace (a namespace named at a
    level below the one that decides is not listed when a higher level decides it).
    """
    names = sorted({ns for level in configured_levels() for ns in level.by_namespace})
    out = {}
    for ns in names:
        name, source, setting = _resolve(ns)
        if setting is not None and ns in setting.by_namespace:
            out[ns] = (name, source)
    return out


def requested_backend(backend: str | None, namespace: str | None = None) -> tuple[str, str]:
    """Resolve the keyword against the rest of the chain (for arrays of ``namespace``)."""
    if backend is not None:
        return _check_name(backend, "the backend= keyword"), "keyword"
    return get_backend(namespace)


def per_namespace_hint(name: str, source: str, namespace: str) -> str:
    """For an error: how to apply configured backend ``name`` only where it works.

    Empty unless the name is the default entry of an environment or file setting
    (a per-namespace entry, a keyword or code's own choice is meant as it is).
    """
    if not (source.startswith("env:") or source.startswith("config:")):
        return ""
    setting = next((lvl for lvl in configured_levels() if lvl.source == source), None)
    if setting is None or namespace in setting.by_namespace:
        return ""
    declared = get_registry().spec(name).namespaces
    if not declared:
        return ""
    if source.startswith("env:"):
        entries = ",".join(f"{ns}={name}" for ns in sorted(declared))
        example = f'{ENV_VAR}="{entries}"'
    else:
        entries = ", ".join(f'{ns} = "{name}"' for ns in sorted(declared))
        example = f"backend = {{ {entries} }}"
    return (
        f"; {setting.origin} sets {name!r} for every array namespace: to use it only for "
        f"{', '.join(sorted(declared))} arrays and leave {namespace} arrays to auto, "
        f"choose per namespace, e.g. {example}"
    )
