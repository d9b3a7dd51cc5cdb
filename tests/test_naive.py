"""The naive loop oracle (``convcore._naive``, as ``naive``) against independent references.

* PyTorch (CPU, float64, autograd for the gradients) when it is installed: conv1d/2d/3d,
  unfold/fold, max_pool1d/2d/3d with indices, avg_pool1d/2d/3d and
  conv_transpose1d/2d/3d, asymmetric padding through ``torch.nn.functional.pad``.
* Values worked out by hand, output sizes (``ceil_mode="cover_all"`` included), the
  windows PyTorch cannot be asked about (no real cell, index -1).
* Identities that need no second implementation: im2col / col2im are adjoint, every
  backward pass is the adjoint of its (bi)linear forward, conv_transpose is the
  adjoint of conv.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import naive
import numpy as np
import pytest
from helpers import torch_pad

ROOT = Path(__file__).resolve().parents[1]


def rand(shape, seed=0):
    return np.random.default_rng([seed, *shape]).standard_normal(shape)


def pairs(padding):
    return [(padding[2 * i], padding[2 * i + 1]) for i in range(len(padding) // 2)]


def symmetric(padding):
    return all(b == a for b, a in pairs(padding))


def close(got, want, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# The oracle stands alone
# --------------------------------------------------------------------------


def test_oracle_imports_nothing_from_convcore():
    tree = ast.parse((ROOT / "convcore" / "_naive.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "itertools", "math", "numpy"}, imported


def test_reexport():
    assert set(naive.__all__) == set(naive._naive.__all__)
    assert all(callable(getattr(naive, name)) for name in naive.__all__)


# --------------------------------------------------------------------------
# Hand-computed values
# --------------------------------------------------------------------------


def test_output_sizes():
    one = (1,)
    assert naive.conv_output_size((7,), (3,), (2,), (1, 0), one) == (3,)
    assert naive.conv_output_size((5, 6), (2, 3), (1, 2), (0, 0, 1, 1), (2, 1)) == (3, 3)
    # 5 cells, kernel 2, stride 2, padding 1: a 4th window would start at padded cell 6 =
    # size + before, in the after-padding; PyTorch drops it, cover_all keeps it.
    args = ((5,), (2,), (2,), (1, 1), one)
    assert naive.pool_output_size(*args, False) == (3,)
    assert naive.pool_output_size(*args, True) == (3,)
    assert naive.pool_output_size(*args, "cover_all") == (4,)
    # 6 cells, kernel 3, stride 2, padding 1: the ceil window starts at padded cell 6 < 7.
    args = ((6,), (3,), (2,), (1, 1), one)
    assert [naive.pool_output_size(*args, m)[0] for m in (False, True, "cover_all")] == [3, 4, 4]
    # no padding: the cover_all window starts at 6, past the input; True drops it
    args = ((6,), (2,), (3,), (0, 0), one)
    assert [naive.pool_output_size(*args, m)[0] for m in (False, True, "cover_all")] == [2, 2, 3]
    # dilation enters through the extent d*(k-1) + 1
    assert naive.pool_output_size((8,), (3,), (2,), (0, 0), (2,), "cover_all") == (3,)
    # (size - 1)*s - before - after + d*(k - 1) + output_padding + 1
    two = (2, 2)
    assert naive.conv_transpose_output_size((4, 4), (3, 3), two, (1,) * 4, (1, 1), (1, 1)) == (8, 8)
    assert naive.conv_transpose_output_size((3,), (2,), (3,), (0, 2), (1,), (2,)) == (8,)


def test_conv_1d_by_hand():
    x = np.array([[[1.0, 2, 3, 4]]])
    w = np.array([[[1.0, 2, 3]]])
    one = (1,)
    # windows read x[-1..1], x[0..2], x[1..3]: 0*1 + 1*2 + 2*3 = 8, 1 + 4 + 9 = 14, 2 + 6 + 12
    y = naive.conv(x, w, np.array([1.0]), one, (1, 0), one, 1)
    np.testing.assert_array_equal(y, [[[9, 15, 21]]])
    np.testing.assert_array_equal(naive.conv(x, w, None, (2,), (1, 0), one, 1), [[[8, 20]]])
    # dilation 2, padding (0, 2): taps o, o + 2, o + 4 (x4 and x5 are padding)
    np.testing.assert_array_equal(
        naive.conv(x, w, None, one, (0, 2), (2,), 1), [[[1 * 1 + 3 * 2, 2 * 1 + 4 * 2]]]
    )
    dx, dw, db = naive.conv_backward(np.ones((1, 1, 3)), x, w, one, (1, 0), one, 1)
    np.testing.assert_array_equal(dx, [[[3, 6, 5, 3]]])  # how often each x meets each tap
    np.testing.assert_array_equal(dw, [[[0 + 1 + 2, 1 + 2 + 3, 2 + 3 + 4]]])
    np.testing.assert_array_equal(db, [3])


def test_im2col_by_hand_and_dtype():
    x = np.array([[[1, 2, 3]]], dtype=np.int16)
    cols = naive.im2col(x, (2,), (1,), (1, 0), (1,))
    assert cols.dtype == np.int16
    np.testing.assert_array_equal(cols, [[[0, 1, 2], [1, 2, 3]]])
    img = naive.col2im(cols, (3,), (2,), (1,), (1, 0), (1,))
    assert img.dtype == np.float64
    np.testing.assert_array_equal(img, [[[1 + 1, 2 + 2, 3]]])
    # 2-D: row c*KH*KW + tap, column oh*Wo + ow
    x = np.arange(2 * 3 * 3).reshape(1, 2, 3, 3)
    cols = naive.im2col(x, (2, 2), (1, 1), (0,) * 4, (1, 1))
    np.testing.assert_array_equal(cols[0, :4, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(cols[0, 4:, 3], [13, 14, 16, 17])


def test_max_pool_rules_by_hand():
    two, one = (2, 2), (1, 1)
    x = np.array([[[[1.0, 3.0, np.nan, 0.0], [3.0, 2.0, 5.0, np.nan]]]])
    out, idx = naive.max_pool(x, two, two, (0,) * 4, one, False)
    np.testing.assert_array_equal(out, [[[[3, np.nan]]]])  # the first 3; NaN wins
    np.testing.assert_array_equal(idx, [[[[1, 7]]]])  # the last NaN
    dx = naive.max_pool_backward(np.ones((1, 1, 1, 2)), x, two, two, (0,) * 4, one, False)
    np.testing.assert_array_equal(dx, [[[[0, 1, 0, 0], [0, 0, 0, 1]]]])
    # padding is -inf, not 0
    out, idx = naive.max_pool(-np.ones((1, 1, 2, 2)), two, one, (1,) * 4, one, False)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])
    # all real cells -inf: -inf, the first real cell
    x = np.full((1, 1, 2, 3), -np.inf)
    out, idx = naive.max_pool(x, two, two, (1, 1, 1, 1), one, False)
    assert np.isneginf(out).all()
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])
    # no real cell: the dilation steps over the single input cell (taps -1 and 1)
    out, idx = naive.max_pool(np.ones((1, 2, 1)), (2,), (1,), (1, 1), (2,), False)
    assert out.shape == (1, 2, 1) and np.isneginf(out).all()
    np.testing.assert_array_equal(idx, -np.ones((1, 2, 1)))
    g = np.ones((1, 2, 1))
    dx = naive.max_pool_backward(g, np.ones((1, 2, 1)), (2,), (1,), (1, 1), (2,), False)
    np.testing.assert_array_equal(dx, 0)
    # cover_all: the window in the after-padding / overhang only
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out, idx = naive.max_pool(x, two, two, (1,) * 4, one, "cover_all")
    np.testing.assert_array_equal(
        out[0, 0], [[0, 2, 4, -np.inf], [10, 12, 14, -np.inf], [20, 22, 24, -np.inf], [-np.inf] * 4]
    )
    assert (idx[0, 0, 3] == -1).all() and (idx[0, 0, :, 3] == -1).all()
    np.testing.assert_array_equal(idx[0, 0, :3, :3], out[0, 0, :3, :3])
    # dtype kept
    for dtype in (np.float16, np.float32):
        out, _ = naive.max_pool(x.astype(dtype), two, two, (0,) * 4, one, True)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])


def test_avg_pool_by_hand():
    ones = np.ones((1, 1, 6, 6))
    k, s, p = (3, 3), (2, 2), (1,) * 4
    out = naive.avg_pool(ones, k, s, p, True, True, None)
    # per axis: the first window counts 3 cells and sums 2; the last one counts 2 (input
    # cell 5 and padding cell 6, not the overhang cell 7) and sums 1
    per_axis = np.array([2 / 3, 1, 1, 1 / 2])
    close(out[0, 0], np.outer(per_axis, per_axis))
    close(naive.avg_pool(ones, k, s, p, True, False, None), np.ones((1, 1, 4, 4)))
    # the seed's column mean: ceil_mode cover_all with divisor_override = KH*KW
    img = np.array([[[[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]]])
    out = naive.avg_pool(img, (2, 2), (2, 2), (0,) * 4, "cover_all", True, 4)
    close(out.ravel(), [3, 2.25, 3.75, 2.25])
    # asymmetric padding with ceil_mode: the after-padding bounds the count
    ones = np.ones((1, 1, 5))
    close(naive.avg_pool(ones, (3,), (2,), (0, 1), True, True, None), [[[1, 1, 1 / 2]]])
    close(naive.avg_pool(ones, (3,), (2,), (0, 1), True, False, None), [[[1, 1, 1]]])
    close(naive.avg_pool(ones, (3,), (2,), (1, 0), True, True, None), [[[2 / 3, 1, 1]]])
    close(naive.avg_pool(ones, (3,), (2,), (1, 0), True, False, None), [[[1, 1, 1]]])
    # a cover_all window that counts nothing: 0, and no gradient
    x = np.arange(1.0, 7).reshape(1, 1, 6)
    for cip in (True, False):
        out = naive.avg_pool(x, (2,), (3,), (0, 0), "cover_all", cip, None)
        close(out, [[[1.5, 4.5, 0]]])
        dx = naive.avg_pool_backward(
            np.ones((1, 1, 3)), (6,), (2,), (3,), (0, 0), "cover_all", cip, None
        )
        close(dx, [[[0.5, 0.5, 0, 0.5, 0.5, 0]]])


def test_conv_transpose_by_hand():
    x = np.arange(1.0, 5).reshape(1, 1, 2, 2)
    w = np.ones((1, 1, 3, 3))
    one, two = (1, 1), (2, 2)
    out = naive.conv_transpose(x, w, None, two, (0,) * 4, (0, 0), one, 1)
    want = [
        [1, 1, 3, 2, 2],
        [1, 1, 3, 2, 2],
        [4, 4, 10, 6, 6],
        [3, 3, 7, 4, 4],
        [3, 3, 7, 4, 4],
    ]
    np.testing.assert_array_equal(out[0, 0], want)
    cropped = naive.conv_transpose(x, w, np.array([0.5]), two, (1,) * 4, (0, 0), one, 1)
    np.testing.assert_array_equal(cropped[0, 0], np.array(want)[1:4, 1:4] + 0.5)
    # an asymmetric crop: two rows at the bottom, one column at the left
    out = naive.conv_transpose(x, w, None, two, (0, 2, 1, 0), (0, 0), one, 1)
    np.testing.assert_array_equal(out[0, 0], np.array(want)[:3, 1:])
    # output_padding uncrops at the bottom / right, then adds cells that no tap reaches
    out = naive.conv_transpose(x, w, None, two, (0, 1, 1, 0), (2, 1), one, 1)
    assert out.shape == (1, 1, 6, 5)
    np.testing.assert_array_equal(out[0, 0, :5, :4], np.array(want)[:, 1:])
    np.testing.assert_array_equal(out[0, 0, 5], 0)
    np.testing.assert_array_equal(out[0, 0, :, 4], 0)


def test_seed_conv2d_loops():
    x, w, b = rand((2, 3, 6, 5)), rand((4, 3, 3, 2), 1), rand((4,), 2)
    for stride, pad in [(1, 0), (2, 1), (3, 2)]:
        got = naive.seed_conv2d_loops(x, w, b, stride=stride, pad=pad)
        close(got, naive.conv(x, w, b, (stride,) * 2, (pad,) * 4, (1, 1), 1))
    got = naive.seed_conv2d_loops(x.astype(np.float32), w.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (2, 4, 4, 4)
    close(got, naive.conv(x, w, None, (1, 1), (0,) * 4, (1, 1), 1).astype(np.float32), rtol=1e-5)


# --------------------------------------------------------------------------
# Identities: adjoints
# --------------------------------------------------------------------------

GEOMETRIES = {
    "1d": ((9,), (3,), (2,), (1, 2), (2,)),
    "2d": ((5, 6), (2, 3), (2, 1), (1, 0, 2, 2), (2, 1)),
    "3d": ((4, 3, 5), (2, 2, 3), (1, 2, 2), (0, 1, 1, 1, 2, 0), (2, 1, 1)),
}


@pytest.mark.parametrize("nd", GEOMETRIES)
def test_im2col_col2im_adjoint(nd):
    size, kernel, stride, padding, dilation = GEOMETRIES[nd]
    x = rand((2, 3, *size))
    out = naive.conv_output_size(size, kernel, stride, padding, dilation)
    y = rand((2, 3 * math.prod(kernel), math.prod(out)), 1)
    cols = naive.im2col(x, kernel, stride, padding, dilation)
    assert cols.shape == y.shape
    img = naive.col2im(y, size, kernel, stride, padding, dilation)
    close(np.vdot(cols, y), np.vdot(x, img))


@pytest.mark.parametrize("nd", GEOMETRIES)
def test_backward_passes_are_adjoints(nd):
    """Each forward is linear in every argument that it differentiates, so
    ``<g, f(x)> = <df/dx^T g, x>`` exactly, and likewise for the weight."""
    size, kernel, stride, padding, dilation = GEOMETRIES[nd]
    groups = 2
    x, w = rand((2, 4, *size)), rand((6, 2, *kernel), 1)
    y = naive.conv(x, w, None, stride, padding, dilation, groups)
    g = rand(y.shape, 2)
    dx, dw, db = naive.conv_backward(g, x, w, stride, padding, dilation, groups)
    close(np.vdot(g, y), np.vdot(dx, x))
    close(np.vdot(g, y), np.vdot(dw, w))
    close(db, g.sum(axis=(0, *range(2, g.ndim))))
    # conv_transpose(., w) is the adjoint of conv(., w): output_padding = what the floor drops
    out = y.shape[2:]
    op = tuple(
        (size[i] + padding[2 * i] + padding[2 * i + 1] - dilation[i] * (kernel[i] - 1) - 1)
        % stride[i]
        for i in range(len(size))
    )
    back = naive.conv_transpose(g, w, None, stride, padding, op, dilation, groups)
    assert back.shape == x.shape and out == g.shape[2:]
    close(back, dx)
    gt = rand(x.shape, 3)
    tdx, tdw, _ = naive.conv_transpose_backward(gt, g, w, stride, padding, op, dilation, groups)
    close(np.vdot(gt, back), np.vdot(tdx, g))
    close(np.vdot(gt, back), np.vdot(tdw, w))
    close(tdx, naive.conv(gt, w, None, stride, padding, dilation, groups))
    # pooling: avg is linear, max is piecewise linear and homogeneous
    pp = tuple(min(p, kernel[i // 2] // 2) for i, p in enumerate(padding))  # <= k // 2
    for mode in (False, True, "cover_all"):
        for cip, dov in [(True, None), (False, None), (True, 3)]:
            a = naive.avg_pool(x, kernel, stride, pp, mode, cip, dov)
            ga = rand(a.shape, 4)
            da = naive.avg_pool_backward(ga, size, kernel, stride, pp, mode, cip, dov)
            close(np.vdot(ga, a), np.vdot(da, x))
        m, idx = naive.max_pool(x, kernel, stride, pp, dilation, mode)
        gm = rand(m.shape, 5)
        dm = naive.max_pool_backward(gm, x, kernel, stride, pp, dilation, mode)
        keep = idx >= 0
        close(np.vdot(gm[keep], m[keep]), np.vdot(dm, x))


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    return torch


def tt(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_()


def grad(t):
    return t.grad.numpy()


CONV_CASES = [
    # id, n, c, size, f, kernel, stride, padding, dilation, groups
    ("1d", 2, 3, (7,), 4, (3,), (1,), (1, 1), (1,), 1),
    ("1d_s2_d2_asym_g2", 1, 4, (11,), 6, (3,), (2,), (2, 1), (2,), 2),
    ("2d_sym", 2, 3, (6, 5), 4, (3, 2), (2, 1), (1, 1, 0, 0), (1, 2), 1),
    ("2d_asym_depthwise", 1, 4, (7, 6), 8, (2, 3), (1, 2), (0, 2, 1, 0), (2, 1), 4),
    ("2d_pad_ge_kernel", 1, 2, (3, 4), 2, (2, 2), (3, 2), (3, 3, 2, 2), (1, 1), 1),
    ("3d_sym", 1, 2, (4, 5, 3), 3, (2, 3, 2), (1, 2, 1), (1, 1, 0, 0, 1, 1), (1, 1, 2), 1),
    ("3d_asym_g2", 2, 4, (5, 4, 4), 2, (3, 2, 2), (2, 1, 2), (1, 0, 0, 1, 1, 1), (1, 2, 1), 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_vs_torch(torch, case):
    _, n, c, size, f, kernel, stride, padding, dilation, groups = case
    F = torch.nn.functional
    nd = len(size)
    x, w, b = rand((n, c, *size)), rand((f, c // groups, *kernel), 1), rand((f,), 2)
    tx, tw, tb = tt(torch, x), tt(torch, w), tt(torch, b)
    fn = getattr(F, f"conv{nd}d")
    if symmetric(padding):
        ty = fn(tx, tw, tb, stride, padding[::2], dilation, groups)
    else:
        ty = fn(F.pad(tx, torch_pad(padding)), tw, tb, stride, 0, dilation, groups)
    y = naive.conv(x, w, b, stride, padding, dilation, groups)
    close(y, ty.detach().numpy())
    g = rand(y.shape, 3)
    ty.backward(torch.from_numpy(g))
    dx, dw, db = naive.conv_backward(g, x, w, stride, padding, dilation, groups)
    close(dx, grad(tx))
    close(dw, grad(tw))
    close(db, grad(tb))


UNFOLD_CASES = [
    # size, kernel, stride, padding, dilation
    ((5, 6), (2, 3), (1, 2), (1, 1, 0, 0), (2, 1)),
    ((7, 4), (3, 2), (3, 1), (2, 2, 1, 1), (1, 2)),
    ((4, 5), (2, 2), (2, 2), (0, 1, 2, 0), (1, 1)),  # asymmetric: through F.pad
]


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=["sym", "sym_strided", "asym"])
def test_im2col_col2im_vs_unfold_fold(torch, case):
    size, kernel, stride, padding, dilation = case
    F = torch.nn.functional
    x = rand((2, 3, *size))
    cols = naive.im2col(x, kernel, stride, padding, dilation)
    y = rand(cols.shape, 1)
    img = naive.col2im(y, size, kernel, stride, padding, dilation)
    if symmetric(padding):
        tcols = F.unfold(torch.from_numpy(x), kernel, dilation, padding[::2], stride)
        timg = F.fold(torch.from_numpy(y), size, kernel, dilation, padding[::2], stride)
    else:
        tcols = F.unfold(
            F.pad(torch.from_numpy(x), torch_pad(padding)), kernel, dilation, 0, stride
        )
        padded = tuple(s + b + a for s, (b, a) in zip(size, pairs(padding)))
        full = F.fold(torch.from_numpy(y), padded, kernel, dilation, 0, stride)
        timg = F.pad(full, [-p for p in torch_pad(padding)])
    np.testing.assert_array_equal(cols, tcols.numpy())
    close(img, timg.numpy())


MAX_CASES = [
    # size, kernel, stride, padding, dilation, ceil_mode, data
    ((9,), (3,), (2,), (1, 1), (1,), True, "ties"),
    ((9,), (2,), (3,), (1, 1), (2,), False, "nan"),
    ((10,), (4,), (3,), (2, 2), (1,), True, "normal"),
    ((7, 6), (3, 2), (2, 2), (1, 1, 1, 1), (1, 1), True, "normal"),
    ((6, 7), (2, 3), (1, 2), (1, 1, 0, 0), (2, 1), True, "nan"),
    ((5, 5), (2, 2), (2, 2), (1, 1, 1, 1), (1, 1), True, "ties"),
    ((6, 5), (3, 3), (2, 1), (1, 1, 1, 1), (2, 2), False, "ties"),
    ((5, 4, 6), (2, 2, 3), (2, 1, 2), (1, 1, 0, 0, 1, 1), (1, 2, 1), True, "ties"),
    ((4, 5, 5), (3, 2, 2), (1, 2, 2), (1, 1, 1, 1, 0, 0), (1, 1, 2), False, "nan"),
]


def pool_input(shape, data, seed=0):
    rng = np.random.default_rng([seed, *shape])
    if data == "normal":
        return rng.standard_normal(shape)
    x = rng.integers(-3, 3, shape).astype(np.float64)  # many ties
    if data == "nan":
        x.flat[rng.choice(x.size, x.size // 6, replace=False)] = np.nan
    return x


@pytest.mark.parametrize("case", MAX_CASES, ids=lambda c: f"{len(c[0])}d-ceil{c[5]}-{c[6]}")
def test_max_pool_vs_torch(torch, case):
    size, kernel, stride, padding, dilation, ceil_mode, data = case
    nd = len(size)
    x = pool_input((2, 3, *size), data)
    if data == "nan":
        assert np.isnan(x).any()
    tx = tt(torch, x)
    fn = getattr(torch.nn.functional, f"max_pool{nd}d")
    ty, tidx = fn(tx, kernel, stride, padding[::2], dilation, ceil_mode, return_indices=True)
    out, idx = naive.max_pool(x, kernel, stride, padding, dilation, ceil_mode)
    assert (idx >= 0).all()  # PyTorch's index for a window without a real cell is undefined
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    g = rand(out.shape, 1)
    ty.backward(torch.from_numpy(g))
    close(naive.max_pool_backward(g, x, kernel, stride, padding, dilation, ceil_mode), grad(tx))
    # dtype kept, same numbers in float32
    out32, idx32 = naive.max_pool(
        x.astype(np.float32), kernel, stride, padding, dilation, ceil_mode
    )
    assert out32.dtype == np.float32
    t32, tidx32 = fn(
        torch.from_numpy(x.astype(np.float32)),
        kernel,
        stride,
        padding[::2],
        dilation,
        ceil_mode,
        return_indices=True,
    )
    np.testing.assert_array_equal(out32, t32.numpy())
    np.testing.assert_array_equal(idx32, tidx32.numpy())


def test_max_pool_asymmetric_padding_vs_torch(torch):
    """Asymmetric padding as a -inf pad in front of PyTorch; indices mapped back."""
    F = torch.nn.functional
    size, kernel, stride, padding, dilation = (6, 7), (3, 2), (2, 3), (0, 1, 1, 0), (1, 2)
    x = pool_input((2, 2, *size), "ties")
    tx = tt(torch, x)
    padded = F.pad(tx, torch_pad(padding), value=-math.inf)
    ty, tidx = F.max_pool2d(padded, kernel, stride, 0, dilation, return_indices=True)
    out, idx = naive.max_pool(x, kernel, stride, padding, dilation, False)
    np.testing.assert_array_equal(out, ty.detach().numpy())
    pw = size[1] + padding[2] + padding[3]
    ih, iw = np.divmod(tidx.numpy(), pw)
    np.testing.assert_array_equal(idx, (ih - padding[0]) * size[1] + iw - padding[2])
    g = rand(out.shape, 1)
    ty.backward(torch.from_numpy(g))
    close(naive.max_pool_backward(g, x, kernel, stride, padding, dilation, False), grad(tx))


AVG_CASES = [
    # size, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ((8,), (3,), (2,), (1, 1), True, True, None),
    ((10,), (4,), (3,), (2, 2), True, False, None),
    ((9,), (2,), (2,), (0, 0), False, True, None),
    ((6, 6), (3, 3), (2, 2), (1, 1, 1, 1), True, True, None),
    ((7, 5), (3, 2), (2, 3), (1, 1, 1, 1), True, False, None),
    ((5, 6), (2, 3), (1, 2), (1, 1, 0, 0), False, True, 5),
    ((5, 6), (3, 2), (2, 2), (1, 1, 1, 1), True, False, 3),
    ((5, 4, 6), (2, 3, 2), (2, 2, 1), (1, 1, 1, 1, 0, 0), True, True, None),
    ((5, 4, 6), (3, 2, 2), (2, 3, 2), (1, 1, 0, 0, 1, 1), True, False, None),
    ((4, 5, 4), (2, 2, 3), (1, 2, 2), (0, 0, 1, 1, 1, 1), True, True, 7),
]


@pytest.mark.parametrize(
    "case", AVG_CASES, ids=lambda c: f"{len(c[0])}d-ceil{c[4]}-cip{c[5]}-dov{c[6]}"
)
def test_avg_pool_vs_torch(torch, case):
    size, kernel, stride, padding, ceil_mode, cip, dov = case
    nd = len(size)
    x = rand((2, 3, *size))
    tx = tt(torch, x)
    fn = getattr(torch.nn.functional, f"avg_pool{nd}d")
    args = (tx, kernel, stride, padding[::2], ceil_mode, cip)
    ty = fn(*args) if nd == 1 else fn(*args, dov)
    out = naive.avg_pool(x, kernel, stride, padding, ceil_mode, cip, dov)
    close(out, ty.detach().numpy())
    g = rand(out.shape, 1)
    ty.backward(torch.from_numpy(g))
    close(naive.avg_pool_backward(g, size, kernel, stride, padding, ceil_mode, cip, dov), grad(tx))


def test_avg_pool_asymmetric_padding_vs_torch(torch):
    """Asymmetric zero padding in front of PyTorch (floor windows, padding counted)."""
    F = torch.nn.functional
    size, kernel, stride, padding = (6, 7), (3, 2), (2, 3), (0, 2, 1, 0)
    x = rand((2, 2, *size))
    for dov in (None, 4):
        tx = tt(torch, x)
        ty = F.avg_pool2d(F.pad(tx, torch_pad(padding)), kernel, stride, 0, False, True, dov)
        out = naive.avg_pool(x, kernel, stride, padding, False, True, dov)
        close(out, ty.detach().numpy())
        g = rand(out.shape, 1)
        ty.backward(torch.from_numpy(g))
        dx = naive.avg_pool_backward(g, size, kernel, stride, padding, False, True, dov)
        close(dx, grad(tx))


TRANSPOSE_CASES = [
    # id, n, c_in, size, c_out, kernel, stride, padding, output_padding, dilation, groups
    ("1d", 2, 3, (5,), 4, (3,), (2,), (1, 1), (1,), (1,), 1),
    ("1d_asym_g2", 1, 4, (4,), 2, (2,), (3,), (0, 2), (2,), (2,), 2),
    ("2d_sym", 2, 2, (3, 4), 3, (3, 2), (2, 1), (1, 1, 0, 0), (1, 0), (1, 2), 1),
    ("2d_sym_g2", 1, 4, (4, 3), 6, (2, 3), (2, 2), (1, 1, 1, 1), (1, 1), (2, 1), 2),
    ("2d_asym", 1, 2, (3, 3), 2, (3, 3), (2, 3), (0, 1, 2, 0), (1, 2), (1, 1), 1),
    (
        "3d_sym",
        1,
        2,
        (3, 2, 3),
        2,
        (2, 3, 2),
        (2, 1, 2),
        (1, 1, 0, 0, 0, 0),
        (1, 0, 1),
        (1, 1, 2),
        1,
    ),
    (
        "3d_asym_dw",
        2,
        4,
        (2, 3, 2),
        4,
        (2, 2, 3),
        (1, 2, 2),
        (0, 1, 1, 0, 1, 1),
        (0, 1, 0),
        (2, 1, 1),
        4,
    ),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c[0] for c in TRANSPOSE_CASES])
def test_conv_transpose_vs_torch(torch, case):
    _, n, c_in, size, c_out, kernel, stride, padding, op, dilation, groups = case
    F = torch.nn.functional
    nd = len(size)
    x, w = rand((n, c_in, *size)), rand((c_in, c_out // groups, *kernel), 1)
    b = rand((c_out,), 2)
    tx, tw, tb = tt(torch, x), tt(torch, w), tt(torch, b)
    fn = getattr(F, f"conv_transpose{nd}d")
    if symmetric(padding):
        ty = fn(tx, tw, tb, stride, padding[::2], op, groups, dilation)
    else:
        # the full output, cropped by (before, after) and extended by output_padding
        full = fn(tx, tw, None, stride, 0, 0, groups, dilation)
        crop = [
            q for (bef, aft), o in reversed(list(zip(pairs(padding), op))) for q in (-bef, o - aft)
        ]
        ty = F.pad(full, crop) + tb.reshape(c_out, *(1,) * nd)
    y = naive.conv_transpose(x, w, b, stride, padding, op, dilation, groups)
    assert y.shape == tuple(ty.shape)
    close(y, ty.detach().numpy())
    g = rand(y.shape, 3)
    ty.backward(torch.from_numpy(g))
    dx, dw, db = naive.conv_transpose_backward(g, x, w, stride, padding, op, dilation, groups)
    close(dx, grad(tx))
    close(dw, grad(tw))
    close(db, grad(tb))
