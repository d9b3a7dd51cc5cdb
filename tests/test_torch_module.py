"""convcore.torch: convcore's operators on torch tensors, with autograd.

* forward and every gradient against ``torch.nn.functional`` (float32, float64), for
  every operator, and ``torch.autograd.gradcheck`` in float64;
* the backward pass computes only what ``ctx.needs_input_grad`` asks for;
* the data path: CPU tensors reach convcore as NumPy views (zero-copy) and run on
  the backend chosen for NumPy arrays; results are new tensors; non-contiguous and
  half-precision inputs; a CUDA test that skips without CUDA;
* errors: the NumPy-level messages, plus mixed libraries, devices and dtypes.

Tolerances, relative to ``max(1, max|expected|)`` like the suite's ``assert_close``:
float32 ``rtol=1e-4, atol=1e-5`` and float64 ``rtol=1e-10, atol=1e-12`` (sums of at
most a few hundred O(1) terms); bfloat16 / float16 against the float32 result
rounded once: :data:`helpers.HALF_TOL` (a few units of the last rounding).
"""

from __future__ import annotations

import functools
import inspect
import sys

import numpy as np
import pytest
from helpers import HALF_TOL, auto_for_numpy

torch = pytest.importorskip("torch")
F = torch.nn.functional

import convcore  # noqa: E402
import convcore.torch as ct  # noqa: E402

TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-10, 1e-12)}
FLOATS = [torch.float32, torch.float64]
FLOAT_IDS = ["float32", "float64"]


def _rand(shape, dtype=torch.float64, seed=0, grad=True):
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    t = torch.from_numpy(rng.standard_normal(shape)).to(dtype)
    return t.requires_grad_(grad)


def _close(actual, expected, tol_dtype=None):
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.device == expected.device
    rtol, atol = TOL[tol_dtype or expected.dtype]
    e = expected.detach().double()
    scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
    torch.testing.assert_close(actual.detach().double(), e, rtol=rtol, atol=atol * scale)


def _against(ours, theirs, inputs, seed=1):
    """Forward and the gradients of every input of ``inputs`` agree with the reference."""
    y, ref = ours(*inputs), theirs(*inputs)
    _close(y, ref)
    g = _rand(tuple(ref.shape), ref.dtype, seed, grad=False)
    got = torch.autograd.grad(y, inputs, g)
    want = torch.autograd.grad(ref, inputs, g)
    for a, b in zip(got, want, strict=True):
        _close(a, b)


# --------------------------------------------------------------------------
# signatures
# --------------------------------------------------------------------------
OPERATORS = [name for name in ct.__all__ if name != "Conv2d"]
NUMPY_LEVEL = {name: getattr(convcore, name) for name in OPERATORS}


@pytest.mark.parametrize("name", OPERATORS)
def test_signature_is_the_numpy_level_one(name):
    ours, theirs = getattr(ct, name), NUMPY_LEVEL[name]
    assert inspect.signature(ours) == inspect.signature(theirs)
    assert ours.__name__ == name and ours.__module__ == "convcore.torch"
    assert f"convcore.{name}" in ours.__doc__


def test_import_convcore_does_not_import_convcore_torch():
    import subprocess

    code = "import sys, convcore; assert not {'torch', 'convcore.torch'} & set(sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------
# against torch.nn.functional
# --------------------------------------------------------------------------
CONV_CASES = [
    # (our function, torch function, x shape, weight shape, bias?, kwargs)
    (ct.conv1d, F.conv1d, (2, 4, 11), (6, 2, 3), True,
     {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    (ct.conv1d, F.conv1d, (2, 3, 10), (4, 3, 3), False, {"padding": "same", "dilation": 2}),
    (ct.conv2d, F.conv2d, (2, 4, 9, 8), (6, 2, 3, 2), True,
     {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "groups": 2}),
    (ct.conv2d, F.conv2d, (1, 3, 5, 5), (2, 3, 3, 3), False, {}),
    (ct.conv2d, F.conv2d, (2, 4, 7, 7), (8, 1, 3, 3), True, {"padding": 1, "groups": 4}),
    (ct.conv3d, F.conv3d, (1, 2, 5, 6, 5), (4, 1, 3, 2, 3), True,
     {"stride": (1, 2, 1), "padding": (1, 0, 1), "groups": 2}),
    (ct.conv, F.conv2d, (2, 3, 6, 6), (4, 3, 3, 3), True, {"stride": 2, "padding": 1}),
    (ct.conv, F.conv3d, (1, 2, 4, 4, 4), (3, 2, 2, 2, 2), False, {"dilation": 2, "padding": 1}),
]  # fmt: skip


def _conv_id(case):
    ours, _, x, _, _, kw = case
    return f"{ours.__name__}-{len(x) - 2}d-" + "-".join(f"{k}{v}" for k, v in kw.items())


@pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=[_conv_id(c) for c in CONV_CASES])
def test_conv_matches_torch(case, dtype):
    ours, theirs, xs, ws, bias, kw = case
    inputs = [_rand(xs, dtype), _rand(ws, dtype, 1)]
    if bias:
        inputs.append(_rand((ws[0],), dtype, 2))
    _against(lambda *a: ours(*a, **kw), lambda *a: theirs(*a, **kw), inputs)


TRANSPOSE_CASES = [
    (ct.conv_transpose1d, F.conv_transpose1d, (2, 4, 7), (4, 3, 3), True,
     {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    (ct.conv_transpose2d, F.conv_transpose2d, (2, 4, 5, 4), (4, 2, 3, 3), True,
     {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)}),
    # output_padding >= stride (allowed below the dilation): windows past x
    (ct.conv_transpose2d, F.conv_transpose2d, (1, 2, 4, 4), (2, 3, 3, 3), False,
     {"stride": 1, "dilation": 2, "output_padding": 1}),
    (ct.conv_transpose3d, F.conv_transpose3d, (1, 2, 3, 4, 3), (2, 2, 2, 3, 2), True,
     {"stride": 2, "padding": (0, 1, 0), "output_padding": (1, 0, 1)}),
    (ct.conv_transpose, F.conv_transpose2d, (2, 3, 4, 4), (3, 2, 3, 3), True,
     {"stride": 2, "padding": 1}),
]  # fmt: skip


@pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[_conv_id(c) for c in TRANSPOSE_CASES])
def test_conv_transpose_matches_torch(case, dtype):
    ours, theirs, xs, ws, bias, kw = case
    groups = kw.get("groups", 1)
    inputs = [_rand(xs, dtype), _rand(ws, dtype, 1)]
    if bias:
        inputs.append(_rand((ws[1] * groups,), dtype, 2))
    _against(lambda *a: ours(*a, **kw), lambda *a: theirs(*a, **kw), inputs)


POOL_CASES = [
    (ct.max_pool1d, F.max_pool1d, (2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1,
                                               "ceil_mode": True}),
    (ct.max_pool2d, F.max_pool2d, (2, 3, 9, 8), {"kernel_size": (3, 2), "stride": 2,
                                                 "padding": 1, "dilation": (1, 2),
                                                 "ceil_mode": True}),
    (ct.max_pool2d, F.max_pool2d, (2, 3, 6, 6), {"kernel_size": 2}),
    (ct.max_pool3d, F.max_pool3d, (1, 2, 5, 6, 5), {"kernel_size": 2, "stride": 2, "padding": 1}),
    (ct.max_pool, F.max_pool2d, (1, 2, 7, 7), {"kernel_size": 3, "stride": 2}),
    (ct.avg_pool1d, F.avg_pool1d, (2, 3, 11), {"kernel_size": 3, "stride": 2, "padding": 1,
                                               "ceil_mode": True, "count_include_pad": False}),
    (ct.avg_pool2d, F.avg_pool2d, (2, 3, 9, 8), {"kernel_size": 3, "stride": 2, "padding": 1,
                                                 "ceil_mode": True, "count_include_pad": True}),
    (ct.avg_pool2d, F.avg_pool2d, (2, 3, 7, 8), {"kernel_size": (2, 3), "divisor_override": 5}),
    (ct.avg_pool3d, F.avg_pool3d, (1, 2, 5, 6, 5), {"kernel_size": 2, "stride": 2, "padding": 1,
                                                    "ceil_mode": True,
                                                    "count_include_pad": False}),
    (ct.avg_pool, F.avg_pool3d, (1, 2, 4, 4, 4), {"kernel_size": 2}),
]  # fmt: skip


def _pool_id(case):
    ours, _, x, kw = case
    return f"{ours.__name__}-{len(x) - 2}d-" + "-".join(f"{k}{v}" for k, v in kw.items())


@pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=[_pool_id(c) for c in POOL_CASES])
def test_pooling_matches_torch(case, dtype):
    ours, theirs, xs, kw = case
    _against(lambda x: ours(x, **kw), lambda x: theirs(x, **kw), [_rand(xs, dtype)])


def test_max_pool_indices_match_torch():
    x = _rand((2, 3, 8, 9))
    out, idx = ct.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    _close(out, ref)
    assert idx.dtype == torch.int64 and torch.equal(idx, ref_idx)
    assert not idx.requires_grad and out.requires_grad
    (g,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(ref.sum(), x)
    _close(g, want)


UNFOLD = {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}


@pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
def test_im2col_matches_unfold(dtype):
    _against(lambda x: ct.im2col(x, **UNFOLD), lambda x: F.unfold(x, **UNFOLD),
             [_rand((2, 3, 7, 8), dtype)])  # fmt: skip


@pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
def test_col2im_matches_fold(dtype):
    length = F.unfold(torch.zeros(1, 1, 7, 8), **UNFOLD).shape[2]
    cols = _rand((2, 3 * 6, length), dtype)
    _against(lambda c: ct.col2im(c, (7, 8), **UNFOLD),
             lambda c: F.fold(c, (7, 8), **UNFOLD), [cols])  # fmt: skip


def test_channels_last_layout_matches_torch():
    x = _rand((2, 6, 7, 3))  # N, H, W, C
    w, b = _rand((4, 3, 3, 3), seed=1), _rand((4,), seed=2)

    def theirs(x, w, b):
        return F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1).permute(0, 2, 3, 1)

    _against(lambda x, w, b: ct.conv2d(x, w, b, padding=1, layout="NHWC"), theirs, [x, w, b])
    _against(
        lambda x: ct.max_pool2d(x, 2, layout="NHWC"),
        lambda x: F.max_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1),
        [x],
    )


def test_asymmetric_padding_matches_padded_torch():
    x, w = _rand((2, 3, 6, 7)), _rand((4, 3, 3, 3), seed=1)
    _against(
        lambda x, w: ct.conv2d(x, w, padding=(0, 2, 1, 0), stride=2),
        lambda x, w: F.conv2d(F.pad(x, (1, 0, 0, 2)), w, stride=2),
        [x, w],
    )


# --------------------------------------------------------------------------
# gradcheck (float64, small shapes)
# --------------------------------------------------------------------------
def _gc(shape, seed=0):
    return _rand(shape, torch.float64, seed)


GRADCHECK = [
    ("conv1d", lambda x, w, b: ct.conv1d(x, w, b, stride=2, padding=1, groups=2),
     [(2, 4, 7), (4, 2, 3), (4,)]),
    ("conv2d", lambda x, w, b: ct.conv2d(x, w, b, padding=(1, 0), dilation=(1, 2)),
     [(2, 2, 5, 5), (3, 2, 2, 2), (3,)]),
    ("conv2d-same-NHWC", lambda x, w: ct.conv2d(x, w, stride=2, padding="same", layout="NHWC"),
     [(1, 5, 6, 2), (3, 2, 3, 3)]),
    ("conv3d", lambda x, w, b: ct.conv3d(x, w, b, stride=(1, 2, 1), padding=1),
     [(1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (2,)]),
    ("conv", lambda x, w: ct.conv(x, w, groups=2), [(1, 4, 5), (2, 2, 2)]),
    ("conv_transpose1d", lambda x, w, b: ct.conv_transpose1d(x, w, b, stride=2, output_padding=1),
     [(2, 2, 4), (2, 3, 3), (3,)]),
    ("conv_transpose2d", lambda x, w, b: ct.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            groups=2),
     [(1, 4, 3, 3), (4, 1, 3, 3), (2,)]),
    ("conv_transpose3d", lambda x, w: ct.conv_transpose3d(x, w, stride=(2, 1, 1)),
     [(1, 2, 2, 3, 2), (2, 2, 2, 2, 2)]),
    ("conv_transpose", lambda x, w: ct.conv_transpose(x, w, dilation=2, output_padding=1),
     [(1, 2, 3, 3), (2, 2, 2, 2)]),
    ("max_pool1d", lambda x: ct.max_pool1d(x, 3, 2, 1, ceil_mode=True), [(2, 2, 8)]),
    ("max_pool2d", lambda x: ct.max_pool2d(x, 2, 1, dilation=2), [(1, 2, 5, 5)]),
    ("max_pool3d", lambda x: ct.max_pool3d(x, 2, ceil_mode=True), [(1, 2, 3, 4, 3)]),
    ("max_pool", lambda x: ct.max_pool(x, 2, layout="NWC"), [(2, 6, 3)]),
    ("avg_pool1d", lambda x: ct.avg_pool1d(x, 3, 2, 1, count_include_pad=False), [(2, 2, 8)]),
    ("avg_pool2d", lambda x: ct.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [(1, 2, 6, 5)]),
    ("avg_pool3d", lambda x: ct.avg_pool3d(x, 2, divisor_override=3), [(1, 2, 4, 4, 4)]),
    ("avg_pool", lambda x: ct.avg_pool(x, 2, ceil_mode="cover_all"), [(1, 2, 5, 5)]),
    ("im2col", lambda x: ct.im2col(x, 3, stride=2, padding=1), [(2, 2, 5, 6)]),
    ("im2col-1d-NWC", lambda x: ct.im2col(x, 2, dilation=2, layout="NWC"), [(2, 7, 3)]),
    ("col2im", lambda c: ct.col2im(c, (5, 6), 3, stride=2, padding=1), [(2, 18, 9)]),
    ("col2im-3d", lambda c: ct.col2im(c, (3, 3, 3), 2), [(1, 16, 8)]),
]  # fmt: skip


@pytest.mark.parametrize("case", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck(case):
    _, func, shapes = case
    inputs = [_gc(s, i) for i, s in enumerate(shapes)]
    assert torch.autograd.gradcheck(func, inputs, eps=1e-6, atol=1e-8)


def test_every_operator_is_gradchecked():
    checked = {name.split("-")[0] for name, _, _ in GRADCHECK}
    assert checked == set(OPERATORS)


# --------------------------------------------------------------------------
# only the gradients asked for
# --------------------------------------------------------------------------
NEEDS = [(True, False, False), (False, True, False), (False, False, True),
         (True, False, True), (False, True, True), (True, True, False)]  # fmt: skip
NEEDS_IDS = ["".join(n for n, r in zip("xwb", need) if r) for need in NEEDS]


def _spy_backward(monkeypatch, func):
    calls = []
    real = ct._BACKWARD[func]

    @functools.wraps(real)
    def spy(*args, **kwargs):
        calls.append(real.__name__)
        return real(*args, **kwargs)

    monkeypatch.setitem(ct._BACKWARD, func, spy)
    return calls


@pytest.mark.parametrize("need", NEEDS, ids=NEEDS_IDS)
@pytest.mark.parametrize(
    "kw",
    [{"stride": 2, "padding": 1, "groups": 2}, {"padding": "same"}, {"stride": 3, "dilation": 2}],
    ids=["s2-p1-g2", "same", "s3-d2"],
)
def test_conv_backward_computes_only_what_is_needed(monkeypatch, need, kw):
    calls = _spy_backward(monkeypatch, convcore.conv2d)
    x = _rand((2, 4, 9, 8)).requires_grad_(need[0])
    w = _rand((6, 4 // kw.get("groups", 1), 3, 3), seed=1).requires_grad_(need[1])
    b = _rand((6,), seed=2).requires_grad_(need[2])
    inputs = [t for t in (x, w, b) if t.requires_grad]
    y = ct.conv2d(x, w, b, **kw)
    g = _rand(tuple(y.shape), seed=3, grad=False)
    got = torch.autograd.grad(y, inputs, g)
    want = torch.autograd.grad(F.conv2d(x, w, b, **kw), inputs, g)
    for a, e in zip(got, want, strict=True):
        _close(a, e)
    # db alone is a sum of grad_out: no conv2d_backward
    assert calls == (["conv2d_backward"] if need[0] or need[1] else [])


@pytest.mark.parametrize("need", NEEDS, ids=NEEDS_IDS)
def test_conv_transpose_backward_computes_only_what_is_needed(monkeypatch, need):
    calls = _spy_backward(monkeypatch, convcore.conv_transpose2d)
    kw = {"stride": 1, "dilation": 2, "output_padding": 1, "groups": 2, "padding": 1}
    x = _rand((2, 4, 5, 4)).requires_grad_(need[0])
    w = _rand((4, 3, 3, 3), seed=1).requires_grad_(need[1])
    b = _rand((6,), seed=2).requires_grad_(need[2])
    inputs = [t for t in (x, w, b) if t.requires_grad]
    y = ct.conv_transpose2d(x, w, b, **kw)
    g = _rand(tuple(y.shape), seed=3, grad=False)
    got = torch.autograd.grad(y, inputs, g)
    want = torch.autograd.grad(F.conv_transpose2d(x, w, b, **kw), inputs, g)
    for a, e in zip(got, want, strict=True):
        _close(a, e)
    assert calls == (["conv_transpose2d_backward"] if need[0] or need[1] else [])


def test_half_precision_weight_gradient(monkeypatch):
    calls = _spy_backward(monkeypatch, convcore.conv2d)
    x = _rand((1, 2, 5, 5), torch.float16, grad=False)
    w = _rand((3, 2, 3, 3), torch.float16, 1)
    (dw,) = torch.autograd.grad(ct.conv2d(x, w).sum(), [w])
    assert dw.dtype == torch.float16 and calls == ["conv2d_backward"]
    (want,) = torch.autograd.grad(F.conv2d(x.float(), w.float()).sum(), [w])
    np.testing.assert_allclose(dw.float(), want, rtol=0, atol=HALF_TOL["float16"] * 50)


def test_no_gradient_wanted_records_no_graph():
    x, w = _rand((1, 2, 5, 5), grad=False), _rand((3, 2, 3, 3), seed=1, grad=False)
    assert not ct.conv2d(x, w).requires_grad
    with torch.no_grad():
        assert not ct.conv2d(x.requires_grad_(), w).requires_grad


# --------------------------------------------------------------------------
# the data path: zero-copy NumPy views, the NumPy backends
# --------------------------------------------------------------------------
def _spy_calls(monkeypatch):
    """Record every NumPy-level call: (function name, its arguments, its result)."""
    calls = []
    real = ct._call

    def spy(func, params):
        out = real(func, params)
        calls.append((func.__name__, params, out))
        return out

    monkeypatch.setattr(ct, "_call", spy)
    return calls


def test_cpu_tensors_reach_convcore_as_numpy_views(monkeypatch):
    calls = _spy_calls(monkeypatch)
    x = _rand((2, 3, 6, 6), torch.float32)
    w, b = _rand((4, 3, 3, 3), torch.float32, 1), _rand((4,), torch.float32, 2)
    y = ct.conv2d(x, w, b, padding=1)
    name, params, out = calls[-1]
    assert name == "conv2d"
    for key, t in (("x", x), ("weight", w), ("bias", b)):
        arr = params[key]
        assert type(arr) is np.ndarray and arr.dtype == np.float32
        assert np.shares_memory(arr, t.detach().numpy()), key
    # the result is convcore's array itself, wrapped without a copy
    assert np.shares_memory(y.detach().numpy(), out)
    y.backward(torch.ones_like(y))
    name, params, (dx, dw, _) = calls[-1]
    assert name == "conv2d_backward"
    assert np.shares_memory(params["x"], x.detach().numpy())
    assert np.shares_memory(x.grad.numpy(), dx) and np.shares_memory(w.grad.numpy(), dw)


def test_noncontiguous_tensors_are_viewed_with_their_strides(monkeypatch):
    calls = _spy_calls(monkeypatch)
    big = _rand((2, 3, 12, 14), grad=False)
    x = big[:, :, ::2, 1::2].requires_grad_()  # a strided leaf
    assert not x.is_contiguous()
    w = _rand((4, 3, 3, 3), seed=1).transpose(2, 3)  # non-contiguous weight
    y = ct.conv2d(x, w, padding=1)
    assert np.shares_memory(calls[-1][1]["x"], big.numpy())
    _against(lambda x, w: ct.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1),
             [x, w.detach().requires_grad_()])  # fmt: skip
    cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    _against(lambda x: ct.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2), [cl])
    ex = torch.ones(1, 1, 1, 1, dtype=torch.float64).expand(2, 3, 6, 7)  # zero strides
    _close(ct.conv2d(ex, w), F.conv2d(ex, w))
    assert y.shape == (2, 4, 6, 7)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backend_keyword_runs_the_numpy_backends(monkeypatch, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    chosen = []
    real = convcore._api.select

    def spy(op, xp, ref, backend, nd=2, **kwargs):
        plan = real(op, xp, ref, backend, nd, **kwargs)
        chosen.append((op, plan.name))
        return plan

    monkeypatch.setattr(convcore._api, "select", spy)
    x, w = _rand((2, 3, 6, 6)), _rand((4, 3, 3, 3), seed=1)
    _against(lambda x, w: ct.conv2d(x, w, padding=1, backend=backend),
             lambda x, w: F.conv2d(x, w, padding=1), [x, w])  # fmt: skip
    assert {name for _, name in chosen} == {backend}
    assert {op for op, _ in chosen} == {"conv", "conv_backward"}


def test_auto_runs_the_numpy_backend_not_array_api(monkeypatch):
    monkeypatch.delenv("CONVCORE_BACKEND", raising=False)
    chosen = []
    real = convcore._api.select

    def spy(op, xp, ref, backend, nd=2, **kwargs):
        plan = real(op, xp, ref, backend, nd, **kwargs)
        chosen.append(plan.name)
        return plan

    monkeypatch.setattr(convcore._api, "select", spy)
    x, w = _rand((2, 3, 6, 6), torch.float32), _rand((4, 3, 3, 3), torch.float32, 1)
    with convcore.use_backend("auto"):
        ct.conv2d(x, w).sum().backward()
    assert chosen == [auto_for_numpy("conv", "float32"), auto_for_numpy("conv_backward", "float32")]
    assert "array_api" not in chosen


def test_backward_uses_the_backend_of_the_forward_context(monkeypatch):
    chosen = []
    real = convcore._api.select

    def spy(op, xp, ref, backend, nd=2, **kwargs):
        plan = real(op, xp, ref, backend, nd, **kwargs)
        chosen.append(plan.name)
        return plan

    monkeypatch.setattr(convcore._api, "select", spy)
    x, w = _rand((1, 2, 5, 5)), _rand((3, 2, 3, 3), seed=1)
    with convcore.use_backend("numpy"):
        y = ct.conv2d(x, w)
    y.sum().backward()  # outside the block
    assert chosen == ["numpy", "numpy"]


# --------------------------------------------------------------------------
# inputs unchanged, results new
# --------------------------------------------------------------------------
def test_inputs_that_require_grad_are_unchanged():
    x, w, b = _rand((2, 3, 6, 6)), _rand((4, 3, 3, 3), seed=1), _rand((4,), seed=2)
    saved = [t.detach().clone() for t in (x, w, b)]
    versions = [t._version for t in (x, w, b)]
    y = ct.conv2d(x, w, b, padding=1)
    (ct.max_pool2d(y, 2).sum() + ct.avg_pool2d(ct.conv_transpose2d(y, w), 2).sum()
     + ct.col2im(ct.im2col(x, 3), (6, 6), 3).sum()).backward()  # fmt: skip
    for t, s, v in zip((x, w, b), saved, versions, strict=True):
        assert torch.equal(t.detach(), s) and t._version == v
        assert t.requires_grad and t.grad is not None


def test_results_never_alias_the_inputs():
    x = _rand((2, 3, 4, 4), grad=False)
    saved = x.clone()
    # a 1x1 im2col is x's data reshaped: the result must still be a new tensor
    for out in (ct.im2col(x, 1), ct.col2im(x.reshape(2, 3, 16), (4, 4), 1),
                ct.max_pool2d(x, 1), ct.avg_pool2d(x, 1)):  # fmt: skip
        out.mul_(0.0)
        assert torch.equal(x, saved)


def test_results_are_on_the_input_device_in_its_dtype():
    for dtype in (torch.float32, torch.float64):
        x = _rand((1, 2, 4, 4), dtype)
        for out in (ct.conv2d(x, _rand((3, 2, 3, 3), dtype, 1)), ct.max_pool2d(x, 2),
                    ct.avg_pool2d(x, 2), ct.im2col(x, 2)):  # fmt: skip
            assert out.dtype == dtype and out.device == x.device


def test_integer_im2col_and_col2im():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.int64).reshape(2, 3, 5, 5)
    cols = ct.im2col(x, 3, padding=1)
    assert cols.dtype == torch.int64
    assert torch.equal(cols, F.unfold(x.double(), 3, padding=1).long())
    assert torch.equal(ct.col2im(cols, (5, 5), 3, padding=1),
                       F.fold(cols.double(), (5, 5), 3, padding=1).long())  # fmt: skip


# --------------------------------------------------------------------------
# half precision
# --------------------------------------------------------------------------
HALVES = [torch.float16, torch.bfloat16]


def _half_close(actual, expected32, dtype):
    assert actual.dtype == dtype
    scale = max(1.0, float(expected32.detach().abs().max()))
    tol = HALF_TOL[str(dtype).removeprefix("torch.")] * scale
    want = expected32.to(dtype).float().detach().numpy()
    np.testing.assert_allclose(actual.float().detach().numpy(), want, atol=2 * tol, rtol=0)


@pytest.mark.parametrize("dtype", HALVES, ids=["float16", "bfloat16"])
def test_half_precision_forward_and_backward(dtype):
    x32, w32, b32 = (
        _rand((2, 3, 6, 6), torch.float32),
        _rand((4, 3, 3, 3), torch.float32, 1),
        _rand((4,), torch.float32, 2),
    )
    x, w, b = (t.detach().to(dtype).requires_grad_() for t in (x32, w32, b32))
    # the reference: float32 on the rounded inputs
    xr, wr, br = (t.detach().float().requires_grad_() for t in (x, w, b))
    y = ct.conv2d(x, w, b, padding=1)
    yr = F.conv2d(xr, wr, br, padding=1)
    _half_close(y, yr, dtype)
    y.backward(torch.ones_like(y))
    yr.backward(torch.ones_like(yr))
    for t, r in ((x, xr), (w, wr), (b, br)):
        _half_close(t.grad, r.grad, dtype)
    _half_close(ct.max_pool2d(x, 2), F.max_pool2d(xr, 2), dtype)
    _half_close(ct.avg_pool2d(x, 3, 1, 1), F.avg_pool2d(xr, 3, 1, 1), dtype)
    _half_close(
        ct.conv_transpose2d(x, w.transpose(0, 1)), F.conv_transpose2d(xr, wr.transpose(0, 1)), dtype
    )


def test_bfloat16_runs_in_float32_and_rounds_once(monkeypatch):
    calls = _spy_calls(monkeypatch)
    x = _rand((1, 2, 5, 5), torch.bfloat16, grad=False)
    w = _rand((3, 2, 3, 3), torch.bfloat16, 1, grad=False)
    y = ct.conv2d(x, w)
    assert calls[-1][1]["x"].dtype == np.float32
    want = torch.from_numpy(convcore.conv2d(x.float().numpy(), w.float().numpy())).bfloat16()
    assert y.dtype == torch.bfloat16 and torch.equal(y, want)


# --------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_run_on_the_cupy_backend():
    pytest.importorskip("cupy")
    dev = torch.device("cuda")
    x, w, b = (_rand(s, torch.float32, i).detach() for i, s in
               enumerate([(2, 3, 8, 8), (4, 3, 3, 3), (4,)]))  # fmt: skip
    xc, wc, bc = (t.to(dev).requires_grad_() for t in (x, w, b))
    y = ct.conv2d(xc, wc, bc, padding=1, stride=2)
    assert y.device == xc.device and y.dtype == torch.float32
    assert convcore.resolve_backend("conv", __import__("cupy").from_dlpack(xc.detach())) == "cupy"
    _against(lambda x, w, b: ct.conv2d(x, w, b, padding=1, stride=2),
             lambda x, w, b: F.conv2d(x, w, b, padding=1, stride=2), [xc, wc, bc])  # fmt: skip
    xb = xc.detach().bfloat16().requires_grad_()
    yb = ct.max_pool2d(xb, 2)
    yb.sum().backward()
    assert yb.dtype == torch.bfloat16 and xb.grad.device == dev
    cols = ct.im2col(xc, 3)
    assert cols.device == dev


def test_cuda_work_runs_on_the_tensor_device_and_torch_stream(monkeypatch):
    # Wiring only (no GPU here): _on enters the tensor's CuPy device and wraps
    # torch's current stream on it.
    entered = []

    class Context:
        def __init__(self, what):
            self.what = what

        def __enter__(self):
            entered.append(self.what)

        def __exit__(self, *exc):
            entered.append(("exit", self.what))

    class Stream:
        @staticmethod
        def from_external(stream):
            return Context(("stream", stream.index))

    class Cuda:
        Device = staticmethod(lambda index: Context(("device", index)))

    Cuda.Stream = Stream
    fake = type("FakeCupy", (), {"cuda": Cuda})
    monkeypatch.setattr(ct, "_cupy", lambda what: fake)

    class TorchStream:
        def __init__(self, index):
            self.index = index

        def __cuda_stream__(self):  # the CUDA stream protocol
            return (0, 0)

    monkeypatch.setattr(torch.cuda, "current_stream", TorchStream)
    with ct._on(torch.device("cuda", 1)):
        entered.append("work")
    assert entered == [("device", 1), ("stream", 1), "work",
                       ("exit", ("stream", 1)), ("exit", ("device", 1))]  # fmt: skip
    entered.clear()
    with ct._on(torch.device("cpu")):
        entered.append("work")
    assert entered == ["work"]


def test_a_cuda_tensor_without_cupy_is_a_clear_error(monkeypatch):
    # No CUDA here: the conversion's CuPy import is what a CUDA tensor triggers.
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(
        convcore.BackendUnavailableError, match=r"CUDA tensor.*CuPy is not installed"
    ):
        ct._cupy("x")
    with pytest.raises(RuntimeError, match=r"pip install 'convcore\[cupy\]'"):
        ct._on(torch.device("cuda", 0)).__enter__()


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
X, W = _rand((2, 3, 6, 6), grad=False), _rand((4, 3, 3, 3), seed=1, grad=False)

SAME_ERRORS = [
    ("conv2d", (X, W), {"stride": 0}),
    ("conv2d", (X, W), {"padding": "full"}),
    ("conv2d", (X, W), {"groups": 2}),
    ("conv2d", (X[0], W), {}),
    ("conv3d", (X, W), {}),
    ("conv2d", (X, W, W[0, 0, 0]), {}),
    ("conv2d", (X.long(), W.long()), {}),
    ("conv2d", (X, W), {"layout": "NHWCX"}),
    ("conv2d", (X, W), {"backend": "nonesuch"}),
    ("conv_transpose2d", (X, W), {"padding": "same"}),
    ("conv_transpose2d", (X, W.transpose(0, 1)), {"output_padding": 2}),
    ("max_pool2d", (X, 2), {"padding": 2}),
    ("max_pool2d", (X, 2), {"return_indices": 1}),
    ("avg_pool2d", (X, 2), {"divisor_override": 0}),
    ("avg_pool2d", (X, 2), {"count_include_pad": "yes"}),
    ("im2col", (X, 7), {}),
    ("col2im", (ct.im2col(X, 3), (6, 6), 2), {}),
    ("col2im", (ct.im2col(X, 3), 6, 3), {}),
]


@pytest.mark.parametrize(
    "case", SAME_ERRORS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SAME_ERRORS)]
)
def test_errors_are_the_numpy_level_ones(case):
    name, args, kwargs = case
    np_args = [a.numpy() if isinstance(a, torch.Tensor) else a for a in args]
    with pytest.raises(Exception) as expected:
        getattr(convcore, name)(*np_args, **kwargs)
    with pytest.raises(type(expected.value)) as got:
        getattr(ct, name)(*args, **kwargs)
    assert str(got.value) == str(expected.value)
    assert isinstance(got.value, (TypeError, ValueError))


def test_unknown_keyword_is_a_type_error_as_for_numpy():
    with pytest.raises(TypeError, match="unexpected keyword argument 'strides'"):
        ct.conv2d(X, W, strides=2)


ARRAY_ARGS = [
    # (function, a call that works, {position: parameter name})
    (ct.conv1d, (X[..., 0], W[..., 0], W[:, 0, 0, 0]), {0: "x", 1: "weight", 2: "bias"}),
    (ct.conv2d, (X, W, W[:, 0, 0, 0]), {0: "x", 1: "weight", 2: "bias"}),
    (ct.conv3d, (X[..., None], W[..., None]), {0: "x", 1: "weight"}),
    (ct.conv, (X, W), {0: "x", 1: "weight"}),
    (ct.conv_transpose1d, (X[..., 0], W[..., 0].transpose(0, 1)), {0: "x", 1: "weight"}),
    (ct.conv_transpose2d, (X, W.transpose(0, 1), W[:, 0, 0, 0]), {0: "x", 1: "weight", 2: "bias"}),
    (ct.conv_transpose3d, (X[..., None], W[..., None].transpose(0, 1)), {0: "x", 1: "weight"}),
    (ct.conv_transpose, (X, W.transpose(0, 1)), {0: "x", 1: "weight"}),
    (ct.max_pool1d, (X[..., 0], 2), {0: "x"}),
    (ct.max_pool2d, (X, 2), {0: "x"}),
    (ct.max_pool3d, (X[..., None], 1), {0: "x"}),
    (ct.max_pool, (X, 2), {0: "x"}),
    (ct.avg_pool1d, (X[..., 0], 2), {0: "x"}),
    (ct.avg_pool2d, (X, 2), {0: "x"}),
    (ct.avg_pool3d, (X[..., None], 1), {0: "x"}),
    (ct.avg_pool, (X, 2), {0: "x"}),
    (ct.im2col, (X, 3), {0: "x"}),
    (ct.col2im, (ct.im2col(X, 3), (6, 6), 3), {0: "cols"}),
]


def test_the_array_argument_table_covers_every_operator():
    assert {f.__name__ for f, _, _ in ARRAY_ARGS} == set(OPERATORS)


@pytest.mark.parametrize("case", ARRAY_ARGS, ids=[c[0].__name__ for c in ARRAY_ARGS])
def test_array_arguments_name_the_culprit(case):
    func, args, arrays = case
    func(*args)  # the table's call works
    for where, name in arrays.items():
        for bad, expect in [
            (None, rf"\b{name} must be an array .*got None"),
            ([[1.0]], rf"\b{name} must be an array .*got list"),
            (
                args[where].numpy(),
                rf"\b{name} is a NumPy array, but convcore.torch\.\w+ takes torch tensors",
            ),
        ]:
            if bad is None and name == "bias":
                continue  # no bias
            call = list(args)
            call[where] = bad
            with pytest.raises(TypeError, match=expect):
                func(*call)


def test_all_numpy_arguments_are_a_type_error():
    with pytest.raises(TypeError, match=r"\bx is a NumPy array, but convcore.torch.conv2d"):
        ct.conv2d(X.numpy(), W.numpy())


def test_mismatched_dtypes_and_devices_are_named():
    with pytest.raises(TypeError, match=r"weight has dtype float32 but x has dtype float64"):
        ct.conv2d(X, W.float())
    with pytest.raises(TypeError, match=r"bias has dtype bfloat16 but x has dtype float32"):
        ct.conv2d(X.float(), W.float(), W[:, 0, 0, 0].bfloat16())
    with pytest.raises(TypeError, match=r"weight has dtype float32 but x has dtype bfloat16"):
        ct.conv2d(X.bfloat16(), W.float())
    with pytest.raises(ValueError, match=r"weight is on device 'meta' but x is on 'cpu'"):
        ct.conv2d(X, W.to("meta"))


def test_an_unsupported_device_is_named():
    with pytest.raises(ValueError, match=r"x is on device 'meta'; convcore.torch runs on 'cpu'"):
        ct.max_pool2d(X.to("meta"), 2)


# --------------------------------------------------------------------------
# the Conv2d module
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [{"stride": 2, "padding": 1, "groups": 2}, {"padding": "same", "dilation": 2, "bias": False},
     {"padding": "valid", "stride": (1, 2)}],
    ids=["s2-p1-g2", "same-d2-nobias", "valid-s12"],
)  # fmt: skip
def test_conv2d_module_matches_torch_nn_conv2d(kw):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(4, 6, 3, dtype=torch.float64, **kw)
    mod = ct.Conv2d(4, 6, 3, dtype=torch.float64, backend="numpy", **kw)
    mod.load_state_dict(ref.state_dict())
    x = _rand((2, 4, 9, 8))
    y, want = mod(x), ref(x)
    _close(y, want)
    g = _rand(tuple(want.shape), seed=5, grad=False)
    got = torch.autograd.grad(y, [x, *mod.parameters()], g)
    exp = torch.autograd.grad(want, [x, *ref.parameters()], g)
    for a, e in zip(got, exp, strict=True):
        _close(a, e)
    assert "backend='numpy'" in repr(mod)


def test_conv2d_module_refuses_other_padding_modes():
    with pytest.raises(ValueError, match=r"padding_mode='reflect' is not supported"):
        ct.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
