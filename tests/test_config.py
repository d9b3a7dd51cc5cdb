"""Configuration: unknown keys, per-namespace settings, name suggestions, change detection.

Every test gets a fresh registry, an empty working directory and an empty user
configuration directory (as in test_selection.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import array_api_strict as xps
import numpy as np
import pytest

import convcore
from convcore import _config
from convcore import _registry as registry_module
from convcore.errors import (
    BackendCapabilityError,
    ConfigurationError,
    ConvcoreError,
    UnknownBackendError,
)

X = np.ones((1, 1, 4, 4))
W = np.ones((1, 1, 3, 3))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for var in ("CONVCORE_BACKEND", "CONVCORE_DISABLED_BACKENDS", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    user_dir = tmp_path / "user-config"
    user_dir.mkdir()
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(user_dir))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(registry_module, "_registry", None)
    convcore.set_backend(None)
    yield {"cwd": cwd, "user": user_dir}
    convcore.set_backend(None)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _file(level: str, dirs, body: str) -> Path:
    """A configuration file of ``level`` whose convcore part is ``body``."""
    if level == "cwd_toml":
        return _write(dirs["cwd"] / "convcore.toml", body)
    if level == "pyproject":
        body = body.replace("[backend]", "[tool.convcore.backend]")
        return _write(
            dirs["cwd"] / "pyproject.toml", f'[project]\nname = "x"\n\n[tool.convcore]\n{body}'
        )
    if level == "user_config":
        return _write(dirs["user"] / "convcore.toml", body)
    raise AssertionError(level)


FILE_LEVELS = ["cwd_toml", "pyproject", "user_config"]


def _torch():
    return pytest.importorskip("torch")


# --------------------------------------------------------------------------
# unknown keys
# --------------------------------------------------------------------------


@pytest.mark.parametrize("level", FILE_LEVELS)
def test_unknown_key_names_the_file_the_key_and_the_known_keys(level, isolated):
    path = _file(level, isolated, 'backnd = "numpy"\n')
    with pytest.raises(ConfigurationError) as info:
        convcore.get_backend()
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConvcoreError)
    assert str(path) in message
    assert "'backnd'" in message
    assert "known keys: backend" in message
    assert "did you mean 'backend'?" in message
    if level == "pyproject":
        assert "[tool.convcore]" in message
    with pytest.raises(ConfigurationError, match="backnd"):  # a call fails the same way
        convcore.conv2d(X, W)


def test_unknown_table_in_convcore_toml_is_an_unknown_key(isolated):
    _write(isolated["cwd"] / "convcore.toml", "[something]\nbackend = 'numpy'\n")
    with pytest.raises(ConfigurationError, match="'something'"):
        convcore.get_backend()


def test_unknown_key_next_to_a_valid_backend_is_still_an_error(isolated):
    _write(isolated["cwd"] / "convcore.toml", 'backend = "numpy"\nthreads = 2\n')
    with pytest.raises(ConfigurationError, match="'threads'"):
        convcore.get_backend()


def test_other_tables_of_pyproject_are_not_convcore_s(isolated):
    _write(
        isolated["cwd"] / "pyproject.toml",
        '[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n'
        '[tool.convcore]\nbackend = "numpy"\n',
    )
    assert convcore.get_backend()[0] == "numpy"


def test_a_file_below_a_deciding_level_is_not_read(isolated, monkeypatch):
    """As before: CONVCORE_BACKEND with a default entry decides; the files are not read."""
    _write(isolated["cwd"] / "convcore.toml", "nonsense = 1\n")
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy")
    assert convcore.get_backend() == ("numpy", "env:CONVCORE_BACKEND")
    monkeypatch.setenv("CONVCORE_BACKEND", "torch=array_api")  # numpy arrays ask the files
    with pytest.raises(ConfigurationError, match="nonsense"):
        convcore.get_backend()


# --------------------------------------------------------------------------
# per-namespace settings
# --------------------------------------------------------------------------


def test_env_per_namespace_numpy_and_torch_get_different_backends(monkeypatch):
    torch = _torch()
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy=numpy,torch=array_api")
    assert convcore.resolve_backend("conv", X) == "numpy"
    xt, wt = torch.from_numpy(X), torch.from_numpy(W)
    assert convcore.resolve_backend("conv", xt) == "array_api"
    y = convcore.conv2d(xt, wt)
    assert isinstance(y, torch.Tensor)
    np.testing.assert_allclose(y.numpy(), convcore.conv2d(X, W, backend="numpy"))
    assert convcore.get_backend("torch") == ("array_api", "env:CONVCORE_BACKEND")
    assert convcore.get_backend("numpy") == ("numpy", "env:CONVCORE_BACKEND")
    # no default entry: a namespace not named gets the rest of the chain
    assert convcore.get_backend() == ("auto", "default")
    assert convcore.resolve_backend("conv", xps.asarray(X)) == "array_api"


@pytest.mark.parametrize("spelling", ["numba,torch=array_api", "*=numba, torch = array_api "])
def test_env_default_entry_with_a_namespace_exception(spelling, monkeypatch):
    torch = _torch()
    monkeypatch.setenv("CONVCORE_BACKEND", spelling)
    assert convcore.get_backend() == ("numba", "env:CONVCORE_BACKEND")
    assert convcore.resolve_backend("conv", X) == "numba"
    assert convcore.resolve_backend("conv", torch.from_numpy(X)) == "array_api"


def test_env_per_namespace_with_array_api_strict(monkeypatch):
    """The same without torch: array-api-strict arrays are another namespace."""
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy,array_api_strict=array_api")
    assert convcore.resolve_backend("conv", X) == "numpy"
    assert convcore.resolve_backend("conv", xps.asarray(X)) == "array_api"
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy,array_api_strict=auto")
    assert convcore.resolve_backend("conv", xps.asarray(X)) == "array_api"


TOML_FORMS = {
    "inline": 'backend = { numpy = "numpy", array_api_strict = "array_api" }\n',
    "table": '[backend]\nnumpy = "numpy"\narray_api_strict = "array_api"\n',
    "default-key": 'backend = { "*" = "numpy", array_api_strict = "array_api" }\n',
    "string": 'backend = "numpy,array_api_strict=array_api"\n',
}


@pytest.mark.parametrize("level", FILE_LEVELS)
@pytest.mark.parametrize("form", list(TOML_FORMS), ids=list(TOML_FORMS))
def test_toml_per_namespace_forms(form, level, isolated):
    path = _file(level, isolated, TOML_FORMS[form])
    assert convcore.resolve_backend("conv", X) == "numpy"
    assert convcore.resolve_backend("conv", xps.asarray(X)) == "array_api"
    name, source = convcore.get_backend("array_api_strict")
    assert name == "array_api" and Path(source[len("config:") :]) == path
    expected_default = "numpy" if form in ("default-key", "string") else "auto"
    assert convcore.get_backend()[0] == expected_default


def test_toml_per_namespace_torch(isolated):
    torch = _torch()
    _write(
        isolated["cwd"] / "convcore.toml", 'backend = { numpy = "numpy", torch = "array_api" }\n'
    )
    assert convcore.resolve_backend("conv", X) == "numpy"
    assert convcore.resolve_backend("conv", torch.from_numpy(X)) == "array_api"


def test_levels_answer_per_namespace(isolated, monkeypatch):
    """A level that names neither the namespace nor a default passes it on."""
    torch = _torch()
    path = _write(isolated["cwd"] / "convcore.toml", 'backend = "numpy"\n')
    monkeypatch.setenv("CONVCORE_BACKEND", "torch=array_api")
    assert convcore.get_backend() == ("numpy", f"config:{path}")
    assert convcore.get_backend("torch") == ("array_api", "env:CONVCORE_BACKEND")
    assert convcore.resolve_backend("conv", X) == "numpy"
    assert convcore.resolve_backend("conv", torch.from_numpy(X)) == "array_api"
    assert _config.namespace_backends() == {"torch": ("array_api", "env:CONVCORE_BACKEND")}
    # the code's own choices still come first, for every namespace
    with convcore.use_backend("array_api"):
        assert convcore.resolve_backend("conv", X) == "array_api"


def test_a_global_name_for_a_namespace_it_does_not_take_suggests_the_per_namespace_form(
    isolated, monkeypatch
):
    torch = _torch()
    xt, wt = torch.from_numpy(X), torch.from_numpy(W)
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy")
    with pytest.raises(BackendCapabilityError) as info:
        convcore.conv2d(xt, wt)
    message = str(info.value)
    assert "backend 'numpy' (selected by env:CONVCORE_BACKEND) cannot run conv" in message
    assert 'CONVCORE_BACKEND="numpy=numpy"' in message
    monkeypatch.delenv("CONVCORE_BACKEND")
    _write(isolated["cwd"] / "convcore.toml", 'backend = "numpy"\n')
    with pytest.raises(BackendCapabilityError, match=r'backend = \{ numpy = "numpy" \}'):
        convcore.conv2d(xt, wt)
    # chosen in code, or per namespace on purpose: no hint, the choice is meant as it is
    with pytest.raises(BackendCapabilityError) as info:
        convcore.conv2d(xt, wt, backend="numpy")
    assert "per namespace" not in str(info.value)


def test_per_namespace_entry_that_cannot_run_is_an_error_without_hint(monkeypatch):
    monkeypatch.setenv("CONVCORE_BACKEND", "array_api_strict=numpy")
    with pytest.raises(BackendCapabilityError) as info:
        convcore.conv2d(xps.asarray(X), xps.asarray(W))
    assert "per namespace" not in str(info.value)


MALFORMED_ENV = {
    "empty-entry": (" , ", ConfigurationError, "empty entry"),
    "trailing-comma": ("numpy,", ConfigurationError, "empty entry"),
    "no-backend": ("numpy=", ConfigurationError, "entry 'numpy='"),
    "no-namespace": ("=numpy", ConfigurationError, "entry '=numpy'"),
    "two-equals": ("numpy=numpy=numba", ConfigurationError, "numpy=numpy=numba"),
    "two-defaults": ("numpy,array_api", ConfigurationError, "more than one default"),
    "namespace-twice": ("torch=numpy,torch=array_api", ConfigurationError, "given twice"),
    "unknown-namespace": ("tensorflow=numpy", ConfigurationError, "unknown array namespace"),
    "typo-namespace": ("numpi=numpy", ConfigurationError, "did you mean 'numpy'"),
    "unknown-backend": ("torch=no_such_backend", UnknownBackendError, "no_such_backend"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ENV), ids=list(MALFORMED_ENV))
def test_malformed_env_names_the_variable(case, monkeypatch):
    value, error, fragment = MALFORMED_ENV[case]
    monkeypatch.setenv("CONVCORE_BACKEND", value)
    with pytest.raises(error) as info:
        convcore.get_backend()
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    assert "CONVCORE_BACKEND" in str(info.value)
    with pytest.raises(error):
        convcore.conv2d(X, W)


MALFORMED_TOML = {
    "number": ("backend = 3\n", ConfigurationError, "expected a string or a table"),
    "non-string-entry": ("backend = { numpy = 3 }\n", ConfigurationError, "must be a string"),
    "unknown-namespace": (
        'backend = { tensorflow = "numpy" }\n',
        ConfigurationError,
        "unknown array namespace 'tensorflow'",
    ),
    "unknown-backend": ('[backend]\nnumpy = "nope"\n', UnknownBackendError, "'nope'"),
    "malformed-string": ('backend = "numpy,,torch=array_api"\n', ConfigurationError, "empty"),
}


@pytest.mark.parametrize("level", FILE_LEVELS)
@pytest.mark.parametrize("case", list(MALFORMED_TOML), ids=list(MALFORMED_TOML))
def test_malformed_toml_names_the_file(case, level, isolated):
    body, error, fragment = MALFORMED_TOML[case]
    path = _file(level, isolated, body)
    with pytest.raises(error) as info:
        convcore.get_backend()
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_cli_info_lists_per_namespace_settings(monkeypatch):
    from click.testing import CliRunner

    from convcore.cli import main

    monkeypatch.setenv("CONVCORE_BACKEND", "numpy,torch=array_api")
    out = CliRunner().invoke(main, ["info"]).output
    assert "backend selection: numpy  (from environment variable CONVCORE_BACKEND)" in out
    assert "  for torch arrays: array_api  (from environment variable CONVCORE_BACKEND)" in out
    assert "auto picks for NumPy arrays" not in out  # numpy arrays are not left to auto
    monkeypatch.setenv("CONVCORE_BACKEND", "torch=array_api")
    out = CliRunner().invoke(main, ["info"]).output
    assert "backend selection: auto  (from default" in out
    assert "auto picks for NumPy arrays" in out


# --------------------------------------------------------------------------
# suggestions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "meant"), [("numpi", "numpy"), ("array-api", "array_api"), ("Numpy", "numpy")]
)
def test_unknown_backend_suggests_the_closest_name(typo, meant, monkeypatch):
    with pytest.raises(
        UnknownBackendError, match=f"unknown backend '{typo}'.*did you mean '{meant}'"
    ):
        convcore.conv2d(X, W, backend=typo)
    with pytest.raises(UnknownBackendError, match=f"did you mean '{meant}'"):
        convcore.set_backend(typo)
    monkeypatch.setenv("CONVCORE_BACKEND", typo)
    with pytest.raises(UnknownBackendError, match=f"did you mean '{meant}'.*CONVCORE_BACKEND"):
        convcore.get_backend()


def test_no_suggestion_for_a_name_like_none():
    with pytest.raises(UnknownBackendError) as info:
        convcore.conv2d(X, W, backend="zzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "available backends: auto" in str(info.value)


# --------------------------------------------------------------------------
# changes between calls are noticed (and nothing is re-read otherwise)
# --------------------------------------------------------------------------


def test_env_change_between_calls(monkeypatch):
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy")
    assert convcore.resolve_backend("conv", X) == "numpy"
    monkeypatch.setenv("CONVCORE_BACKEND", "array_api")
    assert convcore.resolve_backend("conv", X) == "array_api"
    monkeypatch.setenv("CONVCORE_BACKEND", "array_api,numpy=numpy")
    assert convcore.resolve_backend("conv", X) == "numpy"
    monkeypatch.delenv("CONVCORE_BACKEND")
    assert convcore.get_backend() == ("auto", "default")


def test_file_created_edited_replaced_and_removed_between_calls(isolated):
    path = isolated["cwd"] / "convcore.toml"
    assert convcore.resolve_backend("conv", X) != "array_api"
    _write(path, 'backend = "array_api"\n')
    assert convcore.resolve_backend("conv", X) == "array_api"
    # an edit of another size
    _write(path, 'backend = "numpy"    # other size\n')
    assert convcore.resolve_backend("conv", X) == "numpy"
    stamp = os.stat(path).st_mtime_ns
    # an edit of the same size, seen by its later modification time
    _write(path, 'backend = "numba"    # other size\n')
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert convcore.get_backend()[0] == "numba"
    # replaced by a rename (a new inode) with the same size and modification time
    spare = isolated["cwd"] / "spare.toml"
    _write(spare, 'backend = "numpy"    # other size\n')
    os.utime(spare, ns=(stamp + 10**9, stamp + 10**9))
    os.replace(spare, path)
    assert convcore.get_backend()[0] == "numpy"
    path.unlink()
    assert convcore.get_backend() == ("auto", "default")


def test_chdir_and_config_dir_change_between_calls(isolated, monkeypatch, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one / "pyproject.toml", '[tool.convcore]\nbackend = "numpy"\n')
    _write(two / "convcore.toml", 'backend = "array_api"\n')
    monkeypatch.chdir(one)
    assert convcore.resolve_backend("conv", X) == "numpy"
    monkeypatch.chdir(two)
    assert convcore.resolve_backend("conv", X) == "array_api"
    monkeypatch.chdir(isolated["cwd"])
    assert convcore.get_backend() == ("auto", "default")
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(two))
    assert convcore.get_backend()[0] == "array_api"
    monkeypatch.delenv("CONVCORE_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write(tmp_path / "home" / ".config" / "convcore" / "convcore.toml", 'backend = "numpy"\n')
    assert convcore.get_backend()[0] == "numpy"


def test_a_backend_registered_after_an_error_makes_the_name_valid(monkeypatch):
    monkeypatch.setenv("CONVCORE_BACKEND", "numpy,torch=late")
    with pytest.raises(UnknownBackendError, match="'late'"):
        convcore.get_backend()
    convcore.register_backend(
        convcore.BackendSpec(name="late", load=dict, ops={"conv"}, namespaces={"torch"})
    )
    assert convcore.get_backend("torch") == ("late", "env:CONVCORE_BACKEND")


def test_unchanged_configuration_is_not_read_again(isolated, monkeypatch):
    _write(isolated["cwd"] / "convcore.toml", 'backend = { numpy = "numpy" }\n')
    monkeypatch.setenv("CONVCORE_BACKEND", "torch=array_api")
    assert convcore.resolve_backend("conv", X) == "numpy"
    loads, parses = [], []
    real_load, real_setting = _config.tomllib.load, _config._setting
    monkeypatch.setattr(_config.tomllib, "load", lambda fh: loads.append(1) or real_load(fh))
    monkeypatch.setattr(_config, "_setting", lambda *a: parses.append(1) or real_setting(*a))
    for _ in range(5):
        assert convcore.resolve_backend("conv", X) == "numpy"
        assert convcore.get_backend("torch")[0] == "array_api"
    assert (loads, parses) == ([], [])
    monkeypatch.setenv("CONVCORE_BACKEND", "torch=numpy")  # a change: the settings are
    assert convcore.get_backend("torch")[0] == "numpy"  # checked again, the unchanged
    assert parses and loads == []  # file is not read from disk again
