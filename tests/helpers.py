"""The test suite's shared helpers (one set for every test file).

* results: :func:`check_output` (namespace, dtype, shape of a convcore result) and
  :func:`assert_unchanged` (inputs are never modified);
* layouts: :func:`to_layout` / :func:`from_layout` move a channels-first NumPy array
  to another axis order and back, :func:`noncontiguous` makes a strided view;
* half precision: :func:`half_array` / :func:`half_to_float64` and :data:`HALF_TOL`;
* :func:`index_dtype`: the dtype of max pooling's indices on a namespace;
* PyTorch as an optional oracle: :func:`torch_or_skip`, :func:`torch_pad`;
* :func:`auto_for_numpy`: what ``auto`` must pick, from the declarations;
* :func:`col2im_in_dtype`: the oracle's col2im summed in an integer dtype.

The loop oracle itself is :mod:`naive`; the fixtures (backends, namespaces,
dtypes, tolerances) are in ``conftest.py``.
"""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest

import convcore

__all__ = [
    "HALF_TOL",
    "assert_unchanged",
    "auto_for_numpy",
    "check_output",
    "col2im_in_dtype",
    "from_layout",
    "half_array",
    "half_to_float64",
    "index_dtype",
    "noncontiguous",
    "to_layout",
    "torch_or_skip",
    "torch_pad",
]

#: Tolerance (relative to the largest expected value) of float16 / bfloat16 results
#: computed in float32 and rounded once: a few units of the final rounding.
HALF_TOL = {"float16": 2e-3, "bfloat16": 1.6e-2}


def check_output(ns, out, like, shape) -> None:
    """``out`` is an array of ``ns`` with ``like``'s dtype and the given shape."""
    assert ns.is_native(out), f"expected a {ns.name} array, got {type(out).__name__}"
    assert out.dtype == like.dtype, (out.dtype, like.dtype)
    assert tuple(out.shape) == tuple(shape), (tuple(out.shape), tuple(shape))


def assert_unchanged(ns, arrays, originals) -> None:
    """The arrays passed to convcore still hold their original values (NaN-aware)."""
    for arr, orig in zip(arrays, originals, strict=True):
        np.testing.assert_array_equal(ns.to_numpy(arr), orig)


def to_layout(a: np.ndarray, layout: str = "channels_last") -> np.ndarray:
    """A channels-first ``(N, C, *spatial)`` array in ``layout`` (a contiguous copy).

    ``layout`` is ``"channels_first"``, ``"channels_last"`` or letters such as
    ``"NHWC"`` / ``"HWCN"`` (spatial letters in order).
    """
    if layout == "channels_first":
        return a
    if layout == "channels_last":
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))
    first = "NC" + "".join(c for c in layout if c not in "NC")
    return np.ascontiguousarray(np.transpose(a, [first.index(c) for c in layout]))


def from_layout(a: np.ndarray, layout: str = "channels_last") -> np.ndarray:
    """The channels-first array of ``a`` given in ``layout`` (inverse of :func:`to_layout`)."""
    if layout == "channels_first":
        return a
    if layout == "channels_last":
        return np.moveaxis(a, -1, 1)
    first = "NC" + "".join(c for c in layout if c not in "NC")
    return np.transpose(a, [layout.index(c) for c in first])


def noncontiguous(a: np.ndarray) -> np.ndarray:
    """A non-contiguous view of ``a`` holding the same values."""
    if a.ndim == 1:
        out = np.zeros(2 * a.size, dtype=a.dtype)[::2]
        out[...] = a
        return out
    view = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    assert not view.flags.c_contiguous or a.shape[-1] == 1 or a.shape[-2] == 1
    return view


def half_array(ns, a: np.ndarray, name: str):
    """``a`` as a ``name`` (float16 / bfloat16) array of ``ns``, or skip where it has none."""
    if name == "bfloat16":
        if ns.name == "jax":
            return ns.module.asarray(a.astype(np.float32)).astype(ns.module.bfloat16)
        if ns.name != "torch":
            pytest.skip("bfloat16 is tested on torch tensors and JAX arrays (NumPy has none)")
        torch = ns.module
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    if ns.name not in ("numpy", "torch", "dask", "jax"):
        pytest.skip(f"{ns.name} has no float16 in this suite")
    return ns.asarray(a.astype(np.float16))


def half_to_float64(ns, a) -> np.ndarray:
    """A float16 / bfloat16 result of ``ns`` as float64 NumPy."""
    if ns.name == "torch":
        return a.float().numpy().astype(np.float64)
    return ns.to_numpy(a).astype(np.float64)


def index_dtype(ns) -> np.dtype:
    """The dtype of max pooling's indices on ``ns``: int64, or int32 on JAX without x64."""
    if ns.name == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return np.dtype(np.int32)
    return np.dtype(np.int64)


def torch_or_skip():
    """The ``torch`` module, or skip the test (PyTorch is an optional oracle)."""
    return pytest.importorskip("torch")


def torch_pad(padding) -> list[int]:
    """``(before, after)`` per axis as ``torch.nn.functional.pad`` wants it (last axis first)."""
    pairs = [padding[i : i + 2] for i in range(0, len(padding), 2)]
    return [p for pair in reversed(pairs) for p in pair]


def auto_for_numpy(op: str = "conv", dtype: str = "float64") -> str:
    """Name of the backend ``auto`` should use for ``op`` on NumPy ``dtype`` arrays."""
    for info in convcore.available_backends():  # best first
        if info.available and info.supports(op, namespace="numpy", device="cpu", dtype=dtype):
            return info.name
    raise AssertionError(f"no available backend declares {op} on NumPy {dtype} arrays")


def col2im_in_dtype(cols, input_size, kernel, stride, padding, dilation) -> np.ndarray:
    """:func:`naive.col2im` summed in the dtype of ``cols`` (integers wrap around).

    :func:`naive.col2im` sums in float64, which is neither exact for 64-bit integers
    nor wraps around on overflow as NumPy's integer sums do.  Here every column
    entry is added, in ``cols.dtype``, onto the cell :func:`naive.im2col` reads it
    from: the im2col of the cell numbers ``1..P`` (0 reads the padding) is that map.
    Arguments as for :func:`naive.col2im`.
    """
    cols = np.asarray(cols)
    n, rows, length = cols.shape
    size = tuple(input_size)
    cells = np.arange(1, math.prod(size) + 1, dtype=np.int64).reshape(1, 1, *size)
    source = naive.im2col(cells, kernel, stride, padding, dilation)[0]  # (prod(kernel), L)
    c = rows // source.shape[0]
    assert rows == c * source.shape[0] and length == source.shape[1], (cols.shape, source.shape)
    img = np.zeros((n, c, 1 + math.prod(size)), cols.dtype)
    np.add.at(img, (slice(None), slice(None), source.ravel()), cols.reshape(n, c, -1))
    return img[:, :, 1:].reshape(n, c, *size)
