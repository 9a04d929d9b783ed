"""The browser check: a rendered book as a reader sees it, in headless Chromium without network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ntkbook.book import Project, build_book
from ntkbook.book.browser_check import check_book, content_pages, main

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)

#: A page as the book rendered it before: a Markdown output as CommonMark (its table as text),
#: MathJax from a CDN (unreachable offline), and an image that is not there.
BROKEN_PAGE = """<!DOCTYPE html><html><head>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
</head><body><main>
<p>| shape | R (µm) | |—|—| | sphere | 0.5 |</p>
<p>Data scaling: $\\alpha_n$ = 0.55; costs $5 or $6 are not math.</p>
<div class="math notranslate nohighlight">\\[ \\delta L = \\chi \\]</div>
<img src="missing.png">
<pre>| code | may |\n|---|---|</pre>
</main></body></html>
"""


def test_content_pages_skip_static_files_and_the_redirect(tmp_path: Path) -> None:
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("<html></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=a.html">')
    (tmp_path / "a.html").write_text("<html></html>")
    (tmp_path / "search.html").write_text("<html></html>")
    assert [p.name for p in content_pages(tmp_path)] == ["a.html"]


@needs_chromium
def test_the_check_fails_on_raw_tables_cdn_math_and_broken_images(tmp_path: Path, capsys) -> None:
    (tmp_path / "page.html").write_text(BROKEN_PAGE)
    [report] = check_book(tmp_path)
    problems = "\n".join(report.problems)
    assert "raw pipe-table text: '| shape | R (µm) |" in problems
    assert "MathJax did not load" in problems
    assert "image did not load: missing.png" in problems
    assert "raw TeX in the page text: 'Data scaling: $\\\\alpha_n$ = 0.55" in problems
    assert "| code |" not in problems  # code blocks may hold pipes
    assert main([str(tmp_path)]) == 1
    assert "4 problem(s) on 1 page(s)" in capsys.readouterr().out


@needs_chromium
@pytest.mark.book
def test_a_built_book_passes_the_check_offline(book_project) -> None:
    root = book_project()
    html = build_book(Project(root), preset="smoke", log=lambda line: None)
    reports = {report.page: report for report in check_book(html)}
    chapter = reports["executed/good/good.html"]
    assert chapter.problems == []
    assert chapter.tables >= 1 and chapter.formulas >= 2 and chapter.images >= 1
    assert all(report.problems == [] for report in reports.values()), reports
