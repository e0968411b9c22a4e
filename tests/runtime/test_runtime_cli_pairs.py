"""The command line's ``entities`` lines (one output line per pair) and its ``--stages`` / ``--image-cache-mb``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_bundle import jpeg_bytes, tiny_bundle  # noqa: F401

import dfma.runtime as rt
from dfma.runtime.cli import main

TEXT = "Obama met Merkel in Berlin at the G20 summit"
ENTITIES = [[0, 5], [10, 16], [20, 26]]


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_entities_lines_give_one_line_per_pair(tiny_bundle, tmp_path, capsys):
    (tmp_path / "p.jpg").write_bytes(jpeg_bytes(61))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"id": "post-1", "text": TEXT, "entities": ENTITIES, "image": "p.jpg"},
        {"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18]},
        {"words": TEXT.split(), "entities": [[0, 1], [2, 3], [4, 5]], "pairs": [[2, 0], [0, 1]]},
        {"text": TEXT, "entities": ENTITIES, "pairs": [[0, 0]]},                  # head == tail
        {"text": TEXT, "entities": [[0, 5]]},                                       # one entity
        {"text": TEXT, "entities": ENTITIES, "head": [0, 5], "tail": [10, 16]},     # both forms
        {"text": TEXT, "entities": ENTITIES, "pairs": [[0, 1]], "image": "missing.png"},
        {"id": 9, "text": TEXT, "entities": ENTITIES, "pairs": [[1, 2]]},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    code = main(["predict", str(tiny_bundle), "--input", str(src), "--images", str(tmp_path), "--output", str(out),
                 "--batch-size", "4"])
    err = capsys.readouterr().err
    assert code == 1
    rows = _rows(out)
    assert [(r["line"], r.get("pair")) for r in rows] == [
        (1, [0, 1]), (1, [0, 2]), (1, [1, 0]), (1, [1, 2]), (1, [2, 0]), (1, [2, 1]), (2, None),
        (3, [2, 0]), (3, [0, 1]), (4, None), (5, None), (6, None), (7, None), (8, [1, 2])]
    assert all(r["id"] == "post-1" for r in rows[:6]) and "id" not in rows[6] and "id" not in rows[7]
    assert rows[-1]["id"] == 9
    assert [(r["error"]["type"], r["error"]["field"]) for r in rows[9:13]] == [
        ("InputError", "pairs[0]"), ("InputError", "entities"), ("InputError", "entities"), ("ImageError", "image")]
    assert all(len(r["probabilities"]) == 23 for r in rows[:9] + rows[13:])
    assert "8/8 lines, 4 bad" in err and f"{src}:4: InputError (pairs[0])" in err

    with rt.load(tiny_bundle, threads=1) as ex:  # the same as the Python API
        want = ex.predict_pairs(TEXT, ENTITIES, image=tmp_path / "p.jpg")
    for r, p in zip(rows[:6], want):
        assert r["relation"] == p.relation and abs(r["probability"] - p.probability) < 1e-6


def test_evaluate_refuses_entities_lines(tiny_bundle, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": TEXT, "entities": ENTITIES, "relation": "None"}) + "\n"
                   + json.dumps({"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18], "relation": "None"})
                   + "\n")
    assert main(["evaluate", str(tiny_bundle), "--input", str(src), "--quiet"]) == 1
    assert "DataError (entities)" in capsys.readouterr().err


@pytest.mark.parametrize("stages", ["whole", "two-stage", "auto"])
def test_stages_and_cache_options(tiny_bundle, tmp_path, capsys, stages):
    assert main(["info", str(tiny_bundle), "--stages", stages, "--image-cache-mb", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stages"]["mode"] == ("whole" if stages == "whole" else "two-stage")
    assert info["image_cache"] == (None if stages == "whole" else
                                   {"capacity_bytes": 2 << 20, "bytes": 0, "entries": 0, "hits": 0, "misses": 0})
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": TEXT, "entities": ENTITIES, "image": "p.jpg"}) + "\n")
    (tmp_path / "p.jpg").write_bytes(jpeg_bytes(62))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(tiny_bundle), "--input", str(src), "--images", str(tmp_path), "--output", str(out),
                 "--stages", stages, "--image-cache-mb", "1", "--quiet"]) == 0
    assert len(_rows(out)) == 6 and stages.replace("auto", "two-stage") in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-2", "lots"])
def test_bad_cache_size_is_a_usage_error(tiny_bundle, tmp_path, capsys, value):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18]}) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("keep")
    args = ["predict", str(tiny_bundle), "--input", str(src), "--output", str(out), f"--image-cache-mb={value}"]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's usage error (not a number): exits 2 itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("image_cache_mb" in err or "image-cache-mb" in err)
    assert out.read_text() == "keep"


def test_cli_logits_equal_the_whole_graph(tiny_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": TEXT, "entities": ENTITIES}) + "\n")
    probs = {}
    for stages in ("whole", "two-stage"):
        out = tmp_path / f"{stages}.jsonl"
        assert main(["predict", str(tiny_bundle), "--input", str(src), "--output", str(out), "--stages", stages,
                     "--quiet"]) == 0
        probs[stages] = np.array([list(r["probabilities"].values()) for r in _rows(out)])
    np.testing.assert_allclose(probs["whole"], probs["two-stage"], atol=1e-5, rtol=0)
