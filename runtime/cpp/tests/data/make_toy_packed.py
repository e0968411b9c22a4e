"""Writes toy_packed/ (committed; re-run only to change it): toy_two_stage/ with its graphs' tensors in a weight
store (contract 4.3), packed from 32 bytes up (the toy's tensors are all under the exporter's 1 KiB threshold):
``weights.bin`` + graphs that reference it through ONNX external data. The ctest suite checks that the C++
runtime serves it with toy_two_stage's logits, whole and two-stage (test_two_stage.cpp). Reads
toy_two_stage/ as make_toy_stages.py wrote it: re-run this after that one.

Run: .venv/bin/python runtime/cpp/tests/data/make_toy_packed.py
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from dfma.contract.manifest_digest import write_digest
from dfma.contract.weight_store import STORE_FILE, external_refs
from dfma.export.weight_store import pack_folder

HERE = Path(__file__).resolve().parent
# the toy's weights are 64..1008 bytes; its axes constants (24 bytes) stay inline: ONNX Runtime's shape inference
# cannot read an operator's shape or axes input from external data (why the exporter's threshold is 1 KiB)
MIN_BYTES = 32


def sha(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main() -> None:
    src, out = HERE / "toy_two_stage", HERE / "toy_packed"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    stats = pack_folder(out, min_bytes=MIN_BYTES)
    assert stats.tensors and external_refs(out / "model.onnx") and external_refs(out / "model.text.onnx"), stats
    manifest = json.loads((src / "manifest.json").read_text())
    for f in [*(p.name for p in out.glob("*.onnx")), STORE_FILE]:
        manifest["files"][f] = sha(out / f)
    manifest["tools"]["weights"] = "runtime/cpp/tests/data/make_toy_packed.py"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_digest(out)
    print(f"wrote {out}: {stats.references} references to {stats.tensors} tensors in {STORE_FILE}")


if __name__ == "__main__":
    main()
