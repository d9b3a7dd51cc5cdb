"""Finite-difference checks of conv2d_backward against each backend's own conv2d.

The loss is ``L(x, w, b) = sum(conv2d(x, w, b) * g)``.  It is linear in each of
x, w and b, so a central difference is exact up to rounding and the check can be
tight: ``|L| * eps / h`` with ``h = 1e-3`` is about 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

import convcore

# (id, x shape, w shape, options)
GEOMETRIES = [
    ("plain", (2, 2, 5, 4), (3, 2, 3, 2), {}),
    ("stride2_pad1", (1, 2, 6, 5), (2, 2, 3, 3), {"stride": 2, "padding": 1}),
    ("dilation2", (1, 2, 7, 6), (2, 2, 2, 3), {"dilation": 2, "padding": (1, 2)}),
    ("groups2", (2, 4, 4, 5), (4, 2, 2, 2), {"groups": 2, "padding": 1}),
    ("asym_pad", (1, 3, 4, 5), (2, 3, 3, 2), {"padding": (0, 2, 1, 0), "stride": (1, 2)}),
    ("same_stride3", (1, 1, 7, 5), (2, 1, 2, 3), {"padding": "same", "stride": 3}),
    (
        "depthwise_dilated",
        (1, 3, 6, 6),
        (3, 1, 2, 2),
        {"groups": 3, "dilation": (2, 1), "stride": 2},
    ),
]

H = 1e-3
RTOL, ATOL = 1e-7, 1e-9


def numeric_gradient(loss, arr):
    """Central differences of the scalar ``loss()`` with respect to every entry of ``arr``."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + H
        up = loss()
        arr[idx] = old - H
        down = loss()
        arr[idx] = old
        grad[idx] = (up - down) / (2 * H)
    return grad


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "opts"), [g[1:] for g in GEOMETRIES], ids=[g[0] for g in GEOMETRIES]
)
@pytest.mark.declares("conv", "conv_backward", nd=2, dtypes=["float64"])
def test_backward_matches_finite_differences(x_shape, w_shape, opts, backend, np_ns, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    kw = dict(backend=backend.name, **opts)
    g = rng.standard_normal(convcore.conv2d(x, w, b, **kw).shape)

    def loss():
        return float(np.sum(convcore.conv2d(x, w, b, **kw) * g))

    dx, dw, db = convcore.conv2d_backward(g, x, w, **kw)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=RTOL, atol=ATOL, err_msg="dx")
    np.testing.assert_allclose(dw, numeric_gradient(loss, w), rtol=RTOL, atol=ATOL, err_msg="dw")
    np.testing.assert_allclose(db, numeric_gradient(loss, b), rtol=RTOL, atol=ATOL, err_msg="db")
