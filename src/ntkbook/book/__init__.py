"""The book pipeline: run chapters with papermill, record provenance, build the Jupyter Book.

Chapter notebooks need only :func:`write_summary`; the driver (:func:`run_chapter`,
:func:`build_book`) is what ``ntkbook run`` and ``ntkbook build`` call. Papermill and Jupyter Book
are imported only when a chapter is actually executed, so importing this package inside a
notebook stays cheap.
"""

from ntkbook.book.claims import Ledger
from ntkbook.book.driver import RunResult, build_book, check_kernel, run_chapter
from ntkbook.book.errors import BookError, BuildFailed, ChapterFailed, SummaryError, UsageError
from ntkbook.book.presets import PRESETS, parse_override, read_parameters, resolve_parameters
from ntkbook.book.project import Chapter, Project
from ntkbook.book.summary import SUMMARY_FILE, read_summary, write_summary

__all__ = [
    "PRESETS",
    "SUMMARY_FILE",
    "BookError",
    "BuildFailed",
    "Chapter",
    "ChapterFailed",
    "Ledger",
    "Project",
    "RunResult",
    "SummaryError",
    "UsageError",
    "build_book",
    "check_kernel",
    "parse_override",
    "read_parameters",
    "read_summary",
    "resolve_parameters",
    "run_chapter",
    "write_summary",
]
