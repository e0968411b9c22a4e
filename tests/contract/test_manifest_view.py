"""The typed manifest view (``dfma.contract.manifest``): a lossless round trip of the JSON, the facts readers
derive from it, and writers that change it through the typed objects without losing what they do not know."""
from __future__ import annotations

import dataclasses
import json

import pytest

from dfma.contract.bundle import open_bundle, read_manifest
from dfma.contract.bundle_writer import BundleWriter, update_bundle
from dfma.contract.errors import BundleError
from dfma.contract.manifest import AutoDefault, Defaults, GraphEntry, Manifest
from fixtures_bundle import small_manifest as _manifest
from repo_paths import REPO

FIXTURES = sorted((REPO / "runtime" / "cpp" / "tests" / "data").glob("*/manifest.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_the_fixture_bundles_round_trip_key_for_key(path):
    raw = json.loads(path.read_text())
    typed = Manifest.from_json(raw)
    assert json.dumps(typed.to_json()) == json.dumps(raw)  # same keys, same order, same values
    assert typed.labels == tuple(raw["labels"]) and typed.limits.max_batch == raw["limits"]["max_batch"]
    assert typed.preprocess.num_crops == raw["preprocess"]["num_crops"]
    assert set(typed.present()) == set(raw["graphs"])


def test_values_of_another_shape_and_unknown_keys_are_kept():
    raw = _manifest(future={"x": [1, 2]}, golden={"file": "golden.safetensors", "expected": {}, "tolerance": {}},
                    defaults={"auto": {"cpu": {"graph": "portable", "precision": "fp32", "note": "kept"}}})
    raw["graphs"]["portable"]["nodes"] = 7
    raw["model"]["preset"] = 3  # not a string: kept as it is, the attribute keeps its default
    typed = Manifest.from_json(raw)
    assert typed.extra["future"] == {"x": [1, 2]} and typed.graphs["portable"].get("nodes") == 7
    assert typed.model.preset is None and typed.model.extra["preset"] == 3
    assert typed.defaults.auto["cpu"].extra["note"] == "kept"
    assert typed.to_json() == raw and list(typed.to_json()) == list(raw)


def test_the_derived_facts():
    raw = _manifest()
    raw["files"] = {"model.onnx": {"sha256": "0" * 64, "bytes": 3}, "model.vision.onnx": {"sha256": "1" * 64, "bytes": 1},
                    "model.text.onnx": {"sha256": "2" * 64, "bytes": 1}}
    raw["graphs"]["portable"]["stages"] = {"vision": {"file": "model.vision.onnx"}, "text": {"file": "model.text.onnx"}}
    raw["graphs"]["trt"] = {"file": "engines/x.plan", "precision": "fp16", "kind": "tensorrt"}
    raw["defaults"] = {"auto": {"cpu": {"graph": "portable", "precision": "fp32", "reason": "fastest"},
                                "gpu": {"graph": "gone", "precision": "fp16"}}}
    m = Manifest.from_json(raw)
    assert set(m.present()) == {"portable"} and set(m.engines()) == {"trt"}  # the engine's file is not listed
    assert m.stage_files("portable") == {"vision": "model.vision.onnx", "text": "model.text.onnx"}
    assert m.graphs["portable"].files() == {"model.onnx", "model.vision.onnx", "model.text.onnx"}
    assert m.recorded_default("cpu").precision == "fp32" and m.recorded_default("gpu") is None
    assert m.resolve_precision("auto", "cpu") == ("fp32", "auto: fastest")
    assert m.resolve_precision("auto", "gpu")[0] == "fp32" and m.resolve_precision("int8", "cpu") == ("int8", "asked for")
    assert m.total_bytes == 5 and m.file_digest("model.onnx") == "0" * 64
    assert "stages" not in m.graphs["portable"].without("stages").to_json()
    with pytest.raises(BundleError, match="no graph 'int8'"):
        m.graph("int8")


def test_a_typed_edit_keeps_what_the_writer_does_not_know(tmp_path):
    out = tmp_path / "b"
    with BundleWriter(out) as w:
        w.path("model.onnx").write_bytes(b"graph-bytes")
        w.path("tokenizer.json").write_text("{}")
        w.commit(Manifest.from_json(_manifest(future={"kept": True})))
    before = read_manifest(out)
    (tmp_path / "e.plan").write_bytes(b"engine")

    def edit(m: Manifest) -> Manifest:
        entry = GraphEntry(file="engines/e.plan", precision="fp16", kind="tensorrt", gpu_name="GPU")
        auto = Defaults(auto={"gpu": AutoDefault(graph="portable", precision="fp32")})
        return dataclasses.replace(m.with_graph("trt", entry), tools={**m.tools, "tensorrt": "10"}, defaults=auto)

    after = update_bundle(out, {"engines/e.plan": tmp_path / "e.plan"}, edit=edit)
    assert after == read_manifest(out)
    assert after["future"] == {"kept": True} and after["tools"] == {"tensorrt": "10"}
    assert after["graphs"]["trt"] == {"file": "engines/e.plan", "precision": "fp16", "kind": "tensorrt",
                                      "gpu_name": "GPU"}
    assert after["defaults"] == {"auto": {"gpu": {"graph": "portable", "precision": "fp32"}}}
    assert {k: v for k, v in after.items() if k not in ("files", "graphs", "tools", "defaults")} == \
        {k: v for k, v in before.items() if k not in ("files", "graphs", "tools")}
    assert open_bundle(out).manifest.engines()["trt"].gpu_name == "GPU"
    dropped = update_bundle(out, {}, edit=lambda m: m.with_graph("trt", None), remove=["engines/e.plan"])
    assert "trt" not in dropped["graphs"] and "engines/e.plan" not in dropped["files"]
