"""The CuPy backend (``backends/convcore_cupy``).

Without a GPU (what runs everywhere):

* the CUDA source compiles, for sm_80 and sm_90, with ``nvcc`` and with NVRTC
  (the compiler ``cupy.RawModule`` uses), for exactly the template instances the
  backend launches; skipped when the compiler is not installed;
* the CUDA kernels themselves run on the CPU: the ``.cu`` file is compiled as
  C++ with the CUDA built-ins defined as plain variables and the grid run as
  loops, and the results are checked against the naive loop oracle
  (``tests/naive.py``) for every case, dtype, index type and column layout;
* availability reporting: the backend's reason on this machine, and, with fake
  ``cupy`` packages in a subprocess, every other reason (not installed, broken
  import, no device, NVRTC missing);
* ``import convcore`` does not import CuPy, and NumPy arrays never go to the
  CuPy backend;
* the index-type guard and the workspace arithmetic.

With a GPU (skipped with the backend's own reason otherwise): the parity cases
on CuPy arrays in float16/float32/float64, bitwise determinism of the backward
pass, chunked workspace, forced 64-bit indexing, streams, no host
synchronisation, and devices other than 0.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import unittest.mock
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from cases import CASES, case_inputs
from cases import expected as _oracle  # the naive oracle's results, shared with test_parity
from convcore_cupy import _source

import convcore
from convcore.geometry import ConvGeometry, conv_geometry

BACKEND = "cupy"
ARCHS = ("sm_80", "sm_90")
CUDA_SOURCES = sorted(Path(str(_source.kernel_path())).parent.glob("*.cu"))
DTYPES = ("float16", "float32", "float64")

case_param = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def _cupy_info():
    """The backend's :class:`convcore.BackendInfo`; fails when it is not registered."""
    infos = {info.name: info for info in convcore.available_backends()}
    if BACKEND not in infos:
        disabled = os.environ.get("CONVCORE_DISABLED_BACKENDS", "")
        if BACKEND in {part.strip() for part in disabled.split(",")}:
            pytest.skip("the cupy backend is disabled by CONVCORE_DISABLED_BACKENDS")
        pytest.fail(
            "the cupy backend is not registered: pyproject.toml needs the entry point "
            'cupy = "convcore_cupy" in [project.entry-points."convcore.backends"] '
            "(and a reinstall)"
        )
    return infos[BACKEND]


def _geometry(case) -> ConvGeometry:
    return conv_geometry(
        (case.H, case.W),
        case.kernel,
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
    )


def _assert_half_close(actual, expected, *, rtol=2e-3, err_msg=""):
    """float16 results: a few float16 ulps, relative to the magnitude of the result."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, err_msg)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def _clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVCORE_")}
    env["CONVCORE_CONFIG_DIR"] = str(tmp_path / "no-user-config")
    env.update(extra)
    return env


def _run_python(code, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_clean_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ==========================================================================
# Registration
# ==========================================================================


def test_registered_with_declared_capabilities():
    info = _cupy_info()
    assert info.plugin == "cupy"
    assert info.priority == 30
    assert info.namespaces == frozenset({"cupy"})
    assert info.devices == frozenset({"cuda"})
    assert info.dtypes == frozenset(DTYPES)
    assert info.ops == frozenset({"im2col", "col2im", "conv", "conv_backward"})
    # The highest priority: under auto a CuPy array meets this backend first.
    others = [i.priority for i in convcore.available_backends() if i.name != BACKEND]
    assert info.priority > max(others)


def test_kernel_source_is_package_data():
    """The .cu file sits inside the package, where RawModule reads it from."""
    assert _source.kernel_path().is_file()
    assert [p.name for p in CUDA_SOURCES] == [_source.KERNEL_FILE]
    source = _source.kernel_source()
    for kernel in _source.KERNELS:
        assert f"__global__ void {kernel}(" in source
    # Self-contained for NVRTC: no headers at all.
    assert not re.search(r"^\s*#\s*include", source, re.MULTILINE)


def test_name_expressions_cover_every_dtype_and_index_type():
    assert len(set(_source.NAME_EXPRESSIONS)) == 2 * 3 * 2
    assert "convcore_im2col<float, int>" in _source.NAME_EXPRESSIONS
    assert "convcore_col2im<convcore_half, long long>" in _source.NAME_EXPRESSIONS
    assert set(_source.STORAGE_TYPES) == set(_cupy_info().dtypes)


# ==========================================================================
# (a) The CUDA source compiles: nvcc and NVRTC, sm_80 and sm_90
# ==========================================================================


def _instance_wrapper(cu_file: Path, tmp_path: Path) -> tuple[Path, int]:
    """A .cu file including ``cu_file`` and instantiating what the backend launches.

    Taking the address of each ``name_expressions`` entry in host code makes
    nvcc instantiate (and fail on) exactly the templates ``cupy.RawModule``
    asks NVRTC for.
    """
    lines = [f'#include "{cu_file}"', ""]
    expressions = _source.NAME_EXPRESSIONS if cu_file.name == _source.KERNEL_FILE else ()
    if expressions:
        lines.append("void* convcore_instances[] = {")
        lines += [f"    (void*)&{expr}," for expr in expressions]
        lines.append("};")
    wrapper = tmp_path / f"instances_{cu_file.stem}.cu"
    wrapper.write_text("\n".join(lines) + "\n")
    return wrapper, len(expressions)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu_file", CUDA_SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles_every_instance(cu_file, arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH (install the CUDA toolkit to run the compile check)")
    wrapper, expected_entries = _instance_wrapper(cu_file, tmp_path)
    proc = subprocess.run(
        [
            nvcc,
            "-std=c++17",
            f"-arch={arch}",
            "-cubin",
            "-Werror",
            "all-warnings",
            "-Xptxas",
            "-v",
            "-o",
            str(tmp_path / f"{cu_file.stem}.cubin"),
            str(wrapper),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    entries = re.findall(rf"Compiling entry function '(\w+)' for '{arch}'", log)
    assert len(entries) == expected_entries, log
    for kernel in _source.KERNELS:
        assert sum(kernel in e for e in entries) == expected_entries // len(_source.KERNELS)
    assert not re.search(r"[1-9]\d* bytes spill", log), log  # no register spills


def _nvrtc():
    """CuPy's NVRTC bindings, or skip with the reason they cannot be used."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("cupy is not installed (its NVRTC bindings run the NVRTC compile check)")
    from cupy.cuda import nvrtc

    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC (libnvrtc) cannot be loaded here: {exc}")
    return nvrtc


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles_every_instance(arch):
    """What ``cupy.RawModule`` does on a GPU, minus the GPU: same source, options, names."""
    nvrtc = _nvrtc()
    supported = {f"sm_{a}" for a in nvrtc.getSupportedArchs()}
    if arch not in supported:
        pytest.skip(f"this NVRTC {nvrtc.getVersion()} does not target {arch}")
    prog = nvrtc.createProgram(_source.kernel_source(), "convcore_kernels.cu", [], [])
    try:
        for expr in _source.NAME_EXPRESSIONS:
            nvrtc.addNameExpression(prog, expr)
        # CuPy 14 adds -ftz=true and --device-as-default-execution-space to ours.
        options = [*_source.NVRTC_OPTIONS, f"-arch={arch}", "-ftz=true"]
        options.append("--device-as-default-execution-space")
        try:
            nvrtc.compileProgram(prog, options)
        except Exception as exc:
            pytest.fail(f"NVRTC failed: {exc}\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog).strip()
        assert not log, log  # no warnings either
        lowered = [nvrtc.getLoweredName(prog, expr) for expr in _source.NAME_EXPRESSIONS]
        assert len(set(lowered)) == len(lowered) and all(lowered)
        assert len(nvrtc.getCUBIN(prog)) > 0
    finally:
        nvrtc.destroyProgram(prog)


# ==========================================================================
# The CUDA kernels run on the CPU: the .cu compiled as C++
# ==========================================================================

_HOST_PRELUDE = r"""
// Host emulation of the CUDA kernels: built-ins become globals, the grid a loop.
#include <cmath>

#define __global__
#define __device__
#define __forceinline__ inline

struct convcore_dim3 { unsigned int x, y, z; };
static convcore_dim3 threadIdx, blockIdx, blockDim, gridDim;

// IEEE binary16 <-> float32, round to nearest even (what cvt.rn.f16.f32 does).
static inline float host_h2f(unsigned short h) {
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;
    if (e == 0) v = std::ldexp((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = std::ldexp((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}
static inline unsigned short host_f2h(float f) {
    const unsigned short sign = std::signbit(f) ? 0x8000 : 0;
    const float a = std::fabs(f);
    if (std::isnan(a)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00;
    if (a < 6.103515625e-05f)  // subnormal: a multiple of 2^-24 (1024 = smallest normal)
        return sign | (unsigned short)std::nearbyint(a * 16777216.0f);
    int e;
    const float m = std::frexp(a, &e);                     // a = m * 2^e, m in [0.5, 1)
    unsigned int q = (unsigned int)std::nearbyint(std::ldexp(m, 11));  // [1024, 2048]
    int biased = e + 14;
    if (q == 2048) { q = 1024; ++biased; }
    if (biased >= 31) return sign | 0x7c00;
    return sign | (unsigned short)(biased << 10) | (unsigned short)(q - 1024);
}
#define CONVCORE_HALF_TO_FLOAT(f, h) ((f) = host_h2f(h))
#define CONVCORE_FLOAT_TO_HALF(h, f) ((h) = host_f2h(f))

extern "C" void host_f2h_array(const float* in, unsigned short* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = host_f2h(in[i]);
}
extern "C" void host_h2f_array(const unsigned short* in, float* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = host_h2f(in[i]);
}
"""

_HOST_RUNNER = r"""
extern "C" void {symbol}(const void* src, void* dst, long long total, const int* g,
                         long long stride_n, long long stride_row,
                         unsigned int blocks, unsigned int threads) {{
    gridDim.x = blocks; blockDim.x = threads;
    for (unsigned int b = 0; b < blocks; ++b) {{
        blockIdx.x = b;
        for (unsigned int t = 0; t < threads; ++t) {{
            threadIdx.x = t;
            {expr}((const {ctype}*)src, ({ctype}*)dst, ({itype})total, g[0], g[1], g[2],
                   g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12],
                   ({itype})stride_n, ({itype})stride_row);
        }}
    }}
}}
"""


def _host_symbol(kernel, dtype, index):
    return f"host_{kernel}_{dtype}_{index}"


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """The kernels of ``_kernels.cu`` compiled for the CPU, loaded with ctypes."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or c++) to run the CUDA kernels on the CPU")
    parts = [_HOST_PRELUDE, f'#include "{_source.kernel_path()}"']
    for kernel in _source.KERNELS:
        for dtype, ctype in _source.STORAGE_TYPES.items():
            for index, itype in _source.INDEX_TYPES.items():
                parts.append(
                    _HOST_RUNNER.format(
                        symbol=_host_symbol(kernel, dtype, index),
                        expr=_source.name_expression(kernel, dtype, index),
                        ctype=ctype,
                        itype=itype,
                    )
                )
    build = tmp_path_factory.mktemp("host_kernels")
    src, lib = build / "host_kernels.cpp", build / "libhost_kernels.so"
    src.write_text("\n".join(parts))
    proc = subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(lib),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ctypes.CDLL(str(lib))


def _run_host(lib, kernel, src, dst, geom, strides, *, index="int32", grid=None):
    """Launch one emulated kernel; ``grid`` = (blocks, threads), None = cover the work.

    ``strides`` = ``(col_stride_n, col_stride_row)`` of the columns (see the .cu file).
    """
    img = src if kernel == "convcore_im2col" else dst
    n, c = img.shape[:2]
    total = n * c * geom.output_numel if kernel == "convcore_im2col" else img.size
    fn = getattr(lib, _host_symbol(kernel, src.dtype.name, index))
    fn.restype = None
    ints = (ctypes.c_int * 13)(*_source.check_geometry(geom, c))
    blocks, threads = grid if grid is not None else (-(-total // 64), 64)
    assert src.flags.c_contiguous and dst.flags.c_contiguous
    fn(
        ctypes.c_void_p(src.ctypes.data),
        ctypes.c_void_p(dst.ctypes.data),
        ctypes.c_longlong(total),
        ints,
        ctypes.c_longlong(strides[0]),
        ctypes.c_longlong(strides[1]),
        ctypes.c_uint(blocks),
        ctypes.c_uint(threads),
    )


#: Every (index type, grid) the host tests launch with: the grid that covers the
#: work, and a small one that makes each thread loop (grid-stride) over several items.
LAUNCHES = [
    dict(index=index, grid=grid) for index in _source.INDEX_TYPES for grid in (None, (3, 5))
]


def test_host_half_conversions_match_numpy(host_kernels):
    """The emulation's float16 conversions agree with NumPy (so the fp16 checks are fair)."""
    bits = np.arange(2**16, dtype=np.uint16)
    as_float = np.empty(bits.size, np.float32)
    host_kernels.host_h2f_array(
        ctypes.c_void_p(bits.ctypes.data),
        ctypes.c_void_p(as_float.ctypes.data),
        ctypes.c_longlong(bits.size),
    )
    expected = bits.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(as_float, expected)  # NaNs compare equal here
    rng = np.random.default_rng(0)
    edges = "0 -0 65504 65519 65520 1e9 -1e9 5.96e-8 2.98e-8 2.99e-8 6.1e-5 6.104e-5 inf -inf"
    ties = "1.0009765625 1.00048828125 1.00146484375 2049 2051"  # halfway between float16s
    samples = np.concatenate(
        [
            (rng.standard_normal(5000) * 10.0 ** rng.integers(-9, 6, 5000)).astype(np.float32),
            np.array(f"{edges} {ties}".split(), dtype=np.float32),
        ]
    )
    out = np.empty(samples.size, np.uint16)
    host_kernels.host_f2h_array(
        ctypes.c_void_p(samples.ctypes.data),
        ctypes.c_void_p(out.ctypes.data),
        ctypes.c_longlong(samples.size),
    )
    with np.errstate(over="ignore"):  # 1e9 -> inf is the point
        expected_bits = samples.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(out, expected_bits)


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_host_im2col_matches_oracle(case, dtype, host_kernels):
    """Both column layouts the backend uses, bit for bit (im2col only copies)."""
    geom = _geometry(case)
    x = case_inputs(case, np.dtype(dtype))[0]
    n, c = x.shape[:2]
    ck, L = c * geom.kernel_numel, geom.output_numel
    want = _oracle(case, dtype)["im2col"]
    assert want.dtype == x.dtype
    for launch in LAUNCHES:
        # The public result (N, C*K, L).
        cols = np.full((n, ck, L), np.nan, dtype)
        _run_host(host_kernels, "convcore_im2col", x, cols, geom, (ck * L, L), **launch)
        np.testing.assert_array_equal(cols, want, err_msg=f"public layout, {launch}")
        # The GEMM workspace of a batch chunk: (C*K, n*L).
        work = np.full((ck, n * L), np.nan, dtype)
        _run_host(host_kernels, "convcore_im2col", x, work, geom, (L, n * L), **launch)
        np.testing.assert_array_equal(
            work.reshape(ck, n, L).transpose(1, 0, 2), want, err_msg=f"workspace, {launch}"
        )


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_host_col2im_matches_oracle(case, dtype, host_kernels, assert_close):
    """The gather col2im against the loop oracle, in both column layouts."""
    geom = _geometry(case)
    cols = case_inputs(case, np.dtype(dtype))[4]
    n, ck, L = cols.shape
    c = ck // geom.kernel_numel
    check = _assert_half_close if dtype == "float16" else assert_close
    work = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(ck, n * L)
    first = None
    for launch in LAUNCHES:
        img = np.full((n, c, case.H, case.W), np.nan, dtype)
        _run_host(host_kernels, "convcore_col2im", cols, img, geom, (ck * L, L), **launch)
        check(img, _oracle(case, dtype)["col2im"], err_msg=f"public layout, {launch}")
        img2 = np.full_like(img, np.nan)
        _run_host(host_kernels, "convcore_col2im", work, img2, geom, (L, n * L), **launch)
        # One summation order whatever the layout, index type or grid: bitwise equal.
        first = img if first is None else first
        np.testing.assert_array_equal(img, first, err_msg=str(launch))
        np.testing.assert_array_equal(img2, first, err_msg=f"workspace, {launch}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_host_col2im_is_adjoint_of_im2col(dtype, host_kernels):
    """<im2col(x), y> == <x, col2im(y)> on a case with overlaps, dilation and padding."""
    geom = conv_geometry((9, 8), (3, 2), stride=(2, 1), padding=(1, 2, 0, 1), dilation=(2, 3))
    rng = np.random.default_rng(3)
    n, c = 2, 3
    x = rng.standard_normal((n, c, 9, 8)).astype(dtype)
    ck, L = c * geom.kernel_numel, geom.output_numel
    y = rng.standard_normal((n, ck, L)).astype(dtype)
    cols = np.empty((n, ck, L), dtype)
    _run_host(host_kernels, "convcore_im2col", x, cols, geom, (ck * L, L))
    img = np.empty_like(x)
    _run_host(host_kernels, "convcore_col2im", y, img, geom, (ck * L, L))
    lhs = float(np.sum(cols.astype(np.float64) * y))
    rhs = float(np.sum(x.astype(np.float64) * img))
    tol = {"float16": 5e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
    assert math.isclose(lhs, rhs, rel_tol=tol, abs_tol=tol), (lhs, rhs)


# ==========================================================================
# The backend's ops (_ops.py) run on the CPU: a stand-in for CuPy built on
# NumPy, whose RawModule launches the CPU-compiled kernels above
# ==========================================================================


class _HostArray(np.ndarray):
    """A NumPy array with CuPy's ``device`` context manager (all _ops needs of it)."""

    @property
    def device(self):
        import contextlib

        return contextlib.nullcontext()


class _HostRawModule:
    """``cupy.RawModule`` whose functions run the kernels compiled for the CPU.

    It checks what a GPU launch would need right: the name is one of the
    ``name_expressions``, the scalar arguments carry the exact C types of the
    kernel's parameters (np.int32 for int, np.int64 for long long), and array
    arguments are contiguous.
    """

    launches: ClassVar[list] = []

    def __init__(self, lib, code, options, name_expressions):
        assert code == _source.kernel_source() and tuple(options) == _source.NVRTC_OPTIONS
        self.lib, self.names = lib, tuple(name_expressions)

    def get_function(self, name):
        assert name in self.names, name
        (kernel, dtype, index), *_ = [
            (k, d, i)
            for k in _source.KERNELS
            for d in _source.STORAGE_TYPES
            for i in _source.INDEX_TYPES
            if _source.name_expression(k, d, i) == name
        ]
        itype = np.int32 if index == "int32" else np.int64

        def launch(grid, block, args):
            src, dst, total, *ints, stride_n, stride_row = args
            assert len(ints) == 13
            assert all(type(v) is np.int32 for v in ints), [type(v) for v in ints]
            for value in (total, stride_n, stride_row):
                assert type(value) is itype, (name, type(value))
            for arr in (src, dst):
                assert arr.flags.c_contiguous and arr.dtype.name == dtype
            fn = getattr(self.lib, _host_symbol(kernel, dtype, index))
            fn.restype = None
            fn(
                ctypes.c_void_p(src.ctypes.data),
                ctypes.c_void_p(dst.ctypes.data),
                ctypes.c_longlong(int(total)),
                (ctypes.c_int * 13)(*(int(v) for v in ints)),
                ctypes.c_longlong(int(stride_n)),
                ctypes.c_longlong(int(stride_row)),
                ctypes.c_uint(grid[0]),
                ctypes.c_uint(block[0]),
            )
            _HostRawModule.launches.append((name, grid, block))

        return launch


def _host_matmul(a, b, out=None):
    """cuBLAS through cupy.matmul: float16 operands, float32 compute, float16 result."""
    if a.dtype == np.float16:
        result = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    else:
        result = np.matmul(a, b)
    if out is None:
        return result
    out[...] = result
    return out


@pytest.fixture(scope="module")
def host_ops(host_kernels):
    """``convcore_cupy._ops`` imported against the NumPy stand-in for CuPy."""
    import types

    fake = types.ModuleType("cupy")
    fake.memoize = lambda for_each_device=False: functools.cache
    fake.RawModule = functools.partial(_HostRawModule, host_kernels)
    fake.ascontiguousarray = np.ascontiguousarray
    fake.empty = np.empty
    fake.matmul = _host_matmul
    fake.sum = np.sum
    fake.add = np.add
    path = Path(_source.__file__).with_name("_ops.py")
    spec = importlib.util.spec_from_file_location("convcore_cupy._ops_on_host", path)
    module = importlib.util.module_from_spec(spec)
    with unittest.mock.patch.dict(sys.modules, {"cupy": fake}):  # restored on exit
        spec.loader.exec_module(module)
    assert module.cupy is fake
    return module


def _host_array(a, *, fortran=False):
    a = np.asfortranarray(a) if fortran else np.array(a)
    return a.view(_HostArray)


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_host_ops_match_oracle(case, dtype, host_ops, assert_close, monkeypatch):
    """conv, conv_backward, im2col and col2im of _ops.py, whole, against the oracle."""
    geom = _geometry(case)
    x, w, b, g, cols = case_inputs(case, np.dtype(dtype))
    ref = _oracle(case, dtype)
    check = _assert_half_close if dtype == "float16" else assert_close
    for workspace in ("256", "0.0001"):  # one chunk; one image per chunk
        monkeypatch.setenv("CONVCORE_WORKSPACE_MB", workspace)
        for fortran in (False, True):  # contiguous and non-contiguous inputs
            xa, wa, ba, ga, ca = (_host_array(a, fortran=fortran) for a in (x, w, b, g, cols))
            msg = f"workspace {workspace} MiB, fortran={fortran}"
            y = host_ops.conv(None, xa, wa, ba, geom, case.groups)
            assert y.dtype == x.dtype and y.shape == case.out_shape
            check(y, ref["conv"], err_msg=f"conv, {msg}")
            check(host_ops.conv(None, xa, wa, None, geom, case.groups), ref["conv_nobias"])
            dx, dw, db = host_ops.conv_backward(None, ga, xa, wa, geom, case.groups)
            for name, got, like in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
                assert got.dtype == like.dtype and got.shape == like.shape, name
                check(got, ref[name], err_msg=f"{name}, {msg}")
            got = host_ops.im2col(None, xa, geom)
            np.testing.assert_array_equal(got, ref["im2col"].astype(dtype), err_msg=msg)
            check(host_ops.col2im(None, ca, geom), ref["col2im"], err_msg=f"col2im, {msg}")
            for arr, orig in zip((xa, wa, ba, ga, ca), (x, w, b, g, cols)):
                np.testing.assert_array_equal(arr, orig)  # inputs untouched


def test_host_ops_launch_configuration(host_ops, monkeypatch):
    """One module per device, 256-thread blocks, 64-bit indices when forced."""
    geom = conv_geometry((9, 7), 3, stride=2, padding=1)
    x = _host_array(np.ones((2, 3, 9, 7), np.float32))
    _HostRawModule.launches.clear()
    host_ops.im2col(None, x, geom)
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int64")
    host_ops.im2col(None, x, geom)
    (name32, grid, block), (name64, _, _) = _HostRawModule.launches
    assert name32 == "convcore_im2col<float, int>"
    assert name64 == "convcore_im2col<float, long long>"
    assert block == (256,) and grid == (1,)  # 2*3*5*4 = 120 work items
    assert host_ops._module() is host_ops._module()  # memoised


# ==========================================================================
# (b) Availability reporting
# ==========================================================================


def _expected_reason_prefix():
    """What this machine should make the backend say, found without the backend's code."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed", None
    try:
        import cupy
    except Exception as exc:
        return "cupy is installed but failed to import", exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return "no CUDA device (cupy.cuda.runtime.getDeviceCount() failed: ", exc
    if count == 0:
        return "no CUDA device", None
    return None, None


def test_availability_reason_on_this_machine():
    info = _cupy_info()
    prefix, exc = _expected_reason_prefix()
    if prefix is None:
        if info.reason is not None and "NVRTC" in info.reason:
            assert not info.available
            return
        assert info.available, info.reason
        assert info.reason is None
        return
    assert not info.available
    assert info.reason.startswith(prefix), info.reason
    if exc is not None:
        assert str(exc) in info.reason  # the driver's own words


def _require_unavailable():
    info = _cupy_info()
    if info.available:
        pytest.skip("the cupy backend is available here (a GPU is present)")
    return info


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "im2col", "col2im"])
def test_selecting_unavailable_backend_raises(op):
    info = _require_unavailable()
    x = np.ones((1, 2, 5, 5))
    w = np.ones((3, 2, 3, 3))
    calls = {
        "conv2d": lambda **kw: convcore.conv2d(x, w, **kw),
        "conv2d_backward": lambda **kw: convcore.conv2d_backward(np.ones((1, 3, 3, 3)), x, w, **kw),
        "im2col": lambda **kw: convcore.im2col(x, 3, **kw),
        "col2im": lambda **kw: convcore.col2im(np.ones((1, 18, 9)), (5, 5), 3, **kw),
    }
    with pytest.raises(convcore.BackendUnavailableError) as excinfo:
        calls[op](backend=BACKEND)
    message = str(excinfo.value)
    assert "'cupy'" in message and info.reason in message
    with convcore.use_backend(BACKEND), pytest.raises(convcore.BackendUnavailableError):
        calls[op]()


def test_env_selection_of_unavailable_backend_raises(monkeypatch):
    info = _require_unavailable()
    monkeypatch.setenv("CONVCORE_BACKEND", BACKEND)
    with pytest.raises(convcore.BackendUnavailableError, match="CONVCORE_BACKEND") as excinfo:
        convcore.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)))
    assert info.reason in str(excinfo.value)


def test_auto_still_runs_numpy_input_when_cupy_is_unavailable():
    _require_unavailable()
    y = convcore.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)))
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), 4.0))
    assert convcore.resolve_backend("conv", np.ones((1, 1, 4, 4))) != BACKEND


_REPORT = """
    import json, sys
    {prelude}
    import numpy as np
    import convcore

    info = {{i.name: i for i in convcore.available_backends()}}["cupy"]
    try:
        convcore.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), backend="cupy")
        error = None
    except Exception as exc:
        error = [type(exc).__name__, str(exc)]
    print(json.dumps({{"available": info.available, "reason": info.reason, "error": error}}))
    """


def _report(tmp_path, prelude="", **env):
    code = textwrap.dedent(_REPORT).format(prelude=textwrap.dedent(prelude))
    proc = _run_python(code, tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_BLOCKERS = {
    "sys_modules_none": """
        sys.modules["cupy"] = None  # how Python spells 'this module is absent'
    """,
    "meta_path_finder": """
        import importlib.abc

        class HideCupy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "cupy" or name.startswith("cupy."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, HideCupy())
    """,
}


@pytest.mark.parametrize("blocker", list(_BLOCKERS))
def test_reason_when_cupy_is_not_installed(blocker, tmp_path):
    _cupy_info()
    report = _report(tmp_path, _BLOCKERS[blocker])
    assert report["available"] is False
    assert report["reason"].startswith("cupy is not installed"), report
    assert "pip install" in report["reason"]
    assert report["error"][0] == "BackendUnavailableError"
    assert "cupy is not installed" in report["error"][1]


_FAKE_CUPY = '''
"""A stand-in for CuPy that fails the way FAKE_CUPY_MODE says."""
import os
import types

_mode = os.environ["FAKE_CUPY_MODE"]
if _mode == "broken_import":
    raise ImportError("simulated broken CuPy build: libcudart.so.13 not found")


class CUDARuntimeError(RuntimeError):
    pass


def _count():
    if _mode == "no_driver":
        raise CUDARuntimeError(
            "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
            "runtime version"
        )
    if _mode == "no_device":
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    return 0 if _mode == "zero_devices" else 1


def _nvrtc_version():
    if _mode == "no_nvrtc":
        raise OSError("libnvrtc.so.13: cannot open shared object file")
    return (13, 0)


runtime = types.SimpleNamespace(
    getDeviceCount=_count,
    driverGetVersion=lambda: 0 if _mode == "no_driver" else 13000,
    runtimeGetVersion=lambda: 13000,
)
nvrtc = types.SimpleNamespace(getVersion=_nvrtc_version)
cuda = types.SimpleNamespace(runtime=runtime, nvrtc=nvrtc)
'''


#: What the backend must say for each FAKE_CUPY_MODE (a prefix; None = available).
_FAKE_REASONS = {
    "broken_import": (
        "cupy is installed but failed to import: ImportError('simulated broken CuPy build"
    ),
    "no_driver": (
        "no CUDA device (cupy.cuda.runtime.getDeviceCount() failed: cudaErrorInsufficientDriver:"
        " CUDA driver version is insufficient for CUDA runtime version); no CUDA driver found,"
        " CuPy built for CUDA runtime 13000"
    ),
    "no_device": (
        "no CUDA device (cupy.cuda.runtime.getDeviceCount() failed: cudaErrorNoDevice:"
        " no CUDA-capable device is detected); CUDA driver version 13000"
    ),
    "zero_devices": "no CUDA device (cupy.cuda.runtime.getDeviceCount() returned 0)",
    "no_nvrtc": "CUDA's run-time compiler NVRTC cannot be loaded",
    "ok": None,
}


@pytest.mark.parametrize("mode", list(_FAKE_REASONS))
def test_reason_for_each_failure(mode, tmp_path):
    """Every branch of the probe, driven by a fake ``cupy`` package first on the path."""
    reason = _FAKE_REASONS[mode]
    _cupy_info()
    shim = tmp_path / "shim"
    (shim / "cupy").mkdir(parents=True)
    (shim / "cupy" / "__init__.py").write_text(_FAKE_CUPY)
    path = os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    report = _report(tmp_path, PYTHONPATH=path, FAKE_CUPY_MODE=mode)
    if reason is None:
        assert report["available"] is True and report["reason"] is None
        # Available, but NumPy input is still refused: it never moves to the GPU.
        assert report["error"][0] == "BackendCapabilityError"
        assert "does not accept numpy arrays" in report["error"][1]
    else:
        assert report["available"] is False
        assert report["reason"].startswith(reason), report["reason"]
        assert report["error"][0] == "BackendUnavailableError"


def test_check_available_never_raises(monkeypatch):
    import convcore_cupy

    def explode():
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(convcore_cupy, "_probe", explode)
    reason = convcore_cupy._check_available()
    assert reason == "availability check failed: RuntimeError('probe exploded')"


# ==========================================================================
# (e) Import isolation; NumPy arrays never go to the GPU
# ==========================================================================


def test_import_convcore_and_registration_do_not_import_cupy(tmp_path):
    _cupy_info()
    proc = _run_python(
        """
        import sys
        import convcore
        import convcore_cupy
        from convcore._registry import get_registry

        assert "cupy" in get_registry().names(), get_registry().names()
        loaded = sorted(m for m in sys.modules if m == "cupy" or m.startswith(("cupy.", "cupyx")))
        assert loaded == [], loaded
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr


def test_numpy_work_under_auto_does_not_import_cupy(tmp_path):
    """Choosing a backend for NumPy input must not probe the GPU (capabilities first)."""
    _cupy_info()
    proc = _run_python(
        """
        import sys
        import numpy as np
        import convcore

        x = np.ones((2, 3, 6, 6))
        w = np.ones((4, 3, 3, 3))
        y = convcore.conv2d(x, w, padding=1)
        convcore.conv2d_backward(np.ones_like(y), x, w, padding=1)
        convcore.col2im(convcore.im2col(x, 3), (6, 6), 3)
        assert "cupy" not in sys.modules, "a NumPy convolution imported cupy"
        """,
        tmp_path,
        CONVCORE_DISABLED_BACKENDS="numba",  # not needed here; saves its compile time
    )
    assert proc.returncode == 0, proc.stderr


def test_numpy_arrays_never_go_to_cupy_even_when_it_is_available(monkeypatch):
    """With the backend pretending to be available, NumPy input still stays on the CPU."""
    _cupy_info()
    registry = convcore._registry.get_registry()
    real = registry.unavailable_reason

    def pretend(name):
        return None if name == BACKEND else real(name)

    monkeypatch.setattr(registry, "unavailable_reason", pretend)
    x = np.ones((1, 2, 5, 5))
    for op in ("conv", "conv_backward", "im2col", "col2im"):
        assert convcore.resolve_backend(op, x) != BACKEND
    with pytest.raises(convcore.BackendCapabilityError, match="does not accept numpy arrays"):
        convcore.conv2d(x, np.ones((1, 2, 3, 3)), backend=BACKEND)
    y = convcore.conv2d(x, np.ones((1, 2, 3, 3)))
    assert isinstance(y, np.ndarray)


# ==========================================================================
# Index type guard and workspace (pure Python, no GPU)
# ==========================================================================


def test_index_type_switches_to_64_bit_past_int32(monkeypatch):
    monkeypatch.delenv("CONVCORE_CUPY_INDEX", raising=False)
    assert _source.index_type([10, 2**31 - 1]) == "int32"
    assert _source.index_type([10, 2**31]) == "int64"
    assert _source.index_type([2**63 - 1]) == "int64"


def test_index_type_guard(monkeypatch):
    monkeypatch.delenv("CONVCORE_CUPY_INDEX", raising=False)
    with pytest.raises(ValueError, match=r"cannot address 9223372036854775808 elements with int64"):
        _source.index_type([2**63])
    with pytest.raises(ValueError, match=r"cannot address 2147483648 elements with int32"):
        _source.index_type([2**31], force="int32")
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int32")
    with pytest.raises(ValueError, match="CONVCORE_CUPY_INDEX"):
        _source.index_type([2**31])
    assert _source.index_type([5]) == "int32"
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int64")
    assert _source.index_type([5]) == "int64"
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int16")
    with pytest.raises(ValueError, match="must be 'int32', 'int64' or 'auto'"):
        _source.index_type([5])


def test_geometry_guard():
    assert _source.check_geometry(
        conv_geometry((7, 6), (3, 2), stride=(2, 1), padding=(1, 0, 2, 3), dilation=(1, 2)), 5
    ) == (5, 7, 6, 3, 2, 3, 9, 2, 1, 1, 2, 1, 2)
    with pytest.raises(ValueError, match="2-D convolutions"):
        _source.check_geometry(conv_geometry((7,), 3), 1)
    huge = conv_geometry((2**31 - 2, 4), 3, padding=1)
    with pytest.raises(ValueError, match="padded height in 32-bit ints"):
        _source.check_geometry(huge, 1)
    with pytest.raises(ValueError, match="channels"):
        _source.check_geometry(conv_geometry((4, 4), 3), 2**31)


def test_workspace_chunks(monkeypatch):
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "1")
    assert _source.workspace_bytes() == 2**20
    assert _source.batch_chunks(5, 2**19, 2**20) == [(0, 2), (2, 4), (4, 5)]
    assert _source.batch_chunks(3, 2**21, 2**20) == [(0, 1), (1, 2), (2, 3)]
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "not a number")
    assert _source.workspace_bytes() == 256 * 2**20
    geom = conv_geometry((8, 8), 3, padding=1)
    assert _source.columns_bytes(geom, 4, 2) == 4 * 9 * 64 * 2


# ==========================================================================
# (c) On a GPU: parity on CuPy arrays, (d) determinism, and the rest
# ==========================================================================


@pytest.fixture(scope="module")
def cp():
    """CuPy, when the backend can run here; else skip with the backend's reason."""
    info = _cupy_info()
    if not info.available:
        pytest.skip(f"no GPU run: backend 'cupy' unavailable: {info.reason}")
    import cupy

    return cupy


def _to_gpu(cp, *arrays):
    return tuple(None if a is None else cp.asarray(a) for a in arrays)


def _check_gpu_output(cp, out, like, shape):
    assert isinstance(out, cp.ndarray), type(out)
    assert out.dtype == like.dtype and out.device == like.device
    assert tuple(out.shape) == tuple(shape)


def _checker(dtype, assert_close):
    return _assert_half_close if dtype == "float16" else assert_close


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_conv2d(case, dtype, cp, assert_close):
    x, w, b, _, _ = case_inputs(case, np.dtype(dtype))
    xg, wg, bg = _to_gpu(cp, x, w, b)
    ref = _oracle(case, dtype)
    check = _checker(dtype, assert_close)
    out = convcore.conv2d(xg, wg, bg, groups=case.groups, backend=BACKEND, **case.api_kwargs())
    _check_gpu_output(cp, out, xg, case.out_shape)
    check(cp.asnumpy(out), ref["conv"])
    out = convcore.conv2d(xg, wg, groups=case.groups, backend=BACKEND, **case.api_kwargs())
    check(cp.asnumpy(out), ref["conv_nobias"])
    for arr, orig in zip((xg, wg, bg), (x, w, b)):
        np.testing.assert_array_equal(cp.asnumpy(arr), orig)


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_conv2d_backward(case, dtype, cp, assert_close):
    x, w, _, g, _ = case_inputs(case, np.dtype(dtype))
    xg, wg, gg = _to_gpu(cp, x, w, g)
    ref = _oracle(case, dtype)
    check = _checker(dtype, assert_close)
    dx, dw, db = convcore.conv2d_backward(
        gg, xg, wg, groups=case.groups, backend=BACKEND, **case.api_kwargs()
    )
    _check_gpu_output(cp, dx, xg, x.shape)
    _check_gpu_output(cp, dw, xg, w.shape)
    _check_gpu_output(cp, db, xg, (case.F,))
    check(cp.asnumpy(dx), ref["dx"], err_msg="dx")
    check(cp.asnumpy(dw), ref["dw"], err_msg="dw")
    check(cp.asnumpy(db), ref["db"], err_msg="db")
    for arr, orig in zip((xg, wg, gg), (x, w, g)):
        np.testing.assert_array_equal(cp.asnumpy(arr), orig)


@case_param
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_im2col_col2im(case, dtype, cp, assert_close):
    x, _, _, _, cols = case_inputs(case, np.dtype(dtype))
    xg, cg = _to_gpu(cp, x, cols)
    ref = _oracle(case, dtype)
    out = convcore.im2col(xg, case.kernel, backend=BACKEND, **case.api_kwargs())
    _check_gpu_output(cp, out, xg, case.cols_shape)
    np.testing.assert_array_equal(cp.asnumpy(out), ref["im2col"].astype(dtype))
    img = convcore.col2im(cg, (case.H, case.W), case.kernel, backend=BACKEND, **case.api_kwargs())
    _check_gpu_output(cp, img, cg, case.x_shape)
    _checker(dtype, assert_close)(cp.asnumpy(img), ref["col2im"])


def test_gpu_auto_picks_cupy_for_cupy_arrays(cp):
    x = cp.ones((1, 2, 5, 5), dtype=cp.float32)
    for op in ("conv", "conv_backward", "im2col", "col2im"):
        assert convcore.resolve_backend(op, x) == BACKEND
    y = convcore.conv2d(x, cp.ones((3, 2, 3, 3), dtype=cp.float32))
    assert isinstance(y, cp.ndarray)


def _big_case(cp, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 8, 17, 19)).astype(dtype)
    w = rng.standard_normal((12, 4, 3, 3)).astype(dtype)
    g = rng.standard_normal((6, 12, 9, 10)).astype(dtype)
    kw = dict(stride=2, padding=(1, 1, 1, 2), dilation=1, groups=2)
    return (*_to_gpu(cp, x, w, g), kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_backward_is_bitwise_deterministic(dtype, cp, monkeypatch):
    x, w, g, kw = _big_case(cp, dtype)
    for workspace in ("256", "0.01"):  # one chunk, then several
        monkeypatch.setenv("CONVCORE_WORKSPACE_MB", workspace)
        first = convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
        second = convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
        for name, a, b in zip(("dx", "dw", "db"), first, second):
            assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes(), (name, workspace)


def test_gpu_chunked_workspace_matches_single_chunk(cp, monkeypatch, assert_close):
    x, w, g, kw = _big_case(cp, "float64")
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "256")
    y1 = convcore.conv2d(x, w, backend=BACKEND, **kw)
    grads1 = convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
    monkeypatch.setenv("CONVCORE_WORKSPACE_MB", "0.001")  # one image per chunk
    y2 = convcore.conv2d(x, w, backend=BACKEND, **kw)
    grads2 = convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
    assert_close(cp.asnumpy(y2), cp.asnumpy(y1))
    for a, b in zip(grads2, grads1):
        assert_close(cp.asnumpy(a), cp.asnumpy(b))


def test_gpu_forced_64_bit_indexing_is_bitwise_equal(cp, monkeypatch):
    x, _, _, _ = _big_case(cp)
    geom_kw = dict(stride=2, padding=(1, 1, 1, 2))
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int32")
    cols32 = convcore.im2col(x, 3, backend=BACKEND, **geom_kw)
    img32 = convcore.col2im(cols32, (17, 19), 3, backend=BACKEND, **geom_kw)
    monkeypatch.setenv("CONVCORE_CUPY_INDEX", "int64")
    cols64 = convcore.im2col(x, 3, backend=BACKEND, **geom_kw)
    img64 = convcore.col2im(cols64, (17, 19), 3, backend=BACKEND, **geom_kw)
    assert cp.asnumpy(cols64).tobytes() == cp.asnumpy(cols32).tobytes()
    assert cp.asnumpy(img64).tobytes() == cp.asnumpy(img32).tobytes()


def test_gpu_non_contiguous_inputs(cp, assert_close):
    case = CASES[0]
    x, w, b, g, _ = case_inputs(case, np.dtype(np.float64))
    xg = cp.asfortranarray(cp.asarray(x))
    wg = cp.asarray(w)[:, :, ::-1, :][:, :, ::-1, :]
    gg = cp.asfortranarray(cp.asarray(g))
    bg = cp.zeros(2 * case.F)[::2]
    bg[...] = cp.asarray(b)
    ref = _oracle(case, "float64")
    assert_close(cp.asnumpy(convcore.conv2d(xg, wg, bg, backend=BACKEND)), ref["conv"])
    dx, dw, db = convcore.conv2d_backward(gg, xg, wg, backend=BACKEND)
    assert_close(cp.asnumpy(db), ref["db"])
    assert_close(cp.asnumpy(dx), ref["dx"])
    assert_close(cp.asnumpy(dw), ref["dw"])


def test_gpu_runs_on_the_current_stream(cp, assert_close):
    x, w, g, kw = _big_case(cp, "float64")
    expected = [cp.asnumpy(a) for a in convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)]
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        got = convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
    stream.synchronize()
    for a, b in zip(got, expected):
        assert_close(cp.asnumpy(a), b)


def test_gpu_ops_do_not_synchronise_with_the_host(cp):
    import cupyx

    x, w, g, kw = _big_case(cp)
    convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)  # compile first
    convcore.conv2d(x, w, backend=BACKEND, **kw)
    with cupyx.allow_synchronize(False):
        y = convcore.conv2d(x, w, backend=BACKEND, **kw)
        convcore.conv2d_backward(g, x, w, backend=BACKEND, **kw)
        convcore.col2im(convcore.im2col(x, 3, backend=BACKEND), (17, 19), 3, backend=BACKEND)
    assert y.shape == (6, 12, 9, 10)


def test_gpu_other_device(cp, assert_close):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    case = CASES[0]
    x, w, b, _, _ = case_inputs(case, np.dtype(np.float64))
    with cp.cuda.Device(1):
        xg, wg, bg = _to_gpu(cp, x, w, b)
    out = convcore.conv2d(xg, wg, bg, backend=BACKEND)
    assert out.device.id == 1
    assert_close(cp.asnumpy(out), _oracle(case, "float64")["conv"])
