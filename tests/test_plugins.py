"""Third-party plugins: discovery through entry points, selection, capabilities, blocking.

The example plugin in ``tests/plugin_example`` is "installed" the way pip would
leave it: the modules plus a ``.dist-info`` (METADATA + entry_points.txt, group
``convcore.backends``) in a directory on ``sys.path``.  It provides two backends:

* ``example`` (entry point ``convcore_example``): ``conv`` only, float64, NumPy;
  its kernel logs each call in ``convcore_example_plugin.CALLS``;
* ``example_unavailable`` (entry point ``convcore_example_unavailable``): its
  availability check always fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
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
    BackendUnavailableError,
    UnknownBackendError,
)

PLUGIN_SRC = Path(__file__).parent / "plugin_example"
PLUGIN_MODULES = (
    "convcore_example_plugin",
    "convcore_example_plugin._kernels",
    "convcore_example_unavailable",
)
ENTRY_POINTS = {
    "convcore_example": "convcore_example_plugin",
    "convcore_example_unavailable": "convcore_example_unavailable",
}
UNAVAILABLE_REASON = "the example accelerator library is not installed"


def _forget_plugin_modules():
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


def install_plugin(site: Path, entry_points=None, dist="convcore_example_plugin") -> Path:
    """Write the example plugin into ``site`` as an installed distribution."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        PLUGIN_SRC / "convcore_example_plugin",
        site / "convcore_example_plugin",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    shutil.copy(PLUGIN_SRC / "convcore_example_unavailable.py", site)
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 0.1.0\n",
        encoding="utf-8",
    )
    lines = [f"{name} = {value}" for name, value in (entry_points or ENTRY_POINTS).items()]
    (info / "entry_points.txt").write_text(
        "[convcore.backends]\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    return site


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A fresh registry and no selection state; the process registry is put back after."""
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "no-user-config"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry_module, "_registry", None)
    convcore.set_backend(None)
    _forget_plugin_modules()
    yield
    _forget_plugin_modules()
    convcore.set_backend(None)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The example plugin installed in a directory on sys.path."""
    path = install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(path))
    return path


def _inputs(dtype=np.float64, seed=0, groups=2):
    """x (2, 4, 6, 7), weight (6, 4 // groups, 3, 2), bias (6,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 6, 7)).astype(dtype)
    w = rng.standard_normal((6, 4 // groups, 3, 2)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, w, b


def _plugin():
    return sys.modules["convcore_example_plugin"]


def test_plugin_is_not_visible_without_installing_it():
    names = {info.name for info in convcore.available_backends()}
    assert "example" not in names
    assert "convcore_example_plugin" not in sys.modules
    x, w, _ = _inputs()
    with pytest.raises(UnknownBackendError, match="example"):
        convcore.conv2d(x, w, groups=2, backend="example")


def test_plugin_is_discovered_and_listed(site):
    by_name = {info.name: info for info in convcore.available_backends()}
    assert {"numpy", "array_api", "example", "example_unavailable"} <= set(by_name)
    info = by_name["example"]
    assert info.available is True
    assert info.reason is None
    assert info.version == "0.1.0"
    assert info.plugin == "convcore_example"
    assert info.ops == frozenset({"conv"})
    assert info.dtypes == frozenset({"float64"})
    assert info.namespaces == frozenset({"numpy"})
    assert info.devices == frozenset({"cpu"})
    assert info.priority == -10
    assert "example" in info.description
    # The listing follows priority: the unavailable one (1000) first, example (-10) last.
    names = [i.name for i in convcore.available_backends()]
    assert names[0] == "example_unavailable"
    assert names[-1] == "example"


@pytest.mark.parametrize(
    ("options", "groups"),
    [
        ({}, 1),
        ({"stride": 2, "padding": 1}, 1),
        ({"padding": (1, 0, 2, 1), "dilation": (2, 1)}, 2),
        ({"padding": "same", "stride": (1, 2)}, 2),
    ],
    ids=["plain", "strided-padded", "asymmetric-dilated-grouped", "same"],
)
def test_plugin_kernel_runs_when_selected(site, options, groups):
    x, w, b = _inputs(groups=groups)
    y = convcore.conv2d(x, w, b, groups=groups, backend="example", **options)
    calls = _plugin().CALLS
    assert calls == [{"op": "conv", "shape": x.shape, "groups": groups}]
    expected = expected_conv(x, w, b, groups=groups, **options)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert y.dtype == np.float64


def test_plugin_selected_by_context_and_set_backend(site):
    x, w, b = _inputs()
    with convcore.use_backend("example"):
        assert convcore.get_backend() == ("example", "context")
        convcore.conv2d(x, w, b, groups=2)
    assert len(_plugin().CALLS) == 1
    convcore.set_backend("example")
    assert convcore.resolve_backend("conv", x) == "example"
    convcore.conv2d(x, w, b, groups=2)
    assert len(_plugin().CALLS) == 2


def test_plugin_selected_by_env_var(site, monkeypatch):
    monkeypatch.setenv("CONVCORE_BACKEND", "example")
    x, w, b = _inputs()
    convcore.conv2d(x, w, b, groups=2)
    assert len(_plugin().CALLS) == 1


def test_auto_does_not_pick_a_lower_priority_plugin(site):
    x, w, b = _inputs()
    assert convcore.resolve_backend("conv", x) == auto_for_numpy()
    convcore.conv2d(x, w, b, groups=2)
    assert _plugin().CALLS == []


@pytest.mark.parametrize(
    "call",
    [
        lambda x, w, b: convcore.im2col(x, 3, backend="example"),
        lambda x, w, b: convcore.col2im(np.zeros((2, 36, 20)), (6, 7), 3, backend="example"),
        lambda x, w, b: convcore.conv2d_backward(
            np.ones((2, 6, 4, 6)), x, w, groups=2, backend="example"
        ),
    ],
    ids=["im2col", "col2im", "conv2d_backward"],
)
def test_undeclared_op_raises_capability_error(site, call):
    x, w, b = _inputs()
    with pytest.raises(BackendCapabilityError, match="example") as info:
        call(x, w, b)
    assert isinstance(info.value, TypeError)
    assert _plugin().CALLS == []


def test_undeclared_op_with_backend_from_context(site):
    x, _, _ = _inputs()
    with convcore.use_backend("example"):
        with pytest.raises(BackendCapabilityError, match="im2col"):
            convcore.im2col(x, 3)


def test_undeclared_dtype_raises_capability_error(site):
    x, w, b = _inputs(np.float32)
    with pytest.raises(BackendCapabilityError, match="float32"):
        convcore.conv2d(x, w, b, groups=2, backend="example")
    assert _plugin().CALLS == []


def test_undeclared_namespace_raises_capability_error(site):
    x, w, b = _inputs()
    with pytest.raises(BackendCapabilityError, match="array_api_strict"):
        convcore.conv2d(xps.asarray(x), xps.asarray(w), xps.asarray(b), groups=2, backend="example")
    assert _plugin().CALLS == []


def test_unavailable_plugin_is_listed_with_reason(site):
    by_name = {info.name: info for info in convcore.available_backends()}
    info = by_name["example_unavailable"]
    assert info.available is False
    assert info.reason == UNAVAILABLE_REASON
    assert info.plugin == "convcore_example_unavailable"
    assert sys.modules["convcore_example_unavailable"].LOADED == []


@pytest.mark.parametrize("source", ["keyword", "context", "env"])
def test_unavailable_plugin_raises_when_selected(site, monkeypatch, source):
    x, w, _ = _inputs()
    with pytest.raises(BackendUnavailableError, match=UNAVAILABLE_REASON) as info:
        if source == "keyword":
            convcore.conv2d(x, w, groups=2, backend="example_unavailable")
        elif source == "context":
            with convcore.use_backend("example_unavailable"):
                convcore.conv2d(x, w, groups=2)
        else:
            monkeypatch.setenv("CONVCORE_BACKEND", "example_unavailable")
            convcore.conv2d(x, w, groups=2)
    assert isinstance(info.value, RuntimeError)
    assert "example_unavailable" in str(info.value)
    assert sys.modules["convcore_example_unavailable"].LOADED == []


def test_auto_skips_unavailable_plugin_even_with_top_priority(site):
    x, w, b = _inputs()
    assert convcore.resolve_backend("conv", x) == auto_for_numpy()
    y = convcore.conv2d(x, w, b, groups=2)
    np.testing.assert_allclose(y, expected_conv(x, w, b, groups=2), rtol=1e-12, atol=1e-12)
    assert sys.modules["convcore_example_unavailable"].LOADED == []


@pytest.mark.parametrize(
    "disabled",
    ["convcore_example", "numpy,convcore_example", " convcore_example , other "],
    ids=["alone", "with-numpy", "spaces"],
)
def test_plugin_blocked_by_entry_point_name_is_not_imported(site, monkeypatch, tmp_path, disabled):
    log = tmp_path / "imports.log"
    monkeypatch.setenv("CONVCORE_EXAMPLE_PLUGIN_LOG", str(log))
    monkeypatch.setenv("CONVCORE_DISABLED_BACKENDS", disabled)
    registry_module.reload_registry()
    names = {info.name for info in convcore.available_backends()}
    assert "example" not in names
    assert "example_unavailable" in names  # the other entry point still loads
    x, w, _ = _inputs()
    with pytest.raises(UnknownBackendError, match="example"):
        convcore.conv2d(x, w, groups=2, backend="example")
    assert "convcore_example_plugin" not in sys.modules
    assert not log.exists()


def test_plugin_blocked_by_backend_name_is_not_listed(site, monkeypatch):
    monkeypatch.setenv("CONVCORE_DISABLED_BACKENDS", "example")
    registry_module.reload_registry()
    names = {info.name for info in convcore.available_backends()}
    assert "example" not in names
    x, w, _ = _inputs()
    with pytest.raises(UnknownBackendError):
        convcore.conv2d(x, w, groups=2, backend="example")
    with pytest.raises(UnknownBackendError):
        convcore.set_backend("example")


def test_import_log_works_when_not_blocked(site, monkeypatch, tmp_path):
    # Guard for the test above: the plugin does leave a trace when it is imported.
    log = tmp_path / "imports.log"
    monkeypatch.setenv("CONVCORE_EXAMPLE_PLUGIN_LOG", str(log))
    convcore.available_backends()
    assert "convcore_example_plugin" in sys.modules
    assert log.read_text(encoding="utf-8") == "convcore_example_plugin imported\n"


def _subprocess_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVCORE_")}
    env.update(extra)
    return env


def test_blocked_plugins_are_not_imported_in_a_fresh_process(site, tmp_path):
    log = tmp_path / "imports.log"
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import convcore

        names = [info.name for info in convcore.available_backends()]
        assert names == ["example_unavailable", "array_api"], names
        y = convcore.conv2d(np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3)))
        assert y.shape == (1, 3, 2, 2) and float(y[0, 0, 0, 0]) == 18.0
        assert convcore.resolve_backend("conv", y) == "array_api"
        for module in (
            "convcore_example_plugin",
            "convcore_numpy",
            "convcore_numba",
            "convcore_dask",
        ):
            assert module not in sys.modules, module
        """
    )
    env = _subprocess_env(
        PYTHONPATH=os.pathsep.join([str(site), *sys.path]),
        CONVCORE_DISABLED_BACKENDS="convcore_example,numpy,numba,cupy,dask",
        CONVCORE_EXAMPLE_PLUGIN_LOG=str(log),
        CONVCORE_CONFIG_DIR=str(tmp_path / "no-user-config"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert not log.exists()


def test_plugin_discovered_in_a_fresh_process(site, tmp_path):
    code = textwrap.dedent(
        """
        import numpy as np
        import convcore

        y = convcore.conv2d(np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3)))
        assert float(y[0, 0, 0, 0]) == 18.0
        import convcore_example_plugin as plugin
        assert plugin.CALLS and plugin.CALLS[0]["op"] == "conv", plugin.CALLS
        """
    )
    env = _subprocess_env(
        PYTHONPATH=os.pathsep.join([str(site), *sys.path]),
        CONVCORE_BACKEND="example",
        CONVCORE_CONFIG_DIR=str(tmp_path / "no-user-config"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_plugin_that_fails_to_import_does_not_break_convcore(tmp_path, monkeypatch):
    site = install_plugin(
        tmp_path / "site",
        entry_points={
            "convcore_example": "convcore_example_plugin",
            "convcore_broken": "convcore_module_that_does_not_exist",
        },
    )
    monkeypatch.syspath_prepend(str(site))
    by_name = {info.name: info for info in convcore.available_backends()}
    assert by_name["example"].available is True
    broken = [info for info in by_name.values() if info.plugin == "convcore_broken"]
    assert len(broken) == 1
    assert broken[0].available is False
    assert "convcore_module_that_does_not_exist" in broken[0].reason
    x, w, b = _inputs()
    y = convcore.conv2d(x, w, b, groups=2)
    np.testing.assert_allclose(y, expected_conv(x, w, b, groups=2), rtol=1e-12, atol=1e-12)
    with pytest.raises(BackendUnavailableError, match="convcore_module_that_does_not_exist"):
        convcore.conv2d(x, w, b, groups=2, backend=broken[0].name)


# --------------------------------------------------------------------------
# Runtime registration
# --------------------------------------------------------------------------


def _runtime_spec(name, log, /, **overrides):
    base = registry_module.get_registry().kernels("array_api")

    def conv(xp, x, weight, bias, geom, groups):
        log.append((name, threading.get_ident()))
        return base["conv"](xp, x, weight, bias, geom, groups)

    options = {
        "name": name,
        "load": lambda: {"conv": conv},
        "ops": {"conv"},
        "dtypes": {"float64"},
        "namespaces": {"numpy"},
        "version": "9.9",
        "description": "runtime test backend",
    }
    options.update(overrides)
    return convcore.BackendSpec(**options)


def test_register_backend_at_run_time():
    log = []
    convcore.register_backend(_runtime_spec("runtime_spy", log))
    info = {i.name: i for i in convcore.available_backends()}["runtime_spy"]
    assert info.available is True
    assert info.version == "9.9"
    assert info.ops == frozenset({"conv"})
    assert info.dtypes == frozenset({"float64"})
    x, w, b = _inputs()
    y = convcore.conv2d(x, w, b, groups=2, backend="runtime_spy")
    assert log == [("runtime_spy", threading.get_ident())]
    np.testing.assert_allclose(y, expected_conv(x, w, b, groups=2), rtol=1e-12, atol=1e-12)
    with pytest.raises(BackendCapabilityError, match="runtime_spy"):
        convcore.im2col(x, 3, backend="runtime_spy")
    with pytest.raises(BackendCapabilityError, match="float32"):
        convcore.conv2d(x.astype(np.float32), w.astype(np.float32), backend="runtime_spy", groups=2)
    # auto: a priority above every built-in wins for what it declares, not for the rest.
    best_im2col, best_f32 = auto_for_numpy("im2col"), auto_for_numpy("conv", "float32")
    convcore.register_backend(_runtime_spec("runtime_top", log, priority=100))
    assert convcore.resolve_backend("conv", x) == "runtime_top"
    assert convcore.resolve_backend("im2col", x) == best_im2col
    assert convcore.resolve_backend("conv", x.astype(np.float32)) == best_f32


def test_register_backend_twice_is_an_error():
    log = []
    convcore.register_backend(_runtime_spec("runtime_spy", log))
    with pytest.raises(ValueError, match="runtime_spy"):
        convcore.register_backend(_runtime_spec("runtime_spy", log))
    with pytest.raises(ValueError, match="numpy"):
        convcore.register_backend(_runtime_spec("numpy", log))


def test_runtime_backend_with_failing_availability_check():
    log = []
    convcore.register_backend(
        _runtime_spec("runtime_down", log, check_available=lambda: "no device attached")
    )
    info = {i.name: i for i in convcore.available_backends()}["runtime_down"]
    assert (info.available, info.reason) == (False, "no device attached")
    x, w, _ = _inputs()
    with pytest.raises(BackendUnavailableError, match="no device attached"):
        convcore.conv2d(x, w, groups=2, backend="runtime_down")
    assert log == []


def test_reload_registry_forgets_runtime_backends():
    convcore.register_backend(_runtime_spec("runtime_spy", []))
    registry_module.reload_registry()
    assert "runtime_spy" not in {i.name for i in convcore.available_backends()}


@pytest.mark.parametrize(
    ("overrides", "exc", "pattern"),
    [
        ({"name": "auto"}, ValueError, "auto"),
        ({"name": "not a name"}, ValueError, "not a name"),
        ({"load": "not callable"}, TypeError, "load"),
        ({"ops": {"conv", "deconv"}}, ValueError, "deconv"),
        ({"ops": "conv"}, TypeError, "ops"),
    ],
    ids=["reserved-auto", "not-identifier", "load-not-callable", "unknown-op", "ops-string"],
)
def test_backend_spec_validation(overrides, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _runtime_spec("runtime_bad", [], **overrides)


def test_register_backend_rejects_non_spec():
    with pytest.raises(TypeError, match="BackendSpec"):
        convcore.register_backend({"name": "dict_backend"})
