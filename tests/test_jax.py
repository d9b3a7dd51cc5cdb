"""convcore on JAX arrays under JAX's transforms: grad, vmap, jit and their mixes.

convcore runs on JAX through the portable ``array_api`` backend; JAX differentiates,
batches and compiles through its array operations (no custom rules).  A traced
array has no device, so any mix of traced and concrete arguments must pass the
device check, while two concrete arrays on different devices must still fail.

Every test compares values: with the naive loop oracle (``tests/naive.py``),
with convcore's own backward functions (the hand-written gradients, run eagerly
on the same JAX arrays), and for the convolution with the gradient of
``jax.lax.conv_general_dilated``.  float32 (JAX's default) throughout;
float64 under ``jax.enable_x64``; float16 and bfloat16 under jit and grad.

Compiling is what JAX spends its time on here: run eagerly, every array
operation is compiled on its own (a transform of a convolution, about 30 of them),
under ``jax.jit`` the whole program once, 5-10 times faster.  So the arrays are
small, most transforms run under ``jit`` (``jit(grad(f))``, ``jit(vmap(f))``: the
same tracers reach convcore), and the eager forms the bug reports used (``grad``
and ``vmap`` of a convolution) run once each; :func:`test_every_op_traces` traces
(without compiling) every operator at every rank with all arguments traced.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import naive
import numpy as np
import pytest
from helpers import HALF_TOL

import convcore
from convcore._registry import device_kind
from convcore._validation import check_same, device_of

jax = pytest.importorskip("jax")
jnp = jax.numpy

F32 = np.float32

#: One geometry per rank: per-axis strides, asymmetric padding ((before, after) per
#: axis), dilation and groups.  ``x`` is (N, C, *size), ``w`` (F, C/groups, *kernel).
GEOMETRIES = {
    1: dict(x=(2, 4, 9), w=(6, 2, 3), stride=(2,), padding=(1, 2), dilation=(2,), groups=2),
    2: dict(
        x=(2, 4, 7, 6),
        w=(6, 2, 3, 2),
        stride=(2, 1),
        padding=(1, 0, 2, 1),
        dilation=(1, 2),
        groups=2,
    ),
    3: dict(
        x=(1, 2, 5, 4, 5),
        w=(3, 2, 2, 3, 2),
        stride=(1, 2, 1),
        padding=(0, 1, 1, 0, 1, 1),
        dilation=(2, 1, 1),
        groups=1,
    ),
}


def _opts(nd: int) -> dict:
    """``stride``, ``padding``, ``dilation``, ``groups`` of rank ``nd`` (convcore and naive)."""
    g = GEOMETRIES[nd]
    return {k: g[k] for k in ("stride", "padding", "dilation", "groups")}


def _geo(nd: int) -> tuple:
    """``(stride, padding, dilation)`` as :mod:`naive` takes them."""
    g = GEOMETRIES[nd]
    return g["stride"], g["padding"], g["dilation"]


def _problem(nd: int, seed: int = 0):
    """``x, w, b, g`` (float32 NumPy) of rank ``nd``; ``g`` has the output's shape."""
    rng = np.random.default_rng([seed, nd])
    spec = GEOMETRIES[nd]
    x = rng.standard_normal(spec["x"]).astype(F32)
    w = rng.standard_normal(spec["w"]).astype(F32)
    b = rng.standard_normal(spec["w"][0]).astype(F32)
    out = naive.conv(x, w, b, *_geo(nd), spec["groups"])
    g = rng.standard_normal(out.shape).astype(F32)
    return x, w, b, g


def _lax_conv(x, w, b, nd):
    """The same convolution by ``jax.lax.conv_general_dilated`` (an independent oracle)."""
    stride, padding, dilation = _geo(nd)
    pairs = [(padding[2 * i], padding[2 * i + 1]) for i in range(nd)]
    out = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=pairs,
        rhs_dilation=dilation,
        feature_group_count=GEOMETRIES[nd]["groups"],
        precision=jax.lax.Precision.HIGHEST,
    )
    return out + jnp.reshape(b, (1, -1) + (1,) * nd)


def _np(a) -> np.ndarray:
    assert isinstance(a, jax.Array), type(a)
    return np.asarray(a)


def _close(assert_close, got, want, what=""):
    """``got`` (a JAX float32 array) within the suite's float32 tolerance of ``want``."""
    assert got.dtype == jnp.float32, (what, got.dtype)
    assert_close(_np(got), want, err_msg=what)


# --------------------------------------------------------------------------
# Devices: a tracer has none
# --------------------------------------------------------------------------


def test_a_tracer_has_no_device_and_matches_any(assert_close):
    """``device_of`` is None for a tracer; ``check_same`` and dispatch accept it."""
    w = jnp.ones((2, 2))
    seen = {}

    def f(x):
        seen["device"] = device_of(x)
        seen["kind"] = device_kind("jax", x)
        check_same(jnp, "x", x, weight=w)  # traced vs concrete: compatible
        check_same(jnp, "weight", w, x=x)
        seen["backend"] = convcore.resolve_backend("conv", jnp.reshape(x, (1, 1, 2, 2)))
        return x * 2

    _close(assert_close, jax.jit(f)(w), np.full((2, 2), 2.0))
    assert seen == {"device": None, "kind": jax.devices()[0].platform, "backend": "array_api"}
    assert device_of(w) == jax.devices()[0]
    assert device_kind("jax", w) == "cpu"
    with pytest.raises(TypeError, match="dtype"):  # the dtype is still checked
        jax.jit(lambda x: check_same(jnp, "x", x, weight=jnp.ones(2, jnp.int32)))(w)


_TWO_DEVICES = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jax.numpy as jnp, numpy as np, convcore
    d0, d1 = jax.devices()
    x = jax.device_put(jnp.ones((1, 2, 5, 5)), d0)
    w1 = jax.device_put(jnp.ones((3, 2, 3, 3)), d1)
    b0 = jax.device_put(jnp.ones(3), d0)
    b1 = jax.device_put(jnp.ones(3), d1)
    def refused(call):
        try:
            call()
        except ValueError as exc:
            assert "same device" in str(exc), exc
            return str(exc)
        raise AssertionError("not refused")
    # two concrete devices: refused, eagerly and with a tracer among the arguments
    print(refused(lambda: convcore.conv2d(x, w1)))
    print(refused(lambda: jax.jit(lambda x: convcore.conv2d(x, w1, b0))(x)))
    print(refused(lambda: jax.grad(lambda x: convcore.conv2d(x, w1, b0).sum())(x)))
    # one device (d1) with a tracer: runs, on d1
    x1 = jax.device_put(x, d1)
    y = jax.jit(lambda w: convcore.conv2d(x1, w, b1))(w1)
    assert y.devices() == {d1}, y.devices()
    assert float(y[0, 0, 2, 2]) == 19.0
    dw = jax.grad(lambda w: convcore.conv2d(x1, w, b1).sum())(w1)
    assert dw.devices() == {d1} and float(dw[0, 0, 1, 1]) == 9.0
    print("ok")
    """
)


def test_two_concrete_devices_are_refused_but_a_tracer_is_not(tmp_path):
    """Two JAX CPU devices (a fresh process): different concrete devices are an error,
    also when a tracer is among the arguments; one device plus tracers runs there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVCORE_", "XLA_"))}
    proc = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "ok", proc.stdout
    assert lines[0].startswith("weight is on device CpuDevice(id=1) but x is on CpuDevice(id=0)")
    # x is traced: weight and bias, both concrete, are compared with each other
    assert lines[1].startswith("bias is on device CpuDevice(id=0) but weight is on CpuDevice(id=1)")
    assert lines[2].startswith("bias is on device CpuDevice(id=0) but weight is on CpuDevice(id=1)")


# --------------------------------------------------------------------------
# The convolution: grad, value_and_grad, jit, jit of grad
# --------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_grad_matches_conv_backward_lax_and_the_oracle(nd, assert_close):
    """grad of ``sum(conv(x, w, b) * g)``: w.r.t. all three, w alone (x concrete), x alone."""
    x, w, b, g = _problem(nd)
    xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
    opts = _opts(nd)

    def loss(x, w, b):
        return jnp.sum(convcore.conv(x, w, b, **opts) * gj)

    def lax_loss(x, w, b):
        return jnp.sum(_lax_conv(x, w, b, nd) * gj)

    want = naive.conv_backward(g, x, w, *_geo(nd), opts["groups"])
    mine = jax.jit(lambda g, x, w: convcore.conv_backward(g, x, w, **opts))(gj, xj, wj)
    lax = jax.jit(jax.grad(lax_loss, argnums=(0, 1, 2)))(xj, wj, bj)
    every = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(xj, wj, bj)
    for name, got, ref, lx, own in zip(("dx", "dw", "db"), every, want, lax, mine):
        _close(assert_close, got, ref, name)
        _close(assert_close, got, _np(lx), f"{name} vs lax")
        _close(assert_close, own, ref, f"conv_backward {name}")
    dw = jax.jit(jax.grad(lambda w: loss(xj, w, bj)))(wj)
    _close(assert_close, dw, want[1], "dw alone")
    _close(assert_close, jax.jit(jax.grad(lambda x: loss(x, wj, bj)))(xj), want[0], "dx alone")
    _close(assert_close, jax.jit(jax.grad(lambda b: loss(xj, wj, b)))(bj), want[2], "db alone")
    if nd == 2:  # eagerly, as reported: x concrete, w traced
        _close(assert_close, jax.grad(lambda w: loss(xj, w, bj))(wj), want[1], "eager dw")


def test_value_and_grad(assert_close):
    x, w, b, g = _problem(2)
    xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
    opts = _opts(2)
    value, (dw, db) = jax.value_and_grad(
        lambda w, b: jnp.sum(convcore.conv2d(xj, w, b, **opts) * gj), argnums=(0, 1)
    )(wj, bj)
    y = naive.conv(x, w, b, *_geo(2), opts["groups"])
    _, want_dw, want_db = naive.conv_backward(g, x, w, *_geo(2), opts["groups"])
    np.testing.assert_allclose(float(value), float(np.sum(y * g)), rtol=1e-4)
    _close(assert_close, dw, want_dw, "dw")
    _close(assert_close, db, want_db, "db")


def test_jit_with_traced_static_and_concrete_arguments(assert_close):
    """x traced and w concrete, w traced and x concrete, all traced with the geometry
    static (``static_argnames``), and bias alone traced."""
    x, w, b, _ = _problem(2)
    xj, wj, bj = map(jnp.asarray, (x, w, b))
    opts = _opts(2)
    want = naive.conv(x, w, b, *_geo(2), opts["groups"])
    want_nobias = naive.conv(x, w, None, *_geo(2), opts["groups"])
    _close(assert_close, jax.jit(lambda x: convcore.conv2d(x, wj, bj, **opts))(xj), want, "x")
    _close(assert_close, jax.jit(lambda w: convcore.conv2d(xj, w, **opts))(wj), want_nobias, "w")
    _close(assert_close, jax.jit(lambda b: convcore.conv2d(xj, wj, b, **opts))(bj), want, "b")
    static = jax.jit(convcore.conv2d, static_argnames=("stride", "padding", "dilation", "groups"))
    _close(assert_close, static(xj, wj, bj, **opts), want, "static geometry")
    # the static arguments select the compiled program: another geometry, another result
    other = naive.conv(x, w, b, (1, 1), (0, 0, 0, 0), (1, 1), opts["groups"])
    _close(assert_close, static(xj, wj, bj, groups=opts["groups"]), other, "defaults")


def test_jit_of_grad_and_grad_of_jit(assert_close):
    x, w, b, g = _problem(2)
    xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
    opts = _opts(2)

    def loss(x, w, b):
        return jnp.sum(convcore.conv2d(x, w, b, **opts) * gj)

    want = naive.conv_backward(g, x, w, *_geo(2), opts["groups"])
    got = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(xj, wj, bj)
    for name, a, ref in zip(("dx", "dw", "db"), got, want):
        _close(assert_close, a, ref, f"jit(grad) {name}")
    dw = jax.grad(jax.jit(lambda w: loss(xj, w, bj)))(wj)
    _close(assert_close, dw, want[1], "grad(jit) dw")


def test_conv_backward_under_jit_and_vmap(assert_close):
    """convcore's own backward with grad_out traced and x, w concrete; vmapped over grad_out."""
    x, w, _, g = _problem(2)
    xj, wj, gj = map(jnp.asarray, (x, w, g))
    opts = _opts(2)
    want = naive.conv_backward(g, x, w, *_geo(2), opts["groups"])
    got = jax.jit(lambda g: convcore.conv2d_backward(g, xj, wj, **opts))(gj)
    for name, a, ref in zip(("dx", "dw", "db"), got, want):
        _close(assert_close, a, ref, f"jit {name}")
    gs = jnp.stack([gj, 2 * gj])
    got = jax.jit(jax.vmap(lambda g: convcore.conv2d_backward(g, xj, wj, **opts)))(gs)
    for name, a, ref in zip(("dx", "dw", "db"), got, want):
        _close(assert_close, a, np.stack([ref, 2 * ref]), f"vmap {name}")


# --------------------------------------------------------------------------
# vmap
# --------------------------------------------------------------------------


def test_vmap_over_x_over_w_over_both_and_nested(assert_close):
    x, w, b, _ = _problem(2)
    opts = _opts(2)
    rng = np.random.default_rng(7)
    xs = np.stack([x, rng.standard_normal(x.shape).astype(F32)])
    ws = np.stack([w, rng.standard_normal(w.shape).astype(F32), -w])
    xsj, wsj, xj, wj, bj = map(jnp.asarray, (xs, ws, x, w, b))

    def conv(x, w):
        return naive.conv(x, w, b, *_geo(2), opts["groups"])

    def f(x, w):
        return convcore.conv2d(x, w, bj, **opts)

    over_x = np.stack([conv(a, w) for a in xs])
    _close(assert_close, jax.vmap(lambda x: f(x, wj))(xsj), over_x, "eager, over x")
    _close(assert_close, jax.jit(jax.vmap(lambda x: f(x, wj)))(xsj), over_x, "over x")
    over_w = np.stack([conv(x, a) for a in ws])
    _close(assert_close, jax.jit(jax.vmap(lambda w: f(xj, w)))(wsj), over_w, "over w")
    pairs = np.stack([conv(xs[i], ws[i]) for i in range(2)])
    _close(assert_close, jax.jit(jax.vmap(f))(xsj, wsj[:2]), pairs, "both")
    nested = jax.jit(jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(0, None)))(xsj, wsj)
    table = np.stack([np.stack([conv(a, c) for c in ws]) for a in xs])
    _close(assert_close, nested, table, "nested")
    # in_axes over the batch axis itself: one sample at a time, through x[None]
    per_sample = jax.jit(jax.vmap(lambda xi: f(xi[None], wj)[0]))(xj)
    _close(assert_close, per_sample, conv(x, w), "per sample")


def test_per_example_gradients_by_vmap_of_grad(assert_close):
    """``vmap(grad)``: the weight gradient of every sample alone."""
    x, w, _, g = _problem(2)
    xj, wj, gj = map(jnp.asarray, (x, w, g))
    opts = _opts(2)

    def loss(w, xi, gi):
        return jnp.sum(convcore.conv2d(xi[None], w, **opts) * gi[None])

    got = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(wj, xj, gj)
    want = [
        naive.conv_backward(g[i : i + 1], x[i : i + 1], w, *_geo(2), opts["groups"])[1]
        for i in range(x.shape[0])
    ]
    _close(assert_close, got, np.stack(want))


# --------------------------------------------------------------------------
# im2col and col2im: each the other's gradient
# --------------------------------------------------------------------------


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_im2col_col2im_under_jit_grad_and_vmap(nd, assert_close):
    x, w, _, _ = _problem(nd)
    stride, padding, dilation = _geo(nd)
    kernel = w.shape[2:]
    size = x.shape[2:]
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    cols = naive.im2col(x, kernel, stride, padding, dilation)
    rng = np.random.default_rng(3)
    c = rng.standard_normal(cols.shape).astype(F32)
    xj, cj = jnp.asarray(x), jnp.asarray(c)
    got = jax.jit(lambda x: convcore.im2col(x, kernel, **kw))(xj)
    np.testing.assert_array_equal(_np(got), cols)  # data movement: exact
    img = naive.col2im(c, size, kernel, stride, padding, dilation)
    _close(assert_close, jax.jit(lambda c: convcore.col2im(c, size, kernel, **kw))(cj), img)
    # <im2col(x), c> = <x, col2im(c)>: the gradient of one is the other
    dx = jax.jit(jax.grad(lambda x: jnp.sum(convcore.im2col(x, kernel, **kw) * cj)))(xj)
    _close(assert_close, dx, img, "grad of im2col")
    dc = jax.jit(jax.grad(lambda c: jnp.sum(convcore.col2im(c, size, kernel, **kw) * xj)))(cj)
    _close(assert_close, dc, cols, "grad of col2im")
    if nd == 2:
        stacked = jnp.stack([xj, -xj])
        both = jax.jit(jax.vmap(lambda x: convcore.im2col(x, kernel, **kw)))(stacked)
        np.testing.assert_array_equal(_np(both), np.stack([cols, -cols]))


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------

POOL = dict(kernel=(3, 2), stride=(2, 1), padding=(1, 1, 0, 1), dilation=(1, 2))


def _pool_input(seed=5):
    # distinct values (no ties): the gradient of a maximum is then unambiguous
    rng = np.random.default_rng(seed)
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6).astype(F32) / 10
    return x


def test_max_pool_grad_jit_and_vmap(assert_close):
    """grad of max pooling = convcore's max_pool2d_backward = the oracle; indices under jit."""
    x = _pool_input()
    k, s, p, d = POOL["kernel"], POOL["stride"], POOL["padding"], POOL["dilation"]
    kw = dict(stride=s, padding=((p[0], p[1]), (p[2], p[3])), dilation=d, ceil_mode=True)
    ref_out, ref_idx = naive.max_pool(x, k, s, p, d, True)
    g = np.random.default_rng(6).standard_normal(ref_out.shape).astype(F32)
    want_dx = naive.max_pool_backward(g, x, k, s, p, d, True)
    xj, gj = jnp.asarray(x), jnp.asarray(g)

    out, idx = jax.jit(lambda x: convcore.max_pool2d(x, k, return_indices=True, **kw))(xj)
    np.testing.assert_array_equal(_np(out), ref_out)
    assert idx.dtype == jnp.int32  # JAX without x64: no int64
    np.testing.assert_array_equal(_np(idx), ref_idx)
    dx = jax.jit(jax.grad(lambda x: jnp.sum(convcore.max_pool2d(x, k, **kw) * gj)))(xj)
    _close(assert_close, dx, want_dx, "grad")
    traced_g = jax.jit(lambda g: convcore.max_pool2d_backward(g, xj, k, **kw))(gj)
    _close(assert_close, traced_g, want_dx, "jit backward, grad_out traced")
    traced_x = jax.jit(lambda x: convcore.max_pool2d_backward(gj, x, k, **kw))(xj)
    _close(assert_close, traced_x, want_dx, "jit backward, x traced")
    both = jax.jit(jax.vmap(lambda x: convcore.max_pool2d(x, k, **kw)))(jnp.stack([xj, -xj]))
    minus = naive.max_pool(-x, k, s, p, d, True)[0]
    np.testing.assert_array_equal(_np(both), np.stack([ref_out, minus]))


def test_avg_pool_grad_jit_and_vmap(assert_close):
    x = _pool_input()
    k, s, p = (3, 2), (2, 2), (1, 1, 0, 1)
    kw = dict(stride=s, padding=((1, 1), (0, 1)), ceil_mode=True, count_include_pad=False)
    ref = naive.avg_pool(x, k, s, p, True, False, None)
    g = np.random.default_rng(8).standard_normal(ref.shape).astype(F32)
    want_dx = naive.avg_pool_backward(g, x.shape[2:], k, s, p, True, False, None)
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    _close(assert_close, jax.jit(lambda x: convcore.avg_pool2d(x, k, **kw))(xj), ref, "jit")
    dx = jax.jit(jax.grad(lambda x: jnp.sum(convcore.avg_pool2d(x, k, **kw) * gj)))(xj)
    _close(assert_close, dx, want_dx, "grad")
    own = jax.jit(lambda g: convcore.avg_pool2d_backward(g, x.shape, k, **kw))(gj)
    _close(assert_close, own, want_dx, "jit backward")
    both = jax.jit(jax.vmap(lambda g: convcore.avg_pool2d_backward(g, x.shape, k, **kw)))(
        jnp.stack([gj, 3 * gj])
    )
    _close(assert_close, both, np.stack([want_dx, 3 * want_dx]), "vmap backward")


# --------------------------------------------------------------------------
# The transposed convolution
# --------------------------------------------------------------------------


def test_conv_transpose_grad_jit_and_vmap(assert_close):
    """grad of ``sum(conv_transpose(x, w, b) * g)`` = conv_transpose_backward = the oracle."""
    rng = np.random.default_rng(9)
    stride, padding, output_padding, dilation, groups = (2, 1), (1, 0, 0, 1), (1, 0), (1, 2), 2
    x = rng.standard_normal((2, 4, 4, 3)).astype(F32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(F32)  # C_in, C_out/groups, *kernel
    b = rng.standard_normal(6).astype(F32)
    geo = (stride, padding, output_padding, dilation, groups)
    ref = naive.conv_transpose(x, w, b, *geo)
    g = rng.standard_normal(ref.shape).astype(F32)
    want = naive.conv_transpose_backward(g, x, w, *geo)
    xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
    kw = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )

    def loss(x, w, b):
        return jnp.sum(convcore.conv_transpose2d(x, w, b, **kw) * gj)

    _close(assert_close, jax.jit(lambda w: convcore.conv_transpose2d(xj, w, bj, **kw))(wj), ref)
    got = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(xj, wj, bj)
    own = jax.jit(lambda g: convcore.conv_transpose2d_backward(g, xj, wj, **kw))(gj)
    for name, a, o, r in zip(("dx", "dw", "db"), got, own, want):
        _close(assert_close, a, r, f"grad {name}")
        _close(assert_close, o, r, f"jit backward {name}")
    ws = jnp.stack([wj, -wj])
    both = jax.jit(jax.vmap(lambda w: convcore.conv_transpose2d(xj, w, **kw)))(ws)
    nobias = naive.conv_transpose(x, w, None, *geo)
    _close(assert_close, both, np.stack([nobias, -nobias]), "vmap over w")


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


def test_layers_under_jit_and_grad(assert_close):
    """A layer inside jit and grad: its weight concrete, or traced when the layer is built
    inside the function.  A layer caches its input, so forward and backward run in one
    traced function (a forward under jit caches a tracer, useless outside it)."""
    x, w, b, g = _problem(2)
    xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
    opts = _opts(2)
    want_y = naive.conv(x, w, b, *_geo(2), opts["groups"])
    want = naive.conv_backward(g, x, w, *_geo(2), opts["groups"])

    def both(x, g):
        layer = convcore.Conv2D(wj, bj, **opts)
        return layer.forward(x), layer.backward(g)

    y, grads = jax.jit(both)(xj, gj)
    _close(assert_close, y, want_y, "forward")
    for name, got, ref in zip(("dx", "dw", "db"), grads, want):
        _close(assert_close, got, ref, f"backward {name}")
    loss = lambda w: jnp.sum(convcore.Conv2D(w, bj, **opts)(xj) * gj)  # noqa: E731
    dw = jax.jit(jax.grad(loss))(wj)
    _close(assert_close, dw, want[1], "grad through a layer built on a traced weight")

    xp = jnp.asarray(_pool_input())
    gp = jnp.ones((2, 3, 3, 3), jnp.float32)

    def pool_both(x, g):
        pool = convcore.MaxPool2D(2)
        return jnp.sum(pool(x) * g), pool.backward(g)

    (_, own), dx = jax.jit(jax.value_and_grad(pool_both, has_aux=True))(xp, gp)
    want_dx = naive.max_pool_backward(
        np.ones((2, 3, 3, 3)), np.asarray(xp), (2, 2), (2, 2), (0,) * 4, (1, 1), False
    )
    _close(assert_close, dx, want_dx, "grad through MaxPool2D")
    _close(assert_close, own, want_dx, "MaxPool2D.backward")


# --------------------------------------------------------------------------
# Nothing forces a concrete value: every operator traces with every array traced
# --------------------------------------------------------------------------


def _trace_table():
    """``(name, function of arrays, NumPy arguments)``: every operator at every rank."""
    rows = []
    for nd in (1, 2, 3):
        x, w, b, g = _problem(nd)
        opts = _opts(nd)
        kernel, size = w.shape[2:], x.shape[2:]
        geo = {k: opts[k] for k in ("stride", "padding", "dilation")}
        cols = naive.im2col(x, kernel, *_geo(nd))
        conv = getattr(convcore, f"conv{nd}d")
        back = getattr(convcore, f"conv{nd}d_backward")
        mp = getattr(convcore, f"max_pool{nd}d")
        mpb = getattr(convcore, f"max_pool{nd}d_backward")
        ap = getattr(convcore, f"avg_pool{nd}d")
        apb = getattr(convcore, f"avg_pool{nd}d_backward")
        ct = getattr(convcore, f"conv_transpose{nd}d")
        ctb = getattr(convcore, f"conv_transpose{nd}d_backward")
        pooled = naive.max_pool(x, (2,) * nd, (2,) * nd, (0,) * (2 * nd), (1,) * nd, True)[0]
        wt = np.ones((x.shape[1], 3, *kernel), F32)  # C_in, C_out, *kernel
        ty = naive.conv_transpose(
            x, wt, None, (2,) * nd, (0,) * (2 * nd), (1,) * nd, (1,) * nd, 1
        ).astype(F32)
        rows += [
            (f"conv{nd}d", lambda x, w, b, c=conv, o=opts: c(x, w, b, **o), (x, w, b)),
            (f"conv{nd}d_backward", lambda g, x, w, f=back, o=opts: f(g, x, w, **o), (g, x, w)),
            (f"im2col {nd}-D", lambda x, k=kernel, o=geo: convcore.im2col(x, k, **o), (x,)),
            (
                f"col2im {nd}-D",
                lambda c, s=size, k=kernel, o=geo: convcore.col2im(c, s, k, **o),
                (cols,),
            ),
            (
                f"max_pool{nd}d",
                lambda x, f=mp: f(x, 2, ceil_mode=True, return_indices=True),
                (x,),
            ),
            (
                f"max_pool{nd}d_backward",
                lambda g, x, f=mpb: f(g, x, 2, ceil_mode=True),
                (pooled, x),
            ),
            (f"avg_pool{nd}d", lambda x, f=ap: f(x, 2, padding=1, count_include_pad=False), (x,)),
            (
                f"avg_pool{nd}d_backward",
                lambda g, f=apb, s=x.shape: f(g, s, 2, ceil_mode=True),
                (pooled,),
            ),
            (
                f"conv_transpose{nd}d",
                lambda x, w, f=ct: f(x, w, stride=2, output_padding=1),
                (x, wt),
            ),
            (
                f"conv_transpose{nd}d_backward",
                lambda g, x, w, f=ctb: f(g, x, w, stride=2, output_padding=1),
                (ty, x, wt),
            ),
        ]
    return rows


TRACE_TABLE = _trace_table()


@pytest.mark.parametrize(("name", "func", "args"), TRACE_TABLE, ids=[r[0] for r in TRACE_TABLE])
def test_every_op_traces(name, func, args):
    """``jax.make_jaxpr`` with every array traced: a Python ``int()``, ``bool()``,
    ``float()`` or ``__array__`` on an array value would raise here.  The traced
    shapes and dtypes are those of the NumPy backend's results."""
    numpy_out = func(*args)
    jaxpr = jax.make_jaxpr(func)(*(jnp.asarray(a) for a in args))
    outs = numpy_out if isinstance(numpy_out, tuple) else (numpy_out,)
    assert [tuple(v.aval.shape) for v in jaxpr.jaxpr.outvars] == [o.shape for o in outs]
    got = [np.dtype(v.aval.dtype) for v in jaxpr.jaxpr.outvars]
    want = [np.dtype(np.int32 if o.dtype == np.int64 else o.dtype) for o in outs]
    assert got == want, name


# --------------------------------------------------------------------------
# Precision: float16 and bfloat16 under jit and grad; float64 with x64
# --------------------------------------------------------------------------


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_under_jit_and_grad(half):
    """Half input, half output, computed in float32 and rounded once (HALF_TOL)."""
    x, w, b, g = _problem(2)
    dt = getattr(jnp, half)
    xh, wh, bh, gh = (jnp.asarray(a).astype(dt) for a in (x, w, b, g))
    rx, rw, rb, rg = (np.asarray(a).astype(np.float64) for a in (xh, wh, bh, gh))
    opts = _opts(2)
    tol = HALF_TOL[half]

    def check(got, want, what, factor=1):
        assert got.dtype == dt, (what, got.dtype)
        scale = max(1.0, float(np.max(np.abs(want))))
        got = np.asarray(got).astype(np.float64)
        atol = factor * tol * scale
        np.testing.assert_allclose(got, want, rtol=factor * tol, atol=atol, err_msg=what)

    y = jax.jit(lambda x, w, b: convcore.conv2d(x, w, b, **opts))(xh, wh, bh)
    check(y, naive.conv(rx, rw, rb, *_geo(2), opts["groups"]), "jit forward")
    dw = jax.jit(
        jax.grad(lambda w: jnp.sum(convcore.conv2d(xh, w, **opts).astype(jnp.float32) * gh))
    )(wh)
    _, want_dw, _ = naive.conv_backward(rg, rx, rw, *_geo(2), opts["groups"])
    # the cotangent is rounded to the half type before the float32 computation: two roundings
    check(dw, want_dw, "grad dw", factor=2)
    xp = jnp.asarray(_pool_input()).astype(dt)
    rp = np.asarray(xp).astype(np.float64)
    mp, ap = jax.jit(lambda x: (convcore.max_pool2d(x, 3, 2), convcore.avg_pool2d(x, 3, 2)))(xp)
    check(mp, naive.max_pool(rp, (3, 3), (2, 2), (0,) * 4, (1, 1), False)[0], "max_pool")
    check(ap, naive.avg_pool(rp, (3, 3), (2, 2), (0,) * 4, False, True, None), "avg_pool")


def test_float64_with_x64(assert_close):
    """With ``jax.enable_x64`` the float64 path runs in float64: the float64 tolerance
    holds, and max pooling's indices are int64."""
    x, w, b, g = (a.astype(np.float64) for a in _problem(2))
    opts = _opts(2)
    with jax.enable_x64(True):
        xj, wj, bj, gj = map(jnp.asarray, (x, w, b, g))
        assert xj.dtype == jnp.float64
        y = jax.jit(lambda x: convcore.conv2d(x, wj, bj, **opts))(xj)
        dw = jax.jit(jax.grad(lambda w: jnp.sum(convcore.conv2d(xj, w, bj, **opts) * gj)))(wj)
        out, idx = jax.jit(lambda x: convcore.max_pool2d(x, 2, return_indices=True))(xj)
        assert y.dtype == dw.dtype == out.dtype == jnp.float64 and idx.dtype == jnp.int64
        assert_close(np.asarray(y), naive.conv(x, w, b, *_geo(2), opts["groups"]))
        assert_close(np.asarray(dw), naive.conv_backward(g, x, w, *_geo(2), opts["groups"])[1])
        ref_out, ref_idx = naive.max_pool(x, (2, 2), (2, 2), (0,) * 4, (1, 1), False)
        np.testing.assert_array_equal(np.asarray(idx), ref_idx)
        np.testing.assert_array_equal(np.asarray(out), ref_out)
