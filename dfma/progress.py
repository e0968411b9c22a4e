"""Progress on stderr for the command-line tools, and the plain text tables they print (no dependencies).

:class:`Progress` counts lines of a request file (the runtime's CLI); :class:`Steps` announces and times
the slow steps of an export; :func:`table` and :func:`human_bytes` format their summaries.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
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


class Steps:
    """Prints ``[i/n] what ...`` then ``[i/n] what: 3.2 s (cpu 5.1 s)`` per step; ``quiet`` prints nothing.

    The CPU time (all threads of this process) tells a slow step from a busy machine.
    """

    def __init__(self, total: int, *, quiet: bool = False, stream=None):
        """``total`` steps will be announced."""
        self.total, self.quiet, self.stream = total, quiet, stream or sys.stderr
        self.index = 0
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Announce a step, time it, print its duration (or that it failed)."""
        self.index += 1
        self._print(f"[{self.index}/{self.total}] {what} ...")
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        except BaseException:
            self._print(f"[{self.index}/{self.total}] {what}: failed after {time.perf_counter() - start:.1f} s")
            raise
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        self.timings[what] = round(took, 2)
        self._print(f"[{self.index}/{self.total}] {what}: {took:.1f} s (cpu {cpu:.1f} s)")

    def elapsed(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.started

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
