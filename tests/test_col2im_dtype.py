"""Integer col2im sums in a dtype that holds them (``numpy.sum``'s rule), and ``dtype=``."""

from __future__ import annotations

import naive
import numpy as np
import pytest

import convcore

#: 7x6 image, 3x3 kernel, padding 1: inner pixels get 9 column entries each.
SIZE, KERNEL, PAD = (7, 6), (3, 3), 1
LIMITS = {"uint8": (200, 255), "int8": (-128, 127), "int16": (-32768, 32767)}


def _cols(dtype_name, seed=0):
    lo, hi = LIMITS[dtype_name]
    geom = convcore.conv_geometry(SIZE, KERNEL, padding=PAD)
    rng = np.random.default_rng(seed)
    shape = (2, 2 * geom.kernel_numel, geom.output_numel)
    return rng.integers(lo, hi, shape, endpoint=True).astype(dtype_name), geom


def _reference(cols, geom):
    """The overlap sums, exactly, in int64 (the naive loops in float64 are exact here)."""
    ref = naive.col2im(cols.astype(np.float64), SIZE, KERNEL, geom.stride, geom.padding, (1, 1))
    return ref.astype(np.int64)


def _default_dtype(ns, dtype):
    if ns.name == "torch":
        return np.dtype(np.int64)  # torch.sum's rule: every integer in int64
    if ns.name == "jax":  # without jax_enable_x64 its sums are int32 / uint32
        return np.dtype(ns.module.sum(ns.module.zeros(0, dtype=np.dtype(dtype).name)).dtype)
    return np.dtype(np.int64 if np.dtype(dtype).kind == "i" else np.uint64)


@pytest.mark.declares("col2im", dtypes=["uint8", "int8", "int16"])
def test_integer_sums_do_not_wrap(backend, ns, dtype):
    want_dtype = _default_dtype(ns, dtype)
    backend.require("col2im", ns=ns, dtype=want_dtype.name)
    cols, geom = _cols(dtype.name)
    ref = _reference(cols, geom)
    assert (ref != ref.astype(dtype)).any(), "the case must overflow the input dtype"
    got = ns.to_numpy(
        convcore.col2im(ns.asarray(cols), SIZE, KERNEL, padding=PAD, backend=backend.name)
    )
    assert got.dtype == want_dtype
    np.testing.assert_array_equal(got.astype(np.int64), ref)


@pytest.mark.declares("col2im", dtypes=["uint8", "int8", "int16"])
@pytest.mark.parametrize("target", ["int32", "int64", "float64", "narrow"])
def test_explicit_dtype(backend, ns, dtype, target):
    name = dtype.name if target == "narrow" else target
    backend.require("col2im", ns=ns, dtype=name)
    cols, geom = _cols(dtype.name, seed=1)
    ref = _reference(cols, geom)
    got = ns.to_numpy(
        convcore.col2im(
            ns.asarray(cols), SIZE, KERNEL, padding=PAD, dtype=name, backend=backend.name
        )
    )
    assert got.dtype == np.dtype(name)
    # the narrow dtype wraps, as asked (two's complement, like NumPy's integer +)
    np.testing.assert_array_equal(got, ref.astype(name))


@pytest.mark.declares("col2im", dtypes=["float32"])
def test_float32_columns_summed_in_float64(backend, ns, dtype, assert_close):
    backend.require("col2im", ns=ns, dtype="float64")
    geom = convcore.conv_geometry(SIZE, KERNEL, padding=PAD)
    cols = np.random.default_rng(2).standard_normal((1, 9, geom.output_numel)).astype(dtype)
    ref = naive.col2im(cols.astype(np.float64), SIZE, KERNEL, geom.stride, geom.padding, (1, 1))
    got = convcore.col2im(
        ns.asarray(cols), SIZE, KERNEL, padding=PAD, dtype="float64", backend=backend.name
    )
    got = ns.to_numpy(got)
    assert got.dtype == np.float64
    assert_close(got, ref)
    same = ns.to_numpy(
        convcore.col2im(ns.asarray(cols), SIZE, KERNEL, padding=PAD, backend=backend.name)
    )
    assert same.dtype == np.float32


def test_namespace_dtype_objects_and_empty_batch():
    cols = np.full((0, 4, 16), 7, np.uint8)
    out = convcore.col2im(cols, (5, 5), 2, dtype=np.int16)
    assert out.shape == (0, 1, 5, 5) and out.dtype == np.int16
    assert convcore.col2im(cols, (5, 5), 2).dtype == np.uint64
    cols = np.full((1, 2, 2), 200, np.uint8)
    assert convcore.col2im(cols, (3,), 2, dtype=np.dtype("int32")).tolist() == [[[200, 400, 200]]]


@pytest.mark.parametrize(
    ("cols_dtype", "bad", "error"),
    [
        ("uint8", "int65", ValueError),
        ("uint8", "bool", ValueError),
        ("uint8", 3, TypeError),
        ("uint8", np.complex64, TypeError),
        ("uint8", object(), TypeError),
        ("float32", "int64", TypeError),
        ("float64", np.int32, TypeError),
    ],
)
def test_bad_dtype(cols_dtype, bad, error):
    cols = np.ones((1, 4, 16), cols_dtype)
    with pytest.raises(error, match="dtype"):
        convcore.col2im(cols, (5, 5), 2, dtype=bad)
