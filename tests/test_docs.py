"""The documentation site: it builds with ``--strict``, and what it states matches the code.

* the site builds (``mkdocs build --strict``) with its generated pictures, capability
  table and API page;
* the hook signatures in ``docs/plugins.md`` are the hookspecs of
  ``convcore/hookspecs.py``, and every hookspec is documented there;
* the ``BackendSpec`` table in ``docs/plugins.md`` lists exactly the dataclass fields;
* the generators in ``docs/_docgen.py`` (capability table, picture data) say
  what the registry and a naive computation say.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import _docgen  # docs/_docgen.py (docs/ is in pytest's pythonpath)
import numpy as np
import pluggy
import pytest

import convcore
from convcore import hookspecs
from convcore._registry import BackendRegistry, BackendSpec, available_backends

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLUGINS_MD = DOCS / "plugins.md"

DOCS_REQUIREMENTS = (
    "mkdocs",
    "material",
    "mkdocstrings",
    "mkdocstrings_handlers.python",
    "matplotlib",
)


def _missing(modules) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # parent package missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _skip_without(*modules):
    missing = _missing(modules)
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs the docs extra (pip install -e '.[docs]'); missing: {', '.join(missing)}",
    )


# --------------------------------------------------------------------------
# The site builds
# --------------------------------------------------------------------------


@_skip_without(*DOCS_REQUIREMENTS)
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg")
    env.pop("CONVCORE_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # the pictures, generated from code, are in the site and on the concepts page
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    for name in _docgen.FIGURES:
        png = site / "img" / "generated" / name
        assert png.is_file(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"img/generated/{name}" in concepts, name
    assert not (DOCS / "img" / "generated").exists(), "the build must not write into docs/"

    # the API page documents every public name
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in convcore.__all__:
        if name != "__version__":
            assert f'id="convcore.{name}"' in api, name
    assert 'id="convcore.matlab.im2col_ref"' in api
    assert ":func:" not in api  # numpydoc roles were turned into code / links

    # the capability table replaced its marker
    backends = (site / "backends" / "index.html").read_text(encoding="utf-8")
    assert "capability-table" not in backends
    assert "available on the build machine" in backends
    assert "<code>array_api</code>" in backends

    # the example plugin's source was included from tests/plugin_example
    plugins = (site / "plugins" / "index.html").read_text(encoding="utf-8")
    assert "counting_conv" in plugins
    assert "sliding_window_view" in plugins
    assert "--8&lt;--" not in plugins

    # no Python file of the docs folder is published
    assert not list(site.glob("*.py"))


# --------------------------------------------------------------------------
# docs/plugins.md against the code
# --------------------------------------------------------------------------


def _python_blocks(markdown: str) -> list[str]:
    """The ```python fenced blocks of ``markdown`` that are code (not doctests or snippets)."""
    blocks = re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)
    return [b for b in blocks if not b.lstrip().startswith(">>>") and "--8<--" not in b]


def _decorated(markdown: str, decorator: str) -> dict[str, ast.FunctionDef]:
    found: dict[str, ast.FunctionDef] = {}
    for block in _python_blocks(markdown):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d).split(".")[-1] == decorator for d in node.decorator_list
            ):
                assert node.name not in found, f"{node.name} is documented twice"
                found[node.name] = node
    return found


def _norm(annotation) -> str | None:
    """One spelling for an annotation, from source text or an object."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return None
    if not isinstance(annotation, str):
        annotation = inspect.formatannotation(annotation)
    return ast.unparse(ast.parse(annotation, mode="eval"))


def _signature_from_ast(node: ast.FunctionDef) -> tuple:
    """``((name, kind, annotation, default), ...), return annotation`` of a documented def."""
    args, kind = node.args, inspect.Parameter
    positional = [(a, kind.POSITIONAL_ONLY) for a in args.posonlyargs]
    positional += [(a, kind.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    entries = [(a, k, d) for (a, k), d in zip(positional, defaults)]
    if args.vararg:
        entries.append((args.vararg, kind.VAR_POSITIONAL, None))
    entries += [(a, kind.KEYWORD_ONLY, d) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        entries.append((args.kwarg, kind.VAR_KEYWORD, None))
    params = tuple(
        (
            a.arg,
            k,
            _norm(a.annotation and ast.unparse(a.annotation)),
            None if d is None else ast.unparse(d),
        )
        for a, k, d in entries
    )
    return params, _norm(node.returns and ast.unparse(node.returns))


def _signature_of(func) -> tuple:
    """The same for a function object."""
    sig = inspect.signature(func)
    params = tuple(
        (
            p.name,
            p.kind,
            _norm(p.annotation),
            None if p.default is p.empty else repr(p.default),
        )
        for p in sig.parameters.values()
    )
    return params, _norm(sig.return_annotation)


def _hookspecs() -> dict:
    """Every hookspec in convcore.hookspecs, found through pluggy's public API."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    return {
        name: getattr(hookspecs, name)
        for name in dir(hookspecs)
        if inspect.isfunction(getattr(hookspecs, name))
        and pm.parse_hookspec_opts(hookspecs, name) is not None
    }


def test_documented_hook_signatures_match_the_hookspecs():
    specs = _hookspecs()
    assert specs, "convcore.hookspecs defines no hookspec"
    documented = _decorated(PLUGINS_MD.read_text(encoding="utf-8"), "hookspec")
    undocumented = sorted(set(specs) - set(documented))
    assert not undocumented, f"hookspecs missing from docs/plugins.md: {undocumented}"
    unknown = sorted(set(documented) - set(specs))
    assert not unknown, f"docs/plugins.md documents hooks that do not exist: {unknown}"
    for name, func in specs.items():
        assert _signature_from_ast(documented[name]) == _signature_of(func), name


def test_documented_hookimpls_use_the_hookspec_parameters():
    # pluggy matches hook arguments by name, and the registry passes them as keywords.
    specs = _hookspecs()
    texts = [PLUGINS_MD.read_text(encoding="utf-8")]
    example = ROOT / "tests" / "plugin_example"
    texts += [f"```python\n{p.read_text(encoding='utf-8')}```\n" for p in example.rglob("*.py")]
    impls = [node for text in texts for node in _decorated(text, "hookimpl").values()]
    assert impls
    for node in impls:
        assert node.name in specs, node.name
        names = [p.name for p in inspect.signature(specs[node.name]).parameters.values()]
        assert [a.arg for a in node.args.args] == names, node.name


def test_signature_check_notices_a_difference():
    # guard: the comparison above is not vacuous
    (spec,) = [f for n, f in _hookspecs().items() if n == "convcore_register_backends"]
    wrong = [
        "def convcore_register_backends(register) -> None: ...",
        "def convcore_register_backends(reg: Callable[[BackendSpec], None]) -> None: ...",
        "def convcore_register_backends(register: Callable[[BackendSpec], None], x) -> None: ...",
        "def convcore_register_backends(register: Callable[[BackendSpec], None]): ...",
        "def convcore_register_backends(register: Callable[[BackendSpec], None] = None) -> None:"
        " ...",
        "def convcore_register_backends(*, register: Callable[[BackendSpec], None]) -> None: ...",
    ]
    for text in wrong:
        node = ast.parse(text).body[0]
        assert _signature_from_ast(node) != _signature_of(spec), text
    right = "def convcore_register_backends(register: Callable[[BackendSpec],  None]) -> None: ..."
    assert _signature_from_ast(ast.parse(right).body[0]) == _signature_of(spec)


def _table_after(markdown: str, heading: str) -> list[list[str]]:
    """Body rows (cells) of the first table after the line ``heading``."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    assert len(rows) >= 2, f"no table after {heading!r}"
    return rows[2:] if set("".join(rows[1])) <= set("-: ") else rows[1:]


def test_backendspec_table_lists_exactly_the_fields():
    rows = _table_after(PLUGINS_MD.read_text(encoding="utf-8"), "## `BackendSpec`")
    documented = [name for row in rows for name in re.findall(r"`([^`]+)`", row[0])]
    fields = {f.name: f for f in dataclasses.fields(BackendSpec)}
    assert len(documented) == len(set(documented)), f"a field is listed twice: {documented}"
    assert set(documented) == set(fields), (
        f"undocumented: {sorted(set(fields) - set(documented))}; "
        f"not fields: {sorted(set(documented) - set(fields))}"
    )
    # the "default" column says "required" exactly for the fields without a default
    for row in rows:
        (name,) = re.findall(r"`([^`]+)`", row[0])
        field = fields[name]
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        assert (row[2] == "required") == required, name


def test_documented_priorities_match_the_builtin_backends():
    rows = _table_after(PLUGINS_MD.read_text(encoding="utf-8"), "## `BackendSpec`")
    (priority_row,) = [row for row in rows if row[0] == "`priority`"]
    for info in available_backends():
        if info.plugin == info.name and info.name in ("array_api", "numpy", "numba", "cupy"):
            assert f"`{info.name}` {info.priority}" in priority_row[3], info.name


def test_api_page_lists_every_public_name():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    directives = set(re.findall(r"^::: (\S+)$", api, flags=re.M))
    missing = [
        n for n in convcore.__all__ if n != "__version__" and f"convcore.{n}" not in directives
    ]
    assert not missing, f"docs/api.md lacks ::: directives for {missing}"
    assert "convcore.matlab" in directives


# --------------------------------------------------------------------------
# The capability table
# --------------------------------------------------------------------------


def _table_rows(table: str) -> dict[str, dict[str, str]]:
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == len(header), line
        row = dict(zip(header, cells))
        rows[row["backend"].strip("`")] = row
    return rows


def test_capability_table_reflects_a_registry():
    registry = BackendRegistry()

    def load():
        raise AssertionError("the table must not load kernels")

    registry.register(
        BackendSpec(
            name="fake_gpu",
            load=load,
            ops={"conv", "im2col"},
            dtypes={"float16", "bfloat16"},
            namespaces={"torch", "jax"},
            devices={"cuda"},
            priority=77,
            version="1.2.3",
            description="a fake | with a pipe",
            check_available=lambda: "no fake device here",
        ),
        plugin="fake",
    )
    registry.register(
        BackendSpec(name="fake_any", load=load, ops={"col2im"}, namespaces=None, devices=None)
    )
    infos = [registry.info(name) for name in registry.names()]
    table = _docgen.capability_table(infos)
    rows = _table_rows(table)
    assert list(rows) == ["fake_gpu", "fake_any"]  # best first
    gpu = rows["fake_gpu"]
    assert gpu["priority"] == "77"
    assert gpu["ops"] == "`im2col`, `conv`"
    assert gpu["dtypes"] == "float16, bfloat16"
    assert gpu["array namespaces"] == "`jax`, `torch`"
    assert gpu["devices"] == "cuda"
    assert gpu["version"] == "1.2.3"
    assert gpu["available on the build machine"] == "no: no fake device here"
    assert gpu["description"] == "a fake \\| with a pipe"
    anything = rows["fake_any"]
    # BackendSpec's default, and what the core adds for float32 backends
    assert anything["dtypes"] == "float32, float64; float16 and bfloat16 computed in float32"
    assert anything["spatial axes"] == "1-D (run as 2-D), 2-D"  # the default {2}
    assert gpu["spatial axes"] == "1-D (run as 2-D), 2-D"
    # conv without its backward, im2col without col2im: pooling forward only (it reduces
    # im2col's columns; its backward needs col2im), no transposed conv (col2im)
    assert gpu["public functions it runs"] == (
        "`conv1d`, `conv2d`; `im2col`; `max_pool1d`, `max_pool2d`; `avg_pool1d`, `avg_pool2d`"
    )
    # col2im alone: the transposed convolution's forward (a GEMM and col2im)
    assert (
        anything["public functions it runs"] == "`col2im`; `conv_transpose1d`, `conv_transpose2d`"
    )
    assert anything["array namespaces"] == "any array-API namespace"
    assert anything["devices"] == "any"
    assert anything["available on the build machine"] == "yes"


def test_capability_table_lists_every_registered_backend():
    infos = available_backends()
    rows = _table_rows(_docgen.capability_table())
    assert list(rows) == [info.name for info in infos]
    for info in infos:
        row = rows[info.name]
        assert row["priority"] == str(info.priority)
        parts = row["dtypes"].split("; ")
        assert set(parts[0].split(", ")) == set(info.dtypes), info.name
        for op, dtypes in (info.op_dtypes or {}).items():
            extra = set(dtypes) - set(info.dtypes)
            if extra:
                line = next(p for p in parts if f"`{op}`" in p)
                assert extra <= set(line.split(" also ")[1].split(", ")), (info.name, op)
        if info.spatial_dims is None:
            assert row["spatial axes"].startswith("any"), info.name
        else:
            for d in info.spatial_dims:
                assert f"{d}-D" in row["spatial axes"], info.name
        assert set(re.findall(r"`([^`]+)`", row["ops"])) == set(info.ops), info.name
        here = row["available on the build machine"]
        assert here == "yes" if info.available else here.startswith("no: "), info.name


def test_insert_capability_table():
    page = (DOCS / "backends.md").read_text(encoding="utf-8")
    assert page.count(_docgen.CAPABILITY_MARKER) == 1
    out = _docgen.insert_capability_table(page)
    assert _docgen.CAPABILITY_MARKER not in out
    assert "| `array_api` |" in out
    with pytest.raises(ValueError, match="capability-table"):
        _docgen.insert_capability_table("# no marker here\n")


# --------------------------------------------------------------------------
# The picture data against a naive computation
# --------------------------------------------------------------------------

EXTRA_CASES = (
    _docgen.Case(
        "asym",
        "5x4, 2x3 kernel, stride (2, 1), padding (0, 1, 2, 0)",
        (5, 4),
        (2, 3),
        stride=(2, 1),
        padding=(0, 1, 2, 0),
    ),
    _docgen.Case("skip", "5x5, 1x1 kernel, stride 2", (5, 5), (1, 1), stride=2),
)
ALL_CASES = (*_docgen.CASES, *EXTRA_CASES)


def _naive_membership(case: _docgen.Case) -> np.ndarray:
    """Loops over windows and taps; shares no code with im2col or the geometry module."""
    h, w = case.input_size
    kh, kw = case.kernel_size
    sh, sw = (case.stride, case.stride) if isinstance(case.stride, int) else case.stride
    pad = (case.padding,) * 4 if isinstance(case.padding, int) else case.padding
    top, bottom, left, right = pad
    ho = (h + top + bottom - kh) // sh + 1
    wo = (w + left + right - kw) // sw + 1
    out = np.zeros((h * w, ho * wo), dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            for i in range(kh):
                for j in range(kw):
                    r, c = oh * sh - top + i, ow * sw - left + j
                    if 0 <= r < h and 0 <= c < w:
                        out[r * w + c, oh * wo + ow] += 1
    return out


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_membership_matches_naive_loops(case):
    np.testing.assert_array_equal(_docgen.membership(case), _naive_membership(case))


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_overlap_counts_are_the_membership_row_sums(case):
    counts = _docgen.overlap_counts(case)
    assert counts.shape == case.input_size
    np.testing.assert_array_equal(counts.ravel(), _naive_membership(case).sum(axis=1))


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_pixel_ids_rows_follow_unfold_order(case):
    ids = _docgen.pixel_ids(case)
    kh, kw = case.kernel_size
    h, w = case.input_size
    member = _naive_membership(case)
    assert ids.shape == (kh * kw, member.shape[1])
    for col in range(ids.shape[1]):
        # every pixel of the window once, padding taps read 0
        pixels = sorted(int(p) for p in ids[:, col] if p)
        assert pixels == sorted(np.repeat(np.arange(1, h * w + 1), member[:, col]).tolist())
    # column 0, tap (i, j) is row i*KW + j: compare with the naive position of that tap
    top = case.geometry.padding[0]
    left = case.geometry.padding[2]
    for i in range(kh):
        for j in range(kw):
            r, c = i - top, j - left
            expected = r * w + c + 1 if 0 <= r < h and 0 <= c < w else 0
            assert ids[i * kw + j, 0] == expected, (i, j)


def test_gemm_example_is_the_convolution():
    data = _docgen.gemm_example()
    ho, wo = _docgen.CASES[0].geometry.output_size
    np.testing.assert_array_equal(data["w_row"], data["weight"].reshape(2, -1))
    np.testing.assert_array_equal(data["y_row"], data["w_row"] @ data["x_col"])
    np.testing.assert_array_equal(data["y_row"].reshape(1, 2, ho, wo), data["y"])


@_skip_without("matplotlib")
def test_render_figures_gives_the_listed_pngs():
    import matplotlib.image

    figures = _docgen.render_figures()
    assert set(figures) == set(_docgen.FIGURES)
    for name, data in figures.items():
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and min(image.shape[:2]) > 100, (name, image.shape)


def test_link_sphinx_roles():
    page = (
        '<h2 id="convcore.col2im">col2im</h2><h2 id="convcore.matlab.im2col_ref">x</h2>'
        "<p>:func:<code>col2im</code>, :func:<code>convcore.col2im</code>, "
        ":func:<code>im2col_ref</code>, :class:<code>Elsewhere</code></p>"
    )
    out = _docgen.link_sphinx_roles(page)
    assert ":func:" not in out and ":class:" not in out
    assert out.count('<a href="#convcore.col2im"><code>') == 2
    assert '<a href="#convcore.matlab.im2col_ref"><code>im2col_ref</code></a>' in out
    assert "<code>Elsewhere</code>" in out and 'href="#Elsewhere"' not in out
