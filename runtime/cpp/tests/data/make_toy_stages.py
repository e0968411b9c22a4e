"""Writes toy_two_stage/ (committed; re-run only to change it): the toy bundle of make_toy_bundle.py with
the stage graphs of its graph, as the exporter cuts every graph at ``image_features`` (contract 4.2):

  model.vision.onnx   pixel_values, image_mask -> image_features (batch, 4, 1, 3): per slot the mean of
                      each colour plane, 0 for an absent slot (even when its pixels are NaN)
  model.text.onnx     input_ids, attention_mask, image_features, image_mask -> logits: the toy graph with
                      its pixel mean taken from the features (the mean of the plane means)

and the manifest's ``stages`` sections. The stage graphs give the whole graph's logits to float rounding; the
ctest suite checks that (test_two_stage.cpp). Reads toy_bundle/ as make_toy_bundle.py wrote it: re-run
this after that one.

Run: .venv/bin/python runtime/cpp/tests/data/make_toy_stages.py
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dfma.contract.manifest_digest import write_digest

HERE = Path(__file__).resolve().parent
SLOTS, TOKENS, HIDDEN = 4, 1, 3


def features_info(name: str = "image_features") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", SLOTS, TOKENS, HIDDEN])


def vision_graph(whole: onnx.ModelProto) -> onnx.ModelProto:
    pixels, mask = (next(i for i in whole.graph.input if i.name == n) for n in ("pixel_values", "image_mask"))
    consts = [numpy_helper.from_array(np.array([3, 4], dtype=np.int64), "ax34"),
              numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2"),
              numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["pixel_values", "ax34"], ["plane_mean"], keepdims=0),  # B,slots,3
        n("Cast", ["image_mask"], ["present"], to=TensorProto.BOOL),           # B,slots
        n("Unsqueeze", ["present", "ax2"], ["present3"]),                      # B,slots,1
        n("Where", ["present3", "plane_mean", "zero"], ["kept"]),              # absent slots: 0, even for NaN
        n("Unsqueeze", ["kept", "ax2"], ["image_features"]),                   # B,slots,1,3
    ]
    graph = helper.make_graph(nodes, "dfma_toy_vision", [copy.deepcopy(pixels), copy.deepcopy(mask)],
                              [features_info()], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="make_toy_stages")
    model.ir_version = whole.ir_version
    onnx.checker.check_model(model)
    return model


def text_graph(whole: onnx.ModelProto) -> onnx.ModelProto:
    model = copy.deepcopy(whole)
    g = model.graph
    (mean,) = [node for node in g.node if node.op_type == "ReduceMean" and node.input[0] == "pixel_values"]
    mean.input[0], mean.input[1] = "image_features", "ax23"
    g.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "ax23"))
    inputs = [copy.deepcopy(i) if i.name != "pixel_values" else features_info() for i in g.input]
    del g.input[:]
    g.input.extend(inputs)
    g.name = "dfma_toy_text"
    model.producer_name = "make_toy_stages"
    onnx.checker.check_model(model)
    return model


def sha(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main() -> None:
    src, out = HERE / "toy_bundle", HERE / "toy_two_stage"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    whole = onnx.load(str(src / "model.onnx"))
    onnx.save(vision_graph(whole), str(out / "model.vision.onnx"))
    onnx.save(text_graph(whole), str(out / "model.text.onnx"))
    manifest = json.loads((src / "manifest.json").read_text())
    features = {"name": "image_features", "dtype": "float32", "shape": ["batch", SLOTS, TOKENS, HIDDEN],
                "doc": "per slot the mean of each colour plane (toy)"}
    manifest["stages"] = {"features": features, "vision": {"inputs": [], "outputs": [features]},
                          "text": {"inputs": [], "outputs": []}}
    manifest["graphs"]["portable"]["stages"] = {
        "vision": {"file": "model.vision.onnx", "nodes": 5},
        "text": {"file": "model.text.onnx", "nodes": len(whole.graph.node)},
        "parity": {"passed": True, "note": "checked by the ctest suite (test_two_stage.cpp)"}}
    for f in ("model.vision.onnx", "model.text.onnx"):
        manifest["files"][f] = sha(out / f)
    manifest["tools"]["stages"] = "runtime/cpp/tests/data/make_toy_stages.py"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_digest(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
