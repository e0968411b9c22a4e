"""The C++ runtime (runtime/cpp) against the Python side.

Builds the CMake project once per session (reusing runtime/cpp/build; ``DFMA_CPP_BUILD`` overrides) after
``runtime/cpp/scripts/fetch_deps.sh``, then drives ``dfma_cli``:

- token ids equal ``dfma.contract.text.TextEncoder``'s on every MNRE train + validation sentence (the committed
  runtime/cpp/tests/data/sentences.jsonl when ../shared is absent), for several tokenizers and lengths,
  plus random Unicode words;
- preprocessed pixels equal ``dfma.contract.images.ImagePreprocessor``'s (1e-6) for odd sizes, JPEG and PNG modes;
- on 200 MNRE validation sentences with synthetic images, the same labels and fp32 logits within 1e-4 as
  onnxruntime on the same graph with the Python preprocessing, and as ``dfma.runtime`` itself;
- bad input (spans, corrupt or missing images, missing bundle files, hash mismatch) gives clear errors;
- ``dfma_cli verify`` (the golden set on every CPU graph) equals ``dfma.backends.golden_check.run_golden`` on
  ONNX Runtime (1e-5) and refuses an altered golden file; ``auto`` passes over an INT8 graph that fails its
  golden set here, with the Python runtime's choice and reason;
- the ctest suite passes.

Skipped (with the reason) only when cmake or a C++ compiler is not installed.
"""
from __future__ import annotations

import ast
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401
from fixtures_cpp import BUILD, CPP, REPO, _run

SENTENCES = CPP / "tests" / "data" / "sentences.jsonl"
N_E2E = 200




# ---------------------------------------------------------------- text

def _records(splits: tuple[str, ...] = ("train", "val")) -> list[dict]:
    """MNRE records of the splits (dict literals) from ../shared, else the committed handful."""
    shared = Path(os.environ.get("DFMA_MNRE_DIR", REPO.parent / "shared" / "data" / "mnre"))
    if (shared / "mnre_train.txt").is_file():
        out = []
        for split in splits:
            text = (shared / f"mnre_{split}.txt").read_text(encoding="utf-8")
            out += [ast.literal_eval(line) for line in text.splitlines() if line.strip()]
        return out
    return [json.loads(line) for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return _records()


@pytest.fixture(scope="module")
def records_jsonl(records, tmp_path_factory) -> Path:
    """The MNRE dict literals as JSON lines for the C++ side."""
    path = tmp_path_factory.mktemp("cpp_text") / "records.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"token": r["token"], "h": {"pos": r["h"]["pos"]}, "t": {"pos": r["t"]["pos"]}},
                               ensure_ascii=False) + "\n")
    return path


def _cpp_tokenize(cli: Path, args: list, jsonl: Path) -> list[dict]:
    proc = _run([cli, "tokenize", *args, "--input", jsonl], timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _compare_ids(py_encoded, cpp_rows, words_of) -> None:
    assert len(cpp_rows) == len(py_encoded)
    bad = [i for i, (p, c) in enumerate(zip(py_encoded, cpp_rows))
           if "error" in c or c["input_ids"] != p.input_ids or (c["head_pos"], c["tail_pos"]) != (p.head_pos, p.tail_pos)]
    assert not bad, (f"{len(bad)} of {len(cpp_rows)} rows differ; first: words={words_of(bad[0])!r} "
                     f"python={py_encoded[bad[0]].input_ids} cpp={cpp_rows[bad[0]]}")


@pytest.mark.parametrize("kind, max_length", [("trained", 80), ("trained", 12), ("cased", 80), ("bert-vocab", 40)])
def test_token_ids_equal_python_on_every_mnre_sentence(cli, records, records_jsonl, tmp_path, kind, max_length):
    from dfma.contract.text import TextEncoder
    from dfma.contract.tokenizer import load_tokenizer, save_tokenizer, tokenizer_from_bert_vocab, train_wordpiece

    words = [r["token"] for r in records]
    tok = train_wordpiece(words[:4000], vocab_size=6000, lowercase=(kind != "cased"))
    save_tokenizer(tok, tmp_path / "tok")
    folder = tmp_path / "tok"
    if kind == "bert-vocab":  # vocab.txt alone, without the markers: both sides append them
        lines = [p for p in (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
                 if p not in ("<s>", "</s>", "<o>", "</o>")]
        folder = tmp_path / "bert"
        folder.mkdir()
        (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tok = tokenizer_from_bert_vocab(folder)
    enc = TextEncoder(load_tokenizer(folder) if kind != "bert-vocab" else tok, max_length)
    py = enc.encode_words_batch([(r["token"], tuple(r["h"]["pos"]), tuple(r["t"]["pos"])) for r in records])
    cpp = _cpp_tokenize(cli, ["--tokenizer", folder, "--max-length", max_length], records_jsonl)
    _compare_ids(py, cpp, lambda i: records[i]["token"])


def test_token_ids_equal_python_on_random_unicode(cli, tmp_path):
    from dfma.contract.text import TextEncoder
    from dfma.contract.tokenizer import save_tokenizer, train_wordpiece

    rng = random.Random(1)
    pools = ["abcXYZ019", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "àÉîõüÇßØŒŠİıΣςﬁ", "\u0301\u0308\u20dd\U0001d165",
             "中文字日本語한국어\u3000\uf900\U00020000", "😀🤣🥰👍🏽🇺🇸❤️\u200d\ufe0f", "\t\n\x0b\x00\x7f\x85\xa0\u2028\u200b\ufeff\ufffd\ue000",
             "«»“”–—…·¿¡§€©™", "ΑβΓδАбВгЁё", "\u0378\U000e0001\U0010fffd"]

    def word() -> str:
        n = rng.choice([0, 1, 1, 2, 3, 5, 8, 20, 101, 120])
        return "".join(rng.choice(rng.choice(pools)) for _ in range(n))

    items = []
    for _ in range(3000):
        w = [word() for _ in range(rng.randint(0, 10))]
        h, t = rng.randint(0, len(w)), rng.randint(0, len(w) + 1)
        w.insert(h, "Head")
        w.insert(t, "tail")
        hi, ti = w.index("Head"), w.index("tail")
        items.append((w, (hi, hi + 1), (ti, ti + 1)))
    tok = train_wordpiece([w for w, _, _ in items[:1500]], vocab_size=3000, min_frequency=1)
    save_tokenizer(tok, tmp_path / "tok")
    enc = TextEncoder(tok, 40)
    jsonl = tmp_path / "fuzz.jsonl"
    jsonl.write_text("".join(json.dumps({"words": w, "head": h, "tail": t}) + "\n" for w, h, t in items))
    cpp = _cpp_tokenize(cli, ["--tokenizer", tmp_path / "tok", "--max-length", 40], jsonl)
    _compare_ids(enc.encode_words_batch(items), cpp, lambda i: items[i][0])


def test_text_errors_name_the_field(cli, tmp_path):
    from dfma.contract.tokenizer import save_tokenizer, train_wordpiece

    save_tokenizer(train_wordpiece([["a", "b", "c"]] * 5, vocab_size=50, min_frequency=1), tmp_path / "tok")
    rows = [{"words": ["a", "b"], "head": [0, 3], "tail": [0, 1]},
            {"words": ["a", " "], "head": [0, 1], "tail": [1, 2]},
            {"words": [], "head": [0, 1], "tail": [0, 1]},
            {"text": "Obama visited Paris.", "head": [0, 5], "tail": [14, 19]}]
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _cpp_tokenize(cli, ["--tokenizer", tmp_path / "tok", "--max-length", 16], jsonl)
    assert "head: span (0, 3) must satisfy 0 <= start < end <= 2" in out[0]["error"]
    assert "tail: span (1, 2) covers only whitespace" in out[1]["error"]
    assert "empty" in out[2]["error"]
    assert "input_ids" in out[3]


# ---------------------------------------------------------------- images

def _write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for w, h in [(73, 73), (64, 200), (300, 97), (1023, 517), (31, 45), (257, 1999), (1999, 257), (101, 100), (5, 3)]:
        y, x = np.mgrid[0:h, 0:w]
        a = np.clip(np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x * y) % 256], -1)
                    + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(a)
        variants = {
            "q90.jpg": lambda p: im.save(p, quality=90), "444.jpg": lambda p: im.save(p, quality=60, subsampling=0),
            "prog.jpg": lambda p: im.save(p, progressive=True), "grey.jpg": lambda p: im.convert("L").save(p),
            "cmyk.jpg": lambda p: im.convert("CMYK").save(p), "rgb.png": lambda p: im.save(p),
            "rgba.png": lambda p: im.convert("RGBA").save(p), "la.png": lambda p: im.convert("LA").save(p),
            "p.png": lambda p: im.convert("P").save(p), "trns.png": lambda p: im.convert("P").save(p, transparency=5),
            "1.png": lambda p: im.convert("1").save(p),
            "i16.png": lambda p: Image.fromarray(a[..., 0].astype(np.uint16) * 3).save(p),
        }
        for name, save in variants.items():
            path = folder / f"{w}x{h}_{name}"
            save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    return _write_images(tmp_path_factory.mktemp("cpp_images"))


@pytest.mark.parametrize("size, resize", [(64, 73), (224, 256), (5, 9), (31, 31)])
def test_preprocessed_pixels_equal_python(cli, image_files, tmp_path, size, resize):
    from dfma.contract.images import ImagePreprocessor

    out = tmp_path / "pixels.f32"
    args = [cli, "image", "--image-size", size, "--resize-size", resize, "--out", out]
    for p in image_files:
        args += ["--image", p]
    proc = _run(args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all("error" not in json.loads(line) for line in proc.stdout.splitlines()), proc.stdout
    got = np.fromfile(out, dtype=np.float32).reshape(len(image_files), 3, size, size)
    pre = ImagePreprocessor(size, resize)
    for i, p in enumerate(image_files):
        err = float(np.abs(got[i] - pre.load(p)).max())
        assert err <= 1e-6, f"{p.name}: max abs error {err}"


def test_bad_images_are_reported(cli, image_files, tmp_path):
    good = next(p for p in image_files if p.name.endswith("rgb.png"))
    truncated = tmp_path / "truncated.jpg"
    jpg = next(p for p in image_files if p.name.endswith("q90.jpg")).read_bytes()
    truncated.write_bytes(jpg[: len(jpg) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    args = [cli, "image", "--image-size", 8, "--resize-size", 10]
    for p in (truncated, garbage, text, tmp_path / "missing.jpg", good):
        args += ["--image", p]
    lines = [json.loads(line) for line in _run(args, timeout=60).stdout.splitlines()]
    assert "truncated or corrupt" in lines[0]["error"] and str(truncated) in lines[0]["error"]
    assert "truncated or corrupt" in lines[1]["error"]
    assert "not a recognised image file" in lines[2]["error"]
    assert "no such image file" in lines[3]["error"]
    assert "error" not in lines[4]


# ---------------------------------------------------------------- end to end on the tiny bundle

@pytest.fixture(scope="module")
def e2e_requests(tmp_path_factory) -> tuple[Path, list[dict]]:
    """200 MNRE validation sentences (or the committed handful) with synthetic JPEG/PNG images and crops."""
    val = _records(("val",))
    folder = tmp_path_factory.mktemp("cpp_e2e")
    rng = np.random.default_rng(11)
    reqs = []
    for i, r in enumerate(val[:N_E2E]):
        d = {"id": i, "words": r["token"], "head": r["h"]["pos"], "tail": r["t"]["pos"]}
        if i % 5 != 4:
            w, h = (int(v) for v in rng.integers(30, 320, 2))
            path = folder / f"{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
            d["image"] = str(path)
        if i % 3 == 0:
            d["crops"] = []
            for k in range(1 + i % 3):
                path = folder / f"{i}-{k}.jpg"
                Image.fromarray(rng.integers(0, 256, (40 + 9 * k, 70, 3), dtype=np.uint8)).save(path)
                d["crops"].append(str(path))
        reqs.append(d)
    jsonl = folder / "requests.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in reqs))
    return jsonl, reqs


def _cpp_logits(cli, bundle, jsonl, *extra) -> np.ndarray:
    proc = _run([cli, "predict", "--bundle", bundle, *extra, "--input", jsonl], timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r][:3]
    return np.asarray([r["logits"] for r in rows], dtype=np.float32)


def _as_python_request(d: dict) -> dict:
    return {"words": d["words"], "head": tuple(d["head"]), "tail": tuple(d["tail"]), "image": d.get("image"),
            "crops": d.get("crops", [])}


def test_predictions_equal_onnxruntime_python_on_the_same_graph(cli, tiny_bundle, e2e_requests):
    import onnxruntime as ort

    from dfma.contract.features import Preprocessor
    from dfma.contract.tokenizer import load_tokenizer

    jsonl, reqs = e2e_requests
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    prep = Preprocessor.from_manifest(manifest["preprocess"], load_tokenizer(tiny_bundle))
    sess = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    feats = [prep.prepare(_as_python_request(d)) for d in reqs]
    py = np.concatenate([sess.run(["logits"], prep.collate([f]))[0] for f in feats])
    for batch in (1, 16):
        cpp = _cpp_logits(cli, tiny_bundle, jsonl, "--graph", "fp32", "--batch", batch)
        assert cpp.shape == py.shape
        assert (cpp.argmax(1) == py.argmax(1)).all()
        assert float(np.abs(cpp - py).max()) <= 1e-4


def test_predictions_equal_the_python_runtime(cli, tiny_bundle, e2e_requests):
    import dfma.runtime as rt

    jsonl, reqs = e2e_requests
    with rt.load(tiny_bundle, backend="onnxruntime-cpu") as ex:
        graph = ex.describe()["graph"]
        preds = ex.predict_batch([_as_python_request(d) for d in reqs])
    py = np.asarray([p.logits for p in preds], dtype=np.float32)
    key = "fp32-ort" if graph == "model.ort.onnx" else "fp32"
    cpp = _cpp_logits(cli, tiny_bundle, jsonl, "--graph", key, "--batch", 64)
    assert [int(i) for i in cpp.argmax(1)] == [p.label_id for p in preds]
    assert float(np.abs(cpp - py).max()) <= 1e-4


def test_bad_requests_and_broken_bundles(cli, tiny_bundle, e2e_requests, tmp_path):
    jsonl, reqs = e2e_requests
    good = dict(reqs[0])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [dict(good, head=[0, 99]), dict(good, image=str(corrupt)), dict(good, image=str(tmp_path / "nope.png")),
            dict(good, crops=[good.get("image") or str(corrupt)] * 4), good]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _run([cli, "predict", "--bundle", tiny_bundle, "--batch", 8, "--input", bad], timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5]
    assert out[0]["error"] == {"type": "InputError", "field": "head", "message": out[0]["error"]["message"]}
    assert "head: span (0, 99) must satisfy" in out[0]["error"]["message"]
    assert (out[1]["error"]["type"], out[1]["error"]["field"]) == ("ImageError", "image")
    assert "truncated or corrupt" in out[1]["error"]["message"]
    assert "no such image file" in out[2]["error"]["message"]
    assert "at most 3 allowed" in out[3]["error"]["message"] and out[3]["error"]["field"] == "crops"
    assert "label" in out[4]

    broken = tmp_path / "bundle"
    copy_bundle(tiny_bundle, broken)
    (broken / "vocab.txt").unlink()
    proc = _run([cli, "info", "--bundle", broken], timeout=120)
    assert proc.returncode == 2 and "vocab.txt: missing (listed in manifest.json)" in proc.stderr
    shutil.copy(tiny_bundle / "vocab.txt", broken / "vocab.txt")
    with (broken / "model.onnx").open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    proc = _run([cli, "info", "--bundle", broken], timeout=120)
    assert proc.returncode == 2 and "model.onnx: sha256" in proc.stderr and "does not match" in proc.stderr


def test_ctest_suite_passes(cli):
    ctest = shutil.which("ctest")
    if not ctest:
        pytest.skip("ctest not installed")
    proc = _run([ctest, "--test-dir", BUILD, "--output-on-failure"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
