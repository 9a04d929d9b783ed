"""Progress of a chapter run that a person can follow: per-cell lines, a heartbeat, a status line.

``ntkbook run`` and ``ntkbook build`` execute notebooks that can take many minutes, much of it in
single cells. :class:`CellProgress` reports while papermill executes:

- **not on a terminal** (CI logs, a redirected file): one line per finished code cell with its
  seconds and the chapter's elapsed time, plus a heartbeat line every ``heartbeat_s`` seconds
  while one cell keeps running, so a log never goes silent for long;
- **on a terminal**: one status line, redrawn every second, with the cell, the elapsed time and the
  previous run's wall time as an estimate.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

Log = Callable[[str], None]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _first_line(source: str, width: int = 48) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


class CellProgress:
    """Reports the progress of one notebook execution (see the module docstring).

    Args:
        n_code_cells: how many code cells the notebook has.
        log: receives the lines (non-interactive mode).
        interactive: redraw one status line on ``stream`` instead of printing lines.
        label: prefix of every line, e.g. ``"[2/8] scaling (book)"``.
        estimate_s: the previous run's wall time, shown as ``~3 min 10 s``; ``None`` if unknown.
        heartbeat_s: seconds between "still running" lines while a cell runs (non-interactive).
    """

    def __init__(
        self,
        n_code_cells: int,
        log: Log,
        interactive: bool,
        label: str,
        estimate_s: float | None = None,
        heartbeat_s: float = 60.0,
        stream: TextIO | None = None,
    ) -> None:
        self.n_code_cells = n_code_cells
        self.log = log
        self.interactive = interactive
        self.label = label
        self.estimate_s = estimate_s
        self.heartbeat_s = heartbeat_s
        self.stream = stream if stream is not None else sys.stdout
        self.started = time.monotonic()
        self.cell_number = 0
        self.cell_started = self.started
        self.cell_text = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = self.started

    def _estimate(self) -> str:
        return f" of ~{format_duration(self.estimate_s)}" if self.estimate_s else ""

    def start(self) -> None:
        """Start the heartbeat (or status-line) thread."""
        self.started = self.cell_started = self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ntkbook-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and clear the status line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.interactive:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def cell_start(self, source: str) -> None:
        with self._lock:
            self.cell_number += 1
            self.cell_started = self._last_beat = time.monotonic()
            self.cell_text = _first_line(source)

    def cell_done(self) -> None:
        now = time.monotonic()
        with self._lock:
            seconds = now - self.cell_started
            number = self.cell_number
        if not self.interactive:
            self.log(
                f"{self.label}: cell {number}/{self.n_code_cells} done in "
                f"{format_duration(seconds)} (elapsed {format_duration(now - self.started)}"
                f"{self._estimate()})"
            )

    def _run(self) -> None:
        interval = 1.0 if self.interactive else min(self.heartbeat_s, 5.0)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._lock:
                number, text = self.cell_number, self.cell_text
                in_cell = now - self.cell_started
                due = now - self._last_beat >= self.heartbeat_s
                if due:
                    self._last_beat = now
            elapsed = format_duration(now - self.started)
            if self.interactive:
                line = (
                    f"{self.label}: cell {number}/{self.n_code_cells}, "
                    f"{elapsed}{self._estimate()}  {text}"
                )
                self.stream.write("\r\x1b[2K" + line[:160])
                self.stream.flush()
            elif due and number:
                self.log(
                    f"{self.label}: cell {number}/{self.n_code_cells} still running after "
                    f"{format_duration(in_cell)} (elapsed {elapsed}{self._estimate()}): {text}"
                )
