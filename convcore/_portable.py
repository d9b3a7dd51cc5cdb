"""The portable backend ``array_api``: im2col convolution on any array-API namespace.

Only the array API standard is used (through array-api-compat and
array-api-extra), so the same code runs on NumPy, CuPy, PyTorch, JAX, Dask and
array-api-strict.  im2col is a loop over the kernel offsets with strided slices
(one slice per offset, stacked); col2im is the same loop with slice-adds, so no
integer scatter with duplicate indices is ever needed and results are
deterministic on every namespace (Chainer's ``im2col_cpu`` / ``col2im_cpu``).
"""

from __future__ import annotations

from itertools import product

import array_api_compat
import array_api_extra as xpx

from ._version import __version__
from .geometry import ConvGeometry
from .hookspecs import hookimpl

__all__ = ["col2im", "conv", "conv_backward", "im2col"]


def _offset_slices(geom: ConvGeometry):
    """For each kernel offset, the strided slices of the padded input it reads."""
    axes = []
    for k, d, s, out in zip(geom.kernel_size, geom.dilation, geom.stride, geom.output_size):
        axes.append([slice(i * d, i * d + s * (out - 1) + 1, s) for i in range(k)])
    return [(slice(None), slice(None), *combo) for combo in product(*axes)]


def _pad(xp, x, geom: ConvGeometry):
    if not any(geom.padding):
        return x
    pairs = [(0, 0), (0, 0)] + [
        (geom.padding[2 * i], geom.padding[2 * i + 1]) for i in range(geom.nd)
    ]
    return xpx.pad(x, tuple(pairs), xp=xp)


def im2col(xp, x, geom: ConvGeometry):
    """Columns ``(N, C*prod(K), prod(out))`` in PyTorch ``unfold`` row order."""
    n, c = x.shape[0], x.shape[1]
    padded = _pad(xp, x, geom)
    cols = xp.stack([padded[idx] for idx in _offset_slices(geom)], axis=2)
    return xp.reshape(cols, (n, c * geom.kernel_numel, geom.output_numel))


def col2im(xp, cols, geom: ConvGeometry):
    """Overlap-sum ``(N, C*prod(K), prod(out))`` columns back to ``(N, C, *input_size)``."""
    n, k = cols.shape[0], geom.kernel_numel
    c = cols.shape[1] // k
    cols = xp.reshape(cols, (n, c, k, *geom.output_size))
    out = xp.zeros(
        (n, c, *geom.padded_size), dtype=cols.dtype, device=array_api_compat.device(cols)
    )
    for i, idx in enumerate(_offset_slices(geom)):
        out = xpx.at(out, idx).add(cols[:, :, i, ...])
    if not any(geom.padding):
        return out
    crop = tuple(slice(b, b + size) for b, size in zip(geom.pad_before, geom.input_size))
    return out[(slice(None), slice(None), *crop)]


def _grouped_cols(xp, x, geom, groups):
    n, c = x.shape[0], x.shape[1]
    cols = im2col(xp, x, geom)
    return xp.reshape(cols, (n, groups, (c // groups) * geom.kernel_numel, geom.output_numel))


def conv(xp, x, weight, bias, geom: ConvGeometry, groups: int):
    """Forward convolution: one (batched, grouped) GEMM over the columns."""
    n, f = x.shape[0], weight.shape[0]
    cols = _grouped_cols(xp, x, geom, groups)
    w = xp.reshape(weight, (groups, f // groups, cols.shape[2]))
    out = xp.reshape(xp.matmul(w, cols), (n, f, *geom.output_size))
    if bias is not None:
        out = out + xp.reshape(bias, (1, f) + (1,) * geom.nd)
    return out


def conv_backward(xp, grad_out, x, weight, geom: ConvGeometry, groups: int):
    """Gradients ``(dx, dw, db)`` of the forward convolution."""
    n, c, f = x.shape[0], x.shape[1], weight.shape[0]
    go = xp.reshape(grad_out, (n, groups, f // groups, geom.output_numel))
    db = xp.sum(grad_out, axis=(0, *range(2, 2 + geom.nd)))
    cols = _grouped_cols(xp, x, geom, groups)
    dw = xp.sum(xp.matmul(go, xp.matrix_transpose(cols)), axis=0)
    dw = xp.reshape(dw, weight.shape)
    w = xp.reshape(weight, (groups, f // groups, cols.shape[2]))
    dcols = xp.matmul(xp.matrix_transpose(w), go)
    dx = col2im(xp, xp.reshape(dcols, (n, c * geom.kernel_numel, geom.output_numel)), geom)
    return dx, dw, db


def _load():
    return {"im2col": im2col, "col2im": col2im, "conv": conv, "conv_backward": conv_backward}


@hookimpl
def convcore_register_backends(register):
    """Register the portable ``array_api`` backend (lowest priority, any namespace)."""
    from ._registry import ALL_OPS, INTEGER_DTYPES, BackendSpec

    # im2col and col2im only move (and add) data, so they take integer arrays too.
    movable = {"float32", "float64", *INTEGER_DTYPES}

    register(
        BackendSpec(
            name="array_api",
            load=_load,
            ops=ALL_OPS,
            dtypes={"float32", "float64"},
            namespaces=None,
            devices=None,
            spatial_dims=None,
            op_dtypes={"im2col": movable, "col2im": movable},
            priority=0,
            version=__version__,
            description="portable array-API implementation (any compliant namespace)",
        )
    )
