"""The C++ runtime's two-stage path and entity pairs (runtime/cpp) on the tiny bundle, against Python.

- ``dfma_cli predict --stages two-stage`` (the vision stage once per distinct image set of a batch, then the
  text stage) equals ``--stages whole`` and the Python runtime on the whole graph within 1e-5, on requests
  with images and crops, some sharing an image set within a batch;
- a line with ``"entities"`` (and optional ``"pairs"``) gives one line per ordered pair with ``"pair": [h, t]``,
  each equal to the single request of that pair, on both paths;
- a bad entities line is one error record naming the field, the other lines still run;
- the C++ bundle loader accepts the manifest's ``stages`` and refuses a stage entry whose file is not a
  string or not listed in ``files``.

The C++ build and the tiny bundle come from the shared fixtures (tests/support/fixtures_cpp.py,
tests/support/fixtures_bundle.py); skipped only when cmake or a C++ compiler is not installed.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_bundle import copy_bundle, synthetic_image
from fixtures_cpp import _run

WORDS = ["RT", "@AFP", ":", "Barack", "Obama", "visits", "Paris", "with", "Michelle", "and", "the", "UN", "."]
ENTITIES = [[3, 5], [6, 7], [8, 9], [11, 12]]  # Barack Obama, Paris, Michelle, UN
TEXT = "Barack Obama visits Paris with Michelle and the UN."
TEXT_ENTITIES = [[0, 12], [20, 25], [31, 39], [48, 50]]
ATOL = 1e-5


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    """Synthetic JPEG and PNG files of several sizes."""
    folder = tmp_path_factory.mktemp("cpp_two_stage_images")
    out = {}
    for i, (w, h, ext) in enumerate([(96, 80, "jpg"), (120, 45, "png"), (50, 70, "jpg"), (33, 90, "png"), (64, 64, "jpg")]):
        path = folder / f"{i}.{ext}"
        Image.fromarray(synthetic_image(20 + i, w, h)).save(path)
        out[f"i{i}"] = str(path)
    return out


@pytest.fixture(scope="module")
def requests(images) -> list[dict]:
    """Requests with and without images and crops; rows 0, 3, 6 and 1, 7 share image sets (one batch)."""
    i = images
    shared = {"image": i["i0"], "crops": [i["i1"], None, i["i2"]]}
    return [
        {"id": 0, "words": WORDS, "head": [3, 5], "tail": [6, 7], **shared},
        {"id": 1, "words": WORDS, "head": [8, 9], "tail": [11, 12], "image": i["i3"]},
        {"id": 2, "words": WORDS, "head": [6, 7], "tail": [3, 5]},
        {"id": 3, "words": WORDS, "head": [11, 12], "tail": [8, 9], **shared},
        {"id": 4, "text": TEXT, "head": [0, 12], "tail": [31, 39], "crops": [None, i["i4"]]},
        {"id": 5, "words": WORDS[3:9], "head": [0, 2], "tail": [3, 4], "image": i["i4"], "crops": [i["i2"]]},
        {"id": 6, "words": WORDS, "head": [3, 5], "tail": [8, 9], **shared},
        {"id": 7, "words": WORDS, "head": [6, 7], "tail": [11, 12], "image": i["i3"]},
        {"id": 8, "text": TEXT, "head": [20, 25], "tail": [48, 50], "image": i["i1"], "crops": [i["i0"], i["i1"], i["i2"]]},
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _predict(cli, bundle, jsonl: Path, *extra) -> list[dict]:
    proc = _run([cli, "predict", "--bundle", bundle, *extra, "--input", jsonl], timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _logits(rows: list[dict]) -> np.ndarray:
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r][:3]
    return np.asarray([r["logits"] for r in rows], dtype=np.float32)


def _python_request(d: dict) -> dict:
    out = {k: d[k] for k in ("words", "text") if k in d}
    return {**out, "head": tuple(d["head"]), "tail": tuple(d["tail"]), "image": d.get("image"),
            "crops": d.get("crops", [])}


def _python_load(bundle: Path):
    """The Python runtime on ONNX Runtime CPU, the whole graph (stages="whole" where load() takes it)."""
    import dfma.runtime as rt

    kw = {"backend": "onnxruntime-cpu"}
    if "stages" in inspect.signature(rt.load).parameters:
        kw["stages"] = "whole"
    return rt.load(bundle, **kw)


@pytest.fixture(scope="module")
def python_whole(tiny_bundle, requests) -> tuple[str, np.ndarray]:
    """The C++ --graph key of the graph the Python runtime runs, and its logits of the requests."""
    with _python_load(tiny_bundle) as ex:
        graph = ex.describe()["graph"]
        preds = ex.predict_batch([_python_request(d) for d in requests])
    assert graph in ("model.onnx", "model.ort.onnx"), graph
    key = "fp32-ort" if graph == "model.ort.onnx" else "fp32"
    return key, np.asarray([p.logits for p in preds], dtype=np.float32)


def test_info_says_which_path_runs(cli, tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert "stages" in manifest and all("stages" in g for g in manifest["graphs"].values()), "the exporter wrote no stage graphs"
    for stages, want in (("auto", "two-stage"), ("two-stage", "two-stage"), ("whole", "whole")):
        proc = _run([cli, "info", "--bundle", tiny_bundle, "--graph", "fp32", "--stages", stages], timeout=300)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["stages"] == want, info
        entry = manifest["graphs"][info["graph"]]
        if want == "two-stage":  # the Python runtime's reasons (runtime/backend_choice.py)
            assert info["stage_files"] == {s: entry["stages"][s]["file"] for s in ("vision", "text")}
            assert info["stages_reason"] == f"{stages}: the stage graphs of {entry['file']}"
        else:
            assert info["stage_files"] is None and info["stages_reason"] == "stages='whole' asked for"
    proc = _run([cli, "info", "--bundle", tiny_bundle, "--stages", "both"], timeout=60)
    assert proc.returncode == 2 and "--stages must be auto, two-stage or whole" in proc.stderr


@pytest.mark.parametrize("batch", [1, 8])
def test_two_stage_equals_whole_and_the_python_runtime(cli, tiny_bundle, requests, python_whole, tmp_path, batch):
    key, py = python_whole
    jsonl = _jsonl(tmp_path / "requests.jsonl", requests)
    two = _predict(cli, tiny_bundle, jsonl, "--graph", key, "--stages", "two-stage", "--batch", batch)
    whole = _predict(cli, tiny_bundle, jsonl, "--graph", key, "--stages", "whole", "--batch", batch)
    assert [r["id"] for r in two] == [r["id"] for r in whole] == [d["id"] for d in requests]
    a, b = _logits(two), _logits(whole)
    assert a.shape == b.shape == py.shape
    assert float(np.abs(a - b).max()) <= ATOL
    assert float(np.abs(a - py).max()) <= ATOL
    assert float(np.abs(b - py).max()) <= ATOL
    assert [r["label_id"] for r in two] == [r["label_id"] for r in whole] == [int(i) for i in py.argmax(1)]


@pytest.mark.parametrize("stages", ["two-stage", "whole"])
def test_entities_lines_equal_single_requests(cli, tiny_bundle, images, python_whole, tmp_path, stages):
    key, _ = python_whole
    i = images
    media = {"image": i["i0"], "crops": [i["i1"], None, i["i2"]]}
    all_pairs = [[h, t] for h in range(4) for t in range(4) if h != t]
    lines = [{"id": "w", "words": WORDS, "entities": ENTITIES, **media},
             {"id": "t", "text": TEXT, "entities": TEXT_ENTITIES, "pairs": "all", "crops": [i["i3"]]},
             {"words": WORDS, "entities": ENTITIES, "pairs": [[3, 1], [0, 2]], **media}]
    singles = ([{"words": WORDS, "head": ENTITIES[h], "tail": ENTITIES[t], **media} for h, t in all_pairs]
               + [{"text": TEXT, "head": TEXT_ENTITIES[h], "tail": TEXT_ENTITIES[t], "crops": [i["i3"]]} for h, t in all_pairs])
    out = _predict(cli, tiny_bundle, _jsonl(tmp_path / "pairs.jsonl", lines), "--graph", key, "--stages", stages)
    one = _predict(cli, tiny_bundle, _jsonl(tmp_path / "singles.jsonl", singles), "--graph", key, "--stages", stages,
                   "--batch", 8)
    assert [r["line"] for r in out] == [1] * 12 + [2] * 12 + [3] * 2
    assert [r["pair"] for r in out] == all_pairs + all_pairs + [[3, 1], [0, 2]]
    assert [r.get("id") for r in out] == ["w"] * 12 + ["t"] * 12 + [None] * 2
    got, want = _logits(out), _logits(one)
    assert float(np.abs(got[:24] - want).max()) <= ATOL
    assert float(np.abs(got[24] - want[all_pairs.index([3, 1])]).max()) <= ATOL
    assert float(np.abs(got[25] - want[all_pairs.index([0, 2])]).max()) <= ATOL
    assert [r["label"] for r in out[:24]] == [r["label"] for r in one]

    with _python_load(tiny_bundle) as ex:  # Python's predict_pairs, where it exists: the same pairs and logits
        if not hasattr(ex, "predict_pairs"):
            return
        py = [ex.predict_pairs(WORDS, ENTITIES, image=media["image"], crops=media["crops"]),
              ex.predict_pairs(TEXT, TEXT_ENTITIES, crops=[i["i3"]], id="t"),
              ex.predict_pairs(WORDS, ENTITIES, image=media["image"], crops=media["crops"], pairs=[[3, 1], [0, 2]])]
    flat = [p for group in py for p in group]
    assert [list(p.id[-2:]) for p in flat] == [r["pair"] for r in out]
    assert float(np.abs(got - np.asarray([p.logits for p in flat], dtype=np.float32)).max()) <= ATOL


def _bad_lines(images, tmp_path) -> list[dict]:
    good = {"words": WORDS, "entities": ENTITIES, "image": images["i0"]}
    single = {"words": WORDS, "head": [3, 5], "tail": [6, 7]}
    return [
        dict(good, entities=[[3, 5]]),                      # 1: fewer than two
        dict(good, entities=[[3, 5], [6, 7], [3, 5]]),      # 2: the same span twice
        dict(good, entities=[[3, 5], [6, 70]]),             # 3: out of range
        dict(good, pairs=[[0, 1], [1, 4]]),                 # 4: index out of range
        dict(good, pairs=[[2, 2]]),                         # 5: head == tail
        dict(good, pairs="some"),                           # 6: malformed
        dict(good, pairs=[[0, 1], [1]]),                    # 7: malformed pair
        dict(good, pairs=None),                             # 8: malformed (null)
        dict(good, head=[3, 5]),                            # 9: entities and head
        dict(good, entities="all"),                         # 10: not a list
        dict(good, entities=[[3, 5], [6, True]]),           # 11: a span of a bool
        {"entities": ENTITIES},                             # 12: no sentence
        {"text": "   ", "entities": [[0, 1], [1, 2]]},      # 13: whitespace text
        dict(good, crops=[images["i1"]] * 4),               # 14: too many crops
        dict(good, image=str(tmp_path / "missing.jpg")),    # 15: bad image
        dict(good, pairs=[]),                               # 16: no pairs: refused, the line is not lost
        good,                                               # 17
        single,                                             # 18
    ]


BAD_FIELDS = {1: ("InputError", "entities"), 2: ("InputError", "entities[2]"), 3: ("InputError", "entities[1]"),
              4: ("InputError", "pairs[1]"), 5: ("InputError", "pairs[0]"), 6: ("InputError", "pairs"),
              7: ("InputError", "pairs[1]"), 8: ("InputError", "pairs"), 9: ("InputError", "entities"),
              10: ("InputError", "entities"), 11: ("InputError", "entities[1]"), 12: ("InputError", "sentence"),
              13: ("InputError", "sentence"), 14: ("InputError", "crops"), 15: ("ImageError", "image"),
              16: ("InputError", "pairs")}


def _by_line(rows: list[dict]) -> dict[int, list]:
    out: dict[int, list] = {}
    for r in rows:
        out.setdefault(r["line"], []).append(
            (r["error"]["type"], r["error"]["field"]) if "error" in r else (r.get("pair"), r.get("label", r.get("relation"))))
    return out


def test_bad_entities_lines_are_one_error_each(cli, tiny_bundle, images, tmp_path):
    jsonl = _jsonl(tmp_path / "bad.jsonl", _bad_lines(images, tmp_path))
    out = _predict(cli, tiny_bundle, jsonl, "--batch", 4)
    errors = {r["line"]: r["error"] for r in out if "error" in r}
    assert {n: (e["type"], e["field"]) for n, e in errors.items()} == BAD_FIELDS
    assert errors[2]["message"] == "entities[2]: span (3, 5) is given twice (also entities[0])"
    assert errors[4]["message"] == "pairs[1]: entity indices (1, 4) out of range: there are 4 entities"
    assert errors[5]["message"] == "pairs[0]: head and tail are the same entity (2); a pair needs two"
    assert "no such image file" in errors[15]["message"]
    ok = [r for r in out if "error" not in r]
    assert [r["line"] for r in ok] == [17] * 12 + [18] and "pair" not in ok[-1]


def test_bad_entities_lines_as_the_python_cli(cli, tiny_bundle, images, tmp_path):
    """The same lines through ``python -m dfma.runtime predict``: the same records per line (error type and
    field, or pair and label)."""
    import subprocess
    import sys

    jsonl = _jsonl(tmp_path / "bad.jsonl", _bad_lines(images, tmp_path))
    py_out = tmp_path / "py.jsonl"
    proc = subprocess.run([sys.executable, "-m", "dfma.runtime", "predict", str(tiny_bundle), "--input", str(jsonl),
                           "--output", str(py_out), "--quiet", "--batch-size", "4", "--stages", "whole",
                           "--backend", "onnxruntime-cpu"], capture_output=True, text=True, timeout=600)
    if "--stages" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("the Python CLI has no --stages yet")
    assert py_out.is_file(), proc.stderr[-3000:]
    py = _by_line([json.loads(line) for line in py_out.read_text().splitlines()])
    cpp = _by_line(_predict(cli, tiny_bundle, jsonl, "--batch", 4, "--stages", "whole"))
    assert cpp == py


def _edited_copy(bundle: Path, folder: Path, edit) -> Path:
    from dfma.contract.manifest_digest import write_digest

    copy_bundle(bundle, folder, writable=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_digest(folder)
    return folder


def test_loader_refuses_bad_stage_entries(cli, tiny_bundle, tmp_path):
    def unlisted(m):
        m["graphs"]["portable"]["stages"]["vision"]["file"] = "model.gone.onnx"

    def not_a_string(m):
        m["graphs"]["portable"]["stages"]["text"]["file"] = ["model.text.onnx"]

    def dropped(m):  # a stage file the manifest no longer lists (and so no longer hashes)
        del m["files"][m["graphs"]["portable"]["stages"]["text"]["file"]]

    cases = [(unlisted, "field 'graphs.portable.stages.vision.file' is \"model.gone.onnx\", not listed in files"),
             (not_a_string, "field 'graphs.portable.stages.text.file' must be a string"),
             (dropped, "field 'graphs.portable.stages.text.file' is \"model.text.onnx\", not listed in files")]
    for n, (edit, message) in enumerate(cases):
        folder = _edited_copy(tiny_bundle, tmp_path / f"b{n}", edit)
        proc = _run([cli, "info", "--bundle", folder, "--stages", "whole", "--graph", "fp32"], timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
