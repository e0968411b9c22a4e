"""Two-stage graphs as export writes them: where the cut is, what each stage holds, how bad input fails.

The runtime's use of the stage graphs (split == whole == eager through ``load``, the cache, ``predict_pairs``) is
tested in the runtime's own modules; here the graphs themselves, read with onnx and run with ONNX Runtime.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

from dfma.backends.ort_runner import OrtRunner
from dfma.backends.two_stage import TwoStage
from dfma.contract.bundle import open_bundle
from dfma.contract.errors import BundleError, ExportError
from dfma.contract.graphs import STAGES, stage_file
from dfma.contract.io_spec import FEATURES_NAME
from dfma.export.random_feeds import random_inputs
from dfma.export.split_graphs import split_graph
from fixtures_bundle import copy_bundle, tiny_bundle, tiny_eager  # noqa: F401


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


@pytest.fixture(scope="module")
def manifest(tiny_bundle):
    return open_bundle(tiny_bundle).manifest


def test_every_exported_graph_has_listed_stage_graphs(tiny_bundle, manifest):
    for key in ("portable", "ort"):
        files = manifest.stage_files(key)
        assert files == {s: stage_file(manifest.graphs[key].file, s) for s in STAGES}
        assert all(f in manifest.files for f in files.values())
        assert manifest.graphs[key].files() == {manifest.graphs[key].file, *files.values()}
        record = manifest.graphs[key].stages.parity
        assert record["passed"] and record["vs_whole"]["max_abs_error"] <= 1e-5
        assert record["max_abs_error"] <= 1e-4 and record["top1_agreement"] == 1.0
    assert manifest.stages.features.name == FEATURES_NAME
    assert manifest.stages.features.shape[1] == 1 + manifest.preprocess.num_crops


@pytest.mark.parametrize("key", ["portable", "ort"])
def test_the_cut_puts_the_resnet_in_vision_and_attention_in_text(tiny_bundle, manifest, key):
    whole = _ops(tiny_bundle / manifest.graphs[key].file)
    vision = _ops(tiny_bundle / manifest.graphs[key].stages.vision.file)
    text = _ops(tiny_bundle / manifest.graphs[key].stages.text.file)
    attention = "Attention" if key == "portable" else "MultiHeadAttention"
    assert vision["Conv"] == whole["Conv"] > 0 and text["Conv"] == 0  # every convolution runs once per image
    assert text[attention] == whole[attention] > 0 and vision[attention] == 0
    # the two stages hold the whole graph's nodes, none lost (shape nodes on image_mask may be in both)
    names = lambda p: {n.name for n in onnx.load(str(p), load_external_data=False).graph.node}  # noqa: E731
    stage_names = set().union(*(names(tiny_bundle / getattr(manifest.graphs[key].stages, s).file) for s in STAGES))
    assert stage_names == names(tiny_bundle / manifest.graphs[key].file)


def test_the_stage_graphs_equal_the_whole_graph_and_eager_at_other_shapes(tiny_bundle, manifest, tiny_eager):
    """An independent path: the stage files run by hand (vision, then text on its output) against the whole
    graph and the eager model, on fresh random feeds at shapes export did not validate."""
    import torch

    from dfma.config import DFMAConfig

    cfg = DFMAConfig.from_dict(manifest.model.config)
    special = manifest.preprocess.special_ids()
    rng = np.random.default_rng(7)
    files = manifest.stage_files("ort")
    with OrtRunner(tiny_bundle / files["vision"]) as vision, OrtRunner(tiny_bundle / files["text"]) as text, \
            OrtRunner(tiny_bundle / manifest.graphs["ort"].file) as whole:
        for batch, length, crops in ((2, 12, True), (5, 40, False), (3, 64, True)):
            feeds = random_inputs(cfg, special, batch, length, crops=crops, rng=rng)
            features = vision.infer(feeds)[FEATURES_NAME]
            assert features.dtype == np.float32 and features.shape == (batch, cfg.num_images, cfg.tokens_per_image,
                                                                       cfg.hidden_size)
            split = text.infer({**feeds, FEATURES_NAME: features})["logits"]
            with torch.no_grad():
                eager = tiny_eager(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
            assert np.abs(split - whole.logits(feeds)).max() <= 1e-5
            assert np.abs(split - eager).max() <= 1e-5
            assert (split.argmax(1) == eager.argmax(1)).all()


def test_features_of_a_present_image_do_not_depend_on_the_other_rows(tiny_bundle, manifest):
    """What makes reuse exact: a row's features are the same alone and inside a batch."""
    from dfma.config import DFMAConfig

    cfg = DFMAConfig.from_dict(manifest.model.config)
    special = manifest.preprocess.special_ids()
    feeds = random_inputs(cfg, special, 4, 10, crops=True, rng=np.random.default_rng(3))
    with OrtRunner(tiny_bundle / manifest.stage_files("ort")["vision"]) as vision:
        batched = vision.infer(feeds)[FEATURES_NAME]
        alone = vision.infer({k: v[2:3] for k, v in feeds.items()})[FEATURES_NAME]
    assert np.abs(batched[2:3] - alone).max() <= 1e-5


def test_a_graph_without_the_features_tensor_cannot_be_cut(tiny_bundle, manifest, tmp_path):
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    for node in model.graph.node:  # as a graph exported before two-stage graphs existed
        node.output[:] = ["old_name" if o == FEATURES_NAME else o for o in node.output]
        node.input[:] = ["old_name" if i == FEATURES_NAME else i for i in node.input]
    onnx.save(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ExportError, match="has no 'image_features' tensor.*export it again"):
        split_graph(tmp_path / "model.onnx", manifest.stages.features.to_json())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # nothing partial left


def test_a_text_stage_that_would_need_pixels_is_refused(tiny_bundle, manifest, tmp_path):
    """If pixels reached the logits other than through the features, the cut would be wrong: refused."""
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    g = model.graph
    for node in g.node:
        node.output[:] = ["logits_inner" if o == "logits" else o for o in node.output]
    g.node.append(onnx.helper.make_node("ReduceSum", ["pixel_values"], ["px_sum"], keepdims=0))
    g.node.append(onnx.helper.make_node("Add", ["logits_inner", "px_sum"], ["logits"]))
    onnx.save(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ExportError, match=r"text stage: .*also needs \['pixel_values'\]"):
        split_graph(tmp_path / "model.onnx", manifest.stages.features.to_json())


def _broken_copy(tiny_bundle, tmp_path, edit):
    dst = tmp_path / "bundle"
    copy_bundle(tiny_bundle, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    from dfma.contract.manifest_digest import write_digest

    write_digest(dst)
    return dst


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["stages"]["features"].update(dtype="float16"), "stages.features"),
    (lambda m: m["stages"]["features"]["shape"].__setitem__(1, 9), "stages.features"),
    (lambda m: m["stages"]["text"]["inputs"].pop(2), "stages.text.inputs"),
    (lambda m: m["stages"]["vision"]["inputs"][0].update(shape=["batch", 4, 3, 1, 1]),
     "stages.vision.inputs.pixel_values"),
    (lambda m: m["graphs"]["ort"]["stages"]["vision"].update(file="nowhere.onnx"), "graphs.ort.stages.vision.file"),
    (lambda m: m["graphs"]["ort"].update(stages=[]), "graphs.ort.stages"),
    (lambda m: m.update(stages="yes"), "stages"),
])
def test_a_bad_stages_section_is_refused_naming_the_field(tiny_bundle, tmp_path, edit, field):
    bundle = _broken_copy(tiny_bundle, tmp_path, edit)
    with pytest.raises(BundleError) as info:
        open_bundle(bundle)
    assert info.value.field == field, str(info.value)


def test_the_stage_runner_checks_both_stages_against_the_manifest(tiny_bundle, manifest):
    files = manifest.stage_files("ort")
    wrong = manifest.stages.vision.to_json()
    wrong["outputs"][0]["shape"] = ["batch", 4, 3, 7]
    staged = TwoStage(OrtRunner(tiny_bundle / files["vision"], io=wrong), OrtRunner(tiny_bundle / files["text"]),
                      io=manifest.io)
    with pytest.raises(BundleError, match="image_features dimension 2"):
        staged.open()
    assert not staged.vision.is_open and not staged.text.is_open


def test_slim_keeps_or_drops_the_stage_graphs(tiny_bundle, tmp_path):
    from dfma.export.slim_bundle import slim

    kept = slim(tiny_bundle, tmp_path / "with", keep=["ort"])
    dropped = slim(tiny_bundle, tmp_path / "without", keep=["ort"], stages=False)
    assert set(kept.stage_files("ort").values()) <= set(kept.files)
    assert dropped.stage_files("ort") is None and "stages" not in dropped.graphs["ort"].to_json()
    assert not any(".vision." in f or ".text." in f for f in dropped.files)
    open_bundle(tmp_path / "without")  # strict: no unlisted stage files left behind
