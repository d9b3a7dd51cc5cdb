"""The benchmark scripts run (smoke tests with the smallest settings; no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run(script, *args, timeout=300):
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_bench_numba_reports_both_regimes(tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    proc = _run(
        "bench_numba.py",
        *("--layers", "D", "--dtypes", "float32", "--repeat", "1", "--burst", "4"),
        *("--pause", "0", "--no-torch", "--json", str(out), "--markdown", str(md)),
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())["records"]
    seen = {(r["impl"], r["direction"], r["regime"]) for r in records}
    for impl in ("numba", "numpy"):
        for direction in ("fwd", "bwd"):
            for regime in ("cold", "warm"):
                assert (impl, direction, regime) in seen
    assert all(r["median_s"] > 0 and r["gflops"] > 0 for r in records)
    table = md.read_text()
    assert "| D | float32 | fwd | cold |" in table and "| D | float32 | bwd | warm |" in table


def test_bench_numba_rejects_an_unknown_regime():
    proc = _run("bench_numba.py", "--layers", "D", "--regimes", "hot", "--no-torch")
    assert proc.returncode == 2
    assert "--regimes" in proc.stderr and "hot" in proc.stderr


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_setaffinity and two CPUs",
)
def test_bench_affinity_runs():
    proc = _run(
        "bench_affinity.py",
        *("--layers", "D", "--rounds", "2", "--repeat", "1", "--pause", "0"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept apart" in proc.stdout and "left alone" in proc.stdout
    assert any(line.startswith("D     float32  fwd") for line in proc.stdout.splitlines())


def test_bench_threads_runs():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS < 2")
    proc = _run(
        "bench_threads.py",
        *("--layers", "D", "--dtypes", "float32", "--repeat", "1", "--pause", "0"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("D ")]
    assert [r[2] for r in rows] == ["fwd", "bwd"]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)


def test_numba_gemm_ceiling_runs_and_checks_its_kernels():
    proc = _run("numba_gemm_ceiling.py", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 3
    assert all(float(v) > 0 for r in rows for v in r[-3:])


def test_bench_torch_runs():
    pytest.importorskip("torch")
    proc = _run(
        "bench_torch.py",
        *("--n", "2", "--c", "3", "--h", "8", "--f", "4", "--repeat", "1", "--pause", "0"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    rows = [r for r in rows if r and r[0] in ("convcore.torch", "torch", "array_api")]
    assert [(r[0], r[1]) for r in rows] == [
        (impl, direction)
        for direction in ("fwd", "fwd+bwd")
        for impl in ("convcore.torch", "torch", "array_api")
    ]
    assert all(float(r[2]) > 0 and float(r[3]) >= 0 for r in rows)  # ratios print 2 decimals


def test_bench_overhead_runs():
    proc = _run("bench_overhead.py", *("--repeat", "1", "--calls", "5", "--pause", "0"))
    assert proc.returncode == 0, proc.stderr
    rows = {line[:18].strip(): line[18:].split() for line in proc.stdout.splitlines()[3:]}
    assert {"convcore auto", 'backend="numpy"', 'backend="numba"'} <= set(rows)
    assert all(float(values[0]) > 0 for values in rows.values())
    if "torch conv2d" in rows:
        assert rows["torch conv2d"][1] == "1.00"


def test_bench_training_runs_both_nets():
    has_torch = importlib.util.find_spec("torch") is not None
    impls = "auto,numpy,torch" if has_torch else "auto,numpy"
    proc = _run(
        "bench_training.py",
        *("--impls", impls, "--repeat", "1", "--warm", "0", "--limit", "64"),
        *("--images", "64", "--pause", "0"),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for net in ("digits", "cifar"):
        assert f"\n{net}: " in text
    assert "convcore auto" in text and "convcore numpy" in text
    if has_torch:  # the one-step check against torch passed and the ratio column is filled
        rows = [line.split() for line in text.splitlines() if line.startswith("convcore auto")]
        assert len(rows) == 2 and all(float(row[-1]) > 0 for row in rows)


def test_bench_training_rejects_an_unknown_implementation():
    proc = _run("bench_training.py", "--impls", "auto,tensorflow")
    assert proc.returncode == 2
    assert "--impls" in proc.stderr and "tensorflow" in proc.stderr


def test_bench_pool_runs():
    args = ["--repeat", "1", "--calls", "1", "--pause", "0"]
    if importlib.util.find_spec("torch") is None:
        args.append("--no-torch")
    proc = _run("bench_pool.py", *args)
    assert proc.returncode == 0, proc.stderr
    for name in ("digits pool 1", "cifar pool 2", "overlapping 3x3/2"):
        assert name in proc.stdout
    assert "numba fwd+bwd (the layer)" in proc.stdout and "numpy bwd, recomputed" in proc.stdout
