"""Progress on stderr for the command line: done / total lines, bad lines, rate (no dependencies)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``label: done/total lines, bad, rate`` at most every ``interval`` seconds.

    On a terminal the line is redrawn in place; elsewhere (logs, CI) a line is printed every
    ``interval * 20`` seconds. ``close()`` prints the final count.
    """

    def __init__(self, label: str, total: int | None, *, stream: TextIO | None = None,
                 enabled: bool = True, interval: float = 0.5):
        """Start counting now; ``enabled=False`` prints nothing."""
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else interval * 20
        self.start = self.last = time.perf_counter()
        self.done = self.bad = 0

    def _line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        return (f"{self.label}: {self.done}{total} lines, {self.bad} bad, "
                f"{self.done / elapsed:.1f} lines/s")

    def update(self, done: int = 1, bad: int = 0) -> None:
        """Count ``done`` more lines, ``bad`` of them unusable; redraw when due."""
        self.done += done
        self.bad += bad
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self.stream.write(("\r" + self._line()) if self.tty else self._line() + "\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        """Print a message on its own line (a bad line's report) without garbling the progress line."""
        prefix = "\r\033[K" if self.tty and self.enabled else ""
        self.stream.write(prefix + message + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Print the final count."""
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
            self.stream.flush()
