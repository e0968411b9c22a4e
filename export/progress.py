"""Step lines with timings for the slow parts of an export (stderr), and the closing summary table."""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence


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
