"""The shared hostile-request table (tests/cases/hostile_requests.json) against every runtime.

- Python API (a subprocess, tests/support/hostile_worker.py): per case the error type and field, the time bound,
  for the image bombs the peak-RSS bound, and that the next good request gives the same logits.
- Python command line, fed the table as one stream on stdin (a good line after every case): every case
  line is its own error record with its line number and the table's type and field, every good line is
  predicted alike; the whole run's peak RSS stays near a good-only run's.
- C++ command line (dfma_cli predict, same stream on stdin): the same records; good lines' logits equal
  Python's (1e-4); each image bomb on its own run within the time and memory bound.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hostile_cases import build_cases, interleaved_lines, load_table
from repo_paths import SUPPORT

NAMES = [row["name"] for row in load_table()["cases"]]
API_NAMES = [row["name"] for row in load_table()["cases"] if "set" in row or "api_kind" in row]
BOMBS = [row["name"] for row in load_table()["cases"] if row.get("rss_mb")]


def _peak_child(cmd: list[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes, float, float]:
    """(exit status, stdout, stderr, seconds, peak RSS in MB) of one child, reaped with os.wait4 for its rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = _communicate_no_wait(proc, stdin, timeout)
    except BaseException:
        proc.kill()
        raise
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, err, time.perf_counter() - start, usage.ru_maxrss / 1024


def _communicate_no_wait(proc: subprocess.Popen, stdin: bytes, timeout: float) -> tuple[bytes, bytes]:
    """Feed stdin and read both pipes to their end without reaping the child (threads, no wait)."""
    import threading

    chunks: dict[str, bytes] = {}

    def read(name, pipe):
        chunks[name] = pipe.read()

    readers = [threading.Thread(target=read, args=(n, p)) for n, p in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(stdin)
    except BrokenPipeError:
        pass
    proc.stdin.close()
    for t in readers:
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"{proc.args[0]} did not finish in {timeout} s")
    return chunks.get("out", b""), chunks.get("err", b"")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    good, cases = build_cases(folder)
    return folder, good, {c.name: c for c in cases}


# ---------------------------------------------------------------- Python API

@pytest.fixture(scope="module")
def api_results(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_api")  # the worker makes its own copy of the table's files
    proc = subprocess.run([sys.executable, str(SUPPORT / "hostile_worker.py"), str(tiny_bundle), str(folder)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return {r["name"]: r for r in rows}


@pytest.mark.parametrize("name", API_NAMES)
def test_python_api_refuses_with_the_tables_kind(api_results, table, name):
    case = table[2][name]
    r = api_results[name]
    assert (r["kind"], r["field"]) == (case.api_kind, case.api_field), r["message"]
    assert r["seconds"] <= case.seconds, f"{r['seconds']:.3f} s > {case.seconds} s"
    if case.rss_mb:
        assert r["rss_mb"] <= case.rss_mb, f"peak RSS grew {r['rss_mb']:.1f} MB > {case.rss_mb} MB"
    assert r["next_same"], "the next good request gave other logits"


# ---------------------------------------------------------------- the command lines

@pytest.fixture(scope="module")
def stream(table):
    _, good, cases = table
    return interleaved_lines(good, list(cases.values()))


def _by_line(text: str) -> dict[int, dict]:
    return {r["line"]: r for r in (json.loads(line) for line in text.splitlines() if line.strip())}


@pytest.fixture(scope="module")
def python_cli(tiny_bundle, stream, tmp_path_factory):
    data, where = stream
    out = tmp_path_factory.mktemp("hostile_py") / "out.jsonl"
    cmd = [sys.executable, "-m", "dfma.runtime", "predict", tiny_bundle, "--input", "-", "--output", out,
           "--format", "jsonl", "--batch-size", "4", "--quiet", "--threads", "1"]
    code, _, err, seconds, rss = _peak_child(cmd, data, 900)
    good_only = b"\n".join([data.splitlines()[0]] * len(where)) + b"\n"
    _, _, _, _, rss_good = _peak_child([*cmd[:8], out.with_name("good.jsonl"), *cmd[9:]], good_only, 900)
    return code, err.decode(errors="replace"), _by_line(out.read_text(encoding="utf-8")), seconds, rss, rss_good


def _check_records(records: dict[int, dict], where: dict, name: str, error_of):
    line = next(n for n, c in where.items() if c is not None and c.name == name)
    case = where[line]
    rec = records.get(line)
    assert rec is not None, f"no output record for line {line}"
    if case.kind is None:
        assert "error" not in rec, rec
    else:
        err = error_of(rec)
        assert (err["type"], err["field"]) == (case.kind, case.field), err
    assert line + 1 in records and "error" not in records[line + 1], "the good line after it was not predicted"


@pytest.mark.parametrize("name", NAMES)
def test_python_cli_reports_each_line(python_cli, stream, name):
    records = python_cli[2]
    _check_records(records, stream[1], name, lambda rec: rec["error"])


def test_python_cli_run_as_a_whole(python_cli, stream):
    code, err, records, seconds, rss, rss_good = python_cli
    where = stream[1]
    assert code == 1 and "Traceback" not in err
    assert sorted(records) == sorted(where), "a line was lost or invented"
    goods = [np.asarray(list(records[n]["probabilities"].values())) for n, c in where.items() if c is None]
    assert all(np.allclose(g, goods[0], atol=1e-5) for g in goods)  # batches differ in padding only
    assert len({records[n]["relation"] for n, c in where.items() if c is None}) == 1
    assert rss <= rss_good + 100, f"peak RSS {rss:.0f} MB vs {rss_good:.0f} MB for good lines only"
    assert seconds <= 300


@pytest.fixture(scope="module")
def cpp_cli(cli, tiny_bundle, stream):
    data, _ = stream
    code, out, err, seconds, rss = _peak_child([cli, "predict", "--bundle", tiny_bundle, "--batch", "4",
                                                "--threads", "1"], data, 900)
    return code, err.decode(errors="replace"), _by_line(out.decode()), seconds, rss


@pytest.mark.parametrize("name", NAMES)
def test_cpp_cli_reports_each_line_as_python(cpp_cli, stream, name):
    code, err, records, *_ = cpp_cli
    assert code == 0, err
    _check_records(records, stream[1], name, lambda rec: rec["error"])


def test_cpp_good_lines_equal_python(cpp_cli, api_results, stream):
    _, _, records, *_ = cpp_cli
    baseline = np.asarray(api_results["__baseline__"]["logits"], dtype=np.float32)
    goods = [np.asarray(records[n]["logits"], dtype=np.float32) for n, c in stream[1].items() if c is None]
    assert all(float(np.abs(g - baseline).max()) <= 1e-4 for g in goods)  # batches differ in padding only


@pytest.mark.parametrize("name", BOMBS)
def test_cpp_image_bombs_bounded(cli, tiny_bundle, table, name):
    _, good, cases = table
    case = cases[name]
    good_line = json.dumps(good).encode()
    cmd = [cli, "predict", "--bundle", tiny_bundle, "--threads", "1"]
    _, _, _, base_s, base_rss = _peak_child(cmd, good_line + b"\n" + good_line + b"\n", 300)
    code, out, err, seconds, rss = _peak_child(cmd, good_line + b"\n" + case.line + b"\n", 300)
    assert code == 0, err
    assert "error" in _by_line(out.decode())[2]
    assert seconds - base_s <= case.seconds, f"{seconds:.2f} s vs {base_s:.2f} s for two good lines"
    assert rss - base_rss <= case.rss_mb, f"peak RSS {rss:.0f} MB vs {base_rss:.0f} MB for two good lines"
