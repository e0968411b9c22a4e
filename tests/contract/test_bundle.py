"""Bundle writing (atomic, hashed) and reading (torch-free verification) without running an export."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dfma.contract.errors import BundleError, ExportError
from dfma.contract.bundle_writer import BundleWriter, check_target, update_bundle
from dfma.contract.bundle import open_bundle, read_manifest, sha256_file, verify_bundle
from dfma.contract.manifest_digest import write_digest
from fixtures_bundle import small_manifest as _manifest


def _write(out: Path, **kw) -> Path:
    with BundleWriter(out, **kw) as w:
        w.path("model.onnx").write_bytes(b"graph-bytes")
        w.path("tokenizer.json").write_text("{}")
        w.path("engines/a.plan").write_bytes(b"engine")
        return w.commit(_manifest())


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name or ".probe-" in p.name]


def test_writer_hashes_every_file_and_reader_accepts(tmp_path):
    out = _write(tmp_path / "b")
    manifest = read_manifest(out)
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json", "engines/a.plan"}
    assert manifest["files"]["model.onnx"] == {"sha256": sha256_file(out / "model.onnx"), "bytes": 11}
    bundle = open_bundle(out, strict=True)
    assert bundle.graph_path("portable") == out / "model.onnx"
    assert bundle.labels == ["None", "r"]
    assert (out.stat().st_mode & 0o777) == 0o755 and (out / "model.onnx").stat().st_mode & 0o044
    assert _leftovers(tmp_path) == []


def test_failure_inside_writer_leaves_nothing(tmp_path):
    out = tmp_path / "deep" / "er" / "b"
    with pytest.raises(RuntimeError):
        with BundleWriter(out) as w:
            w.path("model.onnx").write_bytes(b"half")
            raise RuntimeError("validation failed")
    assert not (tmp_path / "deep").exists()
    assert _leftovers(tmp_path) == []


def test_commit_refuses_a_graph_that_was_not_written(tmp_path):
    with pytest.raises(ExportError, match="was not written"):
        with BundleWriter(tmp_path / "b") as w:
            w.path("tokenizer.json").write_text("{}")
            w.commit(_manifest())
    assert not (tmp_path / "b").exists()


def test_existing_target_refused_unless_forced(tmp_path):
    out = _write(tmp_path / "b")
    with pytest.raises(ExportError, match="already exists"):
        BundleWriter(out)
    (out / "stale.txt").write_text("old")
    _write(out, force=True)
    assert not (out / "stale.txt").exists()
    assert _leftovers(tmp_path) == []


def test_unwritable_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        check_target(tmp_path / "file" / "b")
    with pytest.raises(ExportError, match="not a folder"):
        check_target(tmp_path / "file", force=True)
    with pytest.raises(ExportError, match="not writable"):
        check_target("/proc/dfma-bundle")


@pytest.mark.parametrize("tamper, message", [
    (lambda b: (b / "model.onnx").write_bytes(b"graph-bytez"), "sha256 does not match"),
    (lambda b: (b / "model.onnx").write_bytes(b"longer graph bytes"), "bytes"),
    (lambda b: (b / "tokenizer.json").unlink(), "missing"),
])
def test_verify_detects_changed_files(tmp_path, tamper, message):
    out = _write(tmp_path / "b")
    tamper(out)
    with pytest.raises(BundleError, match=message):
        verify_bundle(out)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="other"), "'format'"),
    (lambda m: m.update(format_version=2), "format_version"),
    (lambda m: m.pop("parity"), "'parity' missing"),
    (lambda m: m.update(opset="23"), "'opset' must be of type int"),
    (lambda m: m["files"].update({"../escape": {"sha256": "0" * 64, "bytes": 1}}), "not a plain path"),
    (lambda m: m["files"].update({"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}}), "not a plain path"),
    (lambda m: m["graphs"].update({"x": {"file": "nope.onnx", "precision": "fp32", "kind": "portable"}}),
     "not listed in files"),
    (lambda m: m["files"]["model.onnx"].pop("sha256"), "needs 'sha256'"),
])
def test_read_manifest_rejects_bad_manifests(tmp_path, edit, message):
    out = _write(tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    write_digest(out)  # a deliberate edit: the error must be about the field, not the digest
    with pytest.raises(BundleError, match=message) as info:
        read_manifest(out)
    assert "manifest.json" in str(info.value)


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(BundleError, match="no such directory"):
        read_manifest(tmp_path / "none")
    (tmp_path / "b").mkdir()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        read_manifest(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match="manifest.sha256: missing"):
        read_manifest(tmp_path / "b")
    write_digest(tmp_path / "b")
    with pytest.raises(BundleError, match="unreadable"):
        read_manifest(tmp_path / "b")


def test_strict_verification_refuses_unlisted_files_and_links(tmp_path):
    out = _write(tmp_path / "b")
    (out / "extra.bin").write_bytes(b"?")
    verify_bundle(out)  # tolerated by default
    with pytest.raises(BundleError, match="extra.bin"):
        verify_bundle(out, strict=True)
    (out / "extra.bin").unlink()
    (tmp_path / "outside").write_bytes(b"graph-bytes")
    (out / "model.onnx").unlink()
    (out / "model.onnx").symlink_to(tmp_path / "outside")
    with pytest.raises(BundleError, match="link"):
        verify_bundle(out)


def test_update_bundle_adds_files_and_manifest_entries(tmp_path):
    out = _write(tmp_path / "b")
    src = tmp_path / "fp16.onnx"
    src.write_bytes(b"half precision")
    new = update_bundle(out, {"model.fp16.onnx": src}, {
        "graphs": {"fp16": {"file": "model.fp16.onnx", "precision": "fp16", "kind": "portable"}},
        "parity": {"fp16": {"max_abs_error": 1e-3}}})
    assert new["files"]["model.fp16.onnx"]["sha256"] == sha256_file(src)
    assert set(new["graphs"]) == {"portable", "fp16"} and set(new["parity"]) == {"portable", "fp16"}
    assert open_bundle(out, strict=True).graph_path("fp16").read_bytes() == b"half precision"

    def drop_engine(m: dict) -> None:
        m["tools"]["note"] = "engine removed"

    new = update_bundle(out, {}, drop_engine, remove=["engines/a.plan"])
    assert "engines/a.plan" not in new["files"] and not (out / "engines" / "a.plan").exists()
    assert read_manifest(out)["tools"]["note"] == "engine removed"
    assert _leftovers(tmp_path) == []


def test_update_bundle_failure_keeps_the_old_bundle(tmp_path):
    out = _write(tmp_path / "b")
    before = (out / "manifest.json").read_text()
    with pytest.raises(BundleError, match="missing"):
        update_bundle(out, {"model.int8.onnx": tmp_path / "does-not-exist"})
    (out / "model.onnx").write_bytes(b"tampered!!!")
    with pytest.raises(BundleError, match="sha256"):
        update_bundle(out, {}, {"tools": {"x": "y"}})
    assert (out / "manifest.json").read_text() == before
    assert _leftovers(tmp_path) == []


def test_reader_imports_without_torch_or_onnx():
    code = ("import sys; import dfma.contract.bundle as b; "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
