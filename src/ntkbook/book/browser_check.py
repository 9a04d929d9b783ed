"""Check the rendered book as a reader sees it: every page in headless Chromium, offline.

Static HTML can look right and still render wrong: a Markdown output that the renderer passed
through as text shows its pipe table as ``| a | b | |---|---|``; MathJax loaded from a CDN leaves
``\\[ \\delta L = … \\]`` as raw LaTeX on a machine without a network; an image path can be
broken. This check opens every content page of ``_build/html`` in a real browser (Debian's
``chromium`` driven through ``chromedriver`` by Selenium) with all network access blocked, waits for
MathJax to finish, and reports:

- **raw tables**: a paragraph or list item outside code whose text holds a Markdown table rule
  (``|---|``, or ``|—|`` after CommonMark's typographer);
- **unrendered math**: an element of class ``math`` with no MathJax output inside it, or page
  text outside code and math elements that still holds TeX delimiters (``\\(``, ``\\[``,
  ``$$`` or a ``$…$`` pair);
- **broken images**: an ``<img>`` that did not load (``naturalWidth == 0``).

Run it after a build::

    python -m ntkbook.book.browser_check _build/html [--screenshots DIR]

It exits with 1 and lists the problems by page, or with 0 after printing how many pages, tables,
formulas and images it checked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Browsers tried in this order: Debian's Chromium, Ubuntu's, Google Chrome (GitHub's runners).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Files under the HTML root that are not content pages.
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SKIPPED_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}

#: Runs in the page: waits for MathJax's typesetting, then inspects the DOM.
INSPECT_PAGE = r"""
const done = arguments[arguments.length - 1];
const inspect = () => {
  const outsideCode = (el) => !el.closest('pre, code, script, style, .highlight, textarea');
  // A table's rule row; CommonMark's typographer turns "---" into an em dash.
  const tableRule = /\|\s*:?(-{3,}|[\u2014\u2013]+):?\s*(\||$)/m;
  const rawTables = [...document.querySelectorAll('p, li, td, dd')]
    .filter((el) => outsideCode(el) && tableRule.test(el.textContent))
    .map((el) => el.textContent.trim().slice(0, 80));
  const mathElements = [...document.querySelectorAll('.math')];
  const unrendered = mathElements
    .filter((el) => !el.querySelector('mjx-container') && el.tagName !== 'MJX-CONTAINER')
    .map((el) => el.textContent.trim().slice(0, 80));
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawTex = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || !outsideCode(parent) || parent.closest('.math, mjx-container')) {
      continue;
    }
    const text = node.textContent;
    if (/\\\(|\\\[|\$\$/.test(text) || /(^|[^\\$])\$[^$\s]([^$]*[^$\s])?\$/.test(text)) {
      rawTex.push(text.trim().slice(0, 80));
    }
  }
  const images = [...document.images];
  const broken = images
    .filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.getAttribute('src'));
  const tables = document.querySelectorAll('table').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  done({rawTables, unrendered, rawTex, broken, tables, typeset,
        images: images.length, mathjax: typeof window.MathJax === 'object'});
};
const startup = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
if (startup) {
  startup.then(inspect, inspect);
} else {
  inspect();
}
"""


@dataclass
class PageReport:
    """What the browser found on one page."""

    page: str
    tables: int = 0
    formulas: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def content_pages(html_dir: Path) -> list[Path]:
    """Every content page of a built book (not the index, search or static files)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relative = path.relative_to(html_dir)
        if relative.parts[0] in SKIPPED_DIRS or relative.name in SKIPPED_PAGES:
            continue
        if relative.as_posix() == "index.html" and "http-equiv" in path.read_text(errors="ignore"):
            continue  # Jupyter Book's redirect to the root page
        pages.append(path)
    return pages


def find_browser() -> tuple[str, str]:
    """Paths of a Chromium-based browser (:data:`BROWSERS`) and of ``chromedriver``.

    Raises:
        RuntimeError: either is missing; names the Debian packages that provide them.
    """
    chromium = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = shutil.which("chromedriver")
    if driver is None and os.environ.get("CHROMEWEBDRIVER"):
        # GitHub's runners ship ChromeDriver in a folder named by this variable.
        driver = shutil.which("chromedriver", path=os.environ["CHROMEWEBDRIVER"])
    if not chromium or not driver:
        raise RuntimeError(
            "the browser check needs Chromium and ChromeDriver: on Debian or Ubuntu, "
            "`apt-get install chromium chromium-driver` (found chromium: "
            f"{chromium or 'no'}, chromedriver: {driver or 'no'})"
        )
    return chromium, driver


def open_browser(width: int = 1280, height: int = 2000):
    """A headless Chromium with every network request blocked (file:// pages still load)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        # No network: every host fails to resolve and every proxied request is refused.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        f"--window-size={width},{height}",
        "--allow-file-access-from-files",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    browser.set_script_timeout(60)
    browser.set_page_load_timeout(60)
    return browser


def check_page(browser, path: Path, html_dir: Path, screenshots: Path | None) -> PageReport:
    """Load ``path`` and report what :data:`INSPECT_PAGE` finds."""
    relative = path.relative_to(html_dir).as_posix()
    report = PageReport(relative)
    browser.get(path.resolve().as_uri())
    found = browser.execute_async_script(INSPECT_PAGE)
    report.tables, report.formulas, report.images = (
        found["tables"],
        found["typeset"],
        found["images"],
    )
    for text in found["rawTables"]:
        report.problems.append(f"raw pipe-table text: {text!r}")
    if found["unrendered"] and not found["mathjax"]:
        report.problems.append(
            f"{len(found['unrendered'])} math element(s) and MathJax did not load "
            f"(first: {found['unrendered'][0]!r})"
        )
    else:
        for text in found["unrendered"]:
            report.problems.append(f"unrendered math: {text!r}")
    for text in found["rawTex"]:
        report.problems.append(f"raw TeX in the page text: {text!r}")
    for src in found["broken"]:
        report.problems.append(f"image did not load: {src}")
    if screenshots is not None:
        target = screenshots / (relative.replace("/", "__").removesuffix(".html") + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(target))
    return report


def check_book(html_dir: Path, screenshots: Path | None = None) -> list[PageReport]:
    """Check every content page under ``html_dir``; one report per page."""
    html_dir = Path(html_dir)
    pages = content_pages(html_dir)
    if not pages:
        raise RuntimeError(f"no HTML pages under {html_dir}; build the book first")
    browser = open_browser()
    try:
        return [check_page(browser, page, html_dir, screenshots) for page in pages]
    finally:
        browser.quit()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check a built book; exit 1 on any problem."""
    parser = argparse.ArgumentParser(
        prog="python -m ntkbook.book.browser_check",
        description="Open every page of the built book in headless Chromium, offline, and "
        "report raw tables, unrendered math and broken images.",
    )
    parser.add_argument("html", nargs="?", default="_build/html", help="the built HTML book")
    parser.add_argument("--screenshots", help="save a PNG of every page into this folder")
    args = parser.parse_args(argv)
    html_dir = Path(args.html)
    try:
        reports = check_book(html_dir, Path(args.screenshots) if args.screenshots else None)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bad = [report for report in reports if report.problems]
    for report in reports:
        status = f"{len(report.problems)} problem(s)" if report.problems else "ok"
        print(
            f"{report.page}: {report.tables} tables, {report.formulas} formulas, "
            f"{report.images} images: {status}"
        )
        for problem in report.problems[:10]:
            print(f"    {problem}")
        if len(report.problems) > 10:
            print(f"    ... and {len(report.problems) - 10} more")
    problems = sum(len(report.problems) for report in reports)
    print(
        f"browser check: {len(reports)} pages, {sum(r.tables for r in reports)} tables, "
        f"{sum(r.formulas for r in reports)} formulas, {sum(r.images for r in reports)} images; "
        f"{problems} problem(s) on {len(bad)} page(s)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
