"""The book pipeline: parameters, presets, summaries, provenance, caching and the book build."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import pytest

from ntkbook.book import (
    BookError,
    BuildFailed,
    ChapterFailed,
    Project,
    SummaryError,
    UsageError,
    build_book,
    check_kernel,
    parse_override,
    read_summary,
    resolve_parameters,
    run_chapter,
    write_summary,
)
from ntkbook.book.presets import parse_parameters_source
from ntkbook.book.provenance import git_state, source_tree_hash
from ntkbook.cli import main

# --------------------------------------------------------------------------- parameters cell


def test_parameters_cell_reads_literals_and_comments() -> None:
    source = (
        "# smoke size\n"
        "epochs = 3  # training epochs\n"
        "lr: float = 1e-3\n"
        "widths = (8, 16)\n"
        "activation = 'relu'\n"
        "seed = -1\n"
        "extra = None\n"
    )
    params = parse_parameters_source(source)
    assert {name: p.default for name, p in params.items()} == {
        "epochs": 3,
        "lr": 0.001,
        "widths": [8, 16],
        "activation": "relu",
        "seed": -1,
        "extra": None,
    }
    assert params["epochs"].comment == "training epochs"
    assert params["lr"].comment == ""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("n = len([1, 2])\n", "must be a literal"),
        ("import numpy as np\n", "only `name = literal`"),
        ("a, b = 1, 2\n", "plain name"),
        ("x = {1, 2}\n", "not a JSON value"),
        ("x = = 1\n", "syntax error"),
    ],
)
def test_parameters_cell_rejects_code(source: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_parameters_source(source)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("epochs=3", ("epochs", 3)),
        ("lr=1e-3", ("lr", 0.001)),
        ("lr=0.5", ("lr", 0.5)),
        ("widths=[8,16]", ("widths", [8, 16])),
        ("activation=relu", ("activation", "relu")),
        ("flag=true", ("flag", True)),
        ("label=", ("label", None)),
    ],
)
def test_override_values_are_yaml(text: str, expected: tuple) -> None:
    name, value = parse_override(text)
    assert (name, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["epochs", "=3", "two words=1"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(UsageError, match="name=value"):
        parse_override(text)


# --------------------------------------------------------------------------- presets


def test_preset_and_overrides_layer_on_defaults(book_project) -> None:
    root = book_project(presets={"good.book": "n: 5\nscale: 2\n", "good.smoke": "n: 3\n"})
    project = Project(root)
    chapter = project.chapter("good")
    assert resolve_parameters(project, chapter, "smoke") == {"n": 3, "scale": 1.5, "label": "x"}
    book = resolve_parameters(project, chapter, "book")
    # an int preset value for a float default is widened, so 2 and 2.0 hash the same
    assert book == {"n": 5, "scale": 2.0, "label": "x"}
    assert isinstance(book["scale"], float)
    assert resolve_parameters(project, chapter, "book", {"n": 7}) == {
        "n": 7,
        "scale": 2.0,
        "label": "x",
    }


def test_smoke_preset_file_cannot_change_the_parameters_cell(book_project) -> None:
    root = book_project(presets={"good.smoke": ""})
    project = Project(root)
    defaults = {"n": 3, "scale": 1.5, "label": "x"}
    assert resolve_parameters(project, project.chapter("good"), "smoke") == defaults
    (root / "params" / "good.smoke.yaml").write_text("n: 3\nscale: 2.5\n")
    with pytest.raises(UsageError, match=r"changes scale=2.5 \(cell: 1.5\)"):
        resolve_parameters(project, project.chapter("good"), "smoke")


def test_preset_with_unknown_parameter_names_it(book_project) -> None:
    root = book_project(presets={"good.book": "n: 5\nepohcs: 10\nlr: 0.1\n"})
    project = Project(root)
    with pytest.raises(UsageError) as err:
        resolve_parameters(project, project.chapter("good"), "book")
    message = str(err.value)
    assert "'epohcs', 'lr'" in message
    assert "valid parameters: n, scale, label" in message
    assert "good.book.yaml" in message


def test_preset_value_of_wrong_type(book_project) -> None:
    root = book_project(presets={"good.book": "n: many\n"})
    project = Project(root)
    with pytest.raises(UsageError, match=r"'n' expects int \(default 3\), got str 'many'"):
        resolve_parameters(project, project.chapter("good"), "book")


def test_missing_preset_file_lists_available_presets(book_project) -> None:
    project = Project(book_project())
    with pytest.raises(UsageError, match="no preset 'paper'.*available presets: smoke, book"):
        resolve_parameters(project, project.chapter("good"), "paper")


def test_unknown_chapter_lists_chapters(book_project) -> None:
    project = Project(book_project())
    with pytest.raises(UsageError, match="unknown chapter 'bad'; valid chapters: good"):
        project.chapter("bad")


def test_toc_chapters_and_missing_notebook(book_project) -> None:
    root = book_project()
    assert Project(root).toc_chapters() == ["good"]
    toc = root / "_toc.yml"
    toc.write_text(toc.read_text() + "      - file: executed/ghost/ghost\n")
    with pytest.raises(UsageError, match="lists chapter 'ghost'.*valid chapters: good"):
        Project(root).toc_chapters()


# --------------------------------------------------------------------------- write_summary


def test_write_summary_converts_numpy_and_jax(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    returned = write_summary(
        {
            "loss": np.float32(0.25),
            "steps": np.int64(7),
            "converged": np.bool_(True),
            "spectrum": jnp.array([3.0, 1.0]),
            "nested": {"trace": jnp.float32(2.5), "per_sample": [np.float64(1.25), 2]},
            "name": "mlp",
        },
        path,
    )
    assert returned is None  # the last cell of a chapter shows no output
    data = json.loads(path.read_text())
    assert data["chapter_results"] == {
        "loss": 0.25,
        "steps": 7,
        "converged": True,
        "spectrum": [3.0, 1.0],
        "nested": {"trace": 2.5, "per_sample": [1.25, 2]},
        "name": "mlp",
    }
    assert data["runtime"]["jax_backend"] == jax.default_backend()
    assert len(data["runtime"]["devices"]) == len(jax.devices())
    assert not list(tmp_path.glob(".summary.json.*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("numbers", "where"),
    [
        ({"loss": float("nan")}, "'loss' is nan"),
        ({"loss": np.float64("inf")}, "'loss' is inf"),
        ({"losses": np.array([1.0, 2.0, np.nan])}, r"'losses\[2\]' is nan"),
        ({"curve": {"entropy": jnp.array([[1.0, -jnp.inf]])}}, r"'curve.entropy\[0\]\[1\]'"),
        ({"values": [1.0, math.nan]}, r"'values\[1\]' is nan"),
    ],
)
def test_write_summary_rejects_non_finite(tmp_path: Path, numbers: dict, where: str) -> None:
    target = tmp_path / "summary.json"
    target.write_text('{"chapter_results": {"old": 1}}')
    with pytest.raises(SummaryError, match=where):
        write_summary(numbers, target)
    # the previous file is untouched: nothing was half-written
    assert json.loads(target.read_text()) == {"chapter_results": {"old": 1}}


def test_write_summary_rejects_non_json(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="'model' has type object"):
        write_summary({"model": object()}, tmp_path / "summary.json")
    with pytest.raises(SummaryError, match="keys must be str"):
        write_summary({1: 2.0}, tmp_path / "summary.json")
    with pytest.raises(TypeError, match="dict of numbers"):
        write_summary([1.0], tmp_path / "summary.json")


# --------------------------------------------------------------------------- content hash


def test_source_tree_hash_tracks_content_and_names_not_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = source_tree_hash(tmp_path / "pkg")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0\1")
    assert source_tree_hash(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    changed = source_tree_hash(tmp_path / "pkg")
    assert changed != first
    (tmp_path / "pkg" / "a.py").rename(tmp_path / "pkg" / "b.py")
    assert source_tree_hash(tmp_path / "pkg") not in (first, changed)


def test_git_state(tmp_path: Path, monkeypatch) -> None:
    # keep git from finding a repository above the temporary directory
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    assert git_state(repo) == {"commit": "unknown", "dirty": None}
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    assert git_state(repo) == {"commit": head.stdout.strip(), "dirty": False}
    (repo / "a.txt").write_text("b\n")
    assert git_state(repo) == {"commit": head.stdout.strip(), "dirty": True}


def test_kernel_must_be_this_interpreter(tmp_path: Path, monkeypatch) -> None:
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    launcher = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": ["/opt/other/bin/python", *launcher]}
    (spec_dir / "kernel.json").write_text(json.dumps({**spec, "display_name": "Other"}))
    # JUPYTER_PATH comes first in the kernel spec search path, like a user-level kernel spec
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(BookError, match="starts '/opt/other/bin/python', not the interpreter"):
        check_kernel()
    spec["argv"][0] = "python"  # jupyter_client runs sys.executable for a bare `python`
    (spec_dir / "kernel.json").write_text(json.dumps({**spec, "display_name": "Env"}))
    check_kernel()


# --------------------------------------------------------------------------- running chapters


def test_run_records_provenance_and_caches(book_project) -> None:
    root = book_project()
    project = Project(root)
    lines: list[str] = []

    first = run_chapter(project, "good", preset="book", log=lines.append)
    outdir = root / "executed" / "good"
    assert first.executed and first.notebook == outdir / "good.ipynb"
    assert "executed in" in lines[-1]
    assert (outdir / "values.png").stat().st_size > 0  # written with cwd = output dir

    summary = read_summary("good", root=root)
    results = summary["chapter_results"]
    assert results["total"] == pytest.approx(1.5 * (0 + 1 + 2 + 3 + 4))  # book preset: n = 5
    assert results["values"] == [0.0, 1.5, 3.0, 4.5, 6.0]
    # the kernel is the interpreter of this environment, not some other python3 on PATH
    assert Path(results["kernel_prefix"]) == Path(sys.prefix)
    provenance = summary["provenance"]
    assert provenance["parameters"] == {"n": 5, "scale": 1.5, "label": "x"}
    assert provenance["preset"] == "book"
    assert provenance["command"] == "ntkbook run good --preset book"
    assert set(provenance["git"]) == {"commit", "dirty"}
    assert provenance["packages"]["numpy"] == np.__version__
    assert provenance["runtime"]["jax_backend"]
    assert provenance["wall_time_s"] > 0
    assert provenance["content_hash"].startswith("sha256:")

    nb = nbformat.read(outdir / "good.ipynb", as_version=4)
    assert nb.metadata["ntkbook"] == provenance
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata.tags
    assert "n = 5" in injected[0].source
    defaults = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert "remove-cell" in defaults[0].metadata.tags
    assert nb.cells[-1].cell_type == "markdown"
    assert nb.cells[-1].source.startswith("## Provenance")
    assert "| `n` | `5` |" in nb.cells[-1].source
    outputs = [output for cell in nb.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs)

    mtime = (outdir / "good.ipynb").stat().st_mtime_ns
    second = run_chapter(project, "good", preset="book", log=lines.append)
    assert not second.executed and second.content_hash == first.content_hash
    assert "skipped (unchanged)" in lines[-1]
    assert (outdir / "good.ipynb").stat().st_mtime_ns == mtime

    forced = run_chapter(project, "good", preset="book", force=True, log=lines.append)
    assert forced.executed and forced.content_hash == first.content_hash

    changed = run_chapter(project, "good", preset="book", overrides={"n": 2}, log=lines.append)
    assert changed.executed and changed.content_hash != first.content_hash
    summary = read_summary("good", root=root)
    assert summary["chapter_results"]["values"] == [0.0, 1.5]
    assert summary["provenance"]["command"] == "ntkbook run good --preset book -p n=2"
    again = run_chapter(project, "good", preset="book", overrides={"n": 2}, log=lines.append)
    assert not again.executed


def test_failing_chapter_leaves_the_published_run_and_no_summary(book_project) -> None:
    fails = {
        "parameters": "n = 1\nfail = False\n",
        "code": [
            "from ntkbook.book import Ledger, write_summary\n"
            "ledger = Ledger('flaky', statements={'F1': 'It runs.'})\n"
            "ledger.not_tested('F1', 'nothing', reason='a test')\n"
            "write_summary({'n': n}, claims=ledger)",
            "if fail:\n    raise ValueError(f'deliberate failure {n}')",
        ],
    }
    root = book_project(chapters={"flaky": fails}, presets={})
    project = Project(root)
    good = run_chapter(project, "flaky", log=lambda line: None)
    published = root / "executed" / "flaky"
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    with pytest.raises(ChapterFailed) as err:
        run_chapter(project, "flaky", overrides={"fail": True}, log=lambda line: None)
    assert "ValueError: deliberate failure 1" in str(err.value)
    assert "chapter 'flaky' failed" in str(err.value)
    # the published run is the good one, byte for byte
    assert {p.name: p.read_bytes() for p in published.iterdir()} == before
    assert read_summary("flaky", root=root)["provenance"]["content_hash"] == good.content_hash
    # the failed run keeps its notebook (with the traceback) but no summary
    partial = next((root / "executed" / ".runs").glob("*.partial"))
    assert (partial / "flaky.ipynb").is_file() and not (partial / "summary.json").exists()
    assert str(partial / "flaky.ipynb") in str(err.value)


def test_chapter_must_write_a_summary(book_project) -> None:
    silent = {"parameters": "n = 1\n", "code": ["print(n)"]}
    root = book_project(chapters={"silent": silent}, presets={})
    with pytest.raises(ChapterFailed, match="chapter 'silent' ran but wrote no summary.json"):
        run_chapter(Project(root), "silent", log=lambda line: None)
    assert not (root / "executed" / "silent" / "summary.json").exists()


def test_chapter_must_report_its_papers_claims(book_project) -> None:
    no_claims = {
        "parameters": "n = 1\n",
        "code": ["from ntkbook.book import write_summary\nwrite_summary({'n': n})"],
    }
    root = book_project(chapters={"no_claims": no_claims}, presets={})
    with pytest.raises(ChapterFailed, match="chapter 'no_claims' wrote no claims"):
        run_chapter(Project(root), "no_claims", log=lambda line: None)
    assert not (root / "executed" / "no_claims" / "summary.json").exists()


def test_a_registered_chapter_must_report_exactly_its_claim_ids(book_project) -> None:
    # "swarmrl" is registered with the claims S1 and S2; this impostor reports only S1.
    partial = {
        "parameters": "n = 1\n",
        "code": [
            "from ntkbook.book import Ledger, write_summary\n"
            "ledger = Ledger('swarmrl', statements={'S1': 'It works.'})\n"
            "ledger.not_tested('S1', 'success rate', reason='a test')\n"
            "write_summary({'n': n}, claims=ledger)"
        ],
    }
    root = book_project(chapters={"swarmrl": partial}, presets={})
    with pytest.raises(ChapterFailed, match=r"reported claims \['S1'\].*\['S1', 'S2'\]"):
        run_chapter(Project(root), "swarmrl", log=lambda line: None)


def test_build_fails_on_a_failing_chapter(book_project, good_chapter, capsys) -> None:
    broken = {"parameters": "n = 1\n", "code": ["1 / (n - 1)"]}
    root = book_project(chapters={"good": good_chapter, "broken": broken}, presets={})
    code = main(["build", "--root", str(root), "--preset", "smoke"])
    assert code == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err
    assert "1 of 2 chapter(s) failed: broken" in err
    assert not (root / "_build").exists()  # no HTML from a book with a failed chapter
    # the good chapter still ran, so the next build only re-executes the broken one
    assert read_summary("good", root=root)["chapter_results"]["total"] == 4.5


@pytest.mark.book
def test_build_renders_executed_chapters_with_warnings_as_errors(book_project) -> None:
    root = book_project()
    # pages that exist but are not in the toc must not be rendered
    (root / "README.md").write_text("# Readme\n")
    (root / "src").mkdir()
    (root / "src" / "notes.md").write_text("# Notes\n")
    html = build_book(Project(root), preset="smoke", log=lambda line: None)
    assert html == root / "_build" / "html"
    page = (html / "executed" / "good" / "good.html").read_text()
    assert "<img" in page  # the figure output of the executed notebook
    # a Markdown output's pipe table renders as a table, and its math as math
    assert "<table" in page and "<p>| value" not in page
    assert '<span class="math notranslate nohighlight">\\(x^2\\)</span>' in page
    # MathJax is served from the book itself (sphinx's default is a CDN URL)
    assert 'src="../../_static/mathjax/tex-mml-chtml.js"' in page
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts").is_dir()
    assert "Provenance" in page
    assert read_summary("good", root=root)["provenance"]["content_hash"] in page
    # both parameter cells carry remove-cell; their comments would otherwise be in the page
    assert "how many values" not in page  # parameters cell (smoke defaults)
    assert "# Parameters" not in page  # papermill's injected-parameters cell
    assert (html / "book" / "intro.html").is_file()
    sources = html / "_sources"
    rendered = {path.relative_to(sources).as_posix() for path in sources.rglob("*.*")}
    assert rendered == {"book/intro.md", "executed/good/good.ipynb"}
    assert not (html / "notebooks").exists() and not (html / "README.html").exists()

    # a Sphinx warning fails the build: a citation of a key that is not in references.bib
    (root / "book" / "intro.md").write_text("# Test\n\n{cite:p}`no_such_key`\n")
    with pytest.raises(BuildFailed, match="jupyter-book build failed"):
        build_book(Project(root), preset="smoke", log=lambda line: None)


def test_read_summary_needs_a_finished_run(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    write_summary({"x": 1.0}, outdir / "summary.json")  # as the notebook does, before the driver
    with pytest.raises(SummaryError, match="no provenance"):
        read_summary("good", output_dir=outdir)


def test_output_dir_option(book_project, tmp_path: Path) -> None:
    root = book_project()
    outdir = tmp_path / "elsewhere"
    result = run_chapter(Project(root), "good", output_dir=outdir, log=lambda line: None)
    assert result.notebook == outdir / "good.ipynb" and (outdir / "values.png").is_file()
    assert read_summary("good", output_dir=outdir)["chapter_results"]["total"] == 4.5
    assert not (root / "executed").exists()
