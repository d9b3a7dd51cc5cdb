"""The ``convcore`` command line: info, demo, bench, check, warmup.

Commands run in-process through click's ``CliRunner`` (the registry is the
process one; broken backends are registered for a test and the registry is
reloaded afterwards), and a few in a subprocess, as a user types them.  The
references of ``convcore check`` are the naive loop oracle ``convcore._naive``
(checked against PyTorch and hand-computed values in ``tests/test_naive.py``);
here ``check`` must run every op of every case where a backend declares it, and
fail where a backend is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import convcore
from convcore import BackendSpec
from convcore._check import (
    ALL_CASES,
    CASES,
    OPS,
    POOL_CASES,
    TRANSPOSE_CASES,
    PoolCase,
    check_fixtures,
    fixture_files,
    run_checks,
)
from convcore._registry import ALL_OPS, get_registry, reload_registry
from convcore.cli import main

COMMANDS = {
    "info": [],
    "demo": ["--repeat", "1"],
    "bench": ["--layers", "C", "--repeat", "1", "--no-torch"],
    "check": ["--no-matlab", "--dtype", "float64"],
    "warmup": [],
}


@pytest.fixture
def runner(monkeypatch, tmp_path):
    """A CliRunner in an empty directory with no backend configured."""
    monkeypatch.delenv("CONVCORE_BACKEND", raising=False)
    monkeypatch.delenv("CONVCORE_DISABLED_BACKENDS", raising=False)
    monkeypatch.setenv("CONVCORE_CONFIG_DIR", str(tmp_path / "userconfig"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def fresh_registry():
    """Registry changes made by a test are dropped afterwards."""
    reload_registry()
    yield get_registry()
    reload_registry()


def _invoke(runner, *args, env=None):
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


def _one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ")
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------- info


def test_info_lists_every_backend_with_reasons_and_threads(runner):
    result = _invoke(runner, "info")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for info in convcore.available_backends():
        line = next(row for row in out.splitlines() if row.startswith(f"{info.name} "))
        assert ("yes" if info.available else "no") in line
        assert str(info.priority) in line
        if not info.available:
            assert f"  {info.name}: {info.reason}" in out
    assert "backend selection: auto  (from default: no backend configured)" in out
    assert "auto picks for NumPy arrays: " in out
    assert "numba threads: " in out
    assert "GPU: " in out
    assert "thread pool: " in out


def test_info_reports_where_the_selection_comes_from(runner, tmp_path):
    out = _invoke(runner, "info", "--backend", "numpy").stdout
    assert "backend selection: numpy  (from --backend)" in out
    out = _invoke(runner, "info", env={"CONVCORE_BACKEND": "array_api"}).stdout
    assert "array_api  (from environment variable CONVCORE_BACKEND)" in out
    (tmp_path / "convcore.toml").write_text('backend = "numpy"\n')
    out = _invoke(runner, "info").stdout
    assert f"numpy  (from configuration file {tmp_path / 'convcore.toml'})" in out


def test_info_shows_an_unavailable_plugin_and_its_reason(runner, fresh_registry):
    fresh_registry.register(
        BackendSpec(
            name="ghost",
            load=dict,
            ops=ALL_OPS,
            check_available=lambda: "the ghost accelerator is not plugged in",
        )
    )
    out = _invoke(runner, "info").stdout
    assert "ghost: the ghost accelerator is not plugged in" in out


# ----------------------------------------------------------- errors, every command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_backend_flag_is_one_line_for_every_command(runner, command):
    result = _invoke(runner, command, *COMMANDS[command], "--backend", "no_such_backend")
    _one_line_error(result, "no_such_backend", "available backends")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_backend_from_env_is_an_error_for_every_command(runner, command):
    result = _invoke(runner, command, *COMMANDS[command], env={"CONVCORE_BACKEND": "nope"})
    _one_line_error(result, "'nope'", "CONVCORE_BACKEND")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_backend_from_config_file_is_an_error_for_every_command(runner, command, tmp_path):
    (tmp_path / "convcore.toml").write_text('backend = "nope_cfg"\n')
    result = _invoke(runner, command, *COMMANDS[command])
    _one_line_error(result, "'nope_cfg'", "convcore.toml")


@pytest.mark.parametrize("command", ["bench", "check", "warmup"])
def test_unavailable_backend_is_an_error(runner, fresh_registry, command):
    fresh_registry.register(
        BackendSpec(name="ghost", load=dict, ops=ALL_OPS, check_available=lambda: "no ghost")
    )
    result = _invoke(runner, command, *COMMANDS[command], "-b", "ghost")
    _one_line_error(result, "'ghost' is unavailable: no ghost")


def test_bad_option_values_are_one_line(runner):
    _one_line_error(_invoke(runner, "bench", "--layers", "XZ"), "--layers", "'XZ'", "ABCDEF")
    _one_line_error(_invoke(runner, "bench", "--repeat", "0"), "--repeat", "got 0")
    _one_line_error(_invoke(runner, "bench", "--nope"), "--nope")
    _one_line_error(_invoke(runner, "demo", "--batch", "0"), "--batch", "got 0")
    _one_line_error(_invoke(runner, "check", "--dtype", "int8"), "--dtype", "int8")


def test_demo_checks_its_options_before_any_work(runner, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("demo ran the loops before checking its options")

    monkeypatch.setattr("convcore._naive.seed_conv2d_loops", no_work)
    _one_line_error(_invoke(runner, "demo", "--repeat", "0"), "--repeat", "got 0")
    _one_line_error(_invoke(runner, "demo", "--seed", "-1"), "--seed", "got -1")
    _one_line_error(_invoke(runner, "demo", "--dtype", "int8"), "--dtype", "int8")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_backend_flag_says_it_came_from_the_flag(runner, command):
    err = _one_line_error(_invoke(runner, command, "-b", "typo"), "'typo'")
    assert "Invalid value for '--backend'" in err
    assert "came from --backend" in err
    assert "keyword" not in err


def test_backend_that_cannot_take_the_input_is_an_error(runner):
    err = _one_line_error(
        _invoke(runner, "check", "-b", "numpy", "--namespace", "torch", "--no-matlab"),
        "'numpy'",
        "torch",
    )
    assert "numpy arrays" in err


def test_help_everywhere(runner):
    for command in [None, *COMMANDS]:
        args = ["--help"] if command is None else [command, "--help"]
        result = _invoke(runner, *args)
        assert result.exit_code == 0
        assert "Usage:" in result.stdout
        if command is not None:
            assert "--backend" in result.stdout


def test_python_dash_m_runs_check_and_exits_with_its_status(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVCORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "convcore", "check", "-b", "numpy", "--dtype", "float64"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "all " in proc.stdout and "checks passed" in proc.stdout
    assert "MATLAB fixtures" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "convcore", "check", "-b", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "Error: Invalid value for '--backend' / '-b': unknown backend 'nope'"
    )
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- check


def test_check_passes_on_a_correct_backend(runner):
    result = _invoke(runner, "check", "-b", "numpy")
    assert result.exit_code == 0, result.output
    rows = [r for r in result.stdout.splitlines() if r.startswith("numpy ")]
    assert {"loops", "MATLAB"} <= {r.split()[3] for r in rows}
    assert all(r.split()[-1] == "ok" for r in rows)
    assert "checks passed" in result.stdout


def _broken_spec(name, *, shift=0.0, crash=False, op="conv", ops=ALL_OPS, **declaration):
    """The numpy backend's kernels with ``shift`` added to ``op``'s result (or a crash)."""
    kernels = get_registry().kernels("numpy")
    original = kernels[op]

    def broken(*args):
        if crash:
            raise RuntimeError("kernel fell over")
        return original(*args) + shift

    def load():
        return {**kernels, op: broken}

    return BackendSpec(
        name=name, load=load, ops=ops, namespaces={"numpy"}, priority=-1, **declaration
    )


#: Checks per case: im2col, col2im, conv, dx, dw, db; max_pool output and indices,
#: max_pool_backward, avg_pool, avg_pool_backward; conv_transpose, dx, dw, db.
PER_CASE = {"conv": 6, "pool": 5, "transpose": 4}


def _expected_checks(conv=CASES, pool=POOL_CASES, transpose=TRANSPOSE_CASES):
    return (
        PER_CASE["conv"] * len(conv)
        + PER_CASE["pool"] * len(pool)
        + PER_CASE["transpose"] * len(transpose)
    )


def test_check_fails_on_a_wrong_backend_and_names_the_worst_error(runner, fresh_registry):
    fresh_registry.register(_broken_spec("off_by_a_bit", shift=1e-3))
    result = _invoke(runner, "check", "-b", "off_by_a_bit")
    assert result.exit_code == 1, result.output
    rows = [r for r in result.stdout.splitlines() if r.startswith("off_by_a_bit ")]
    assert rows and all(r.split()[-1] == "FAIL" for r in rows)
    err = result.stderr
    assert "FAILED" in err and "off_by_a_bit" in err
    assert "relative error" in err and ("conv2d" in err or "forward_propagation" in err)


def test_check_reports_a_crashing_kernel_as_a_failure(runner, fresh_registry):
    fresh_registry.register(_broken_spec("crashy", crash=True))
    result = _invoke(runner, "check", "-b", "crashy", "--no-matlab", "--dtype", "float32")
    assert result.exit_code == 1
    assert "RuntimeError: kernel fell over" in result.stderr
    assert "Traceback" not in result.output


def test_check_outcomes_cover_every_case_and_op():
    infos = [i for i in convcore.available_backends() if i.name == "numpy"]
    (out,) = run_checks(infos, dtypes=["float64"])
    assert out.ok and out.skipped is None and out.note is None
    assert out.checks == _expected_checks()
    assert set(OPS) == {op for case in ALL_CASES for op in case.ops}


def test_check_cases_cover_ranks_layouts_and_options():
    for cases in (CASES, POOL_CASES, TRANSPOSE_CASES):
        assert {c.nd for c in cases} == {1, 2, 3}
        assert any(c.layout == "channels_last" for c in cases)
    assert {c.ceil_mode for c in POOL_CASES} == {False, True, "cover_all"}
    assert {c.count_include_pad for c in POOL_CASES} == {False, True}
    assert any(c.divisor_override for c in POOL_CASES)
    assert any(d > 1 for c in POOL_CASES for d in c.dilation)
    assert any(c.groups > 1 for c in TRANSPOSE_CASES)
    assert all(any(c.output_padding) for c in TRANSPOSE_CASES)
    assert any(d > 1 for c in TRANSPOSE_CASES for d in c.dilation)


@pytest.mark.parametrize(
    ("op", "wrong"),
    [
        ("im2col", ["max_pool", "avg_pool", "conv_transpose_backward dw"]),
        ("col2im", ["max_pool_backward", "avg_pool_backward", "conv_transpose"]),
        ("conv", ["conv_transpose_backward dx"]),
    ],
)
def test_check_finds_a_wrong_kernel_in_pooling_and_transposed_convolution(
    fresh_registry, op, wrong
):
    fresh_registry.register(_broken_spec("off_by_a_bit", shift=1e-3, op=op, spatial_dims={1, 2, 3}))
    (out,) = run_checks([fresh_registry.info("off_by_a_bit")], dtypes=["float64"])
    assert out.checks == _expected_checks()
    for name in wrong:
        for case in (*POOL_CASES, *TRANSPOSE_CASES):
            if any(name.split()[0] == o for o in case.ops):
                assert any(line.startswith(f"{case.name} {name}:") for line in out.failures), (
                    case.name,
                    name,
                    out.failures,
                )
    assert not any("indices" in line for line in out.failures)  # a shift keeps the argmax


def test_check_compares_the_max_pool_indices(fresh_registry):
    """An im2col with the taps of each window reversed: the maxima stay, the indices move."""
    kernels = get_registry().kernels("numpy")

    def reversed_taps(xp, x, geom):
        cols = kernels["im2col"](xp, x, geom)
        n, rows, length = cols.shape
        k = geom.kernel_numel
        return cols.reshape(n, rows // k, k, length)[:, :, ::-1].reshape(n, rows, length)

    fresh_registry.register(
        BackendSpec(
            name="reversed",
            load=lambda: {**kernels, "im2col": reversed_taps},
            ops=ALL_OPS,
            namespaces={"numpy"},
            spatial_dims={1, 2, 3},
        )
    )
    # no padding and no ceil overhang: every tap reads an input cell, so only the order moves
    case = PoolCase("unpadded", 2, 3, (6, 8), (2, 3), (2, 2), (0, 0, 0, 0), (1, 1))
    (out,) = run_checks([fresh_registry.info("reversed")], cases=[case], dtypes=["float64"])
    failed = {line.split(":")[0] for line in out.failures}
    assert failed == {"unpadded max_pool indices", "unpadded max_pool_backward"}, out.failures


def test_check_runs_only_the_ops_a_backend_declares(fresh_registry):
    """Without col2im: no col2im, pooling gradients or transposed convolution forward."""
    fresh_registry.register(
        _broken_spec("no_col2im", ops={"conv", "conv_backward", "im2col"}, spatial_dims={1, 2, 3})
    )
    (out,) = run_checks([fresh_registry.info("no_col2im")], dtypes=["float64"])
    assert out.ok, out.failures
    # im2col, conv, dx, dw, db; max_pool output and indices, avg_pool; transposed dx, dw, db
    assert out.checks == 5 * len(CASES) + 3 * len(POOL_CASES) + 3 * len(TRANSPOSE_CASES)
    assert "col2im, max_pool_backward, avg_pool_backward, conv_transpose left out" in out.note
    assert "cases left out" not in out.note


#: One case of each kind (convolution, pooling, transposed convolution) for the JAX checks:
#: eager JAX compiles every op per shape, so the full table costs it about a minute.
JAX_CHECK_CASES = (CASES[0], POOL_CASES[1], TRANSPOSE_CASES[1])


def test_check_namespace_jax(runner, monkeypatch):
    """``check --namespace jax``: the portable backend on JAX arrays, float64 skipped with
    the reason (JAX has it only with x64); a few cases (the full table is a minute)."""
    pytest.importorskip("jax")
    from convcore import _check

    full = _check.run_checks
    monkeypatch.setattr(
        _check, "run_checks", lambda *a, **kw: full(*a, **kw, cases=JAX_CHECK_CASES)
    )
    result = _invoke(runner, "check", "-b", "array_api", "--namespace", "jax", "--no-matlab")
    assert result.exit_code == 0, result.output
    rows = [r.split() for r in result.stdout.splitlines() if r.startswith("array_api ")]
    assert [r[:3] for r in rows] == [
        ["array_api", "jax", "float32"],
        ["array_api", "jax", "float64"],
    ]
    numpy = [i for i in convcore.available_backends() if i.name == "numpy"]
    (same,) = full(numpy, dtypes=["float32"], cases=JAX_CHECK_CASES)  # every op of the cases
    assert rows[0][4] == str(same.checks) and rows[0][-1] == "ok"
    assert rows[1][-1] == "skipped" and "jax_enable_x64" in result.stdout
    err = _one_line_error(
        _invoke(runner, "check", "-b", "numpy", "--namespace", "jax", "--no-matlab"), "'numpy'"
    )
    assert "jax" in err


def test_check_jax_float64_with_x64():
    jax = pytest.importorskip("jax")
    infos = [i for i in convcore.available_backends() if i.name == "array_api"]
    with jax.enable_x64(True):
        (out,) = run_checks(infos, namespaces=["jax"], dtypes=["float64"], cases=JAX_CHECK_CASES)
    assert out.skipped is None and out.ok, out.failures
    assert out.worst < 1e-12  # float64 arithmetic, not float32 in disguise


def test_fixture_check_uses_every_installed_fixture():
    files = fixture_files()
    assert len(files) >= 30
    out = check_fixtures("numpy")
    assert out.ok, out.failures
    conv_cases = out.checks - 2 * len(files)  # im2col_ref + im2col_back_ref per fixture
    assert conv_cases > 0 and conv_cases % 4 == 0  # y, dx, dw, db per convolution fixture


def test_fixture_check_fails_on_a_wrong_adapter_result(fresh_registry):
    fresh_registry.register(_broken_spec("off_by_a_bit", shift=1e-6))
    out = check_fixtures("off_by_a_bit")
    assert not out.ok
    assert any("forward_propagation" in line for line in out.failures)


# --------------------------------------------------------------------------- bench


def test_bench_table_json_and_plot(runner, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the docs extra)")
    args = ["bench", "-b", "numpy", "-b", "array_api", "--layers", "cd", "--repeat", "2"]
    args += ["--no-torch", "--pause", "0", "--json", "r.json", "--plot", "p.png"]
    result = _invoke(runner, *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("float32: GEMM peak ") for line in lines)
    rows = [line.split() for line in lines if line[:2] in ("C ", "D ")]
    assert len(rows) == 2 * 2 * 2  # layers x directions x backends
    assert {r[2] for r in rows} == {"numpy", "array_api"}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["cpus"] == os.cpu_count()
    assert data["meta"]["pause_s"] == 0 and data["meta"]["burst"] == 1
    records = data["records"]
    assert len(records) == 8
    for group in {(r["layer"], r["direction"]) for r in records}:
        ratios = [r["ratio_to_fastest"] for r in records if (r["layer"], r["direction"]) == group]
        assert min(ratios) == pytest.approx(1.0)
    for r in records:
        assert r["median_s"] > 0 and r["gflops"] > 0 and r["peak_mib"] >= 0
        flops = convcore._bench.LAYERS[r["layer"]].flops * (1 if r["direction"] == "fwd" else 2)
        assert r["gflops"] == pytest.approx(flops / r["median_s"] / 1e9)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_includes_torch_when_installed(runner):
    pytest.importorskip("torch")
    result = _invoke(runner, "bench", "-b", "numpy", "--layers", "C", "--repeat", "1")
    assert result.exit_code == 0, result.output
    impls = {line.split()[2] for line in result.stdout.splitlines() if line.startswith("C ")}
    assert impls == {"numpy", "torch"}


def test_bench_under_auto_runs_every_available_numpy_backend(runner, monkeypatch):
    seen = {}

    def fake_run_bench(layers, dtypes, backends, **kw):
        seen.update(layers=layers, dtypes=dtypes, backends=backends, torch=kw["torch"])
        return [], {d: 1.0 for d in dtypes}

    monkeypatch.setattr(convcore._bench, "run_bench", fake_run_bench)
    result = _invoke(runner, "bench", "--no-torch", "--dtype", "float64", "--layers", "AF")
    assert result.exit_code == 0, result.output
    expected = [
        i.name
        for i in convcore.available_backends()
        if i.available and (i.namespaces is None or "numpy" in i.namespaces)
    ]
    assert seen == {
        "layers": ["A", "F"],
        "dtypes": ("float64",),
        "backends": expected,
        "torch": False,
    }
    result = _invoke(runner, "bench", "--no-torch", env={"CONVCORE_BACKEND": "numpy"})
    assert seen["backends"] == ["numpy"]


def test_bench_burst_passes_through_and_is_validated(runner, monkeypatch):
    seen = {}

    def fake_run_bench(layers, dtypes, backends, **kw):
        seen.update(kw)
        return [], {d: 1.0 for d in dtypes}

    monkeypatch.setattr(convcore._bench, "run_bench", fake_run_bench)
    result = _invoke(runner, "bench", "-b", "numpy", "--no-torch", "--burst", "6")
    assert result.exit_code == 0, result.output
    assert seen["burst"] == 6 and "steady state of 6 calls" in result.stderr
    err = _one_line_error(_invoke(runner, "bench", "--burst", "0"), "--burst")
    assert "got 0" in err


def test_timeit_burst_is_the_median_after_the_first_calls(monkeypatch):
    """burst=N: N calls, the first min(3, N // 2) left out of the median."""
    durations = iter([9.0, 8.0, 7.0, 1.0, 2.0, 3.0, 100.0, 2.5])
    clock = {"now": 0.0}

    def fake_counter():
        return clock["now"]

    def func():
        clock["now"] += next(durations)

    monkeypatch.setattr(convcore._bench.time, "perf_counter", fake_counter)
    assert convcore._bench.timeit(func, burst=8) == 2.5  # median of 1, 2, 3, 100, 2.5
    durations = iter([4.0])
    assert convcore._bench.timeit(func) == 4.0


def test_bench_plot_without_matplotlib_is_a_clear_error(runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = _one_line_error(_invoke(runner, "bench", "--plot", "p.png"), "matplotlib")
    assert "convcore[plot]" in err


# ------------------------------------------------------------------- demo, warmup


def test_demo_shows_the_seed_example_and_checks_every_backend(runner):
    result = _invoke(runner, "demo", "--repeat", "1", "-b", "numpy")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("363 x 3025", "96 x 363", "96 x 3025", "55x55x96"):
        assert text in out
    row = next(line for line in out.splitlines() if line.startswith("numpy "))
    assert row.split()[-1] == "ok"


def test_warmup_runs_the_declared_hook_only(runner, fresh_registry):
    calls = []
    fresh_registry.register(
        BackendSpec(
            name="warm",
            load=dict,
            ops=ALL_OPS,
            dtypes={"float32"},
            warmup=lambda dtypes: calls.append(list(dtypes)) or {"compile": 0.5, "kernels": 3},
        )
    )
    result = _invoke(runner, "warmup", "-b", "warm", "-b", "numpy")
    assert result.exit_code == 0, result.output
    assert calls == [["float32"]]  # float64 is not declared by the backend
    assert "warm: compile: 0.50 s" in result.stdout
    assert "warm: kernels: 3" in result.stdout
    assert "numpy: nothing to prepare" in result.stdout


def test_backend_spec_rejects_a_non_callable_warmup():
    with pytest.raises(TypeError, match="warmup must be callable"):
        BackendSpec(name="bad", load=dict, ops=ALL_OPS, warmup="yes")


def test_bench_leaves_a_backend_out_of_a_layer_it_does_not_declare(runner, fresh_registry):
    """A 2-D-only backend is skipped on the 3-D layer H, not an error."""
    kernels = get_registry().kernels("numpy")
    fresh_registry.register(
        BackendSpec(
            name="flat_only",
            load=lambda: kernels,
            ops=ALL_OPS,
            namespaces={"numpy"},
            spatial_dims={2},
        )
    )
    args = ["bench", "-b", "flat_only", "-b", "numpy", "--layers", "CH", "--repeat", "1"]
    result = _invoke(runner, *args, "--no-torch", "--pause", "0", "--direction", "fwd")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line[:2] in ("C ", "H ")]
    assert {(r[0], r[2]) for r in rows} == {("C", "flat_only"), ("C", "numpy"), ("H", "numpy")}
    h = convcore._bench.LAYERS["H"]
    assert h.nd == 3 and h.arrays("float32")[0].ndim == 5
    assert convcore._bench.LAYERS["G"].groups == convcore._bench.LAYERS["G"].c  # depthwise


def test_check_leaves_out_ranks_a_backend_does_not_declare(fresh_registry):
    kernels = get_registry().kernels("numpy")
    fresh_registry.register(
        BackendSpec(
            name="flat_only", load=lambda: kernels, ops=ALL_OPS, namespaces={"numpy"}
        )  # spatial_dims defaults to {2}: 1-D runs as 2-D, 3-D is not declared
    )
    (out,) = run_checks([fresh_registry.info("flat_only")], dtypes=["float64"])

    def flat(cases):
        return [c for c in cases if c.nd != 3]

    assert out.ok, out.failures
    assert out.checks == _expected_checks(flat(CASES), flat(POOL_CASES), flat(TRANSPOSE_CASES))
    assert out.checks < _expected_checks()
    assert out.note == "3-D cases left out: not declared by the backend"
