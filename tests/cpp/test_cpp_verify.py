"""The C++ runtime's golden-set check (``dfma_cli verify``) and its ``auto`` choice against Python's, on the
tiny bundle: same numbers, same refusals, same fallback and reason."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401
from fixtures_cpp import _run

from dfma.contract.manifest_digest import write_digest


# ---------------------------------------------------------------- golden set: verify, auto (C++ vs Python)

def _writable_copy(bundle: Path, folder: Path) -> tuple[Path, dict]:
    """A writable copy of a (read-only) bundle and its manifest."""
    copy_bundle(bundle, folder, writable=True)
    return folder, json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, manifest: dict, *rehash: str) -> None:
    """Write the manifest after re-hashing the named files into its ``files`` table."""
    import hashlib

    for name in rehash:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False))
    write_digest(folder)


def _python_golden(folder: Path, manifest: dict, key: str) -> dict:
    """``dfma.backends.golden_check.run_golden`` of graph ``key`` on ONNX Runtime CPU (Python)."""
    from dfma.backends.golden_check import run_golden
    from dfma.backends.ort_runner import OrtRunner
    from dfma.contract.golden import load_golden
    from dfma.contract.graphs import row_of

    entry = manifest["graphs"][key]
    with OrtRunner(folder / entry["file"], graph=row_of(key, entry), io=manifest["io"]) as runner:
        return run_golden(runner, load_golden(folder, manifest))


@pytest.fixture()
def golden_bundle(tiny_bundle, tmp_path) -> tuple[Path, dict]:
    """A writable copy of the tiny bundle, which the exporter gives a golden set."""
    folder, manifest = _writable_copy(tiny_bundle, tmp_path / "bundle")
    assert "golden" in manifest and "golden.safetensors" in manifest["files"], "the exporter wrote no golden set"
    return folder, manifest


def test_verify_equals_the_python_golden_check(cli, golden_bundle):
    from dfma.backends.ort_runner import OrtRunner
    from dfma.contract.golden import judge
    from dfma.contract.manifest import Manifest
    from dfma.host import host_info

    folder, manifest = golden_bundle
    proc = _run([cli, "verify", "--bundle", folder], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, *lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert head == {"cpu_class": host_info()["class"], "bundle": str(folder),
                    "golden_samples": manifest["golden"]["samples"]}
    rows = {r["graph"]: r for r in lines}
    present = Manifest.from_json(manifest).present()
    assert set(rows) == {k for k, row in present.items() if OrtRunner.runs(row)} == {"portable", "ort"}
    section = manifest["golden"]
    for key, got in rows.items():
        py = _python_golden(folder, manifest, key)
        passed, _ = judge(py, section["expected"].get(key), section["tolerance"])
        assert got["passed"] is True and passed, (got, py)
        assert (got["file"], got["precision"]) == (manifest["graphs"][key]["file"], manifest["graphs"][key]["precision"])
        assert got["top1_agreement"] == py["top1_agreement"]
        assert got["nonfinite_rows"] == py["nonfinite_rows"] == 0
        assert abs(got["max_abs_error"] - py["max_abs_error"]) <= 1e-5
        assert abs(got["mean_abs_error"] - py["mean_abs_error"]) <= 1e-5
        assert got["reason"].startswith("agreement 1.000, max error ") and got["ms_per_sample"] > 0


def test_verify_refuses_an_altered_golden_file(cli, golden_bundle):
    folder, manifest = golden_bundle
    path = folder / "golden.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    proc = _run([cli, "verify", "--bundle", folder], timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"{path}: sha256 " in proc.stderr and "does not match the manifest" in proc.stderr
    proc = _run([cli, "verify"], timeout=60)
    assert proc.returncode == 2 and "missing --bundle" in proc.stderr
    del manifest["golden"], manifest["files"]["golden.safetensors"]
    path.unlink()
    _write_manifest(folder, manifest)
    proc = _run([cli, "verify", "--bundle", folder], timeout=120)
    assert proc.returncode == 2 and 'manifest.json: no "golden" section' in proc.stderr


def _perturbed_copy(src: Path, dst: Path) -> None:
    """``src`` with its largest non-embedding weight multiplied by 3: a graph that runs but is wrong."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    weights = [t for t in model.graph.initializer if "embeddings" not in t.name and t.data_type == onnx.TensorProto.FLOAT]
    target = max(weights, key=lambda t: int(np.prod(t.dims)))
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(3), target.name))
    onnx.save(model, str(dst))


def test_auto_passes_over_an_int8_graph_that_fails_its_golden_set_here(cli, golden_bundle):
    from dfma.backends.ort_runner import OrtRunner
    from dfma.contract.golden import judge
    from dfma.contract.manifest import Manifest
    from dfma.host import host_info

    folder, manifest = golden_bundle
    _perturbed_copy(folder / "model.onnx", folder / "model.int8.onnx")
    manifest["graphs"]["int8"] = {"file": "model.int8.onnx", "precision": "int8", "kind": "portable", "ops": "onnx",
                                  "devices": ["cpu", "gpu"], "cpu_classes": None}
    elsewhere = "x86-test-elsewhere"
    manifest["golden"]["expected"]["int8"] = {"top1_agreement": 1.0, "max_abs_error": 1e-6, "mean_abs_error": 1e-7,
                                              "host": {"class": elsewhere}}
    ranked = [{"label": "int8", "backend": "onnxruntime-cpu", "graph": "int8", "precision": "int8", "batch1_ms": 1.0},
              {"label": "fp32", "backend": "onnxruntime-cpu", "graph": "ort", "precision": "fp32", "batch1_ms": 2.0}]
    rec = {**ranked[0], "reason": "int8 was the fastest that met the guard", "ranked": ranked}
    manifest["defaults"] = {"auto": {"cpu": rec}}
    _write_manifest(folder, manifest, "model.int8.onnx")

    py = _python_golden(folder, manifest, "int8")
    passed, detail = judge(py, manifest["golden"]["expected"]["int8"], manifest["golden"]["tolerance"])
    assert not passed and detail.startswith(("agreement ", "max error ")), detail  # the premise: the broken graph fails
    rows = Manifest.from_json(manifest).present()
    fp32 = min((k for k, r in rows.items() if r.precision == "fp32" and OrtRunner.runs(r)),
               key=lambda k: OrtRunner.preference(rows[k]))
    here = host_info()["class"]

    def info(*extra) -> dict:
        proc = _run([cli, "info", "--bundle", folder, *extra], timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    got = info()
    assert (got["graph"], got["cpu_class"]) == (fp32, here) == ("ort", here)
    assert got["graph_reason"] == (f"auto: {rec['reason']}; int8 failed its golden set here "
                                   f"(measured on {elsewhere}, this host is {here}: {detail})")
    import dfma.runtime as rt

    with rt.load(folder, backend="onnxruntime-cpu") as ex:  # the Python runtime decides the same, for the same reason
        described = ex.describe()
    assert (described["graph_key"], described["precision_reason"]) == (got["graph"], got["graph_reason"])
    got = info("--self-check", "never")
    assert (got["graph"], got["graph_reason"]) == ("int8", f"auto: {rec['reason']}")
    proc = _run([cli, "verify", "--bundle", folder], timeout=300)  # one graph fails: exit status 1
    assert proc.returncode == 1, proc.stderr
    verdicts = {r["graph"]: (r["passed"], r["reason"]) for r in map(json.loads, proc.stdout.splitlines()[1:])}
    assert verdicts["int8"] == (False, detail) and verdicts[fp32][0] is True
    manifest["golden"]["expected"]["int8"]["host"]["class"] = here  # measured on this class: trusted
    _write_manifest(folder, manifest)
    assert info()["graph"] == "int8"
    assert info("--self-check", "always")["graph"] == "ort"


def test_auto_refuses_a_cpu_class_the_slimmed_bundle_does_not_serve(cli, golden_bundle):
    """A bundle slimmed for other CPU classes (``slimmed.cpu_classes``): ``auto`` is refused in one line naming them,
    by the C++ runtime as by the Python one; a graph asked for by name is served."""
    from dfma.contract.errors import BundleError
    from dfma.host import host_info

    folder, manifest = golden_bundle
    manifest["slimmed"] = {"for": "cpu-vnni", "from": "elsewhere", "kept": list(manifest["graphs"]), "dropped": [],
                           "two_stage_pairs": True, "cpu_classes": ["x86-test-elsewhere"],
                           "served_by": {"x86-test-elsewhere": "ort"}}
    _write_manifest(folder, manifest)
    here = host_info()["class"]
    proc = _run([cli, "info", "--bundle", folder], timeout=120)
    assert proc.returncode == 2, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "slimmed" in line]
    assert len(lines) == 1 and "slimmed --for cpu-vnni" in lines[0] and "x86-test-elsewhere" in lines[0], proc.stderr
    assert f"not this {here} host" in lines[0] and "slimmed.cpu_classes" in lines[0]
    import dfma.runtime as rt

    with pytest.raises(BundleError, match=f"slimmed --for cpu-vnni .* not this {here} host"):
        rt.load(folder)
    proc = _run([cli, "info", "--bundle", folder, "--graph", "ort"], timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["graph"] == "ort", proc.stderr
    manifest["slimmed"]["cpu_classes"].append(here)  # a class it serves: auto as before
    _write_manifest(folder, manifest)
    assert _run([cli, "info", "--bundle", folder], timeout=120).returncode == 0
