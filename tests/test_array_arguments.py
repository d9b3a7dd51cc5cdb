"""Every public function: None or a non-array where an array is expected is a TypeError naming it.

The table lists, for every public function of ``convcore``, ``convcore.matlab`` and
``convcore.cs231n``
that takes arrays, a call that works and the positions of its array arguments.
Each array argument in turn is replaced by None and by a plain list; the call must
raise a TypeError whose message names that parameter (not an AttributeError or a
StopIteration from deep inside).  A test also checks that the table covers every
public function that takes an array, so a new one cannot be forgotten.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import convcore
from convcore import cs231n, matlab

X = np.ones((2, 3, 6, 6))  # N, C, H, W
W = np.ones((4, 3, 3, 3))  # F, C, KH, KW
WT = np.ones((3, 4, 3, 3))  # C_in, C_out, KH, KW
Y = convcore.conv2d(X, W)
YT = convcore.conv_transpose2d(X, WT)
P = convcore.max_pool2d(X, 2)
COLS = convcore.im2col(X, 3)
X1, X3 = np.ones((2, 3, 6)), np.ones((1, 3, 4, 4, 4))
W1, W3 = np.ones((4, 3, 3)), np.ones((4, 3, 3, 3, 3))
WT1, WT3 = np.ones((3, 4, 3)), np.ones((3, 4, 3, 3, 3))
M_X, M_W = np.ones((6, 6, 3, 2)), np.ones((3, 3, 3, 4))  # MATLAB (H, W, C, N), (HH, WW, C, F)


def _cases():
    """``(function, args, kwargs, {position or keyword: parameter name})``."""
    ranked = []
    for nd, (x, w, wt) in {1: (X1, W1, WT1), 2: (X, W, WT), 3: (X3, W3, WT3)}.items():
        y = convcore.conv(x, w)
        yt = convcore.conv_transpose(x, wt)
        p = convcore.max_pool(x, 2)
        f = {name: getattr(convcore, f"{name}{nd}d") for name in
             ("conv", "max_pool", "avg_pool", "conv_transpose")}  # fmt: skip
        b = {name: getattr(convcore, f"{name}{nd}d_backward") for name in f}
        ranked += [
            (f["conv"], (x, w, np.ones(4)), {}, {0: "x", 1: "weight", 2: "bias"}),
            (b["conv"], (y, x, w), {}, {0: "grad_out", 1: "x", 2: "weight"}),
            (f["max_pool"], (x, 2), {}, {0: "x"}),
            (b["max_pool"], (p, x, 2), {}, {0: "grad_out", 1: "x"}),
            (f["avg_pool"], (x, 2), {}, {0: "x"}),
            (b["avg_pool"], (p, x.shape, 2), {}, {0: "grad_out"}),
            (f["conv_transpose"], (x, wt, np.ones(4)), {}, {0: "x", 1: "weight", 2: "bias"}),
            (b["conv_transpose"], (yt, x, wt), {}, {0: "grad_out", 1: "x", 2: "weight"}),
        ]
    conv_param, pool_param = (
        {"stride": 1, "pad": 1},
        {"pool_height": 2, "pool_width": 2, "stride": 2},
    )
    teaching = []
    for variant in ("naive", "im2col", "strides", "fast"):
        fwd, bwd = (
            getattr(cs231n, f"conv_forward_{variant}"),
            getattr(cs231n, f"conv_backward_{variant}"),
        )
        out, cache = fwd(X, W, np.ones(4), conv_param)
        teaching += [
            (fwd, (X, W, np.ones(4), conv_param), {}, {0: "x", 1: "w", 2: "b"}),
            (bwd, (out, cache), {}, {0: "dout"}),
        ]
    for variant in ("naive", "reshape", "im2col", "fast"):
        fwd = getattr(cs231n, f"max_pool_forward_{variant}")
        bwd = getattr(cs231n, f"max_pool_backward_{variant}")
        out, cache = fwd(X, pool_param)
        teaching += [
            (fwd, (X, pool_param), {}, {0: "x"}),
            (bwd, (out, cache), {}, {0: "dout"}),
        ]
    cols = cs231n.im2col_indices(X, 3, 3)
    teaching += [
        (cs231n.im2col_indices, (X, 3, 3), {}, {0: "x"}),
        (cs231n.col2im_indices, (cols, X.shape, 3, 3), {}, {0: "cols"}),
    ]
    return [
        *ranked,
        *teaching,
        (convcore.conv, (X, W), {}, {0: "x", 1: "weight"}),
        (convcore.conv_backward, (Y, X, W), {}, {0: "grad_out", 1: "x", 2: "weight"}),
        (convcore.im2col, (X, 3), {}, {0: "x"}),
        (convcore.col2im, (COLS, (6, 6), 3), {}, {0: "cols"}),
        (convcore.col2im_backward, (X, (6, 6), 3), {"reduction": "mean"}, {0: "grad_out"}),
        (convcore.reshape_gemm_output, (COLS[:, :4], (2, 8)), {}, {0: "y"}),
        (convcore.max_pool, (X, 2), {}, {0: "x"}),
        (convcore.max_pool_backward, (P, X, 2), {}, {0: "grad_out", 1: "x"}),
        (convcore.avg_pool, (X, 2), {}, {0: "x"}),
        (convcore.avg_pool_backward, (P, X.shape, 2), {}, {0: "grad_out"}),
        (convcore.conv_transpose, (X, WT), {}, {0: "x", 1: "weight"}),
        (convcore.conv_transpose_backward, (YT, X, WT), {}, {0: "grad_out", 1: "x", 2: "weight"}),
        (convcore.resolve_backend, ("conv", X), {}, {1: "x"}),
        (matlab.reshape_row_major, (M_X, (3, 6, 12)), {}, {0: "x"}),
        (matlab.im2col_ref, (M_X[:, :, :, 0], 2, 2), {}, {0: "img"}),
        (matlab.im2col_back_ref, (np.ones((25, 12)), 5, 5, 1, 2, 2, 3), {}, {0: "dcols"}),
        (matlab.forward_propagation, (M_X, M_W, np.ones(4)), {}, {0: "x", 1: "weights", 2: "bias"}),
        (
            matlab.backward_propagation,
            (np.ones((4, 4, 4, 2)), M_X, M_W),
            {},
            {0: "dout", 1: "x", 2: "weights"},
        ),
        (matlab.max_pool, (M_X, 2, 2), {}, {0: "x"}),
        (matlab.avg_pool, (M_X, 2, 2), {}, {0: "x"}),
        (matlab.max_pool_backward, (np.ones((3, 3, 3, 2)), M_X, 2, 2), {}, {0: "dout", 1: "x"}),
        (matlab.avg_pool_backward, (np.ones((3, 3, 3, 2)), M_X, 2, 2), {}, {0: "dout"}),
    ]


CASES = _cases()


def _id(case):
    return case[0].__name__


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_the_table_calls_work(case):
    func, args, kwargs, _ = case
    func(*args, **kwargs)


@pytest.mark.parametrize("bad", [None, [[1.0, 2.0]], "x"], ids=["None", "list", "str"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_missing_or_non_array_argument_is_a_type_error_naming_it(case, bad):
    func, args, kwargs, arrays = case
    for where, name in arrays.items():
        if bad is None and name in ("bias", "b"):
            continue  # bias=None means no bias
        call = list(args)
        call[where] = bad
        with pytest.raises(TypeError, match=rf"\b{name} must be an array") as info:
            func(*call, **kwargs)
        got = "None" if bad is None else type(bad).__name__
        assert str(info.value).endswith(f"got {got}"), str(info.value)


def _takes_an_array(func) -> bool:
    params = inspect.signature(func).parameters
    return any(p in params for p in ("x", "grad_out", "cols", "y", "img", "dcols", "dout"))


def test_every_public_function_that_takes_an_array_is_in_the_table():
    covered = {case[0] for case in CASES}
    public = [getattr(convcore, n) for n in convcore.__all__]
    public += [getattr(matlab, n) for n in matlab.__all__]
    public += [getattr(cs231n, n) for n in cs231n.__all__]
    missing = [
        f.__name__
        for f in public
        if inspect.isfunction(f) and _takes_an_array(f) and f not in covered
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    "layer",
    [
        convcore.Conv2D(W),
        convcore.ConvTranspose2D(WT),
        convcore.MaxPool2D(2),
        convcore.AvgPool2D(2),
        convcore.Conv1D(W1),
        convcore.MaxPool3D(2),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layers_name_the_missing_input(layer):
    with pytest.raises(TypeError, match=r"\bx must be an array \(.*\), got None"):
        layer.forward(None)


def test_a_layer_without_a_weight_array_names_the_weight():
    with pytest.raises(TypeError, match=r"\bweight must be an array .*got list"):
        convcore.Conv2D([[1.0]]).forward(X)
