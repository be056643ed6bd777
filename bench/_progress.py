"""A one-line progress bar on stderr, without a dependency.

On a terminal the line is redrawn in place (carriage return, then the bar,
the case count, the case being measured, its phase and the elapsed time),
at most every ``REDRAW_S``; when stderr is a file or a pipe (CI, ``tee``)
nothing is redrawn and one line per finished case is written instead, so
logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

#: Cells of the bar itself.
BAR_CELLS = 24
#: Least time between two redraws, seconds: smooth enough, and cheap.
REDRAW_S = 0.1


class Progress:
    """Progress over ``total`` cases."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self._label = ""
        self._last_draw = 0.0

    def start(self, label: str) -> None:
        """A new case starts."""
        self._label = label
        self.tick("start", force=True)

    def tick(self, phase: str, force: bool = False) -> None:
        """Redraw (terminal only) with the current case's ``phase``."""
        now = time.monotonic()
        if not self.live or (not force and now - self._last_draw < REDRAW_S):
            return
        self._last_draw = now
        filled = BAR_CELLS * self.done // self.total
        bar = "#" * filled + "-" * (BAR_CELLS - filled)
        line = (
            f"[{bar}] {self.done}/{self.total} {self._label} ({phase}) {now - self.started:5.0f}s"
        )
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()

    def finish(self, note: str) -> None:
        """The current case ended; ``note`` is its one-line outcome."""
        self.done += 1
        if self.live:
            self.tick("done", force=True)
        else:
            self.stream.write(f"[{self.done}/{self.total}] {self._label}: {note}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        """A message on its own line (a skipped peer, a failed case)."""
        if self.live:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()
