"""PyTorch as a second, independent oracle: conv2d, unfold, fold and autograd.

torch has no asymmetric padding and no "same" with stride > 1, so every case
pads explicitly with ``torch.nn.functional.pad`` using the resolved
``(top, bottom, left, right)`` (TensorFlow's split for "same") and then calls
torch with ``padding=0``.  For ``fold`` the image is folded at its padded size
and cropped.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from cases import CASES, Case, case_inputs, expected_conv, expected_conv_backward
from helpers import torch_or_skip, torch_pad

import convcore

torch = torch_or_skip()
tF = torch.nn.functional


def random_cases(count, seed=2024):
    """Valid random cases by construction (all padding forms, groups, dilation)."""
    rng = np.random.default_rng(seed)
    forms = ["int", "pair", "four", "pairs", "same", "valid"]
    cases = []
    for k in range(count):
        groups = int(rng.choice([1, 1, 2, 3]))
        C = groups * int(rng.integers(1, 3))
        F = groups * int(rng.integers(1, 3))
        kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 5, size=2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
        four = tuple(int(v) for v in rng.integers(0, 4, size=4))
        form = forms[k % len(forms)]
        padding = {
            "int": four[0],
            "pair": (four[0], four[2]),
            "four": four,
            "pairs": ((four[0], four[1]), (four[2], four[3])),
            "same": "same",
            "valid": "valid",
        }[form]
        if form == "int":
            four = (four[0],) * 4
        elif form == "pair":
            four = (four[0], four[0], four[2], four[2])
        elif form in ("same", "valid"):
            four = (0, 0, 0, 0)  # "same" always fits; only the minimum matters here
        size = []
        for axis in range(2):
            extent = dilation[axis] * (kernel[axis] - 1) + 1
            smallest = max(1, extent - four[2 * axis] - four[2 * axis + 1])
            if form == "same":
                smallest = 1
            size.append(int(rng.integers(smallest, smallest + 6)))
        N = int(rng.integers(1, 3))
        cases.append(
            Case(
                f"random{k}_{form}",
                N,
                C,
                size[0],
                size[1],
                F,
                kernel,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
            )
        )
    return cases


ALL_CASES = CASES + random_cases(24)
case_param = pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def pad(t, case):
    """``t`` padded with ``case``'s resolved padding (torch has no asymmetric padding)."""
    return tF.pad(t, torch_pad(case.padding4))


def torch_conv_and_grads(case, x, w, b, g):
    """torch forward output and autograd (dx, dw, db) of sum(conv2d(x, w, b) * g)."""
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = tF.conv2d(
        pad(xt, case), wt, bt, stride=case.stride, dilation=case.dilation, groups=case.groups
    )
    (y * torch.tensor(g)).sum().backward()
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())


def torch_unfold(case, x):
    return tF.unfold(
        pad(torch.tensor(x), case), case.kernel, dilation=case.dilation, stride=case.stride
    ).numpy()


def torch_fold(case, cols):
    top, bottom, left, right = case.padding4
    padded = (case.H + top + bottom, case.W + left + right)
    img = tF.fold(
        torch.tensor(cols), padded, case.kernel, dilation=case.dilation, stride=case.stride
    )
    return img[:, :, top : top + case.H, left : left + case.W].numpy()


@case_param
def test_oracle_agrees_with_torch(case, assert_close):
    """The naive oracle on the resolved options (``tests/cases.py``) against torch (float64)."""
    x, w, b, g, cols = case_inputs(case, np.float64)
    y, dx, dw, db = torch_conv_and_grads(case, x, w, b, g)
    kw = dict(groups=case.groups, **case.api_kwargs())
    assert_close(expected_conv(x, w, b, **kw), y)
    for got, want in zip(expected_conv_backward(g, x, w, **kw), (dx, dw, db), strict=True):
        assert_close(got, want)
    geo = case.ref_kwargs()
    np.testing.assert_array_equal(naive.im2col(x, case.kernel, **geo), torch_unfold(case, x))
    assert_close(naive.col2im(cols, (case.H, case.W), case.kernel, **geo), torch_fold(case, cols))


@case_param
@pytest.mark.declares("conv", "conv_backward", nd=2, namespaces=["numpy", "torch"])
def test_conv2d_and_gradients_match_torch(case, backend, ns, dtype, assert_close):
    x, w, b, g, _ = case_inputs(case, dtype, seed=1)
    y, dx, dw, db = torch_conv_and_grads(case, x, w, b, g)
    xa, wa, ba, ga = map(ns.asarray, (x, w, b, g))
    kw = dict(groups=case.groups, backend=backend.name, **case.api_kwargs())
    out = convcore.conv2d(xa, wa, ba, **kw)
    assert ns.is_native(out) and out.dtype == xa.dtype
    assert_close(ns.to_numpy(out), y, dtype)
    grads = convcore.conv2d_backward(ga, xa, wa, **kw)
    for got, want, name in zip(grads, (dx, dw, db), ("dx", "dw", "db"), strict=True):
        assert ns.is_native(got) and got.dtype == xa.dtype, name
        assert_close(ns.to_numpy(got), want, dtype, err_msg=name)


@case_param
@pytest.mark.declares("im2col", "col2im", nd=2, namespaces=["numpy", "torch"])
def test_im2col_col2im_match_unfold_fold(case, backend, ns, dtype, assert_close):
    x, _, _, _, cols = case_inputs(case, dtype, seed=1)
    kw = dict(backend=backend.name, **case.api_kwargs())
    got_cols = convcore.im2col(ns.asarray(x), case.kernel, **kw)
    assert ns.is_native(got_cols)
    np.testing.assert_array_equal(ns.to_numpy(got_cols), torch_unfold(case, x))
    img = convcore.col2im(ns.asarray(cols), (case.H, case.W), case.kernel, **kw)
    assert ns.is_native(img)
    assert_close(ns.to_numpy(img), torch_fold(case, cols), dtype)
