"""Padding modes other than zeros: the padded border reads pixels of the image.

``padding_mode`` (im2col, col2im, the convolution, pooling) says what the padding
cells hold:

* ``"zeros"``: 0 (the default; the kernels pad implicitly);
* ``"reflect"``: the image mirrored at its edge, the edge pixel not repeated
  (``d c b | a b c d | c b a``; PyTorch's and NumPy's ``"reflect"``);
* ``"symmetric"``: mirrored with the edge pixel repeated (``c b a | a b c d | d c b``;
  MATLAB ``padarray``'s and NumPy's ``"symmetric"``);
* ``"replicate"``: the edge pixel repeated (``a a a | a b c d | d d d``; NumPy's ``"edge"``);
* ``"circular"``: the image wrapped around (``b c d | a b c d | a b c``; NumPy's ``"wrap"``).

Padding of any width is defined (the mirror and the wrap repeat, as in NumPy).
The core pads the image explicitly with :func:`pad` (one ``take`` per spatial
axis, any array library) and runs the backend's kernel on the padded image with
no padding and the same windows (:func:`padded_geometry`); the gradient comes back
on the padded image and :func:`fold` adds each border cell onto the pixel it was
read from, so every backward pass is the exact adjoint of its forward pass.
A pooling's ceil overhang is not padding: it stays implicit (never the maximum,
never counted by the average).
"""

from __future__ import annotations

import array_api_compat

from .geometry import ConvGeometry

__all__ = ["PADDING_MODES", "check_padding_mode", "fold", "original_index", "pad"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")


def check_padding_mode(value) -> str:
    """``value`` as one of :data:`PADDING_MODES` (a TypeError/ValueError naming it otherwise)."""
    if not isinstance(value, str):
        raise TypeError(
            f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {value!r}"
        )
    mode = value.lower()
    if mode == "zero":
        mode = "zeros"
    if mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {value!r}"
        )
    return mode


def source_indices(n: int, before: int, after: int, mode: str) -> list[int]:
    """For each of the ``before + n + after`` cells of a padded axis, the pixel it holds."""
    out = []
    for p in range(-before, n + after):
        if mode == "replicate":
            i = min(max(p, 0), n - 1)
        elif mode == "circular":
            i = p % n
        elif mode == "reflect":
            if n == 1:
                i = 0
            else:
                m = p % (2 * n - 2)
                i = m if m < n else 2 * n - 2 - m
        elif mode == "symmetric":
            m = p % (2 * n)
            i = m if m < n else 2 * n - 1 - m
        else:  # pragma: no cover - check_padding_mode admits nothing else
            raise ValueError(mode)
        out.append(i)
    return out


def padded_geometry(geom: ConvGeometry) -> ConvGeometry:
    """The same windows over the explicitly padded image: no padding but the overhang."""
    size = tuple(
        n + b + a for n, b, a in zip(geom.input_size, geom.pad_before, geom.requested_padding[1::2])
    )
    padding = tuple(p for o in geom.overhang for p in (0, o))
    return ConvGeometry(
        size,
        geom.kernel_size,
        geom.stride,
        padding,
        geom.dilation,
        geom.output_size,
        geom.overhang,
        geom.output_padding,
    )


def _axis_tables(geom: ConvGeometry, mode: str) -> list[list[int]]:
    after = geom.requested_padding[1::2]
    return [
        source_indices(n, b, a, mode) for n, b, a in zip(geom.input_size, geom.pad_before, after)
    ]


def pad(xp, x, geom: ConvGeometry, mode: str):
    """``x`` (channels-first) padded by ``geom``'s requested padding in ``mode``, and the
    geometry of the same windows over the result (:func:`padded_geometry`)."""
    dev = array_api_compat.device(x)
    for axis, (table, b, a) in enumerate(
        zip(_axis_tables(geom, mode), geom.pad_before, geom.requested_padding[1::2])
    ):
        if b or a:
            index = xp.asarray(table, device=dev)  # the default integer (int32 on JAX)
            x = xp.take(x, index, axis=2 + axis)
    return x, padded_geometry(geom)


def fold(xp, g, geom: ConvGeometry, mode: str):
    """The adjoint of :func:`pad`: each border cell of ``g`` added onto the pixel it holds.

    ``g`` is ``(N, C, *padded)``; returns ``(N, C, *geom.input_size)``.  One
    slice-add per border cell (the borders are at most a few kernel widths), so
    no scatter with repeated indices is needed and the sums are deterministic.
    """
    lead = (slice(None), slice(None))
    for axis, (table, b, a) in enumerate(
        zip(_axis_tables(geom, mode), geom.pad_before, geom.requested_padding[1::2])
    ):
        if not (b or a):
            continue
        n = geom.input_size[axis]
        rest = (slice(None),) * (geom.nd - axis - 1)
        before = (slice(None),) * axis
        out = g[(*lead, *before, slice(b, b + n), *rest)]
        for j in [*range(b), *range(b + n, b + n + a)]:
            i = table[j]
            src = g[(*lead, *before, slice(j, j + 1), *rest)]
            dst = (*lead, *before, slice(i, i + 1), *rest)
            out = _add_at(xp, out, dst, src)
        g = out
    return g


def _add_at(xp, out, index, values):
    """``out[index] += values`` as a new array (functional, for every namespace)."""
    import array_api_extra as xpx

    return xpx.at(out, index).add(values, copy=True, xp=xp)


def original_index(xp, index, geom: ConvGeometry, mode: str):
    """Flat indices into the padded image (max pooling's ``return_indices``) as flat
    indices into the image itself; -1 (a window with no real cell) stays -1."""
    sizes = geom.input_size
    padded = padded_geometry(geom).input_size
    tables = _axis_tables(geom, mode)
    dev = array_api_compat.device(index)
    valid = index >= 0
    rest = xp.where(valid, index, xp.zeros_like(index))
    coords = []
    for size in reversed(padded):
        coords.append(rest % size)
        rest = rest // size
    coords.reverse()
    flat = xp.zeros_like(index)
    for coord, table, size in zip(coords, tables, sizes):
        mapped = xp.take(xp.asarray(table, dtype=index.dtype, device=dev), xp.reshape(coord, (-1,)))
        flat = flat * size + xp.reshape(mapped, coord.shape)
    return xp.where(valid, flat, index)
