"""``python -m dfma.runtime predict`` never loses a good line: streams, bad bytes, fatal errors, the output file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

GOOD = {"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18]}
GOOD_LINE = json.dumps(GOOD).encode()


def _cli(*args, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dfma.runtime", *map(str, args)], input=stdin,
                          capture_output=True, timeout=timeout, check=False)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _one_line_fatal(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    fatal = [line for line in err.splitlines() if line.startswith("dfma.runtime: ") and "Error" in line]
    assert len(fatal) == 1, err
    return fatal[0]


def test_stdin_stream_with_bom_bad_bytes_and_a_long_line(tiny_bundle, tmp_path):
    lines = [b"\xef\xbb\xbf" + GOOD_LINE,                    # 1: BOM, fine
             b'{"text": "Obama \xff Paris", "head": [0, 5], "tail": [8, 13]}',  # 2: not UTF-8
             GOOD_LINE,                                         # 3
             b"",                                               # 4: blank, skipped
             b'{"x": "' + b"a" * 2000 + b'"}',                  # 5: over --max-line-bytes
             GOOD_LINE + b"\r",                                 # 6: CRLF
             b'{"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18], "words": ["a"]}',  # 7
             GOOD_LINE]                                         # 8, no final newline
    out = tmp_path / "out.jsonl"
    proc = _cli("predict", tiny_bundle, "--input", "-", "--output", out, "--batch-size", "8", "--quiet",
                "--max-line-bytes", "1000", stdin=b"\n".join(lines))
    assert proc.returncode == 1, proc.stderr.decode()
    rows = {r["line"]: r for r in _rows(out)}
    assert sorted(rows) == [1, 2, 3, 5, 6, 7, 8]
    assert all("relation" in rows[n] for n in (1, 3, 6, 8))
    assert rows[1]["probabilities"] == rows[3]["probabilities"] == rows[8]["probabilities"]
    assert (rows[2]["error"]["type"], rows[2]["error"]["field"]) == ("DataError", "record")
    assert "0xff" in rows[2]["error"]["message"]
    assert "max_line_bytes" in rows[5]["error"]["message"]
    assert rows[7]["error"]["field"] == "text" and "'words'" in rows[7]["error"]["message"]
    err = proc.stderr.decode()
    assert "-:2: DataError (record)" in err and "-:5: DataError" in err


def test_named_pipe_and_dev_stdin_are_read_once(tiny_bundle, tmp_path):
    fifo = tmp_path / "requests.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(GOOD_LINE + b"\n" + GOOD_LINE + b"\n")

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "fifo.jsonl"
    proc = _cli("predict", tiny_bundle, "--input", fifo, "--output", out, "--quiet")
    writer.join(10)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [r["line"] for r in _rows(out)] == [1, 2]
    proc = subprocess.run(f"printf '%s\\n%s\\n' '{GOOD_LINE.decode()}' '{GOOD_LINE.decode()}' | {sys.executable} -m "
                          f"dfma.runtime predict {tiny_bundle} --input /dev/stdin --output - --quiet",
                          shell=True, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [json.loads(line)["line"] for line in proc.stdout.decode().splitlines()] == [1, 2]


def test_output_is_replaced_only_after_the_bundle_loads(tiny_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE + b"\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    line = _one_line_fatal(_cli("predict", tmp_path / "no-bundle", "--input", src, "--output", out))
    assert "BundleError" in line and "no-bundle" in line
    assert out.read_text() == "previous results\n"
    assert _cli("predict", tiny_bundle, "--input", src, "--output", out, "--quiet").returncode == 0
    assert _rows(out)[0]["line"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary left
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize("args, expect", [
    (["--output", "{tmp}"], "is a folder"),
    (["--input", "{tmp}"], "a folder, not a file or a pipe"),
    (["--input", "/dev/zero"], "a character device"),
    (["--input", "{tmp}/missing.jsonl"], "no such file"),
    (["--batch-size", "0"], "--batch-size"),
    (["--max-text-chars", "-5"], "max_text_chars"),
    (["--max-image-side", "x"], "usage error"),
    (["--no-such-flag"], "usage error"),
])
def test_fatal_errors_are_one_line(tiny_bundle, tmp_path, args, expect):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE + b"\n")
    base = {"--input": str(src), "--output": str(tmp_path / "o.jsonl")}
    given = [a.format(tmp=tmp_path) for a in args]
    for i in range(0, len(given) - 1, 2):
        base.pop(given[i], None)
    argv = ["predict", tiny_bundle, *[x for kv in base.items() for x in kv], *given]
    proc = _cli(*argv)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expect in err
    assert not (tmp_path / "o.jsonl").exists()


def test_limit_flags_reach_the_runtime(tiny_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_LINE + b"\n" + json.dumps({**GOOD, "text": "Obama visits Paris and Berlin"}).encode() + b"\n")
    out = tmp_path / "o.jsonl"
    proc = _cli("predict", tiny_bundle, "--input", src, "--output", out, "--quiet", "--max-text-chars", "20")
    assert proc.returncode == 1
    rows = _rows(out)
    assert "relation" in rows[0] and rows[1]["error"]["field"] == "text"
    assert "max_text_chars 20" in rows[1]["error"]["message"]
