"""Generated parts of the documentation site: the capability table and the pictures.

The mkdocs hook ``docs/_hooks.py`` calls these functions while the site is built,
and ``tests/test_docs.py`` calls them directly.  Nothing here is written by hand
that the code already knows:

* :func:`capability_table` renders :func:`convcore.available_backends`, i.e. the
  :class:`convcore.BackendSpec` each backend registered, as a Markdown table;
* :func:`pixel_ids`, :func:`membership`, :func:`overlap_counts` and
  :func:`gemm_example` compute, with :func:`convcore.im2col`,
  :func:`convcore.col2im` and :func:`convcore.conv2d` themselves, what the
  pictures show; :func:`render_figures` draws them with matplotlib (Agg).

Only NumPy and convcore's public API (and the registry's list of dtype names)
are imported at module level: matplotlib (in the ``docs`` extra) is imported by
the drawing functions alone.

This is a tool of the documentation, not part of the library: it lives next to
the hook, outside the package, and is imported as the top-level module
``_docgen`` (mkdocs puts the hook's folder on ``sys.path`` while it loads the
hook; pytest has ``docs`` in its ``pythonpath``).
"""

from __future__ import annotations

import html
import io
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from convcore import (
    BackendInfo,
    ConvGeometry,
    __version__,
    available_backends,
    col2im,
    conv2d,
    conv_geometry,
    im2col,
)
from convcore._drawing import _grid, _outline, _pixel_colors
from convcore._registry import _DTYPE_NAMES
from convcore.teaching import draw_im2col

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CAPABILITY_MARKER",
    "CASES",
    "FIGURES",
    "Case",
    "capability_rows",
    "capability_table",
    "gemm_example",
    "insert_capability_table",
    "link_sphinx_roles",
    "membership",
    "overlap_counts",
    "pixel_ids",
    "render_figures",
]

#: Where ``docs/backends.md`` gets the capability table.
CAPABILITY_MARKER = "<!-- capability-table -->"

#: The pictures use the portable reference backend: every backend returns the same
#: integers here, and this one needs no compilation (the build stays fast).
BACKEND = "array_api"

_OP_ORDER = ("im2col", "col2im", "conv", "conv_backward")


# ---------------------------------------------------------------------------
# capability table
# ---------------------------------------------------------------------------
def _cell(text: str) -> str:
    """``text`` made safe for one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))


def _codes(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _dtype_cell(info: BackendInfo) -> str:
    """Declared dtypes, the half types the core runs in float32, and per-op extras."""
    base = _ordered(info.dtypes, _DTYPE_NAMES)
    text = ", ".join(base) or "none"
    promoted = [h for h in ("float16", "bfloat16") if h not in info.dtypes]
    if "float32" in info.dtypes and promoted:
        text += f"; {' and '.join(promoted)} computed in float32"
    extras: dict[tuple[str, ...], list[str]] = {}
    for op, dtypes in sorted(
        (info.op_dtypes or {}).items(),
        key=lambda kv: _OP_ORDER.index(kv[0]) if kv[0] in _OP_ORDER else 99,
    ):
        more = tuple(_ordered(set(dtypes) - set(info.dtypes), _DTYPE_NAMES))
        if more:
            extras.setdefault(more, []).append(op)
    for more, ops in extras.items():
        text += f"; {_codes(ops)} also {', '.join(more)}"
    return text


#: Public function families: name pattern, forward op, backward op.
_FAMILIES = (
    ("conv{d}d", "conv", "conv_backward"),
    ("max_pool{d}d", "max_pool", "max_pool_backward"),
    ("avg_pool{d}d", "avg_pool", "avg_pool_backward"),
    ("conv_transpose{d}d", "conv_transpose", "conv_transpose_backward"),
)


def _functions_cell(info: BackendInfo) -> str:
    """The public functions the backend runs, by :meth:`convcore.BackendSpec.supports`.

    Pooling and the transposed convolution are built in the core on the
    backends' im2col, col2im and conv ops, so the declaration of those answers
    for them too; the ranks are those it supports (1-D also where only 2-D is
    declared).
    """
    groups = []
    for pattern, forward, backward in _FAMILIES:
        ranks = [d for d in (1, 2, 3) if info.supports(forward, nd=d)]
        if ranks:
            names = ", ".join(f"`{pattern.format(d=d)}`" for d in ranks)
            both = all(info.supports(backward, nd=d) for d in ranks)
            groups.append(f"{names} (+ backward)" if both else names)
        if forward == "conv":
            moves = [f"`{op}`" for op in ("im2col", "col2im") if info.supports(op)]
            if moves:
                groups.append(", ".join(moves))
    return "; ".join(groups) or "-"


def _spatial_cell(dims) -> str:
    if dims is None:
        return "any (1-D, 2-D, 3-D, ...)"
    names = [f"{d}-D" for d in sorted(dims)]
    if 1 not in dims and 2 in dims:
        names.insert(0, "1-D (run as 2-D)")
    return ", ".join(names)


def capability_rows(infos: Iterable[BackendInfo] | None = None) -> list[dict[str, str]]:
    """One dict of cell texts per backend, in the order given (best first by default).

    Parameters
    ----------
    infos : iterable of BackendInfo, optional
        Defaults to :func:`convcore.available_backends`.

    Returns
    -------
    list of dict
        Keys ``backend``, ``priority``, ``ops``, ``dtypes``, ``spatial``,
        ``namespaces``, ``devices``, ``version``, ``here`` (``"yes"`` or ``"no: <reason>"``) and
        ``description``.
    """
    if infos is None:
        infos = available_backends()
    rows = []
    for info in infos:
        rows.append(
            {
                "backend": f"`{info.name}`",
                "priority": str(info.priority),
                "ops": _codes(_ordered(info.ops, _OP_ORDER)) or "none",
                "dtypes": _dtype_cell(info),
                "spatial": _spatial_cell(info.spatial_dims),
                "functions": _functions_cell(info),
                "namespaces": (
                    "any array-API namespace"
                    if info.namespaces is None
                    else _codes(sorted(info.namespaces))
                ),
                "devices": "any" if info.devices is None else ", ".join(sorted(info.devices)),
                "version": info.version or "",
                "here": "yes" if info.available else f"no: {info.reason}",
                "description": info.description,
            }
        )
    return rows


_COLUMNS = (
    ("backend", "backend"),
    ("priority", "priority"),
    ("ops", "ops"),
    ("dtypes", "dtypes"),
    ("spatial", "spatial axes"),
    ("functions", "public functions it runs"),
    ("namespaces", "array namespaces"),
    ("devices", "devices"),
    ("version", "version"),
    ("here", "available on the build machine"),
    ("description", "description"),
)


def capability_table(infos: Iterable[BackendInfo] | None = None) -> str:
    """The registered backends' declarations as a Markdown table.

    Parameters
    ----------
    infos : iterable of BackendInfo, optional
        Defaults to :func:`convcore.available_backends` (every registered
        backend, best first).

    Returns
    -------
    str
        A header line, a separator line and one line per backend, followed by a
        note saying where and with which convcore version it was generated.
    """
    rows = capability_rows(infos)
    lines = [
        "| " + " | ".join(title for _, title in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[key]) for key, _ in _COLUMNS) + " |")
    machine = f"{platform.system() or 'unknown OS'} {platform.machine() or ''}".strip()
    lines.append("")
    lines.append(
        f"*Generated from `convcore.available_backends()` when this site was built "
        f"(convcore {__version__}, Python {platform.python_version()}, {machine}). "
        "`convcore info` prints the same declarations with availability on your machine.*"
    )
    return "\n".join(lines) + "\n"


def insert_capability_table(markdown: str, infos: Iterable[BackendInfo] | None = None) -> str:
    """Replace :data:`CAPABILITY_MARKER` in ``markdown`` with :func:`capability_table`.

    Raises
    ------
    ValueError
        If the marker is missing, so that a page that lost it fails the build.
    """
    if CAPABILITY_MARKER not in markdown:
        raise ValueError(f"the page has no {CAPABILITY_MARKER} marker for the capability table")
    return markdown.replace(CAPABILITY_MARKER, capability_table(infos))


# ---------------------------------------------------------------------------
# the small cases the pictures show
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One channel, one image: the geometry of a picture.

    Attributes
    ----------
    name : str
        File-name stem of its pictures.
    title : str
        Caption.
    input_size, kernel_size : tuple of int
        ``(H, W)`` and ``(KH, KW)``.
    stride : int or tuple of int
    padding : int or tuple of int
        As for :func:`convcore.im2col`.
    highlight : int
        The column whose receptive field the picture outlines.
    """

    name: str
    title: str
    input_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] = 0
    highlight: int = 0

    @property
    def geometry(self) -> ConvGeometry:
        """The resolved geometry (output size, padding as four numbers)."""
        return conv_geometry(
            self.input_size, self.kernel_size, stride=self.stride, padding=self.padding
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`convcore.im2col` and :func:`convcore.col2im`."""
        return {"stride": self.stride, "padding": self.padding, "backend": BACKEND}


CASES = (
    Case("basic", "4x4 input, 2x2 kernel, stride 1", (4, 4), (2, 2), highlight=4),
    Case(
        "padded",
        "4x4 input, 3x3 kernel, stride 2, padding 1",
        (4, 4),
        (3, 3),
        stride=2,
        padding=1,
        highlight=0,
    ),
)

#: The PNG files :func:`render_figures` writes, by file name.
FIGURES = (
    "im2col_basic.png",
    "im2col_padded.png",
    "gemm.png",
    "col2im_overlap.png",
)


def pixel_ids(case: Case) -> np.ndarray:
    """``im2col`` of an image whose pixels hold their own numbers.

    Pixel ``(h, w)`` holds ``h*W + w + 1``; taps that fall in the padding read 0.

    Returns
    -------
    ndarray of int, shape (KH*KW, Ho*Wo)
        Entry ``[r, l]`` is the number of the pixel that row ``r`` of column
        ``l`` of ``X_col`` comes from (0 for padding).
    """
    h, w = case.input_size
    image = np.arange(1, h * w + 1, dtype=np.float64).reshape(1, 1, h, w)
    cols = im2col(image, case.kernel_size, **case.options())
    return np.asarray(cols[0]).round().astype(np.int64)


def membership(case: Case) -> np.ndarray:
    """Which input pixels land in which column of ``X_col``.

    Returns
    -------
    ndarray of int, shape (H*W, Ho*Wo)
        ``[p, l]`` counts how often pixel ``p`` (row-major, from 0) appears in
        column ``l`` (0 or 1 unless a dilation made taps coincide; padding taps
        belong to no pixel).
    """
    ids = pixel_ids(case)
    h, w = case.input_size
    out = np.zeros((h * w, ids.shape[1]), dtype=np.int64)
    rows, cols = np.nonzero(ids)
    np.add.at(out, (ids[rows, cols] - 1, cols), 1)
    return out


def overlap_counts(case: Case) -> np.ndarray:
    """``col2im`` of all-ones columns: in how many columns each pixel lands.

    Returns
    -------
    ndarray of int, shape (H, W)
    """
    geom = case.geometry
    kh, kw = case.kernel_size
    ones = np.ones((1, kh * kw, geom.output_numel))
    img = col2im(ones, case.input_size, case.kernel_size, **case.options())
    return np.asarray(img[0, 0]).round().astype(np.int64)


def gemm_example(case: Case = CASES[0]) -> dict[str, np.ndarray]:
    """The GEMM of :func:`conv2d` on ``case``, with two small integer filters.

    Returns
    -------
    dict
        ``x`` (1, 1, H, W), ``weight`` (2, 1, KH, KW), ``w_row`` (2, KH*KW),
        ``x_col`` (KH*KW, Ho*Wo), ``y_row`` = ``w_row @ x_col`` (2, Ho*Wo) and
        ``y`` = :func:`convcore.conv2d` (1, 2, Ho, Wo), all float64.
    """
    h, w = case.input_size
    kh, kw = case.kernel_size
    x = np.arange(1, h * w + 1, dtype=np.float64).reshape(1, 1, h, w)
    taps = kh * kw
    weight = np.zeros((2, taps))
    weight[0, :3] = (1.0, 2.0, 0.0)  # small integers, so that Y is easy to check by hand
    weight[0, -1] = -1.0
    weight[1, :] = 1.0  # the sum of the window
    weight = weight.reshape(2, 1, kh, kw)
    x_col = np.asarray(im2col(x, case.kernel_size, **case.options())[0])
    w_row = weight.reshape(2, -1)
    y = np.asarray(conv2d(x, weight, stride=case.stride, padding=case.padding, backend=BACKEND))
    return {
        "x": x,
        "weight": weight,
        "w_row": w_row,
        "x_col": x_col,
        "y_row": w_row @ x_col,
        "y": y,
    }


# ---------------------------------------------------------------------------
# pictures
# ---------------------------------------------------------------------------
def _im2col_figure(case: Case) -> Figure:
    return draw_im2col(
        case.input_size,
        case.kernel_size,
        stride=case.stride,
        padding=case.padding,
        highlight=case.highlight,
        title=case.title,
        backend=BACKEND,
    )


def _gemm_figure(case: Case) -> Figure:
    from matplotlib.figure import Figure

    data = gemm_example(case)
    geom = case.geometry
    ho, wo = geom.output_size
    h, w = case.input_size
    ids = pixel_ids(case)
    pix = _pixel_colors(h * w)
    filt = [(0.80, 0.88, 1.0, 1.0), (1.0, 0.87, 0.75, 1.0)]
    w_row, x_col, y_row = data["w_row"], data["x_col"], data["y_row"]
    col = case.highlight

    def ints(a):
        return a.round().astype(np.int64).astype(str)

    fig = Figure(
        figsize=(1.5 + 0.5 * (w_row.shape[1] + 2 * x_col.shape[1] + 2 * wo), 3.0),
        layout="constrained",
    )
    grid = fig.add_gridspec(
        1, 5, width_ratios=[w_row.shape[1] + 1, x_col.shape[1], y_row.shape[1], wo, wo]
    )
    ax_w, ax_x, ax_y = (fig.add_subplot(grid[k]) for k in range(3))
    _grid(ax_w, ints(w_row), [[filt[f]] * w_row.shape[1] for f in range(2)])
    ax_w.set_title(f"W_row\n{w_row.shape[0]} x {w_row.shape[1]}", fontsize=9)
    ax_w.set_xticks([])
    ax_w.set_yticks([0.5, 1.5], ["f=0", "f=1"])
    _outline(ax_w, 0, 0, w_row.shape[1], 1)

    _grid(ax_x, ints(x_col), [[pix[v] for v in row] for row in ids])
    ax_x.set_title(f"@ X_col\n{x_col.shape[0]} x {x_col.shape[1]}", fontsize=9)
    ax_x.set_xticks([])
    ax_x.set_yticks([])
    _outline(ax_x, col, 0, 1, x_col.shape[0])

    _grid(ax_y, ints(y_row), [[filt[f]] * y_row.shape[1] for f in range(2)])
    ax_y.set_title(f"= Y = W_row @ X_col\n{y_row.shape[0]} x {y_row.shape[1]}", fontsize=9)
    ax_y.set_xticks([])
    ax_y.set_yticks([])
    _outline(ax_y, col, 0, 1, 1)

    for f in range(2):
        ax = fig.add_subplot(grid[3 + f])
        _grid(ax, ints(data["y"][0, f]), [[filt[f]] * wo for _ in range(ho)])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(("reshape: " if f == 0 else "") + f"y[0, {f}]\n{ho} x {wo}", fontsize=9)
        if f == 0:
            _outline(ax, col % wo, col // wo, 1, 1)
    fig.suptitle(
        "GEMM: a row of W_row per filter times a column of X_col per output position "
        "(outlined: filter 0, column " + str(col) + ")",
        fontsize=10,
    )
    return fig


def _col2im_figure(cases: Sequence[Case]) -> Figure:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    cmap = colormaps["Blues"]
    fig = Figure(figsize=(3.3 * len(cases), 3.6), layout="constrained")
    axes = fig.subplots(1, len(cases))
    for ax, case in zip(np.atleast_1d(axes), cases):
        counts = overlap_counts(case)
        top = max(int(counts.max()), 1)
        colors = [[cmap(0.15 + 0.6 * v / top) for v in row] for row in counts]
        _grid(ax, counts.astype(str), colors, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(case.title, fontsize=9)
    fig.suptitle(
        "col2im(ones): in how many columns of X_col each pixel lands\n"
        "(col2im adds every column entry back to its pixel)",
        fontsize=10,
    )
    return fig


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def render_figures() -> dict[str, bytes]:
    """Draw every picture of the concepts page.

    Returns
    -------
    dict of str to bytes
        PNG data by file name (the names in :data:`FIGURES`).
    """
    figures = {f"im2col_{case.name}.png": _im2col_figure(case) for case in CASES}
    figures["gemm.png"] = _gemm_figure(CASES[0])
    figures["col2im_overlap.png"] = _col2im_figure(CASES)
    return {name: _png(fig) for name, fig in figures.items()}


# ---------------------------------------------------------------------------
# API page
# ---------------------------------------------------------------------------
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>([^<]+)</code>")


def link_sphinx_roles(
    page_html: str, namespaces: Sequence[str] = ("convcore", "convcore.matlab")
) -> str:
    """Turn the numpydoc roles left in rendered docstrings into code, linked where possible.

    mkdocstrings renders ``:func:`name``` as ``:func:<code>name</code>``.  Each
    such role becomes ``<code>name</code>``, wrapped in a link to ``#target``
    when the page has an element with id ``target``: ``name`` itself or
    ``<namespace>.name`` for the first of ``namespaces`` that has it.
    """
    ids = set(re.findall(r'\bid="([^"]+)"', page_html))

    def replace(match: re.Match) -> str:
        name = html.unescape(match.group(1)).strip("~").rstrip("()")
        code = f"<code>{html.escape(name)}</code>"
        for target in (name, *(f"{ns}.{name}" for ns in namespaces)):
            if target in ids:
                return f'<a href="#{html.escape(target)}">{code}</a>'
        return code

    return _ROLE.sub(replace, page_html)
