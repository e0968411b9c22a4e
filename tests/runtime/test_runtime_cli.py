"""``python -m dfma.runtime predict / evaluate / info``: output, progress, bad lines, exit status."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures_bundle import jpeg_bytes, tiny_bundle  # noqa: F401

from dfma.runtime.cli import main

MNRE_LINES = [
    "{'token': ['RT', '@AFP', ':', 'UN', 'says', 'ceasefire', 'in', 'Libya'], 'h': {'name': 'UN', 'pos': [3, 4]}, "
    "'t': {'name': 'Libya', 'pos': [7, 8]}, 'img_id': 'a.jpg', 'relation': 'None'}",
    "{'token': ['David', 'Bowie', 'at', 'Earls', 'Court'], 'h': {'name': 'David Bowie', 'pos': [0, 2]}, "
    "'t': {'name': 'Earls Court', 'pos': [3, 5]}, 'img_id': 'b.jpg', 'relation': '/per/loc/place_of_residence'}",
    "{'token': ['bad', 'span'], 'h': {'name': 'x', 'pos': [0, 1]}, 't': {'name': 'y', 'pos': [1, 5]}, "
    "'img_id': 'c.jpg', 'relation': 'None'}",
    "",
    "{'token': ['Obama', 'meets', 'Merkel'], 'h': {'name': 'Obama', 'pos': [0, 1]}, "
    "'t': {'name': 'Merkel', 'pos': [2, 3]}, 'img_id': 'broken.jpg', 'relation': '/per/per/peer'}",
    "{'token': ['Obama', 'meets', 'Merkel'], 'h': {'name': 'Obama', 'pos': [0, 1]}, "
    "'t': {'name': 'Merkel', 'pos': [2, 3]}, 'img_id': 'c.jpg', 'relation': '/per/per/peer'}",
]


@pytest.fixture()
def mnre_file(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(jpeg_bytes(1))
    (images / "broken.jpg").write_bytes(jpeg_bytes(2)[:300])
    src = tmp_path / "mnre.txt"
    src.write_text("\n".join(MNRE_LINES) + "\n")
    return src, images


def test_predict_mnre_reports_bad_lines_and_continues(tiny_bundle, mnre_file, tmp_path, capsys):
    src, images = mnre_file
    out = tmp_path / "pred.jsonl"
    code = main(["predict", str(tiny_bundle), "--input", str(src), "--images", str(images),
                 "--output", str(out), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 5, 6]
    assert rows[2]["error"]["type"] == "DataError" and rows[2]["error"]["field"] == "t.pos"
    assert rows[3]["error"]["type"] == "ImageError" and rows[3]["error"]["field"] == "image"
    assert all("relation" in rows[i] and len(rows[i]["probabilities"]) == 23 for i in (0, 1, 4))
    assert f"{src}:3: DataError (t.pos)" in err and f"{src}:5: ImageError (image)" in err
    assert "onnxruntime-cpu" in err and "5/5 lines, 2 bad" in err
    assert "image(s) not found" in err  # b.jpg and c.jpg: predicted without image, as in training


def test_predict_strict_images_makes_missing_files_bad_lines(tiny_bundle, mnre_file, tmp_path, capsys):
    src, images = mnre_file
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(tiny_bundle), "--input", str(src), "--images", str(images), "--output",
                 str(out), "--strict-images", "--quiet"]) == 1
    errors = [json.loads(line).get("error") for line in out.read_text().splitlines()]
    assert sum(e is not None for e in errors) == 4  # bad span, broken image, b.jpg and c.jpg missing


def test_predict_jsonl_all_good_exits_zero(tiny_bundle, tmp_path):
    (tmp_path / "p.jpg").write_bytes(jpeg_bytes(5))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x1", "text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18], "image": "p.jpg"},
        {"id": "x2", "words": ["Obama", "visits", "Paris"], "head": [0, 1], "tail": [2, 3], "crops": ["p.jpg"]},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    code = main(["predict", str(tiny_bundle), "--input", str(src), "--images", str(tmp_path), "--output",
                 str(out), "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["x1", "x2"] and all(0 < r["probability"] <= 1 for r in rows)


def test_jsonl_bad_lines(tiny_bundle, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18]}\n'
                   '{"text": "", "head": [0, 5], "tail": [13, 18]}\n'
                   'not json at all\n'
                   '["a", "list"]\n'
                   '{"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18], "image": "nope.png"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(tiny_bundle), "--input", str(src), "--output", str(out), "--quiet"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("error", {}).get("field") for r in rows] == [None, "text", "record", "record", "image"]
    err = capsys.readouterr().err
    for n in (2, 3, 4, 5):
        assert f"{src}:{n}: " in err


def test_evaluate_prints_micro_prf_and_table(tiny_bundle, mnre_file, tmp_path, capsys):
    src, images = mnre_file
    scores = tmp_path / "scores.json"
    code = main(["evaluate", str(tiny_bundle), "--input", str(src), "--images", str(images),
                 "--json", str(scores), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1  # two bad lines
    assert "micro (non-None)" in out and "P (%)" in out and "micro P/R/F1 (non-None):" in out
    assert "(3 scored, 2 bad line(s))" in out
    data = json.loads(scores.read_text())
    assert data["scored"] == 3 and 0 <= data["f1"] <= 1


def test_evaluate_on_mnre_val(tiny_bundle, mnre_dir, tmp_path):
    """The real validation file through the module entry point (first 64 lines, no images)."""
    proc = subprocess.run([sys.executable, "-m", "dfma.runtime", "evaluate", str(tiny_bundle), "--input",
                           str(mnre_dir / "mnre_val.txt"), "--limit", "64", "--batch-size", "32"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(64 scored, 0 bad line(s))" in proc.stdout and "evaluate: 64/64 lines, 0 bad" in proc.stderr


def test_fatal_errors_exit_two(tiny_bundle, tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text('{"text": "a b", "head": [0, 1], "tail": [2, 3]}\n')
    assert main(["predict", str(tmp_path / "no-bundle"), "--input", str(tmp_path / "x.jsonl"), "--output",
                 str(tmp_path / "y")]) == 2
    assert main(["predict", str(tiny_bundle), "--input", str(tmp_path / "missing.txt"),
                 "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "BundleError" in err and "DataError" in err


def test_info_says_what_runs(tiny_bundle, capsys):
    assert main(["info", str(tiny_bundle)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "onnxruntime-cpu" and info["graph"] == "model.ort.onnx"
    assert any(s.startswith("tensorrt:") for s in info["skipped"])
