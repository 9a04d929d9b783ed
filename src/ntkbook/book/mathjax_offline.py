"""Sphinx extension: serve MathJax from the book itself, so math renders without a network.

Sphinx loads MathJax 3 from a CDN by default (``sphinx.ext.mathjax.MATHJAX_URL``, the
``tex-mml-chtml`` component of ``mathjax@3``); on a machine without internet the chapters' math
then stays raw LaTeX. This extension points ``mathjax_path`` at a local copy of the same component
(MathJax 3.2.2, shipped by the ``sphinx-mathjax-offline`` package) and copies it into
``_build/html/_static/mathjax`` with the parts it loads on demand: TeX extensions, the CHTML fonts,
the menu and the accessibility (speech) modules. Readers online and offline see the same MathJax.
A ``mathjax_path`` set in the book's configuration is left alone.

Enable it in ``_config.yml``::

    sphinx:
      extra_extensions:
        - ntkbook.book.mathjax_offline
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

#: The component Sphinx's default URL names, and the folders it loads from at run time.
COMPONENT = "tex-mml-chtml.js"
ON_DEMAND = ("input", "output/chtml", "a11y", "sre", "ui", "adaptors")
STATIC_NAME = "mathjax"


def mathjax_source() -> Path:
    """The MathJax 3 distribution inside the ``sphinx-mathjax-offline`` package.

    Raises:
        RuntimeError: the package is not installed (it is in ntkbook's ``book`` extra).
    """
    try:
        root = resources.files("sphinx-mathjax-offline")
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "the offline MathJax needs the package sphinx-mathjax-offline "
            "(pip install 'ntkbook[book]')"
        ) from err
    source = Path(str(root)) / "static" / "mathjax"
    if not (source / COMPONENT).is_file():
        raise RuntimeError(f"{source / COMPONENT} is missing from sphinx-mathjax-offline")
    return source


def _use_local_copy(app: Any, config: Any) -> None:
    from sphinx.ext.mathjax import MATHJAX_URL

    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = f"{STATIC_NAME}/{COMPONENT}"


def _copy(app: Any, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util.fileutil import copy_asset, copy_asset_file

    source = mathjax_source()
    target = Path(app.outdir) / "_static" / STATIC_NAME
    target.mkdir(parents=True, exist_ok=True)
    copy_asset_file(str(source / COMPONENT), str(target / COMPONENT))
    for folder in ON_DEMAND:
        copy_asset(str(source / folder), str(target / folder))


def setup(app: Any) -> dict[str, Any]:
    """Register the extension (Sphinx calls this)."""
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _use_local_copy)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
