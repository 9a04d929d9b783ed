"""Shared fixtures.

Book pipeline: ``book_project`` builds a throw-away book project (``_config.yml`` copied from the
repository, ``_toc.yml``, an intro page and chapter notebooks) so that the driver and the CLI are
tested without the real chapters.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: A chapter that needs no jax: scales a range, plots it, tests one claim, writes its summary.
#: It also reports the kernel's sys.prefix, so tests can check that the kernel runs in this
#: environment.
GOOD_CHAPTER = {
    "parameters": "n = 3  # how many values\nscale = 1.5  # multiplies the values\nlabel = 'x'\n",
    "code": [
        "import sys\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "from ntkbook.book import Ledger, write_summary\n"
        "values = np.arange(n) * scale",
        "from IPython.display import Markdown, display\n"
        "display(Markdown('| value | square |\\n|---|---|\\n| $x$ | $x^2$ |'))",
        "fig, ax = plt.subplots(figsize=(3, 2))\n"
        "ax.plot(values)\n"
        "fig.savefig('values.png')\n"
        "plt.show()",
        "ledger = Ledger('good', statements={'G1': 'The values sum to at least zero.'})\n"
        "ledger.test('G1', 'sum of values', values.sum(), (values.sum() - 1, values.sum() + 1), "
        "threshold=-2.0, direction='above')\n"
        "write_summary({'total': values.sum(), 'values': values, 'label': label, "
        "'kernel_prefix': sys.prefix}, claims=ledger)",
    ],
}


def write_chapter(path: Path, chapter: dict) -> Path:
    """Write a chapter notebook: a title, the ``parameters`` cell, then the code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Chapter {path.stem}\n\nA test chapter."),
        nbformat.v4.new_code_cell(chapter["parameters"], metadata={"tags": ["parameters"]}),
        *(nbformat.v4.new_code_cell(source) for source in chapter["code"]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def good_chapter() -> dict:
    """The ``good`` test chapter (see :data:`GOOD_CHAPTER`)."""
    return {"parameters": GOOD_CHAPTER["parameters"], "code": list(GOOD_CHAPTER["code"])}


@pytest.fixture
def book_project(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``book_project(chapters=None, presets=None, toc=None) -> root``.

    ``chapters`` maps a name to ``{"parameters": str, "code": [str, ...]}`` (default: ``good``);
    ``presets`` maps ``"<chapter>.<preset>"`` to YAML text (default: a ``good.book`` preset);
    ``toc`` lists the chapters in ``_toc.yml`` (default: all of them).
    """

    def make(
        chapters: dict[str, dict] | None = None,
        presets: dict[str, str] | None = None,
        toc: list[str] | None = None,
    ) -> Path:
        root = tmp_path / "project"
        chapters = {"good": GOOD_CHAPTER} if chapters is None else chapters
        presets = {"good.book": "n: 5\n"} if presets is None else presets
        toc = list(chapters) if toc is None else toc
        (root / "book").mkdir(parents=True)
        shutil.copy(REPO_ROOT / "_config.yml", root / "_config.yml")
        shutil.copy(REPO_ROOT / "book" / "references.bib", root / "book" / "references.bib")
        (root / "book" / "intro.md").write_text(
            "# Test book\n\nA test of the pipeline {cite:p}`jacot2018ntk`.\n\n"
            "```{bibliography}\n```\n"
        )
        lines = ["format: jb-book", "root: book/intro"]
        if toc:
            lines += ["parts:", "  - caption: Chapters", "    chapters:"]
            lines += [f"      - file: executed/{name}/{name}" for name in toc]
        (root / "_toc.yml").write_text("\n".join(lines) + "\n")
        for name, chapter in chapters.items():
            write_chapter(root / "notebooks" / f"{name}.ipynb", chapter)
        (root / "params").mkdir()
        for key, text in presets.items():
            (root / "params" / f"{key}.yaml").write_text(text)
        return root

    return make
