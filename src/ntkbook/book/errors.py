"""Exceptions raised by the book pipeline.

The command line maps them to exit codes: :class:`UsageError` (a bad chapter, preset or parameter
name or value) exits with 2, like an argparse error; :class:`ChapterFailed` and :class:`BuildFailed`
exit with 1.
"""

from __future__ import annotations


class BookError(Exception):
    """Base class of every error the book pipeline raises on purpose."""


class UsageError(BookError):
    """The caller named something that does not exist or gave a value that cannot be used."""


class ChapterFailed(BookError):
    """A chapter notebook raised, or finished without writing its headline numbers."""


class BuildFailed(BookError):
    """One or more chapters failed, or Jupyter Book reported warnings or errors."""


class SummaryError(ValueError):
    """A headline number cannot be written to ``summary.json`` (not finite, or not JSON data)."""
