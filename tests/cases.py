"""Test data: the shared table of 2-D convolution cases, and public options for ``naive``.

* :func:`resolve_padding` turns any padding form of the public API into
  ``(before, after)`` per axis (``(top, bottom, left, right)`` in 2-D), written
  here without convcore so that a bug in :mod:`convcore.geometry` cannot hide in
  the expected values; :func:`naive_options` resolves stride and dilation too.
* ``expected_conv`` / ``expected_conv_backward`` / ``expected_im2col`` /
  ``expected_col2im``: the naive loop oracle (:mod:`naive`) called with the
  options as the public API takes them.
* :data:`CASES`: hand-picked 2-D problems shared by the parity, torch-oracle,
  MATLAB and CuPy tests; :func:`case_inputs` their deterministic inputs and
  :func:`expected` the oracle's results on them (cached).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import naive
import numpy as np

__all__ = [
    "CASES",
    "Case",
    "case_inputs",
    "expected",
    "expected_col2im",
    "expected_conv",
    "expected_conv_backward",
    "expected_im2col",
    "naive_options",
    "ntuple",
    "resolve_padding",
]

# --------------------------------------------------------------------------
# Public options as resolved numbers
# --------------------------------------------------------------------------


def ntuple(value, nd: int) -> tuple[int, ...]:
    """``value`` as ``nd`` ints (an int means the same on every axis)."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    value = tuple(int(v) for v in value)
    assert len(value) == nd, (value, nd)
    return value


def resolve_padding(padding, size, kernel, stride=1, dilation=1) -> tuple[int, ...]:
    """Any public padding form as ``(before, after)`` per axis of ``size``.

    The forms: an int (every side), one int per axis (both sides), ``(before,
    after)`` per axis flat (``(top, bottom, left, right)`` in 2-D) or as pairs,
    ``"valid"`` (none) and ``"same"``.  ``"same"`` follows TensorFlow / JAX: the
    output has ``ceil(size / stride)`` entries and an odd total puts the extra
    cell after (bottom / right).
    """
    nd = len(size)
    kernel, stride, dilation = (ntuple(v, nd) for v in (kernel, stride, dilation))
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return (0,) * (2 * nd)
        assert padding.lower() == "same", padding
        out = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * (2 * nd)
    padding = list(padding)
    if len(padding) == nd and all(isinstance(p, (tuple, list)) for p in padding):
        return tuple(int(v) for before_after in padding for v in before_after)
    if len(padding) == nd:
        return tuple(int(p) for p in padding for _ in range(2))
    assert len(padding) == 2 * nd, padding
    return tuple(int(p) for p in padding)


def naive_options(size, kernel, stride=1, padding=0, dilation=1) -> dict:
    """``stride``, ``padding`` and ``dilation`` as :mod:`naive` takes them (resolved tuples)."""
    nd = len(size)
    return {
        "stride": ntuple(stride, nd),
        "padding": resolve_padding(padding, size, kernel, stride, dilation),
        "dilation": ntuple(dilation, nd),
    }


def expected_conv(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """:func:`naive.conv` with the public options (float64)."""
    geo = naive_options(x.shape[2:], w.shape[2:], stride, padding, dilation)
    return naive.conv(x, w, b, groups=groups, **geo)


def expected_conv_backward(g, x, w, *, stride=1, padding=0, dilation=1, groups=1):
    """:func:`naive.conv_backward` (``dx, dw, db``) with the public options (float64)."""
    geo = naive_options(x.shape[2:], w.shape[2:], stride, padding, dilation)
    return naive.conv_backward(g, x, w, groups=groups, **geo)


def expected_im2col(x, kernel, *, stride=1, padding=0, dilation=1) -> np.ndarray:
    """:func:`naive.im2col` with the public options (dtype of ``x``)."""
    nd = x.ndim - 2
    kernel = ntuple(kernel, nd)
    return naive.im2col(x, kernel, **naive_options(x.shape[2:], kernel, stride, padding, dilation))


def expected_col2im(cols, size, kernel, *, stride=1, padding=0, dilation=1) -> np.ndarray:
    """:func:`naive.col2im` with the public options (float64)."""
    size = tuple(size)
    kernel = ntuple(kernel, len(size))
    geo = naive_options(size, kernel, stride, padding, dilation)
    return naive.col2im(cols, size, kernel, **geo)


# --------------------------------------------------------------------------
# The case table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One 2-D convolution problem: shapes plus the options as passed to convcore."""

    id: str
    N: int
    C: int
    H: int
    W: int
    F: int
    kernel: tuple[int, int]
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1

    @property
    def padding4(self) -> tuple[int, int, int, int]:
        """Resolved ``(top, bottom, left, right)``."""
        return resolve_padding(
            self.padding, (self.H, self.W), self.kernel, self.stride, self.dilation
        )

    @property
    def out_size(self) -> tuple[int, int]:
        geo = self.ref_kwargs()
        return naive.conv_output_size(
            (self.H, self.W), self.kernel, geo["stride"], geo["padding"], geo["dilation"]
        )

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.F, self.C // self.groups, *self.kernel)

    @property
    def cols_shape(self):
        Ho, Wo = self.out_size
        return (self.N, self.C * self.kernel[0] * self.kernel[1], Ho * Wo)

    @property
    def out_shape(self):
        return (self.N, self.F, *self.out_size)

    def ref_kwargs(self) -> dict:
        """``stride``, ``padding``, ``dilation`` for :mod:`naive` (resolved tuples)."""
        return naive_options((self.H, self.W), self.kernel, **self.api_kwargs())

    def api_kwargs(self) -> dict:
        """``stride``, ``padding``, ``dilation`` for convcore (as given)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


CASES = [
    Case("basic3x3", 2, 3, 5, 6, 4, (3, 3)),
    Case("nonsquare_kernel", 2, 2, 6, 7, 3, (2, 4), padding=1),
    Case("stride_gt_kernel", 1, 2, 9, 8, 2, (2, 2), stride=3),
    Case("stride_gt_kernel_rect", 2, 1, 10, 7, 2, (1, 2), stride=(4, 3)),
    Case("pad_ge_kernel", 1, 2, 4, 5, 3, (2, 2), padding=3),
    Case("pad_ge_kernel_per_axis", 2, 2, 3, 4, 2, (3, 2), stride=2, padding=(3, 4)),
    Case("asym_pad_4", 2, 2, 5, 6, 3, (3, 3), padding=(0, 2, 1, 3)),
    Case("asym_pad_pairs", 1, 2, 5, 4, 2, (2, 3), stride=2, padding=((1, 0), (2, 1))),
    Case("same_s1_odd_total", 2, 2, 7, 6, 3, (4, 3), padding="same"),
    Case("same_s2", 2, 2, 8, 7, 2, (3, 3), stride=2, padding="same"),
    Case("same_s3", 1, 3, 10, 12, 2, (3, 4), stride=3, padding="same"),
    Case("same_s2_dilated", 1, 2, 9, 6, 2, (3, 3), stride=2, padding="same", dilation=2),
    Case("same_s2_rect_kernel", 1, 1, 5, 6, 2, (2, 3), stride=2, padding="same"),
    Case("valid", 2, 2, 6, 5, 3, (3, 3), padding="valid"),
    Case("valid_s2_floor", 1, 1, 7, 8, 1, (3, 2), stride=2, padding="valid"),
    Case("dilation2", 2, 2, 8, 7, 2, (3, 3), padding=1, dilation=2),
    Case(
        "dilation_rect", 1, 2, 9, 8, 3, (2, 3), stride=(2, 1), padding=(1, 0, 2, 1), dilation=(3, 2)
    ),
    Case("groups2", 2, 4, 5, 6, 6, (3, 3), padding=1, groups=2),
    Case("groups3_strided", 1, 6, 7, 6, 3, (2, 3), stride=2, padding=(1, 0), groups=3),
    Case("depthwise", 2, 3, 6, 5, 3, (3, 3), padding=1, groups=3),
    Case("depthwise_multiplier2", 1, 4, 5, 5, 8, (3, 2), stride=2, padding=(0, 1, 1, 0), groups=4),
    Case("pointwise_1x1", 2, 3, 4, 5, 4, (1, 1)),
    Case("1x1_strided_padded", 1, 2, 5, 6, 3, (1, 1), stride=2, padding=1),
    Case("floor_s2", 2, 2, 8, 10, 2, (3, 3), stride=2),
    Case("floor_s3_padded", 1, 1, 10, 11, 2, (2, 4), stride=3, padding=(1, 2)),
    Case("F1_C1", 3, 1, 5, 4, 1, (2, 2)),
    Case("kernel_equals_input", 1, 2, 3, 4, 2, (3, 4)),
    Case("huge_stride_padded", 1, 1, 2, 3, 1, (2, 2), stride=5, padding=2),
    Case("tall_thin", 2, 2, 9, 2, 2, (4, 1), stride=(2, 1), padding=(1, 1, 0, 0)),
]


def case_inputs(case: Case, dtype, seed: int = 0):
    """Deterministic ``(x, w, b, g, cols)`` for ``case`` in ``dtype``.

    ``g`` has the output's shape (the upstream gradient) and ``cols`` the
    im2col output's shape (the input of col2im).
    """
    rng = np.random.default_rng([seed, sum(map(ord, case.id))])
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.F).astype(dtype)
    g = rng.standard_normal(case.out_shape).astype(dtype)
    cols = rng.standard_normal(case.cols_shape).astype(dtype)
    return x, w, b, g, cols


@functools.cache
def expected(case: Case, dtype_name: str) -> dict:
    """:mod:`naive`'s results for ``case`` on the inputs of :func:`case_inputs` in ``dtype``.

    Keys: ``conv``, ``conv_nobias``, ``dx``, ``dw``, ``db`` (float64), ``im2col``
    (the dtype of the inputs) and ``col2im`` (float64).
    """
    x, w, b, g, cols = case_inputs(case, np.dtype(dtype_name))
    geo = case.ref_kwargs()
    dx, dw, db = naive.conv_backward(g, x, w, groups=case.groups, **geo)
    return {
        "conv": naive.conv(x, w, b, groups=case.groups, **geo),
        "conv_nobias": naive.conv(x, w, None, groups=case.groups, **geo),
        "dx": dx,
        "dw": dw,
        "db": db,
        "im2col": naive.im2col(x, case.kernel, **geo),
        "col2im": naive.col2im(cols, (case.H, case.W), case.kernel, **geo),
    }
