"""Manifest integrity (issue 14): a manifest that lies is refused at load, by Python and C++ alike.

One case table (``CASES``: an edit of the tiny bundle's manifest and the field the refusal must name)
drives both runtimes: ``dfma.contract.bundle.open_bundle`` / ``dfma.runtime.load`` must raise a
BundleError whose ``field`` is that field, and ``dfma_cli info`` must exit 2 with ``field '<field>'`` on
stderr. Then the manifest's own digest and signature, what the reader refuses before parsing (links,
FIFOs, size, nesting), unlisted files, and that every bundle writer leaves a verifying manifest. (A killed writer's work folders:
tests/contract/test_stale_temps.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401
from fixtures_cpp import _run

from dfma.contract.bundle import open_bundle, read_manifest
from dfma.contract.bundle_writer import BundleWriter, update_bundle
from dfma.contract.errors import BundleError
from dfma.contract.manifest import Manifest
from dfma.contract.manifest_digest import DIGEST_FILE, SIGNATURE_FILE, write_digest

from repo_paths import REPO


LOAD_SECONDS = 10.0  # a refusal comes before any graph is loaded: far under this on any machine


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))


def _edit(bundle: Path, edit, *, redigest: bool = True) -> None:
    """Apply ``edit`` to the manifest; re-digest it (a deliberate edit) unless told not to."""
    manifest = _manifest(bundle)
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if redigest:
        write_digest(bundle)


def _cpp_info(cli: Path, bundle: Path, **env) -> subprocess.CompletedProcess:
    return _run([cli, "info", "--bundle", bundle], timeout=60, env={**os.environ, **env})


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:  # noqa: F811
    """A writable copy of the tiny bundle."""
    return copy_bundle(tiny_bundle, tmp_path / "bundle", writable=True)


# ---------------------------------------------------------------- the shared case table

def _set(path: str, value):
    """An edit that sets the dotted ``path`` (list indices as integers) to ``value``."""
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value(m) if callable(value) else value
    return edit


def _both(*edits):
    def edit(m: dict) -> None:
        for e in edits:
            e(m)
    return edit


def _set_file(rel: str, entry: dict):
    """An edit that sets ``files[rel]`` (file names hold dots, so no dotted path)."""
    return lambda m: m["files"].__setitem__(rel, entry)


def _pop(path: str):
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for part in parents:
            node = node[part]
        node.pop(int(last) if isinstance(node, list) else last)
    return edit


CASES = [  # (id, edit, the field the refusal names)
    ("max_length past the position embeddings",
     _set("limits.max_length", lambda m: m["model"]["config"]["max_position_embeddings"] + 1), "limits.max_length"),
    ("text longer than the traced range",
     _set("preprocess.max_length", lambda m: m["limits"]["max_length"] + 1), "preprocess.max_length"),
    ("another image_size", _set("preprocess.image_size", lambda m: m["preprocess"]["image_size"] + 8),
     "preprocess.image_size"),
    ("another image_size, config edited too (the graph io disagrees)",
     _both(*[_set(f"{s}.image_size", 72) for s in ("preprocess", "model.config")],
           *[_set(f"{s}.resize_size", 80) for s in ("preprocess", "model.config")]), "io.inputs.pixel_values.shape"),
    ("another num_crops", _set("preprocess.num_crops", 2), "preprocess.num_crops"),
    ("another num_crops, config edited too (the graph io disagrees)",
     _both(_set("preprocess.num_crops", 2), _set("model.config.num_crops", 2)), "io.inputs.pixel_values.shape"),
    ("negative max_batch", _set("limits.max_batch", -1), "limits.max_batch"),
    ("zero max_batch", _set("limits.max_batch", 0), "limits.max_batch"),
    ("non-integer max_batch", _set("limits.max_batch", 2.5), "limits.max_batch"),
    ("max_batch written as text", _set("limits.max_batch", "64"), "limits.max_batch"),
    ("max_batch true", _set("limits.max_batch", True), "limits.max_batch"),
    ("max_batch past the exporter's limit", _set("limits.max_batch", 10 ** 6), "limits.max_batch"),
    ("no graphs", _set("graphs", {}), "graphs"),
    ("a graph whose file is not listed", _set("graphs.portable.file", "nope.onnx"), "graphs.portable.file"),
    ("negative byte size", _set_file("model.onnx", {"sha256": "0" * 64, "bytes": -5}), "files.model.onnx.bytes"),
    ("a hash that is not one", _set_file("vocab.txt", {"sha256": "abc", "bytes": 3}), "files.vocab.txt.sha256"),
    ("the manifest lists its own digest", _set_file("manifest.sha256", {"sha256": "0" * 64, "bytes": 80}),
     "files.manifest.sha256"),
    ("a label repeated", _set("labels.1", lambda m: m["labels"][0]), "labels"),
    ("a label dropped", _pop("labels.-1"), "labels"),
    ("no 'None' label", _set("labels.0", "Nothing"), "labels"),
    ("std with a zero", _set("preprocess.std.1", 0), "preprocess.std"),
    ("mean of two numbers", _set("preprocess.mean", [0.5, 0.5]), "preprocess.mean"),
    ("resize below the crop", _set("preprocess.resize_size", 32), "preprocess.resize_size"),
    ("zero max_image_pixels", _set("preprocess.max_image_pixels", 0), "preprocess.max_image_pixels"),
    ("lowercase as text", _set("preprocess.lowercase", "yes"), "preprocess.lowercase"),
    ("a special id past the vocabulary", _set("preprocess.special_tokens.head_open.id",
                                              lambda m: m["model"]["config"]["vocab_size"]),
     "preprocess.special_tokens.head_open.id"),
    ("a tokenizer outside the bundle", _set("preprocess.tokenizer", "../tokenizer.json"), "preprocess.tokenizer"),
    ("an input of another dtype", _set("io.inputs.0.dtype", "int32"), "io.inputs.input_ids.dtype"),
    ("logits for other labels", _set("io.outputs.0.shape.1", 7), "io.outputs.logits.shape"),
    ("model.config not an object", _set("model.config", []), "model.config"),
    ("format_version 2", _set("format_version", 2), "format_version"),
    ("no parity section", _pop("parity"), "parity"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name, edit, field", CASES, ids=IDS)
def test_python_refuses_a_manifest_that_lies(bundle, name, edit, field):
    _edit(bundle, edit)
    t0 = time.perf_counter()
    with pytest.raises(BundleError) as info:
        open_bundle(bundle)
    assert time.perf_counter() - t0 < LOAD_SECONDS
    assert info.value.field == field, str(info.value)
    assert f"field {field!r}" in str(info.value) and str(bundle / "manifest.json") in str(info.value)
    assert info.value.file == str(bundle / "manifest.json")


def test_the_runtime_refuses_them_too_and_the_good_bundle_still_serves(tiny_bundle, bundle):  # noqa: F811
    import dfma.runtime as rt

    request = {"words": ["Obama", "visits", "Paris"], "head": [0, 1], "tail": [2, 3]}
    with rt.load(tiny_bundle, threads=1) as ex:
        before = ex.logits([request])
    for name, edit, field in CASES[:8]:
        copy = copy_bundle(tiny_bundle, bundle.parent / f"case-{IDS.index(name)}", writable=True)
        _edit(copy, edit)
        with pytest.raises(BundleError, match=f"field '{field}'"):
            rt.load(copy, threads=1)
    with rt.load(tiny_bundle, threads=1) as ex:
        assert (ex.logits([request]) == before).all()


@pytest.mark.parametrize("name, edit, field", CASES, ids=IDS)
def test_cpp_refuses_the_same_manifests_naming_the_same_field(cli, bundle, name, edit, field):
    _edit(bundle, edit)
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2, proc.stdout[-500:] + proc.stderr[-500:]
    assert f"field '{field}'" in proc.stderr, proc.stderr
    assert "manifest.json" in proc.stderr and "terminate" not in proc.stderr


def test_the_unedited_copy_loads_in_both(cli, bundle):
    open_bundle(bundle)
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- the manifest's digest and signature

def test_an_edit_without_a_new_digest_is_detected_by_both(cli, bundle):
    _edit(bundle, _set("limits.max_batch", 8), redigest=False)
    with pytest.raises(BundleError, match="edited after it was written") as info:
        open_bundle(bundle)
    assert info.value.file == str(bundle / DIGEST_FILE) and info.value.field == "sha256"
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "manifest.sha256: manifest.json has sha256" in proc.stderr
    # the documented way to accept a deliberate edit
    cmd = [sys.executable, str(REPO / "export" / "sign_bundle.py"), "digest", str(bundle)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert open_bundle(bundle).manifest.limits.max_batch == 8
    assert _cpp_info(cli, bundle).returncode == 0
    sha256sum = subprocess.run(["sha256sum", "-c", DIGEST_FILE], cwd=bundle, check=False, capture_output=True)
    assert sha256sum.returncode == 0


def test_the_digest_command_refuses_to_digest_an_invalid_manifest(bundle):
    _edit(bundle, _set("limits.max_batch", -1), redigest=False)
    cmd = [sys.executable, str(REPO / "export" / "sign_bundle.py"), "digest", str(bundle)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "field 'limits.max_batch'" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_or_malformed_digest_is_refused(bundle):
    (bundle / DIGEST_FILE).write_text("d41d8cd98f00b204e9800998ecf8427e  manifest.json\n")
    with pytest.raises(BundleError, match="expected one line"):
        open_bundle(bundle)
    (bundle / DIGEST_FILE).unlink()
    with pytest.raises(BundleError, match="manifest.sha256: missing"):
        open_bundle(bundle)


def _sign(bundle: Path, key_file: Path) -> None:
    cmd = [sys.executable, str(REPO / "export" / "sign_bundle.py"), "sign", str(bundle), "--key-file", str(key_file)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_signature_is_checked_against_the_users_key_in_both(cli, bundle, tmp_path, monkeypatch):
    key, other = tmp_path / "key", tmp_path / "other-key"
    key.write_bytes(os.urandom(32))
    other.write_bytes(os.urandom(32))
    with pytest.raises(BundleError, match="manifest.sig: missing"):  # a key, but no signature
        open_bundle(bundle, key=key.read_bytes())
    assert _cpp_info(cli, bundle, DFMA_BUNDLE_KEY_FILE=str(key)).returncode == 2
    _sign(bundle, key)
    open_bundle(bundle, key=key.read_bytes())
    open_bundle(bundle)  # no key: the digest is checked, the signature cannot be
    assert _cpp_info(cli, bundle, DFMA_BUNDLE_KEY_FILE=str(key)).returncode == 0
    check = [sys.executable, str(REPO / "export" / "sign_bundle.py"), "check", str(bundle)]
    checked = subprocess.run(check + ["--key-file", str(key)], check=False, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    # another key: refused by both, and by the runtime reading the key from the environment
    with pytest.raises(BundleError, match="signature does not match") as info:
        open_bundle(bundle, key=other.read_bytes())
    assert info.value.file == str(bundle / SIGNATURE_FILE)
    proc = _cpp_info(cli, bundle, DFMA_BUNDLE_KEY_FILE=str(other))
    assert proc.returncode == 2 and "signature does not match" in proc.stderr
    monkeypatch.setenv("DFMA_BUNDLE_KEY_FILE", str(other))
    with pytest.raises(BundleError, match="signature does not match"):
        open_bundle(bundle)
    monkeypatch.setenv("DFMA_BUNDLE_KEY_FILE", str(tmp_path / "no-such-key"))
    with pytest.raises(BundleError, match="DFMA_BUNDLE_KEY_FILE"):
        open_bundle(bundle)
    monkeypatch.delenv("DFMA_BUNDLE_KEY_FILE")
    # an edit re-digested without the key: the digest holds, the signature does not
    _edit(bundle, _set("limits.max_batch", 8))
    open_bundle(bundle)
    with pytest.raises(BundleError, match="signature does not match"):
        open_bundle(bundle, key=key.read_bytes())
    assert _cpp_info(cli, bundle, DFMA_BUNDLE_KEY_FILE=str(key)).returncode == 2


# ---------------------------------------------------------------- what is refused before parsing

def _bounded(fn, seconds: float = LOAD_SECONDS):
    """Run ``fn`` in a thread; fail if it does not return within ``seconds``; returns what it raised."""
    out: dict = {}

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            out["exc"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} s"
    return out.get("exc")


def _with_tail(bundle: Path, tail: str) -> None:
    """The manifest with ``"deep": <tail>`` added, written and re-digested."""
    text = (bundle / "manifest.json").read_text(encoding="utf-8").rstrip()
    (bundle / "manifest.json").write_text(text[:-1] + f', "deep": {tail}}}\n', encoding="utf-8")
    write_digest(bundle)


@pytest.mark.parametrize("depth", [70, 100_000])
def test_deep_nesting_is_a_bundle_error_in_both(cli, bundle, depth):
    _with_tail(bundle, "[" * depth + "]" * depth)
    exc = _bounded(lambda: open_bundle(bundle))
    assert isinstance(exc, BundleError) and "nested" in str(exc), repr(exc)
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "nested more than 64 levels deep" in proc.stderr, proc.stderr


def test_nesting_within_the_limit_is_fine(bundle):
    _with_tail(bundle, "[" * 60 + "]" * 60)
    open_bundle(bundle)


def test_an_oversized_manifest_is_refused_without_reading_it(cli, bundle):
    with open(bundle / "manifest.json", "ab") as f:
        f.truncate((16 << 20) + 10)
    exc = _bounded(lambda: open_bundle(bundle))
    assert isinstance(exc, BundleError) and "more than the 16777216 allowed" in str(exc)
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "more than the 16777216 allowed" in proc.stderr


def test_a_symlinked_manifest_pointing_outside_is_refused_by_both(cli, bundle, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(bundle / "manifest.json", outside)
    (bundle / "manifest.json").symlink_to(outside)
    with pytest.raises(BundleError, match="manifest.json: a link"):
        open_bundle(bundle)
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "manifest.json: a link" in proc.stderr


def test_a_symlinked_graph_pointing_outside_is_refused_by_both(cli, bundle, tmp_path):
    graph = _manifest(bundle)["graphs"]["ort"]["file"]
    shutil.move(bundle / graph, tmp_path / "graph.onnx")
    (bundle / graph).symlink_to(tmp_path / "graph.onnx")
    with pytest.raises(BundleError, match="a link or a path leading outside") as info:
        open_bundle(bundle)
    assert info.value.field == f"files.{graph}"
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "a link" in proc.stderr


@pytest.mark.parametrize("name", ["manifest.json", DIGEST_FILE])
def test_a_fifo_in_place_of_the_manifest_or_its_digest_never_blocks(cli, bundle, name):
    (bundle / name).unlink()
    os.mkfifo(bundle / name)
    exc = _bounded(lambda: open_bundle(bundle))
    assert isinstance(exc, BundleError) and "not a regular file" in str(exc)
    proc = _cpp_info(cli, bundle)  # _run's timeout would fail the test if it blocked
    assert proc.returncode == 2 and "not a regular file" in proc.stderr


# ---------------------------------------------------------------- unlisted files

def test_unlisted_files_are_refused_by_default_with_an_opt_out(cli, bundle, monkeypatch):
    import dfma.runtime as rt

    (bundle / "notes.txt").write_text("not part of the bundle")
    with pytest.raises(BundleError, match="not listed in manifest.json: \\['notes.txt'\\]") as info:
        rt.load(bundle, threads=1)
    assert info.value.field == "files" and info.value.file == str(bundle / "notes.txt")
    proc = _cpp_info(cli, bundle)
    assert proc.returncode == 2 and "not listed in manifest.json: notes.txt" in proc.stderr
    open_bundle(bundle, strict=False)
    assert _cpp_info(cli, bundle, DFMA_BUNDLE_ALLOW_UNLISTED="1").returncode == 0
    monkeypatch.setenv("DFMA_BUNDLE_ALLOW_UNLISTED", "1")
    rt.load(bundle, threads=1).close()


def test_a_signature_and_digest_are_not_unlisted_files(bundle, tmp_path):
    (tmp_path / "key").write_bytes(b"k" * 32)
    _sign(bundle, tmp_path / "key")
    open_bundle(bundle, strict=True)


def test_an_unlisted_link_to_a_folder_is_refused_and_not_followed(bundle):
    (bundle / "sub").mkdir()
    (bundle / "sub" / "loop").symlink_to(bundle)  # a loop: a walk that followed it would never end
    exc = _bounded(lambda: open_bundle(bundle))
    assert isinstance(exc, BundleError) and "sub/loop" in str(exc)


# ---------------------------------------------------------------- every writer leaves a verifying manifest

def _verifies(folder: Path, key: bytes | None = None) -> Manifest:
    manifest = open_bundle(folder, strict=True, key=key).manifest
    digest = (folder / DIGEST_FILE).read_text().split()[0]
    assert digest == hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    return manifest


def test_the_export_pipeline_writes_a_verifying_digest(tiny_bundle):  # noqa: F811
    _verifies(tiny_bundle)  # built by export/to_onnx.py (tests/support/fixtures_bundle.py)


def test_update_bundle_as_the_precision_and_engine_steps_use_it(bundle, tmp_path):
    src = tmp_path / "model.fp16.onnx"
    shutil.copyfile(bundle / "model.onnx", src)
    update_bundle(bundle, {"model.fp16.onnx": src}, {"graphs": {"fp16": {"file": "model.fp16.onnx",
                                                                         "precision": "fp16", "kind": "portable"}}})
    assert "fp16" in _verifies(bundle).graphs
    engine = tmp_path / "engine.plan"
    engine.write_bytes(b"an engine")
    update_bundle(bundle, {"engines/fp16-gpu.plan": engine},
                  lambda m: m["graphs"].update({"tensorrt-fp16-gpu": {"file": "engines/fp16-gpu.plan",
                                                                       "precision": "fp16", "kind": "tensorrt"}}))
    assert "tensorrt-fp16-gpu" in _verifies(bundle).graphs


def test_slim_bundle_writes_a_verifying_digest(bundle, tmp_path):
    from dfma.export.slim_bundle import slim

    out = tmp_path / "slim"
    slim(bundle, out, keep=["ort"])
    assert list(_verifies(out).graphs) == ["ort"]


def test_the_triton_repository_copies_the_manifest_with_its_digest(bundle, tmp_path):
    from dfma.export.to_triton import TritonOptions, build_repository

    result = build_repository(TritonOptions(bundle=bundle, out=tmp_path / "repo"))
    copies = sorted(result.repository.rglob("manifest.json"))
    assert copies
    for manifest in copies:
        assert read_manifest(manifest.parent) == read_manifest(bundle)


def test_writers_sign_with_the_key_in_the_environment(bundle, tmp_path, monkeypatch):
    from dfma.export.slim_bundle import slim

    key = tmp_path / "key"
    key.write_bytes(os.urandom(16))
    monkeypatch.setenv("DFMA_BUNDLE_KEY_FILE", str(key))
    with pytest.raises(BundleError, match="manifest.sig: missing"):  # the unsigned input is refused first
        update_bundle(bundle, {}, {"tools": {"note": "x"}})
    _sign(bundle, key)
    update_bundle(bundle, {}, {"tools": {"note": "x"}})
    _verifies(bundle, key.read_bytes())
    slim(bundle, tmp_path / "slim", keep=["ort"])
    _verifies(tmp_path / "slim", key.read_bytes())
    with BundleWriter(tmp_path / "fresh") as w:
        shutil.copyfile(bundle / "model.onnx", w.path("model.onnx"))
        for rel in ("weights.bin", "tokenizer.json", "vocab.txt"):  # the graph's weights travel with it
            shutil.copyfile(bundle / rel, w.path(rel))
        m = _manifest(bundle)
        m["graphs"] = {"portable": {k: v for k, v in m["graphs"]["portable"].items() if k != "stages"}}
        m.pop("golden", None)
        m.pop("defaults", None)
        w.commit(m)
    _verifies(tmp_path / "fresh", key.read_bytes())
