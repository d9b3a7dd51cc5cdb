"""Backend selection: the precedence chain, its sources, thread/task isolation, errors.

keyword > use_backend() > set_backend() > CONVCORE_BACKEND > ./convcore.toml >
[tool.convcore] in ./pyproject.toml > user convcore.toml > "auto".

Which backend actually ran is checked with "spy" backends registered at run time:
each wraps the portable ``conv`` kernel and logs ``(name, thread id, x.shape)``.
Every test gets a fresh registry (the process registry is put back afterwards),
an empty working directory and an empty user configuration directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import array_api_strict as xps
import numpy as np
import pytest
from cases import expected_conv
from helpers import auto_for_numpy

import convcore
from convcore import _registry as registry_module
from convcore.errors import (
    BackendCapabilityError,
    ConvcoreError,
    UnknownBackendError,
)

LEVELS = ["keyword", "context", "set_backend", "env", "cwd_toml", "pyproject", "user_config"]
THREAD_SPIES = ["spy_t0", "spy_t1", "spy_t2", "spy_t3"]
SPY_NAMES = [f"spy_{level}" for level in LEVELS] + THREAD_SPIES


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No selection state leaks in or out; returns the working and user config dirs."""
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    user_dir = tmp_path / "user-config"
    user_dir.mkdir()
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(user_dir))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # A fresh registry for this test; monkeypatch restores the process registry after.
    monkeypatch.setattr(registry_module, "_registry", None)
    convcore.set_backend(None)
    yield {"cwd": cwd, "user": user_dir}
    convcore.set_backend(None)


def _spy_spec(name, base_conv, log):
    def conv(xp, x, weight, bias, geom, groups):
        log.append((name, threading.get_ident(), tuple(x.shape)))
        return base_conv(xp, x, weight, bias, geom, groups)

    return convcore.BackendSpec(
        name=name,
        load=lambda: {"conv": conv},
        ops={"conv"},
        dtypes={"float64"},
        namespaces={"numpy"},
        priority=-100,
        description=f"test spy {name}",
    )


@pytest.fixture
def spies():
    """Register the spy backends; returns the shared call log."""
    log = []
    base = registry_module.get_registry().kernels("array_api")["conv"]
    for name in SPY_NAMES:
        convcore.register_backend(_spy_spec(name, base, log))
    return log


def _inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _configure(level, name, dirs, monkeypatch, stack):
    """Make ``level`` of the chain ask for backend ``name``; returns the expected source."""
    if level == "context":
        stack.append(convcore.use_backend(name))
        stack[-1].__enter__()
        return "context"
    if level == "set_backend":
        convcore.set_backend(name)
        return "set_backend"
    if level == "env":
        monkeypatch.setenv("CONVCORE_BACKEND", name)
        return "env:CONVCORE_BACKEND"
    if level == "cwd_toml":
        path = _write(dirs["cwd"] / "convcore.toml", f'backend = "{name}"\n')
        return f"config:{path}"
    if level == "pyproject":
        path = _write(
            dirs["cwd"] / "pyproject.toml",
            f'[project]\nname = "somebody-else"\n\n[tool.convcore]\nbackend = "{name}"\n',
        )
        return f"config:{path}"
    if level == "user_config":
        path = _write(dirs["user"] / "convcore.toml", f'backend = "{name}"\n')
        return f"config:{path}"
    raise AssertionError(level)


def _same_source(actual, expected):
    if expected.startswith("config:") and actual.startswith("config:"):
        return Path(actual[7:]).resolve() == Path(expected[7:]).resolve()
    return actual == expected


@pytest.mark.parametrize("top", [*LEVELS, "auto"], ids=[*LEVELS, "auto"])
def test_precedence_chain(top, spies, isolated, monkeypatch):
    """Every level from ``top`` down is configured; ``top`` must win."""
    active = LEVELS[LEVELS.index(top) :] if top != "auto" else []
    contexts = []
    sources = {}
    try:
        # Configure bottom-up so that the context manager is entered last.
        for level in reversed(active):
            if level != "keyword":
                sources[level] = _configure(level, f"spy_{level}", isolated, monkeypatch, contexts)
        x, w = _inputs()
        kwargs = {"backend": "spy_keyword"} if top == "keyword" else {}
        name, source = convcore.get_backend()
        if top == "auto":
            assert (name, source) == ("auto", "default")
        else:
            # get_backend() ignores the keyword: it reports the next level down.
            reported = active[1] if top == "keyword" else top
            assert name == f"spy_{reported}"
            assert _same_source(source, sources[reported]), (source, sources[reported])
        expected = auto_for_numpy() if top == "auto" else f"spy_{top}"
        assert convcore.resolve_backend("conv", x, **kwargs) == expected
        y = convcore.conv2d(x, w, **kwargs)
    finally:
        for ctx in reversed(contexts):
            ctx.__exit__(None, None, None)
    np.testing.assert_allclose(y, expected_conv(x, w), rtol=1e-12, atol=1e-12)
    if top == "auto":
        assert spies == []
    else:
        assert spies == [(f"spy_{top}", threading.get_ident(), x.shape)]


def test_keyword_overrides_every_other_level(spies, isolated, monkeypatch):
    contexts = []
    for level in reversed(LEVELS[1:]):
        _configure(level, f"spy_{level}", isolated, monkeypatch, contexts)
    try:
        x, w = _inputs()
        y = convcore.conv2d(x, w, backend="numpy")
        y_portable = convcore.conv2d(x, w, backend="array_api")
    finally:
        contexts[0].__exit__(None, None, None)
    assert spies == []
    np.testing.assert_allclose(y, expected_conv(x, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y_portable, expected_conv(x, w), rtol=1e-12, atol=1e-12)


def test_default_is_auto():
    assert convcore.get_backend() == ("auto", "default")


@pytest.mark.parametrize("contents", ["", "# nothing set\n"], ids=["empty", "comment-only"])
def test_convcore_toml_without_backend_is_skipped(contents, isolated):
    _write(isolated["cwd"] / "convcore.toml", contents)
    user = _write(isolated["user"] / "convcore.toml", 'backend = "array_api"\n')
    name, source = convcore.get_backend()
    assert name == "array_api"
    assert _same_source(source, f"config:{user}")


@pytest.mark.parametrize(
    "contents",
    [
        '[project]\nname = "x"\n',
        "[tool.black]\nline-length = 100\n",
        "[tool.convcore]\n",
        'backend = "numpy"\n',
    ],
    ids=["no-tool-table", "other-tool", "empty-table", "top-level-key-ignored"],
)
def test_pyproject_without_tool_convcore_backend_is_skipped(contents, isolated):
    _write(isolated["cwd"] / "pyproject.toml", contents)
    assert convcore.get_backend() == ("auto", "default")


def test_cwd_convcore_toml_beats_pyproject(isolated):
    toml = _write(isolated["cwd"] / "convcore.toml", 'backend = "array_api"\n')
    _write(isolated["cwd"] / "pyproject.toml", '[tool.convcore]\nbackend = "numpy"\n')
    name, source = convcore.get_backend()
    assert name == "array_api"
    assert _same_source(source, f"config:{toml}")


def test_xdg_config_home_is_used(isolated, monkeypatch, tmp_path):
    monkeypatch.delenv("CONVCORE_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = _write(tmp_path / "xdg" / "convcore" / "convcore.toml", 'backend = "array_api"\n')
    name, source = convcore.get_backend()
    assert name == "array_api"
    assert _same_source(source, f"config:{path}")


def test_convcore_config_dir_overrides_xdg(isolated, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _write(tmp_path / "xdg" / "convcore" / "convcore.toml", 'backend = "numpy"\n')
    path = _write(isolated["user"] / "convcore.toml", 'backend = "array_api"\n')
    name, source = convcore.get_backend()
    assert name == "array_api"
    assert _same_source(source, f"config:{path}")


def test_home_dot_config_is_the_fallback(isolated, monkeypatch, tmp_path):
    monkeypatch.delenv("CONVCORE_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _write(
        tmp_path / "home" / ".config" / "convcore" / "convcore.toml", 'backend = "numpy"\n'
    )
    name, source = convcore.get_backend()
    assert name == "numpy"
    assert _same_source(source, f"config:{path}")


def test_config_file_change_is_picked_up(isolated):
    path = isolated["cwd"] / "convcore.toml"
    _write(path, 'backend = "numpy"\n')
    assert convcore.get_backend()[0] == "numpy"
    _write(path, 'backend = "array_api"     # changed, and a different size\n')
    assert convcore.get_backend()[0] == "array_api"
    path.unlink()
    assert convcore.get_backend() == ("auto", "default")


def test_a_change_of_directory_or_config_dir_between_calls_is_seen(isolated, monkeypatch, tmp_path):
    """The looked-up paths are cached per working directory and environment."""
    other_user = tmp_path / "other-user"
    _write(isolated["user"] / "convcore.toml", 'backend = "numpy"\n')
    _write(other_user / "convcore.toml", 'backend = "array_api"\n')
    assert convcore.get_backend()[0] == "numpy"
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(other_user))
    assert convcore.get_backend()[0] == "array_api"
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "convcore.toml", 'backend = "numpy"\n')
    monkeypatch.chdir(elsewhere)
    name, source = convcore.get_backend()
    assert name == "numpy" and _same_source(source, f"config:{elsewhere / 'convcore.toml'}")
    monkeypatch.chdir(isolated["cwd"])
    assert convcore.get_backend()[0] == "array_api"


def test_a_change_of_xdg_config_home_between_calls_is_seen(isolated, monkeypatch, tmp_path):
    monkeypatch.delenv("CONVCORE_CONFIG_DIR")
    for name, backend in (("one", "numpy"), ("two", "array_api")):
        _write(tmp_path / name / "convcore" / "convcore.toml", f'backend = "{backend}"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "one"))
    assert convcore.get_backend()[0] == "numpy"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "two"))
    assert convcore.get_backend()[0] == "array_api"


def test_malformed_config_file_is_a_value_error(isolated):
    path = _write(isolated["cwd"] / "convcore.toml", "backend = \n")
    with pytest.raises(ValueError, match=r"convcore\.toml"):
        convcore.get_backend()
    x, w = _inputs()
    with pytest.raises(ValueError, match=r"convcore\.toml"):
        convcore.conv2d(x, w)
    assert path.exists()


# --------------------------------------------------------------------------
# use_backend / set_backend
# --------------------------------------------------------------------------


def test_use_backend_restores_on_exit():
    with convcore.use_backend("array_api"):
        assert convcore.get_backend() == ("array_api", "context")
        with convcore.use_backend("numpy"):
            assert convcore.get_backend() == ("numpy", "context")
        assert convcore.get_backend() == ("array_api", "context")
    assert convcore.get_backend() == ("auto", "default")


def test_use_backend_restores_on_exception():
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with convcore.use_backend("array_api"):
            with convcore.use_backend("numpy"):
                raise Boom
    assert convcore.get_backend() == ("auto", "default")
    with convcore.use_backend("array_api"):
        with pytest.raises(Boom):
            with convcore.use_backend("numpy"):
                raise Boom
        assert convcore.get_backend() == ("array_api", "context")


def test_use_backend_over_set_backend_and_back():
    convcore.set_backend("numpy")
    assert convcore.get_backend() == ("numpy", "set_backend")
    with convcore.use_backend("array_api"):
        assert convcore.get_backend() == ("array_api", "context")
    assert convcore.get_backend() == ("numpy", "set_backend")


def test_set_backend_none_clears(monkeypatch):
    convcore.set_backend("array_api")
    assert convcore.get_backend() == ("array_api", "set_backend")
    convcore.set_backend(None)
    assert convcore.get_backend() == ("auto", "default")
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy")
    convcore.set_backend("array_api")
    convcore.set_backend(None)
    assert convcore.get_backend() == ("numpy", "env:CONVCORE_BACKEND")


def test_explicit_auto_at_each_level(monkeypatch):
    x, _ = _inputs()
    assert convcore.resolve_backend("conv", x, backend="auto") == auto_for_numpy()
    monkeypatch.setenv("CONVCORE_BACKEND", "array_api")
    with convcore.use_backend("auto"):
        assert convcore.get_backend() == ("auto", "context")
        assert convcore.resolve_backend("conv", x) == auto_for_numpy()
        assert convcore.resolve_backend("conv", xps.asarray(x)) == "array_api"


def test_set_backend_rejects_non_string():
    with pytest.raises(TypeError, match="3"):
        convcore.set_backend(3)
    assert convcore.get_backend() == ("auto", "default")


def _run_in_threads(names, x_for, w):
    barrier = threading.Barrier(len(names))
    results, errors = {}, []

    def work(name):
        try:
            with convcore.use_backend(name):
                barrier.wait(timeout=30)  # every thread is inside its context now
                seen = convcore.get_backend()
                y = convcore.conv2d(x_for[name], w)
                barrier.wait(timeout=30)  # nobody leaves before everyone has run
                seen_late = convcore.get_backend()
            results[name] = (seen, seen_late, y, threading.get_ident(), convcore.get_backend())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def test_use_backend_is_thread_local(spies):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    # A different batch size per thread tells the calls apart in the spy log.
    x_for = {name: rng.standard_normal((i + 1, 2, 5, 5)) for i, name in enumerate(THREAD_SPIES)}
    with convcore.use_backend("numpy"):
        results = _run_in_threads(THREAD_SPIES, x_for, w)
        assert convcore.get_backend() == ("numpy", "context")
    assert convcore.get_backend() == ("auto", "default")
    idents = {results[name][3] for name in THREAD_SPIES}
    assert len(idents) == len(THREAD_SPIES)
    expected_log = set()
    for name in THREAD_SPIES:
        seen, seen_late, y, ident, after = results[name]
        assert seen == (name, "context")
        assert seen_late == (name, "context")
        assert after[0] != name
        np.testing.assert_allclose(y, expected_conv(x_for[name], w), rtol=1e-12, atol=1e-12)
        expected_log.add((name, ident, x_for[name].shape))
    assert len(spies) == len(THREAD_SPIES)
    assert set(spies) == expected_log


def test_use_backend_is_task_local(spies):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 2, 3, 3))
    x_for = {name: rng.standard_normal((i + 1, 2, 5, 5)) for i, name in enumerate(THREAD_SPIES)}

    async def task(name, entered, everyone_in):
        with convcore.use_backend(name):
            entered.append(name)
            if len(entered) == len(THREAD_SPIES):
                everyone_in.set()
            await everyone_in.wait()  # every task is inside its own context now
            seen = convcore.get_backend()
            y = convcore.conv2d(x_for[name], w)
            await asyncio.sleep(0)
            seen_late = convcore.get_backend()
        return seen, seen_late, y, convcore.get_backend()

    async def main():
        everyone_in = asyncio.Event()
        entered = []
        with convcore.use_backend("array_api"):
            out = await asyncio.gather(*(task(n, entered, everyone_in) for n in THREAD_SPIES))
            assert convcore.get_backend() == ("array_api", "context")
        return out

    results = asyncio.run(main())
    me = threading.get_ident()
    for name, (seen, seen_late, y, after) in zip(THREAD_SPIES, results):
        assert seen == (name, "context")
        assert seen_late == (name, "context")
        assert after == ("array_api", "context")
        np.testing.assert_allclose(y, expected_conv(x_for[name], w), rtol=1e-12, atol=1e-12)
    assert sorted(spies) == sorted((name, me, x_for[name].shape) for name in THREAD_SPIES)
    assert convcore.get_backend() == ("auto", "default")


# --------------------------------------------------------------------------
# auto
# --------------------------------------------------------------------------


def _count_calls(monkeypatch, backend, op="conv"):
    kernels = registry_module.get_registry().kernels(backend)
    calls = []
    original = kernels[op]

    def counting(*args, **kwargs):
        calls.append(backend)
        return original(*args, **kwargs)

    monkeypatch.setitem(kernels, op, counting)
    return calls


def test_auto_picks_a_numpy_backend_for_numpy_arrays(monkeypatch):
    best = auto_for_numpy()
    assert best != "array_api"  # numpy (or numba, above it) beats the portable path
    best_calls = _count_calls(monkeypatch, best)
    portable_calls = _count_calls(monkeypatch, "array_api")
    x, w = _inputs()
    assert convcore.resolve_backend("conv", x) == best
    y = convcore.conv2d(x, w)
    assert (best_calls, portable_calls) == ([best], [])
    np.testing.assert_allclose(y, expected_conv(x, w), rtol=1e-12, atol=1e-12)


def test_auto_picks_array_api_for_array_api_strict_arrays(monkeypatch):
    numpy_calls = _count_calls(monkeypatch, "numpy")
    portable_calls = _count_calls(monkeypatch, "array_api")
    x, w = _inputs()
    xs, ws = xps.asarray(x), xps.asarray(w)
    assert convcore.resolve_backend("conv", xs) == "array_api"
    y = convcore.conv2d(xs, ws)
    assert (numpy_calls, portable_calls) == ([], ["array_api"])
    np.testing.assert_allclose(np.asarray(y), expected_conv(x, w), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

UNKNOWN_SOURCES = [
    "keyword",
    "context",
    "set_backend",
    "env",
    "cwd_toml",
    "pyproject",
    "user_config",
]


def _use_unknown(source, name, dirs, monkeypatch):
    """Request backend ``name`` through ``source``, then run a convolution."""
    x, w = _inputs()
    if source == "keyword":
        return convcore.conv2d(x, w, backend=name)
    if source == "context":
        with convcore.use_backend(name):
            return convcore.conv2d(x, w)
    if source == "set_backend":
        convcore.set_backend(name)
        return convcore.conv2d(x, w)
    _configure(source, name, dirs, monkeypatch, [])
    return convcore.conv2d(x, w)


@pytest.mark.parametrize("source", UNKNOWN_SOURCES, ids=UNKNOWN_SOURCES)
def test_unknown_backend_name(source, isolated, monkeypatch):
    with pytest.raises(UnknownBackendError, match="no_such_backend") as info:
        _use_unknown(source, "no_such_backend", isolated, monkeypatch)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConvcoreError)
    message = str(info.value)
    for available in ("numpy", "array_api"):
        assert available in message
    if source == "set_backend":
        assert convcore.get_backend() == ("auto", "default")


@pytest.mark.parametrize(
    ("source", "mention"),
    [("env", "CONVCORE_BACKEND"), ("cwd_toml", "convcore.toml"), ("pyproject", "pyproject.toml")],
    ids=["env", "cwd_toml", "pyproject"],
)
def test_unknown_backend_from_env_or_file_names_where_it_came_from(
    source, mention, isolated, monkeypatch
):
    # The user did not type the bad name in this call: the message must say where it is.
    with pytest.raises(UnknownBackendError, match=mention):
        _use_unknown(source, "no_such_backend", isolated, monkeypatch)


@pytest.mark.parametrize("source", ["env", "cwd_toml", "pyproject", "user_config"])
def test_get_backend_reports_unknown_configured_name(source, isolated, monkeypatch):
    _configure(source, "no_such_backend", isolated, monkeypatch, [])
    with pytest.raises(UnknownBackendError, match="no_such_backend"):
        convcore.get_backend()


@pytest.mark.parametrize("source", ["keyword", "context", "set_backend", "env", "cwd_toml"])
def test_explicit_backend_that_cannot_run_input_raises(source, isolated, monkeypatch):
    x, w = _inputs()
    xs, ws = xps.asarray(x), xps.asarray(w)
    portable_calls = _count_calls(monkeypatch, "array_api")
    with pytest.raises(BackendCapabilityError, match="numpy") as info:
        if source == "keyword":
            convcore.conv2d(xs, ws, backend="numpy")
        elif source == "context":
            with convcore.use_backend("numpy"):
                convcore.conv2d(xs, ws)
        elif source == "set_backend":
            convcore.set_backend("numpy")
            convcore.conv2d(xs, ws)
        else:
            _configure(source, "numpy", isolated, monkeypatch, [])
            convcore.conv2d(xs, ws)
    assert isinstance(info.value, TypeError)
    assert "array_api_strict" in str(info.value)
    assert portable_calls == []  # no silent fallback to the portable backend


@pytest.mark.parametrize(
    "call",
    [
        lambda x, w: convcore.im2col(x, 3, backend="numpy"),
        lambda x, w: convcore.col2im(convcore.im2col(x, 3), (5, 5), 3, backend="numpy"),
        lambda x, w: convcore.conv2d_backward(convcore.conv2d(x, w), x, w, backend="numpy"),
    ],
    ids=["im2col", "col2im", "conv2d_backward"],
)
def test_numpy_backend_refuses_array_api_strict_for_every_op(call):
    x, w = _inputs()
    with pytest.raises(BackendCapabilityError, match="numpy"):
        call(xps.asarray(x), xps.asarray(w))


def test_numpy_backend_refuses_torch_tensor():
    torch = pytest.importorskip("torch")
    x, w = _inputs()
    with pytest.raises(BackendCapabilityError, match="torch"):
        convcore.conv2d(torch.from_numpy(x), torch.from_numpy(w), backend="numpy")


# --------------------------------------------------------------------------
# CONVCORE_DISABLED_BACKENDS and available_backends()
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["numpy,numba,cupy,dask", " numpy , numba,cupy,dask, nothing_by_that_name "],
    ids=["names", "spaces"],
)
def test_disabled_backends_fall_back_to_array_api(value, monkeypatch):
    monkeypatch.setenv("CONVCORE_DISABLED_BACKENDS", value)
    registry_module.reload_registry()
    infos = convcore.available_backends()
    names = [info.name for info in infos]
    assert names == ["array_api"]
    x, w = _inputs()
    portable_calls = _count_calls(monkeypatch, "array_api")
    assert convcore.resolve_backend("conv", x) == "array_api"
    y = convcore.conv2d(x, w)
    assert portable_calls == ["array_api"]
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, expected_conv(x, w), rtol=1e-12, atol=1e-12)
    with pytest.raises(UnknownBackendError, match="array_api"):
        convcore.conv2d(x, w, backend="numpy")
    with pytest.raises(UnknownBackendError):
        convcore.set_backend("numpy")
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy")
    with pytest.raises(UnknownBackendError):
        convcore.conv2d(x, w)


def test_available_backends_fields():
    infos = convcore.available_backends()
    by_name = {info.name: info for info in infos}
    assert len(by_name) == len(infos)
    fields = {f.name for f in dataclasses.fields(infos[0])}
    assert {
        "name",
        "available",
        "reason",
        "version",
        "priority",
        "description",
        "ops",
        "dtypes",
        "namespaces",
        "devices",
        "plugin",
    } <= fields
    all_ops = frozenset({"im2col", "col2im", "conv", "conv_backward"})

    numpy_info = by_name["numpy"]
    assert numpy_info.available is True
    assert numpy_info.reason is None
    assert numpy_info.version == np.__version__
    assert numpy_info.ops == all_ops
    assert {"float32", "float64"} <= numpy_info.dtypes
    assert numpy_info.namespaces == frozenset({"numpy"})
    assert "cpu" in numpy_info.devices
    assert numpy_info.plugin == "numpy"
    assert numpy_info.priority == 10

    portable = by_name["array_api"]
    assert portable.available is True
    assert portable.reason is None
    assert portable.version == convcore.__version__
    assert portable.ops == all_ops
    assert {"float32", "float64"} <= portable.dtypes
    assert portable.namespaces is None
    assert portable.priority == 0

    for info in infos:
        assert isinstance(info.ops, frozenset)
        assert isinstance(info.dtypes, frozenset)
        assert isinstance(info.description, str)
        assert (info.reason is None) == info.available
    # Best first.
    priorities = [info.priority for info in infos]
    assert priorities == sorted(priorities, reverse=True)


def test_available_backends_are_immutable():
    info = convcore.available_backends()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.available = False


# --------------------------------------------------------------------------
# the one capability rule: BackendSpec.supports
# --------------------------------------------------------------------------
def _spec(**overrides):
    base = dict(name="probe", load=lambda: {}, ops={"im2col", "col2im"}, namespaces={"numpy"})
    return convcore.BackendSpec(**{**base, **overrides})


def test_supports_answers_ops_and_the_operators_built_on_them():
    spec = _spec()
    assert spec.supports("im2col")
    assert spec.supports("max_pool_backward")  # im2col + col2im
    assert spec.supports("avg_pool")
    assert spec.supports("conv_transpose")  # col2im (the GEMM is the core's)
    no = spec.supports("conv_transpose_backward")  # needs conv and im2col
    assert not no and "'conv', which conv_transpose_backward needs" in no.reason
    assert not spec.supports("conv") and "does not implement 'conv'" in spec.supports("conv").reason
    only_col2im = _spec(ops={"col2im"})
    assert only_col2im.supports("avg_pool_backward")
    assert not only_col2im.supports("max_pool_backward")


def test_supports_half_precision_and_rank_rules():
    spec = _spec(spatial_dims={2})
    native = spec.supports("im2col", dtype="float32", nd=2)
    assert native and native.compute_dtype is None and not native.lift
    half = spec.supports("max_pool", dtype="float16", nd=1)
    assert half and half.compute_dtype == "float32" and half.lift
    assert not spec.supports("im2col", nd=3)
    assert "3 spatial axes" in spec.supports("im2col", nd=3).reason
    assert not spec.supports("im2col", dtype="int8")
    # a derived operator takes the dtypes every op it runs takes
    mixed = _spec(op_dtypes={"im2col": {"float32", "float64", "int8"}})
    assert mixed.supports("im2col", dtype="int8")
    assert not mixed.supports("max_pool_backward", dtype="int8")
    assert mixed.dtypes_for("max_pool_backward") == {"float32", "float64"}


def test_supports_namespace_and_device():
    spec = _spec(devices={"cpu"})
    assert spec.supports("im2col", namespace="numpy", device="cpu")
    assert "does not accept torch arrays" in spec.supports("im2col", namespace="torch").reason
    assert "does not run on 'cuda'" in spec.supports("im2col", device="cuda").reason
    assert spec.supports(None, namespace="numpy", dtype="float64")  # the backend as a whole


def test_dispatch_follows_supports(isolated):
    """A derived operator is refused by name before any work, with the rule's reason."""
    spec = _spec(name="only_col2im", ops={"col2im"}, load=lambda: {"col2im": None})
    convcore.register_backend(spec)
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(convcore.BackendCapabilityError, match="'im2col', which max_pool needs"):
        convcore.max_pool2d(x, 2, backend="only_col2im")
    assert convcore.resolve_backend("avg_pool_backward", x, backend="only_col2im") == "only_col2im"


# ---------------------------------------------------------------------------
# auto by measurement: BackendSpec.auto_prefers
# ---------------------------------------------------------------------------
def _conv_calls(monkeypatch):
    """Record which built-in backend's conv kernel runs (the registry is fresh per test)."""
    calls = []
    numba_ops = pytest.importorskip("convcore_numba._ops")
    from convcore_numpy import _kernels as numpy_kernels

    for name, module in (("numba", numba_ops), ("numpy", numpy_kernels)):
        original = module.conv
        monkeypatch.setattr(
            module, "conv", lambda *a, _n=name, _o=original: (calls.append(_n), _o(*a))[1]
        )
    return calls


def test_auto_runs_2d_pointwise_forwards_on_numpy(monkeypatch):
    """The numba backend's measured rule: 2-D 1x1 ungrouped forwards go to numpy under
    auto; everything else, and any backend the caller names, stays where it was."""
    calls = _conv_calls(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 6, 7)).astype(np.float32)
    w1 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    w3 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    want = expected_conv(x.astype(np.float64), w1.astype(np.float64))
    np.testing.assert_allclose(convcore.conv2d(x, w1), want, rtol=1e-5, atol=1e-5)
    assert calls == ["numpy"]
    convcore.conv2d(x, w3, padding=1)  # 3x3: numba
    convcore.conv2d(x, w1, padding=1)  # padded: not pointwise
    convcore.conv2d(x, rng.standard_normal((4, 4, 1, 1)).astype(np.float32), groups=2)
    convcore.conv1d(x[:, :, 0], w1[:, :, 0])  # 1-D: not measured, stays
    convcore.conv2d(x, w1, backend="numba")  # named: never replaced
    with convcore.use_backend("numba"):
        convcore.conv2d(x, w1)
    monkeypatch.setenv("CONVCORE_BACKEND", "numba")
    convcore.conv2d(x, w1)
    assert calls == ["numpy"] + ["numba"] * 7
    assert convcore.resolve_backend("conv", x) == "numba"  # it sees no weight


def test_auto_prefers_an_unusable_backend_keeps_the_choice(monkeypatch):
    """A preference for a backend that is unknown, unavailable or cannot run the call is
    ignored: the backend auto chose runs it, with no error."""
    from convcore import _portable

    log = []
    for target in ("no_such_backend", "picky"):
        monkeypatch.setattr(registry_module, "_registry", None)
        convcore.register_backend(
            convcore.BackendSpec(
                name="picky",
                load=lambda: {"conv": _portable.conv},
                ops={"conv"},
                namespaces={"array_api_strict"},  # cannot run NumPy arrays
            )
        )
        convcore.register_backend(
            convcore.BackendSpec(
                name="eager",
                load=lambda: {"conv": lambda *a: (log.append("eager"), _portable.conv(*a))[1]},
                ops={"conv"},
                namespaces={"numpy"},
                priority=99,
                auto_prefers=lambda op, xs, ws, geom, groups, _t=target: _t,
            )
        )
        convcore.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)))
    assert log == ["eager", "eager"]
    with pytest.raises(TypeError, match="auto_prefers must be callable"):
        convcore.BackendSpec(name="bad", load=dict, ops={"conv"}, auto_prefers="numpy")
