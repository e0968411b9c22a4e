"""The bundle's shared weight store (docs/contract.md section 4.3): the export leaves every large tensor once in
``weights.bin`` at aligned offsets; repacking is idempotent; a slimmed copy gets a fresh store holding only
what its graphs use; a changed store or a graph reference outside it is refused by every reader, as a typed
error naming the file, the tensor and the field; Triton's model folders get self-contained graphs."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest

from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401

from dfma.contract.bundle import open_bundle
from dfma.contract.bundle_writer import update_bundle
from dfma.contract.errors import BundleError
from dfma.contract.weight_store import ALIGNMENT, MIN_EXTERNAL_BYTES, STORE_FILE, external_refs, tensor_bytes


def _graphs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.onnx"))


def _refs(folder: Path) -> dict[str, list]:
    return {p.name: external_refs(p) for p in _graphs(folder)}


def test_the_export_keeps_every_large_tensor_once_in_the_store(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert STORE_FILE in manifest["files"], "the store is a listed (hashed) bundle file"
    store_bytes = (tiny_bundle / STORE_FILE).stat().st_size
    refs = _refs(tiny_bundle)
    assert len(refs) == 6 and all(refs.values()), {k: len(v) for k, v in refs.items()}
    users: dict[int, set[str]] = defaultdict(set)
    for graph, rs in refs.items():
        for r in rs:
            assert r.get("location") == STORE_FILE
            offset, length = int(r.get("offset")), int(r.get("length"))
            assert offset % ALIGNMENT == 0 and offset + length <= store_bytes
            assert length == tensor_bytes(r.data_type, r.dims) >= MIN_EXTERNAL_BYTES
            users[offset].add(graph)
    # deduplicated: the stage graphs are cut from their whole graph, so their tensors are the whole graph's
    shared = [o for o, g in users.items() if len(g) > 1]
    assert shared and any({"model.onnx", "model.vision.onnx"} <= users[o] for o in shared)
    stored = sum(int(r.get("length")) for r in {int(r.get("offset")): r for rs in refs.values() for r in rs}.values())
    referenced = sum(int(r.get("length")) for rs in refs.values() for r in rs)
    assert referenced >= 2 * stored  # each graph's weights are also in its two stage graphs
    assert store_bytes < stored + ALIGNMENT * len(users)  # only the alignment padding besides the tensors
    # every tensor left inline is small
    for path in _graphs(tiny_bundle):
        model = onnx.load(str(path), load_external_data=False)
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL:
                assert len(t.raw_data) < MIN_EXTERNAL_BYTES, (path.name, t.name)


def test_repacking_is_idempotent_and_leaves_a_verifying_bundle(tiny_bundle, tmp_path):
    from dfma.export.weight_store import pack_bundle_weights

    bundle = copy_bundle(tiny_bundle, tmp_path / "b", writable=True)
    stats = pack_bundle_weights(bundle)
    assert (bundle / STORE_FILE).read_bytes() == (tiny_bundle / STORE_FILE).read_bytes()
    assert stats.references > stats.tensors and stats.stored_bytes < stats.referenced_bytes
    open_bundle(bundle)  # strict: nothing unlisted, every hash and every reference checked
    assert not [p for p in tmp_path.iterdir() if p.name != "b"], "nothing partial left beside the bundle"


def test_an_inline_bundle_packs_to_the_same_store_and_external_files_are_absorbed(tiny_bundle, tmp_path):
    from dfma.export.weight_store import inline_folder, pack_bundle_weights, pack_folder

    bundle = copy_bundle(tiny_bundle, tmp_path / "b", writable=True)
    update_bundle(bundle, {}, prepare=inline_folder)
    assert STORE_FILE not in json.loads((bundle / "manifest.json").read_text())["files"]
    assert not any(_refs(bundle).values())
    pack_bundle_weights(bundle)
    assert (bundle / STORE_FILE).read_bytes() == (tiny_bundle / STORE_FILE).read_bytes()
    open_bundle(bundle)
    # a folder being written whose graph another tool saved with its own external data file: read with its
    # data and repacked; the file no graph references any more disappears
    work = tmp_path / "work"
    work.mkdir()
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    onnx.save_model(model, str(work / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    stats = pack_folder(work)
    assert stats.removed == ["model.onnx.data"] and sorted(p.name for p in work.iterdir()) == ["model.onnx", STORE_FILE]
    assert all(r.get("location") == STORE_FILE for r in external_refs(work / "model.onnx"))


def _with_own_ort_weights(tiny_bundle: Path, tmp: Path) -> Path:
    """A copy whose model.ort.onnx has weights of its own (each large float tensor + 1): the tiny bundle's
    fp32 graphs otherwise share every tensor, and slimming could not show a tensor leaving the store."""
    from dfma.export.weight_store import inline_model, pack_folder

    bundle = copy_bundle(tiny_bundle, tmp / "source", writable=True)
    model = inline_model(bundle / "model.ort.onnx")
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and len(t.raw_data) >= MIN_EXTERNAL_BYTES:
            t.raw_data = (np.frombuffer(t.raw_data, np.float32) + 1).astype(np.float32).tobytes()
    changed = tmp / "ort.onnx"
    changed.write_bytes(model.SerializeToString())
    update_bundle(bundle, {"model.ort.onnx": changed}, prepare=pack_folder)
    return bundle


def test_slim_writes_a_fresh_store_with_only_the_kept_graphs_tensors(tiny_bundle, tmp_path):
    from dfma.export.slim_bundle import slim
    from dfma.export.weight_store import pack_folder

    source = _with_own_ort_weights(tiny_bundle, tmp_path)
    before = (source / STORE_FILE).read_bytes()
    assert len(before) > (tiny_bundle / STORE_FILE).stat().st_size
    # the repack kept the old tensors first, in their order: the graphs that did not change are byte for byte
    assert before.startswith((tiny_bundle / STORE_FILE).read_bytes())
    for name in ("model.onnx", "model.vision.onnx", "model.text.onnx"):
        assert (source / name).read_bytes() == (tiny_bundle / name).read_bytes(), name
    out = tmp_path / "slim"
    manifest = slim(source, out, keep=["ort"], stages=False)
    assert (source / STORE_FILE).read_bytes() == before, "the source's store is untouched"
    assert os.stat(out / STORE_FILE).st_ino != os.stat(source / STORE_FILE).st_ino, "a fresh file, not a link"
    assert os.stat(source / STORE_FILE).st_nlink == 1
    assert sorted(p.name for p in _graphs(out)) == ["model.ort.onnx"]
    refs = external_refs(out / "model.ort.onnx")
    distinct = {int(r.get("offset")): int(r.get("length")) for r in refs}
    size = (out / STORE_FILE).stat().st_size
    # exactly the kept graph's distinct tensors, one after the other at aligned offsets: nothing else left
    assert size == max(o + n for o, n in distinct.items())
    assert size - sum(distinct.values()) < ALIGNMENT * len(distinct)
    assert sum(distinct.values()) < len(before) // 2 + ALIGNMENT * len(distinct)
    assert manifest.files[STORE_FILE].bytes == size
    open_bundle(out)
    work = tmp_path / "repack"  # and it is what packing the kept graph alone gives
    work.mkdir()
    from dfma.export.weight_store import inline_model

    (work / "model.ort.onnx").write_bytes(inline_model(out / "model.ort.onnx").SerializeToString())
    pack_folder(work)
    assert (work / STORE_FILE).read_bytes() == (out / STORE_FILE).read_bytes()


def test_a_changed_store_is_refused_by_verify_and_load(tiny_bundle, tmp_path):
    import dfma.runtime as rt

    bundle = copy_bundle(tiny_bundle, tmp_path / "b", writable=True)
    with open(bundle / STORE_FILE, "r+b") as f:
        f.seek(ALIGNMENT + 17)
        byte = f.read(1)
        f.seek(ALIGNMENT + 17)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(BundleError) as info:
        open_bundle(bundle)
    assert info.value.field == f"files.{STORE_FILE}.sha256"
    with pytest.raises(BundleError, match=STORE_FILE):
        rt.load(bundle, threads=1)
    from dfma.runtime.verify import verify

    with pytest.raises(BundleError, match=STORE_FILE):
        verify(bundle, repeats=1)


def _with_edited_reference(bundle: Path, tmp: Path, change) -> str:
    """Rewrite model.ort.onnx with ``change(tensor)`` applied to its first external tensor; re-hash the
    manifest (so that only the reference is wrong); returns the tensor's name."""
    model = onnx.load(str(bundle / "model.ort.onnx"), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    change(tensor)
    edited = tmp / "edited.onnx"
    edited.write_bytes(model.SerializeToString())
    update_bundle(bundle, {"model.ort.onnx": edited})
    return tensor.name


def _set(key: str, value: str):
    def change(tensor):
        for e in tensor.external_data:
            if e.key == key:
                e.value = value
    return change


@pytest.mark.parametrize("case,field,message", [
    ("past-the-end", "length", "runs past the end"),
    ("unaligned", "offset", "not a multiple of 4096"),
    ("other-file", "location", "'../outside.bin'"),
    ("wrong-length", "length", "bytes, but dtype"),
    ("not-a-number", "offset", "not a non-negative integer"),
])
def test_a_reference_outside_the_store_is_a_typed_error_naming_file_and_tensor(tiny_bundle, tmp_path, case, field,
                                                                               message):
    import dfma.runtime as rt

    bundle = copy_bundle(tiny_bundle, tmp_path / "b", writable=True)
    size = (bundle / STORE_FILE).stat().st_size
    change = {"past-the-end": _set("offset", str(size - size % ALIGNMENT)),
              "unaligned": _set("offset", "8"),
              "other-file": _set("location", "../outside.bin"),
              "wrong-length": _set("length", "4"),
              "not-a-number": _set("offset", "-1")}[case]
    name = _with_edited_reference(bundle, tmp_path, change)
    for load in (lambda: open_bundle(bundle), lambda: rt.load(bundle, threads=1)):
        with pytest.raises(BundleError) as info:
            load()
        assert info.value.field == f"{name}.external_data.{field}", info.value
        assert "model.ort.onnx" in str(info.value) and repr(name) in str(info.value) and message in str(info.value)
        assert info.value.file == str(bundle / "model.ort.onnx")


def test_a_truncated_graph_is_a_bundle_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x3a\xff\xff\xff\x0f")  # field 7, a length far past the end
    with pytest.raises(BundleError, match="not a readable ONNX graph"):
        external_refs(bad)


def test_triton_model_folders_hold_self_contained_graphs(tiny_bundle, tmp_path):
    from dfma.export.to_triton import TritonOptions, build_repository
    from dfma.export.weight_store import inline_model

    build_repository(TritonOptions(bundle=tiny_bundle, out=tmp_path / "repo"))
    graphs = sorted((tmp_path / "repo").rglob("*.onnx"))
    assert graphs and not list((tmp_path / "repo").rglob(STORE_FILE))
    inline = {inline_model(p).SerializeToString(): p.name for p in _graphs(tiny_bundle)}
    for g in graphs:  # each is one of the bundle's graphs, its weights inline: it loads alone
        assert not external_refs(g), g
        assert g.read_bytes() in inline, f"{g} is none of the bundle's graphs"


def test_tensorrt_parses_the_graph_with_its_data_inline(tiny_bundle):
    import onnxruntime as ort

    from dfma.export.trt_build import onnx_bytes
    from fixtures_bundle import random_feeds

    data = onnx_bytes(tiny_bundle / "model.onnx", "fp32")  # what TensorRT's parser gets: bytes, no folder
    alone = onnx.load_from_string(data)
    assert not [t for t in alone.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    feeds = random_feeds(tiny_bundle)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    want = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(got, want)
