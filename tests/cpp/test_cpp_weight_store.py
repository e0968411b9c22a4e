"""The C++ runtime on the weight store (docs/contract.md section 4.3): it serves a packed bundle (ONNX Runtime
opens each graph by its path and maps ``weights.bin`` beside it) with the logits of the same bundle in the old
inline layout, whole and two-stage, and refuses a changed store as it refuses any changed file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401
from fixtures_cpp import _run

from dfma.contract.weight_store import STORE_FILE, external_refs

WORDS = "rt @ap : obama meets merkel in berlin before the g20 summit in hamburg".split()


@pytest.fixture(scope="module")
def inline(tiny_bundle, tmp_path_factory) -> Path:
    from dfma.contract.bundle_writer import update_bundle
    from dfma.export.weight_store import inline_folder

    bundle = copy_bundle(tiny_bundle, tmp_path_factory.mktemp("cpp_inline") / "b", writable=True)
    update_bundle(bundle, {}, prepare=inline_folder)
    return bundle


def _logits(cli, bundle: Path, jsonl: Path, *extra) -> np.ndarray:
    proc = _run([cli, "predict", "--bundle", bundle, *extra, "--input", jsonl], timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows and all("error" not in r for r in rows), rows[:3]
    return np.asarray([r["logits"] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("stages", ["whole", "two-stage"])
def test_cpp_serves_a_packed_bundle_with_the_old_layouts_logits(cli, tiny_bundle, inline, tmp_path, stages):
    assert all(external_refs(p) for p in tiny_bundle.glob("*.onnx")), "the tiny bundle is packed"
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("".join(json.dumps({"words": WORDS, "head": [i, i + 1], "tail": [7, 8]}) + "\n"
                             for i in range(5)))
    packed = _logits(cli, tiny_bundle, jsonl, "--stages", stages, "--graph", "fp32")
    old = _logits(cli, inline, jsonl, "--stages", stages, "--graph", "fp32")
    np.testing.assert_array_equal(packed, old)


def test_cpp_verify_passes_on_the_packed_bundle_and_refuses_a_changed_store(cli, tiny_bundle, tmp_path):
    proc = _run([cli, "verify", "--bundle", tiny_bundle], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = copy_bundle(tiny_bundle, tmp_path / "b", writable=True)
    with open(bundle / STORE_FILE, "r+b") as f:
        f.seek(4096 + 3)
        byte = f.read(1)
        f.seek(4096 + 3)
        f.write(bytes([byte[0] ^ 0x40]))
    for command in ("verify", "info"):
        proc = _run([cli, command, "--bundle", bundle], timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"{bundle / STORE_FILE}: sha256 " in proc.stderr and "does not match the manifest" in proc.stderr
