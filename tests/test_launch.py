"""Launch buttons: Colab links to the executed notebooks on the notebooks branch, or no buttons."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from ntkbook.book import Project, build_book
from ntkbook.book.errors import UsageError
from ntkbook.book.launch import (
    INSTALL_TAG,
    NOTEBOOKS_BRANCH,
    export_notebooks,
    github_repository,
    install_source,
    origin_repository,
)

URL = "https://github.com/ntkbook-org/ntkbook"
COLAB_LINK = re.compile(
    r'href="https://colab\.research\.google\.com/github/ntkbook-org/ntkbook/blob/'
    r'(?P<branch>[^/"]+)/(?P<path>[^"]+)"'
)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/ntkbook-org/ntkbook",
        "https://github.com/ntkbook-org/ntkbook.git",
        "git@github.com:ntkbook-org/ntkbook.git",
        "ssh://git@github.com/ntkbook-org/ntkbook/",
    ],
)
def test_github_urls_in_every_form_name_one_repository(url: str) -> None:
    assert github_repository(url) == URL


def test_a_repository_that_colab_cannot_open_is_refused() -> None:
    with pytest.raises(UsageError, match="'https://gitlab.com/a/b' is not a GitHub repository"):
        github_repository("https://gitlab.com/a/b")


def test_origin_is_used_only_when_it_is_on_github(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert origin_repository(tmp_path) is None
    git = ["git", "-C", str(tmp_path), "remote"]
    subprocess.run([*git, "add", "origin", "/some/path"], check=True)
    assert origin_repository(tmp_path) is None
    subprocess.run([*git, "set-url", "origin", f"{URL}.git"], check=True)
    assert origin_repository(tmp_path) == URL


def test_the_install_cell_runs_only_on_colab(monkeypatch) -> None:
    source = install_source(URL, "0123456789abcdef0123456789abcdef01234567")
    assert "ntkbook @ git+https://github.com/ntkbook-org/ntkbook.git@0123456789abcdef" in source
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    exec(compile(source, "install", "exec"), {})  # not on Colab: nothing is installed
    assert calls == []
    assert "@" not in install_source(URL, "unknown").split("git+")[1]


@pytest.mark.book
def test_with_a_url_every_chapter_has_a_colab_link_to_an_exported_notebook(book_project) -> None:
    root = book_project()
    project = Project(root)
    html = build_book(project, preset="smoke", log=lambda line: None, repository_url=URL)
    page = (html / "executed" / "good" / "good.html").read_text()
    links = {match.groupdict()["path"] for match in COLAB_LINK.finditer(page)}
    branches = {match.groupdict()["branch"] for match in COLAB_LINK.finditer(page)}
    assert links == {"executed/good/good.ipynb"} and branches == {NOTEBOOKS_BRANCH}
    assert 'href="https://github.com/ntkbook-org/ntkbook"' in page  # the repository button
    assert not (root / "_config.yml").read_text().count("colab")  # the committed config stays

    branch = root / "_build" / "notebooks-branch"
    written = export_notebooks(project, branch, URL)
    assert [path.relative_to(branch).as_posix() for path in written] == sorted(links)
    nb = nbformat.read(written[0], as_version=4)
    assert INSTALL_TAG in nb.cells[0].metadata.tags and "remove-cell" in nb.cells[0].metadata.tags
    assert "google.colab" in nb.cells[0].source
    assert any(output for cell in nb.cells for output in cell.get("outputs", []))

    # Without a URL: no launch or repository buttons at all.
    html = build_book(project, preset="smoke", log=lambda line: None)
    page = (html / "executed" / "good" / "good.html").read_text()
    assert "colab.research.google.com" not in page
    assert "github.com/ntkbook-org" not in page
    assert "launch-buttons" not in page and "repository-button" not in page
