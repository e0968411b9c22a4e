"""Two-stage serving: the stage graphs (vision -> image_features -> text) = the whole graph = the eager model, and
the runtime that serves it gives the whole graph's predictions; the ``stages`` and ``image_cache_mb``
arguments of ``load`` are checked before anything loads."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fixtures_bundle import SHARED_MNRE, copy_bundle, jpeg_bytes, synthetic_image, tiny_bundle, tiny_eager  # noqa: F401

import dfma.runtime as rt
from dfma.backends.ort_runner import OrtRunner
from dfma.backends.two_stage import TwoStage
from dfma.contract.errors import BundleError, InputError
from dfma.contract.manifest import Manifest
from dfma.contract.manifest_digest import write_digest
from dfma.contract.samples import ImageFolders

ATOL = 1e-5
WORDS = "rt @ap : obama meets merkel in berlin before the g20 summit in hamburg".split()


@pytest.fixture(scope="module")
def whole(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, stages="whole") as ex:
        yield ex


@pytest.fixture(scope="module")
def staged(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, stages="two-stage") as ex:
        yield ex


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_split_equals_whole_equals_eager_at_the_validated_shapes(tiny_bundle, tiny_eager):
    """Each fp32 graph's stage graphs vs the whole graph vs eager, at the export's validated shapes (NaN in absent slots)."""
    from dfma.export.random_feeds import random_inputs
    from dfma.export.validate import parity_cases
    from dfma.model.runner import EagerRunner

    manifest = _manifest(tiny_bundle)
    special = {k: v["id"] for k, v in manifest["preprocess"]["special_tokens"].items()}
    cfg = tiny_eager.config
    eager = EagerRunner(tiny_eager).open()
    keys = [k for k in ("ort", "portable") if Manifest.from_json(manifest).stage_files(k)]
    assert keys, "the tiny bundle has no stage graphs"
    rng = np.random.default_rng(0)
    cases = parity_cases(manifest["limits"]["max_batch"], manifest["preprocess"]["max_length"])
    for key in keys:
        files = Manifest.from_json(manifest).stage_files(key)
        whole_runner = OrtRunner(tiny_bundle / manifest["graphs"][key]["file"], io=manifest["io"], threads=1).open()
        staged = TwoStage(*(OrtRunner(tiny_bundle / files[s], io=manifest["stages"][s], threads=1)
                          for s in ("vision", "text")), io=manifest["io"]).open()
        for case in cases:
            feeds = random_inputs(cfg, special, case.batch, case.length, crops=case.crops, rng=rng)
            ref, w, p = eager.logits(feeds), whole_runner.logits(feeds), staged.logits(feeds)
            assert np.isfinite(p).all()
            assert np.abs(p - w).max() <= ATOL, (key, case)
            assert np.abs(p - ref).max() <= ATOL and np.abs(w - ref).max() <= ATOL, (key, case)
            assert (p.argmax(1) == ref.argmax(1)).all()
            features = staged.features(feeds)
            assert features.dtype == np.float32 and features.shape == (case.batch, *manifest["stages"]["features"]["shape"][1:])
            np.testing.assert_array_equal(staged.logits_with(feeds, features), p)


def _mnre_like_requests(val_samples, images, crops) -> list:
    """MNRE sentences with their img_id images (some absent, some with crops), and posts whose image is
    shared by several entity pairs (the same bytes, the same path, an equal array)."""
    folders = ImageFolders(images=images, crops=crops)
    out = [rt.as_sample(s, folders=folders) for s in val_samples]
    shared_bytes, shared_path = jpeg_bytes(77, 90, 70), images / "shared.jpg"
    shared_path.write_bytes(jpeg_bytes(78, 64, 96))
    for i in range(12):
        h, t = i % 5, 5 + i % 7
        req = {"words": WORDS, "head": [h, h + 1], "tail": [t, t + 1]}
        req["image"] = [shared_bytes, str(shared_path), synthetic_image(5, 80, 60)][i % 3]
        if i % 4 == 1:
            req["crops"] = [synthetic_image(9, 30, 40)]
        out.append(req)
    return out


@pytest.fixture(scope="module")
def requests(tmp_path_factory):
    """40 MNRE validation sentences (when the annotations are here) + 12 posts with shared images."""
    from dfma.contract.labels import LabelMap
    from dfma.mnre import read_mnre

    samples = []
    if (SHARED_MNRE / "mnre_val.txt").is_file():
        samples = read_mnre(SHARED_MNRE / "mnre_val.txt", LabelMap.from_json(SHARED_MNRE / "rel2id.json"))[:40]
    root = tmp_path_factory.mktemp("two_stage_images")
    images, crops = root / "images", root / "crops"
    images.mkdir()
    crops.mkdir()
    for i, s in enumerate(samples):
        if i % 4 == 3:
            continue  # no image: mask 0
        (images / s.img_id).write_bytes(jpeg_bytes(i, 60 + 7 * (i % 9), 50 + 11 * (i % 5)))
        if i % 3 == 0:
            for k in range(1 + i % 3):
                (crops / f"{s.img_id.rsplit('.', 1)[0]}-{k}.jpg").write_bytes(jpeg_bytes(500 + 10 * i + k, 40, 70))
    return _mnre_like_requests(samples, images, crops)


def test_runtime_two_stage_equals_whole_on_mnre_requests(whole, staged, requests):
    """predict_batch (padded batches, images repeated across rows) and single predicts: stage graphs == whole to 1e-5."""
    assert staged.stages == "two-stage" and whole.stages == "whole"
    a, b = whole.logits(requests), staged.logits(requests)
    assert np.abs(a - b).max() <= ATOL
    assert (a.argmax(1) == b.argmax(1)).all()
    for r in requests[:6] + requests[-6:]:
        p, q = whole.predict(r), staged.predict(r)
        assert p.relation == q.relation
        np.testing.assert_allclose(q.logits, p.logits, atol=ATOL, rtol=0)


def test_small_chunks_and_run_give_the_same(tiny_bundle, whole, requests):
    """max_batch=3: the vision stage in chunks over the distinct image sets, the text stage in chunks."""
    with rt.load(tiny_bundle, threads=1, max_batch=3) as ex:
        assert ex.stages == "two-stage" and ex.max_batch == 3
        got = ex.logits(requests)
        features = [ex.prepare(r) for r in requests]
        ran = np.asarray([p.logits for p in ex.run(features)])
    want = whole.logits(requests)
    assert np.abs(got - want).max() <= ATOL and np.abs(ran - want).max() <= ATOL


def test_describe_says_which_stages_run(whole, staged):
    info = staged.describe()
    manifest = staged.manifest
    assert info["stages"]["mode"] == "two-stage" and info["graph"] == manifest.graphs[info["graph_key"]].file
    assert info["stages"]["files"] == manifest.stage_files(info["graph_key"])
    assert set(info["stages"]["runners"]) == {"vision", "text"} and info["threads"] == 1
    assert info["image_cache"] is None
    plain = whole.describe()
    assert plain["stages"]["mode"] == "whole" and plain["stages"]["files"] is None
    assert "whole" in plain["stages"]["reason"]


def test_auto_serves_the_stage_graphs_when_there_are_some(tiny_bundle):
    with rt.load(tiny_bundle, threads=1) as ex:
        assert ex.stages == "two-stage" and ex.describe()["stages"]["reason"].startswith("auto")


def _without_stages(tiny_bundle, tmp_path):
    """A copy of the bundle whose manifest has no stage graphs (stage files removed, digest rewritten)."""
    b = tmp_path / "bundle"
    copy_bundle(tiny_bundle, b)
    manifest = _manifest(b)
    for key, entry in manifest["graphs"].items():
        for file in (Manifest.from_json(manifest).stage_files(key) or {}).values():
            manifest["files"].pop(file, None)
            (b / file).unlink(missing_ok=True)
        entry.pop("stages", None)
    (b / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_digest(b)
    return b


def test_two_stage_required_names_the_graph_and_auto_falls_back(tiny_bundle, tmp_path, staged, requests):
    b = _without_stages(tiny_bundle, tmp_path)
    with pytest.raises(BundleError) as info:
        rt.load(b, threads=1, backend="onnxruntime-cpu", precision="fp32", stages="two-stage")
    assert "'ort'" in str(info.value) and "two-stage" in str(info.value)
    with rt.load(b, threads=1) as ex:  # auto: the whole graph, and why
        assert ex.stages == "whole" and "no stage graphs" in ex.describe()["stages"]["reason"]
        np.testing.assert_allclose(ex.logits(requests[:8]), staged.logits(requests[:8]), atol=ATOL, rtol=0)


def test_a_tensorrt_engine_has_no_stage_graphs():
    from dfma.runtime.backend_choice import _stage_files_of

    class Fake:
        manifest = Manifest.from_json({"graphs": {"trt": {"file": "engines/fp16-x.plan", "kind": "tensorrt"}},
                                       "files": {}})

    files, why = _stage_files_of(Fake(), "trt")
    assert files is None and "TensorRT engine" in why


def test_openvino_stage_graphs_equal_their_whole_graph(tiny_bundle, requests):
    pytest.importorskip("openvino")
    with rt.load(tiny_bundle, backend="openvino", precision="fp32", threads=1, stages="two-stage") as staged, \
            rt.load(tiny_bundle, backend="openvino", precision="fp32", threads=1, stages="whole") as whole:
        assert staged.stages == "two-stage" and staged.describe()["stages"]["files"]["vision"].endswith(".vision.onnx")
        np.testing.assert_allclose(staged.logits(requests[:16]), whole.logits(requests[:16]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kwargs, field", [
    ({"stages": "both"}, "stages"), ({"stages": None}, "stages"), ({"stages": 2}, "stages"),
    ({"stages": "Whole"}, "stages"),
    ({"image_cache_mb": 0}, "image_cache_mb"), ({"image_cache_mb": -1}, "image_cache_mb"),
    ({"image_cache_mb": True}, "image_cache_mb"), ({"image_cache_mb": math.nan}, "image_cache_mb"),
    ({"image_cache_mb": math.inf}, "image_cache_mb"), ({"image_cache_mb": "64"}, "image_cache_mb"),
    ({"image_cache_mb": [1]}, "image_cache_mb"), ({"image_cache_mb": 10 ** 400}, "image_cache_mb"),
])
def test_load_refuses_bad_stages_and_cache_sizes_before_loading(tmp_path, kwargs, field):
    """A path with no bundle: the argument error comes first, so nothing was read."""
    with pytest.raises(InputError) as info:
        rt.load(tmp_path / "no-bundle-here", **kwargs)
    assert info.value.field == field


def test_good_cache_sizes_are_accepted(tiny_bundle):
    for mb in (1, 0.5, np.float32(2.0), np.int64(3)):
        with rt.load(tiny_bundle, threads=1, image_cache_mb=mb) as ex:
            assert ex.describe()["image_cache"]["capacity_bytes"] == int(float(mb) * 2 ** 20)
