"""Progress output: bars on a terminal only; in a log (a file, a pipe) one line per step and never a carriage
return (``dfma.progress.bar``, used by every loop with a bar)."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401

from dfma.progress import Progress, StepLine, bar, is_terminal

from repo_paths import REPO


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_step_and_no_carriage_return():
    out = io.StringIO()
    assert list(bar(range(5), desc="guard: int8 static (13 fp32)", unit="batch", stream=out)) == [0, 1, 2, 3, 4]
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("guard: int8 static (13 fp32): 5/5 batch in "), text


def test_a_bar_moved_by_update_prints_its_line_once_on_close():
    out = io.StringIO()
    b = bar(total=3, desc="calibrating", unit="batch", stream=out)
    for _ in range(3):
        b.update(1)
    b.set_postfix_str("batch 4 len 16")
    b.close()
    b.close()
    assert out.getvalue().count("\n") == 1 and "calibrating: 3/3 batch in" in out.getvalue()
    assert "(batch 4 len 16)" in out.getvalue()


def test_a_long_step_prints_a_periodic_line():
    out = io.StringIO()
    b = StepLine(range(3), desc="posts", unit="post", stream=out, every=0.0)
    b.set_postfix(loss="0.123")
    list(b)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all("\r" not in line for line in lines)
    assert lines[0].startswith("posts: 1/3 post, ") and lines[0].endswith("(loss=0.123) ...")
    assert lines[-1].startswith("posts: 3/3 post in ")


def test_disabled_prints_nothing():
    out = io.StringIO()
    assert list(bar([1, 2], desc="x", enabled=False, stream=out)) == [1, 2]
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar():
    pytest.importorskip("tqdm")
    out = Terminal()
    assert is_terminal(out) and not is_terminal(io.StringIO())
    assert list(bar(range(3), desc="validating", stream=out)) == [0, 1, 2]
    assert "\r" in out.getvalue()  # tqdm redraws in place


def test_line_progress_in_a_log_has_no_carriage_return():
    out = io.StringIO()
    p = Progress("requests", 3, stream=out, interval=0.0)
    p.update(2, bad=1)
    p.note("line 2: bad")
    p.close()
    assert "\r" not in out.getvalue() and out.getvalue().splitlines()[-1].startswith("requests: 2/3 lines, 1 bad")


@pytest.mark.slow
def test_precision_step_log_has_no_carriage_return(tiny_bundle, mnre_dir, tmp_path):  # noqa: F811
    """export/to_precision.py with its progress on (no --quiet), stderr into a file as `make demo > log 2>&1`."""
    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    log = tmp_path / "log"
    with log.open("wb") as f:
        proc = subprocess.run([sys.executable, str(REPO / "export" / "to_precision.py"), str(bundle), "--int8",
                               "dynamic", "--data", str(mnre_dir), "--guard-samples", "16", "--latency-samples", "2"],
                              cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=900)
    text = log.read_bytes().decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert "\r" not in text, [line for line in text.split("\n") if "\r" in line][:3]
    assert max(len(line) for line in text.splitlines()) < 1000
    assert any(line.startswith("guard: ") and " batch in " in line for line in text.splitlines()), text[-3000:]
