"""Progress on stderr for the command-line tools, and the plain text tables they print (no dependencies).

:func:`bar` is the one progress bar of the project: a tqdm bar on a terminal, and where the stream is a file or
a pipe (a log, CI) no bar and no carriage return, one line per step instead (:class:`StepLine`).
:class:`Progress` counts lines of a request file (the runtime's CLI); :class:`Steps` announces and times
the slow steps of an export; :func:`table` and :func:`human_bytes` format their summaries.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

# a step that runs longer than this prints a line this often where there is no bar (so a log shows it is alive)
LOG_EVERY_S = 60.0


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (bars redrawn in place with carriage returns)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        enabled: bool = True, stream: TextIO | None = None, leave: bool = False, every: float = LOG_EVERY_S):
    """A progress bar over ``iterable`` (or one moved with ``update``): tqdm's on a terminal; elsewhere a
    :class:`StepLine` (one line when the step ends, one every ``every`` seconds of a long step).
    ``enabled=False`` prints nothing. The result iterates, and has ``update``, ``set_postfix_str``,
    ``set_postfix`` and ``close``; close it (or exhaust it) to print the step's line."""
    stream = stream or sys.stderr
    if enabled and is_terminal(stream):
        try:
            from tqdm import tqdm
        except ImportError:  # the runtime-only install has no tqdm: lines on the terminal too
            pass
        else:
            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream, dynamic_ncols=True)
    return StepLine(iterable, desc=desc, total=total, unit=unit, enabled=enabled, stream=stream, every=every)


class StepLine:
    """The bar of a stream that is not a terminal: ``desc: 32/32 batch in 4.1 s`` when the step ends, and
    ``desc: 10/32 batch, 60 s ...`` every ``every`` seconds while it runs; never a carriage return."""

    def __init__(self, iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
                 enabled: bool = True, stream: TextIO | None = None, every: float = LOG_EVERY_S):
        """Start timing now; ``total`` defaults to ``len(iterable)`` where it has one."""
        self.iterable, self.desc, self.unit, self.enabled = iterable, desc, unit, enabled
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.stream, self.every = total, stream or sys.stderr, every
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError(f"{self.desc}: this bar was made without an iterable; use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> StepLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.n}{total} {self.unit}"

    def update(self, n: int = 1) -> None:
        """``n`` more done; a line when ``every`` seconds passed since the last."""
        self.n += n
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            postfix = f" ({self.postfix})" if self.postfix else ""
            self._write(f"{self.desc}: {self._count()}, {now - self.start:.0f} s{postfix} ...")

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Text shown after the count in the periodic lines (the item at work)."""
        self.postfix = text

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: object) -> None:
        """``key=value`` pairs shown after the count (tqdm's ``set_postfix``)."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        """Print the step's line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.enabled:
            postfix = f" ({self.postfix})" if self.postfix else ""
            self._write(f"{self.desc}: {self._count()} in {time.perf_counter() - self.start:.1f} s{postfix}")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


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
        self.tty = is_terminal(self.stream)
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
