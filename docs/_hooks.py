"""mkdocs hooks: the generated parts of the site (see ``docs/_docgen.py``).

* ``on_files``: the pictures of the concepts page, drawn with matplotlib from
  ``convcore.im2col`` / ``col2im`` / ``conv2d`` output, added to the site as
  ``img/generated/*.png`` (nothing is written into ``docs/``);
* ``on_page_markdown``: the backend capability table, from the backends' own
  declarations, in place of the marker in ``backends.md``;
* ``on_page_content``: numpydoc roles (``:func:`x```) in the API reference turned
  into code, linked to the object when the page documents it.

This module imports no mkdocs at import time, so pytest's ``--doctest-modules``
can collect it without the ``docs`` extra.
"""

from __future__ import annotations

# The sibling docs/_docgen.py: mkdocs (>= 1.6) puts this file's folder on sys.path
# while it loads the hook, and pytest has docs/ in its pythonpath.
import _docgen

IMAGE_DIR = "img/generated"


def on_files(files, config):
    from mkdocs.structure.files import File

    for name, data in _docgen.render_figures().items():
        files.append(File.generated(config, f"{IMAGE_DIR}/{name}", content=data))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "backends.md":
        return _docgen.insert_capability_table(markdown)
    return markdown


def on_page_content(html, page, config, files):
    if page.file.src_uri == "api.md":
        return _docgen.link_sphinx_roles(html)
    return html
