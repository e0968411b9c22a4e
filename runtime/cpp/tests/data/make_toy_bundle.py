"""Writes the fixtures of the C++ ctest suite (committed; re-run only to change them):

  toy_bundle/      a valid bundle (contract section 4) around a tiny hand-built ONNX graph with the
                   contract's inputs/outputs (no torch needed), a WordPiece tokenizer from dfma.contract.tokenizer
  images/          small JPEG/PNG files in the colour modes the decoder must handle
  expected.json    what the Python side computes for them: token ids (dfma.contract.text), preprocessed pixels
                   (dfma.contract.images), Pillow resizes, logits (dfma.runtime preprocessing + onnxruntime)

The graph: logits = masked mean over the sequence of E[input_ids] + (per slot, image_mask ? mean of the
slot's pixels : 0) @ V + 3 * E2[first <s>] + b. It reads every input, depends on the marker position,
and ignores absent image slots even when they hold NaN, like the real model.

Run: .venv/bin/python runtime/cpp/tests/data/make_toy_bundle.py
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dfma.contract.features import Preprocessor
from dfma.contract.images import ImagePreprocessor
from dfma.contract.manifest_digest import write_digest
from dfma.contract.tokenizer import (
    save_tokenizer,
    special_ids,
    tokenizer_from_bert_vocab,
)

HERE = Path(__file__).resolve().parent
LABELS = ["None", "/per/per/parent", "/org/loc/locate_at", "/misc/misc/part_of"]
WORDS = ["the", "of", "and", "to", "in", "a", "is", "was", "for", "on", "with", "at", "by", "from", "rt", "obama", "visits", "paris", "london", "met", "barack", "michelle", "cafe", "new", "york", "times", "##s", "##ed", "##ing", "un", "says", "libya", "tripoli", "'", "s", ",", ".", ":", "#", "@", "!", "?", "-", "(", ")", "é", "中", "文", "##a", "##b", "##c", "b", "c", "x"]
S, R, CROPS, MAX_LEN, MAX_BATCH = 8, 10, 3, 16, 4


def build_graph(vocab_size: int, head_open: int) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    k = len(LABELS)
    emb = numpy_helper.from_array(rng.normal(0, 1, (vocab_size, k)).astype(np.float32), "E")
    emb2 = numpy_helper.from_array(rng.normal(0, 1, (vocab_size, k)).astype(np.float32), "E2")
    v = numpy_helper.from_array(rng.normal(0, 1, (1 + CROPS, k)).astype(np.float32), "V")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (k,)).astype(np.float32), "b")
    consts = [numpy_helper.from_array(np.array(x, dtype=np.int64), n) for n, x in
              (("ax1", [1]), ("ax2", [2]), ("ax234", [2, 3, 4]), ("marker", head_open))]
    consts.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"))
    consts.append(numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three"))
    n = helper.make_node
    nodes = [
        n("Gather", ["E", "input_ids"], ["emb"]),                       # B,L,K
        n("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),  # B,L
        n("Unsqueeze", ["maskf", "ax2"], ["mask3"]),                     # B,L,1
        n("Mul", ["emb", "mask3"], ["memb"]),
        n("ReduceSum", ["memb", "ax1"], ["tsum"], keepdims=0),          # B,K
        n("ReduceSum", ["maskf", "ax1"], ["msum"], keepdims=1),         # B,1
        n("Div", ["tsum", "msum"], ["text"]),
        n("Equal", ["input_ids", "marker"], ["is_marker"]),              # B,L
        n("Cast", ["is_marker"], ["is_marker_i"], to=TensorProto.INT32),
        n("ArgMax", ["is_marker_i"], ["pos"], axis=1, keepdims=1),       # B,1 (first maximum)
        n("GatherElements", ["input_ids", "pos"], ["marker_id"], axis=1),
        n("Squeeze", ["marker_id", "ax1"], ["marker_id1"]),
        n("Gather", ["E2", "marker_id1"], ["memb2"]),                    # B,K
        n("Mul", ["memb2", "three"], ["marker_feat"]),
        n("ReduceMean", ["pixel_values", "ax234"], ["pmean"], keepdims=0),  # B,slots
        n("Cast", ["image_mask"], ["imask"], to=TensorProto.BOOL),
        n("Where", ["imask", "pmean", "zero"], ["pfeat"]),
        n("MatMul", ["pfeat", "V"], ["img"]),
        n("Add", ["text", "img"], ["s1"]),
        n("Add", ["s1", "marker_feat"], ["s2"]),
        n("Add", ["s2", "b"], ["logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 1 + CROPS, 3, S, S]),
        helper.make_tensor_value_info("image_mask", TensorProto.INT64, ["batch", 1 + CROPS]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])]
    graph = helper.make_graph(nodes, "dfma_toy", inputs, outputs, [emb, emb2, v, b, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="make_toy_bundle")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_images() -> dict[str, Path]:
    folder = HERE / "images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    y, x = np.mgrid[0:17, 0:23]
    rgb = np.stack([x * 11 % 256, y * 15 % 256, (x * y) % 256], -1).astype(np.uint8)
    im = Image.fromarray(rgb)
    tall = Image.fromarray(np.ascontiguousarray(np.transpose(rgb, (1, 0, 2))[:, :9]))
    files = {
        "rgb.jpg": lambda p: im.save(p, quality=85),
        "gray.jpg": lambda p: im.convert("L").save(p, quality=85),
        "cmyk.jpg": lambda p: im.convert("CMYK").save(p, quality=85),
        "rgb.png": lambda p: im.save(p),
        "tall_rgba.png": lambda p: tall.convert("RGBA").save(p),
        "grey.png": lambda p: im.convert("L").save(p),
        "palette_trns.png": lambda p: im.convert("P").save(p, transparency=2),
        "grey16.png": lambda p: Image.fromarray(rgb[..., 0].astype(np.uint16) * 3).save(p),
        "bilevel.png": lambda p: im.convert("1").save(p),
    }
    out = {}
    for name, save in files.items():
        save(folder / name)
        out[name] = folder / name
    return out


def resize_cases() -> list[dict]:
    """Pillow resizes of a formula image (the C++ test rebuilds the input from the same formula)."""
    cases = []
    for (w, h), (ow, oh) in [((13, 7), (5, 3)), ((13, 7), (29, 11)), ((7, 31), (6, 9)), ((31, 7), (9, 6)),
                             ((40, 40), (39, 5)), ((40, 40), (5, 39)), ((11, 60), (10, 12))]:
        y, x, c = np.mgrid[0:h, 0:w, 0:3]
        src = ((x * 37 + y * 101 + c * 53 + x * y) % 256).astype(np.uint8)
        out = np.asarray(Image.fromarray(src).resize((ow, oh), Image.BILINEAR))
        cases.append({"in": [w, h], "out": [ow, oh], "pixels": out.reshape(-1).tolist()})
    return cases


def normalize_cases() -> dict[str, list[list[str]]]:
    """BertNormalizer outputs for adversarial words: accents, marks NFD reorders, controls, CJK, Hangul."""
    from tokenizers import normalizers

    rng = np.random.default_rng(5)
    pool = list("aB \u00e9\u0301\u0308\u0345\u0941\u093C\u0958\u0344\u0F71\u08D4\U0001D16D\U0001D165"
                "\U0001D166\u1B44\u302E\U0001E000\u3000\x00\u200b\u4e2d\u0130\u0387\ufb01\uac00\u03a3\t\ufffd")
    words = ["".join(rng.choice(pool, size=int(rng.integers(0, 10)))) for _ in range(300)]
    out = {}
    for name, lower in (("uncased", True), ("cased", False)):
        norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower,
                                          lowercase=lower)
        out[name] = [[w, norm.normalize_str(w)] for w in words]
    return out


def sha(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main() -> None:
    bundle = HERE / "toy_bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir()
    vocab = HERE / "toy_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    tok = tokenizer_from_bert_vocab(vocab)
    vocab.unlink()
    save_tokenizer(tok, bundle)
    ids = special_ids(tok)
    model = build_graph(tok.get_vocab_size(with_added_tokens=True), ids["head_open"])
    onnx.save(model, str(bundle / "model.onnx"))
    preprocess = {"max_length": MAX_LEN, "image_size": S, "resize_size": R, "mean": [0.485, 0.456, 0.406],
                  "std": [0.229, 0.224, 0.225], "num_crops": CROPS, "max_image_pixels": 5000, "lowercase": True}
    manifest = {
        "format": "dfma-bundle", "format_version": 1, "created": "2026-01-01T00:00:00+00:00",
        "model": {"preset": "toy", "config": {}}, "labels": LABELS, "preprocess": preprocess,
        "io": {}, "limits": {"max_batch": MAX_BATCH, "max_length": MAX_LEN}, "opset": 18,
        "graphs": {"portable": {"file": "model.onnx", "precision": "fp32", "kind": "portable"}},
        "files": {f: sha(bundle / f) for f in ("model.onnx", "tokenizer.json", "vocab.txt")},
        "tools": {"exporter": "runtime/cpp/tests/data/make_toy_bundle.py"}, "parity": {},
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_digest(bundle)  # manifest.sha256: the runtimes refuse a manifest without its digest

    images = write_images()
    pre = ImagePreprocessor(S, R, max_image_pixels=5000)
    samples = [
        {"words": ["Obama", "visits", "Paris", "."], "head": [0, 1], "tail": [2, 3]},
        {"words": ["RT", "@un", ":", "UN", "says", "Libya", "'s", "Tripoli", "calm"], "head": [3, 4], "tail": [5, 8],
         "image": "rgb.jpg"},
        {"words": ["michelle", "met", "Barack", "in", "New", "York", "Times", "Café", "中文"], "head": [2, 3],
         "tail": [4, 7], "image": "tall_rgba.png", "crops": ["grey.png", "palette_trns.png"]},
        {"words": ["the"] * 30 + ["paris"] + ["of"] * 30 + ["london"], "head": [30, 31], "tail": [61, 62],
         "image": "cmyk.jpg", "crops": ["rgb.png", "gray.jpg", "bilevel.png"]},
        {"words": ["a", "b", "c", "unknownword", "##", "x" * 120], "head": [0, 2], "tail": [1, 3],
         "crops": ["grey16.png"]},
        {"words": ["paris"], "head": [0, 1], "tail": [0, 1], "image": "rgb.png"},
        {"words": ["London", "met", "Paris"], "head": [0, 1], "tail": [2, 3], "crops": [None, "rgb.jpg"]},
    ]
    prep = Preprocessor.from_manifest(preprocess, tok)
    feats = []
    for s in samples:
        img = images[s["image"]] if "image" in s else None
        feats.append(prep.prepare({"words": s["words"], "head": tuple(s["head"]), "tail": tuple(s["tail"]),
                                   "image": img,
                                   "crops": [images[c] if c else None for c in s.get("crops", [])]}))
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    logits_single = [sess.run(["logits"], prep.collate([f]))[0][0].tolist() for f in feats]
    logits_batch = sess.run(["logits"], prep.collate(feats[:MAX_BATCH]))[0].tolist()
    expected = {
        "samples": [{**s, "input_ids": f.encoded.input_ids, "head_pos": f.encoded.head_pos,
                     "tail_pos": f.encoded.tail_pos, "logits": lg}
                    for s, f, lg in zip(samples, feats, logits_single)],
        "logits_first_batch": logits_batch,
        "images": {name: pre.load(path).reshape(-1).tolist() for name, path in images.items()},
        "resize": resize_cases(),
        "normalize": normalize_cases(),
    }
    (HERE / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {bundle}, {len(images)} images, expected.json")


if __name__ == "__main__":
    main()
