"""The project layout the book pipeline works on.

A project root holds ``_toc.yml`` and ``_config.yml`` (Jupyter Book 1.x), chapter sources in
``notebooks/<chapter>.ipynb`` and presets in ``params/<chapter>.<preset>.yaml``. Executed chapters
go to ``executed/<chapter>/<chapter>.ipynb``; the table of contents points there, never at the
source notebooks (which are committed without outputs). Adding a chapter therefore means: one
notebook, its preset files, one ``- file: executed/<chapter>/<chapter>`` line in ``_toc.yml``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ntkbook.book.errors import UsageError

TOC_FILE = "_toc.yml"
NOTEBOOK_DIR = "notebooks"
PARAMS_DIR = "params"
EXECUTED_DIR = "executed"
#: The generated Status page, ``executed/status`` in the table of contents (not a chapter).
STATUS_NAME = "status"
#: The generated "Data as code" page, ``executed/data_as_code`` (not a chapter).
DATA_AS_CODE_NAME = "data_as_code"


@dataclass(frozen=True)
class Chapter:
    """One chapter: a source notebook and its name (the notebook's stem)."""

    name: str
    notebook: Path


@dataclass(frozen=True)
class Project:
    """A book project rooted at ``root``."""

    root: Path

    @classmethod
    def find(cls, root: str | os.PathLike[str] | None = None) -> Project:
        """Open the project at ``root``, or the nearest directory above the cwd with ``_toc.yml``.

        Raises:
            UsageError: ``root`` is not a directory, or no ``_toc.yml`` is found above the cwd.
        """
        if root is not None:
            path = Path(root).resolve()
            if not path.is_dir():
                raise UsageError(f"project root {str(root)!r} is not a directory")
            return cls(path)
        start = Path.cwd().resolve()
        for candidate in (start, *start.parents):
            if (candidate / TOC_FILE).is_file():
                return cls(candidate)
        raise UsageError(
            f"no {TOC_FILE} found in {start} or any parent directory; "
            "run inside the project or pass --root"
        )

    @property
    def notebook_dir(self) -> Path:
        return self.root / NOTEBOOK_DIR

    @property
    def params_dir(self) -> Path:
        return self.root / PARAMS_DIR

    def chapters(self) -> dict[str, Chapter]:
        """All chapters, i.e. every ``notebooks/*.ipynb``, sorted by name."""
        if not self.notebook_dir.is_dir():
            return {}
        notebooks = sorted(self.notebook_dir.glob("*.ipynb"))
        return {nb.stem: Chapter(nb.stem, nb) for nb in notebooks}

    def chapter(self, name: str) -> Chapter:
        """The chapter called ``name``.

        Raises:
            UsageError: no ``notebooks/<name>.ipynb``; the message lists the chapters that exist.
        """
        chapters = self.chapters()
        if name not in chapters:
            valid = ", ".join(chapters) or f"none (no {NOTEBOOK_DIR}/*.ipynb in {self.root})"
            raise UsageError(f"unknown chapter {name!r}; valid chapters: {valid}")
        return chapters[name]

    def preset_file(self, chapter: str, preset: str) -> Path:
        """Path of ``params/<chapter>.<preset>.yaml`` (it may not exist)."""
        return self.params_dir / f"{chapter}.{preset}.yaml"

    def default_output_dir(self, chapter: str) -> Path:
        """Where ``ntkbook run`` writes a chapter by default: ``executed/<chapter>/``."""
        return self.root / EXECUTED_DIR / chapter

    def toc_chapters(self) -> list[str]:
        """Chapters named in ``_toc.yml``, in book order.

        A toc entry ``executed/<chapter>/<chapter>`` (with or without ``.ipynb``) is a chapter;
        other entries (prose pages under ``book/``, the generated ``executed/status`` and
        ``executed/data_as_code`` pages) are left to Jupyter Book.

        Raises:
            UsageError: ``_toc.yml`` is missing or malformed, an entry under ``executed/`` does not
                have the ``executed/<chapter>/<chapter>`` form, or names a chapter with no notebook.
        """
        toc_path = self.root / TOC_FILE
        if not toc_path.is_file():
            raise UsageError(f"{toc_path} does not exist")
        try:
            toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise UsageError(f"{toc_path} is not valid YAML: {err}") from err
        chapters = self.chapters()
        names: list[str] = []
        for entry in _toc_files(toc):
            parts = Path(entry.removesuffix(".ipynb").removesuffix(".md")).parts
            generated = parts[1:] in ((STATUS_NAME,), (DATA_AS_CODE_NAME,))
            if not parts or parts[0] != EXECUTED_DIR or generated:
                continue
            if len(parts) != 3 or parts[1] != parts[2]:
                raise UsageError(
                    f"{TOC_FILE} entry {entry!r} must have the form "
                    f"{EXECUTED_DIR}/<chapter>/<chapter>"
                )
            name = parts[1]
            if name not in chapters:
                valid = ", ".join(chapters) or "none"
                raise UsageError(
                    f"{TOC_FILE} lists chapter {name!r} but {NOTEBOOK_DIR}/{name}.ipynb does not "
                    f"exist; valid chapters: {valid}"
                )
            if name not in names:
                names.append(name)
        return names


def _toc_files(node: Any) -> Iterator[str]:
    """Every ``file:`` value in a jb-book table of contents, depth first (book order)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)
