"""Drawing the im2col columns of an input (matplotlib, imported on use).

:func:`draw_im2col` is public through :mod:`convcore.teaching`; the cell-grid
helpers here also draw the other pictures of the documentation
(``docs/_docgen.py``).  matplotlib is the ``plot`` extra: nothing here imports it
at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._api import im2col
from .geometry import conv_geometry

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_im2col"]

_PAD_COLOR = (0.88, 0.88, 0.88, 1.0)


def _pixel_colors(n: int) -> list[tuple[float, ...]]:
    """A distinct, light colour per pixel number 1..n (index 0: padding)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    colors = [_PAD_COLOR]
    for k in range(n):
        r, g, b, _ = cmap(k % 20)
        colors.append((0.55 * r + 0.45, 0.55 * g + 0.45, 0.55 * b + 0.45, 1.0))
    return colors


def _grid(
    ax: Axes,
    labels: np.ndarray,
    colors: Sequence[Sequence[tuple[float, ...]]],
    *,
    hatch: np.ndarray | None = None,
    fontsize: float = 9,
) -> None:
    """Draw a matrix as coloured, labelled cells, row 0 at the top."""
    from matplotlib.patches import Rectangle

    n_rows, n_cols = labels.shape
    for r in range(n_rows):
        for c in range(n_cols):
            ax.add_patch(
                Rectangle(
                    (c, r),
                    1,
                    1,
                    facecolor=colors[r][c],
                    edgecolor="white",
                    linewidth=1.0,
                    hatch="///" if hatch is not None and hatch[r, c] else None,
                )
            )
            ax.text(
                c + 0.5, r + 0.5, str(labels[r, c]), ha="center", va="center", fontsize=fontsize
            )
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_aspect("equal")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0, labelsize=fontsize - 1)


def _outline(ax: Axes, x0: float, y0: float, width: float, height: float, color="black") -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle((x0, y0), width, height, fill=False, edgecolor=color, linewidth=2.5, zorder=5)
    )


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("drawing needs matplotlib: pip install 'convcore[plot]'") from None


def draw_im2col(
    input_size,
    kernel_size,
    *,
    stride=1,
    padding=0,
    dilation=1,
    highlight: int = 0,
    title: str | None = None,
    backend: str | None = "array_api",
) -> Figure:
    """Draw which pixel lands in which row and column of ``X_col = im2col(x)``.

    The image (one channel of size ``input_size``) holds its own pixel numbers
    ``h*W + w + 1``; the left panel shows it with the padding (hatched, reads
    0), the right panel the columns :func:`convcore.im2col` makes of it, each
    cell coloured like the pixel it came from.  Column ``highlight`` and its
    receptive field are outlined.

    Parameters
    ----------
    input_size : (int, int)
        ``(H, W)``.
    kernel_size, stride, padding, dilation
        As for :func:`convcore.im2col`.
    highlight : int, optional
        The column (output position ``oh*Wo + ow``) to outline.
    title : str, optional
        First line of the figure's title (default: the geometry).
    backend : str, optional
        The backend that computes the columns (default: the portable one).

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot: save it with ``fig.savefig(path)``, or show it
        in a notebook by leaving it as a cell's last value.

    Examples
    --------
    >>> from convcore.teaching import draw_im2col        # doctest: +SKIP
    >>> draw_im2col((4, 4), (3, 3), stride=2, padding=1).savefig("im2col.png")  # doctest: +SKIP
    """
    _matplotlib()
    from matplotlib.figure import Figure

    geom = conv_geometry(input_size, kernel_size, stride=stride, padding=padding, dilation=dilation)
    if geom.nd != 2:
        raise ValueError(f"input_size must be (H, W), got {input_size!r}")
    h, w = geom.input_size
    kh, kw = geom.kernel_size
    dh, dw = geom.dilation
    top, bottom, left, right = geom.padding
    ho, wo = geom.output_size
    sh, sw = geom.stride
    if isinstance(highlight, bool) or not isinstance(highlight, (int, np.integer)):
        raise TypeError(f"highlight must be a column number, got {highlight!r}")
    if not 0 <= highlight < ho * wo:
        raise ValueError(f"highlight must be a column in [0, {ho * wo}), got {highlight}")
    image = np.arange(1, h * w + 1, dtype=np.float64).reshape(1, 1, h, w)
    cols = im2col(image, geom.kernel_size, stride=geom.stride, padding=geom.padding,
                  dilation=geom.dilation, backend=backend)  # fmt: skip
    ids = np.asarray(cols[0]).round().astype(np.int64)
    colors = _pixel_colors(h * w)

    padded = np.zeros((h + top + bottom, w + left + right), dtype=np.int64)
    padded[top : top + h, left : left + w] = np.arange(1, h * w + 1).reshape(h, w)
    pad_labels = np.where(padded > 0, padded.astype(str), "0")

    fig = Figure(
        figsize=(3.4 + 0.55 * (ids.shape[1] + padded.shape[1]), 1.2 + 0.45 * ids.shape[0]),
        layout="constrained",
    )
    grid = fig.add_gridspec(1, 2, width_ratios=[padded.shape[1] + 1, ids.shape[1] + 2])
    ax_in, ax_col = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])

    _grid(
        ax_in,
        pad_labels,
        [[colors[v] for v in row] for row in padded],
        hatch=padded == 0,
    )
    ax_in.set_xticks(
        np.arange(padded.shape[1]) + 0.5, [str(c - left) for c in range(padded.shape[1])]
    )
    ax_in.set_yticks(
        np.arange(padded.shape[0]) + 0.5, [str(r - top) for r in range(padded.shape[0])]
    )
    ax_in.set_xlabel("w")
    ax_in.set_ylabel("h")
    pad_note = "\nhatched: padding, reads 0" if any(geom.padding) else ""
    ax_in.set_title(f"input x[0, 0]: {h}x{w}{pad_note}", fontsize=9)
    oh, ow = divmod(highlight, wo)
    _outline(ax_in, ow * sw, oh * sh, (kw - 1) * dw + 1, (kh - 1) * dh + 1)

    _grid(ax_col, ids.astype(str), [[colors[v] for v in row] for row in ids], hatch=ids == 0)
    ax_col.set_xticks(
        np.arange(ids.shape[1]) + 0.5, [f"{k}\n({k // wo},{k % wo})" for k in range(ids.shape[1])]
    )
    ax_col.set_yticks(
        np.arange(ids.shape[0]) + 0.5, [f"{r}: ({r // kw},{r % kw})" for r in range(ids.shape[0])]
    )
    ax_col.set_xlabel("column l = oh*Wo + ow   (oh, ow)")
    ax_col.set_ylabel("row r = i*KW + j   (i, j)")
    options = f"stride={stride}, padding={padding}"
    if any(d != 1 for d in geom.dilation):
        options += f", dilation={dilation}"
    shown = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
    ax_col.set_title(
        f"X_col = im2col(x, {shown}, {options})[0]\n{kh * kw} x {ho * wo}",
        fontsize=9,
    )
    _outline(ax_col, highlight, 0, 1, ids.shape[0])
    if title is None:
        title = f"{h}x{w} input, {kh}x{kw} kernel, {options}"
    fig.suptitle(
        f"{title}: every receptive field becomes a column\n"
        f"(outlined: column {highlight}, output position ({oh}, {ow}))",
        fontsize=10,
    )
    return fig
