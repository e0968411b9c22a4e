"""Slimmed bundles per CPU target (export/slim_bundle.py): ``--for cpu`` serves every x86 class with the fewest guarded
graphs, INT8 first (the 7-bit twin: exact on every x86 class), fp32 only where no INT8 graph passed; ``--for cpu-vnni``
the full-range INT8 graphs; the copy records the classes it serves, and ``auto`` on another class is one BundleError.
On the tiny bundle's real INT8 graphs (``int8_bundle``: built by the precision step), served by the real runtime on this
CPU under each class name (``DFMA_CPU_CLASS``; the emulated AVX2 host is in tests/backends/test_self_check.py)."""
from __future__ import annotations

import dataclasses
import json

import pytest
from fixtures_bundle import int8_bundle, tiny_bundle  # noqa: F401

import dfma.runtime as rt
from dfma.contract.bundle import open_bundle, verify_bundle
from dfma.contract.errors import BundleError
from dfma.contract.graphs import CATALOGUE, CPU_CLASSES, X86_CLASSES, X86_DOT_PRODUCT
from dfma.contract.manifest import Manifest
from dfma.export.slim_bundle import graphs_for, main, slim
from dfma.host import cpu_class, host_info

REQUEST = {"words": ["Obama", "meets", "Merkel", "in", "Berlin"], "head": [0, 1], "tail": [2, 3]}
SERVED_HOSTS = ("x86-avx2", "x86-avx512-vnni", "x86-amx")  # the issue's three: AVX2, AVX-512, AMX


@pytest.fixture()
def as_class(monkeypatch):
    """Run the runtime as if on a CPU of the given class (``DFMA_CPU_CLASS``, the emulators' override)."""
    def use(name: str) -> None:
        monkeypatch.setenv("DFMA_CPU_CLASS", name)
        host_info.cache_clear()

    yield use
    host_info.cache_clear()


def test_every_class_the_host_module_names_is_in_the_catalogue():
    flags = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}
    named = {cpu_class(m, f) for m in ("x86_64", "aarch64", "riscv64") for f in
             [set(), {"avx2"}, {"avx2", "avx512f"}, {"avx2", "avx_vnni"}, {"avx512_vnni"}, {"amx_int8"}, flags,
              {"asimddp"}]}
    assert named == set(CPU_CLASSES) and set(X86_DOT_PRODUCT) < set(X86_CLASSES) < set(CPU_CLASSES)
    twin, full = CATALOGUE["int8-avx2"], CATALOGUE["int8"]
    assert all(twin.serves(c) for c in CPU_CLASSES) and CATALOGUE["ort"].serves("x86-avx2")
    assert [c for c in X86_CLASSES if full.serves(c)] == list(X86_DOT_PRODUCT)


@pytest.mark.slow
def test_slim_for_cpu_serves_every_x86_class_with_one_int8_twin(int8_bundle, tmp_path, as_class):
    bundle, built = int8_bundle
    ranked = [e["precision"] for e in built["defaults"]["auto"]["cpu"]["ranked"]]
    assert built["parity"]["int8-avx2"]["passed"] and "int8" in ranked  # the premise: auto would serve INT8
    out = tmp_path / "cpu"
    assert main([str(bundle), "--out", str(out), "--for", "cpu"]) == 0
    manifest = open_bundle(out).manifest
    verify_bundle(out, strict=True)
    # one graph: the static twin (dynamic INT8 is batch-dependent, so auto would pass over it); no fp32, no fp16
    assert list(manifest.graphs) == ["int8-avx2"] and list(manifest.parity) == ["int8-avx2"]
    assert not any(f in manifest.files for f in ("model.onnx", "model.ort.onnx", "model.int8.onnx"))
    assert set(manifest.stage_files("int8-avx2").values()) <= set(manifest.files)
    slimmed = manifest.slimmed
    assert slimmed["for"] == "cpu" and slimmed["kept"] == ["int8-avx2"]
    assert manifest.served_cpu_classes == tuple(CPU_CLASSES) == tuple(slimmed["cpu_classes"])
    assert slimmed["served_by"] == {c: "int8-avx2" for c in CPU_CLASSES}
    rec = manifest.recorded_default("cpu")  # auto's ranking names the kept graph of its precision
    assert rec is not None and rec.graph == "int8-avx2" and rec.precision == "int8"
    assert [(e.graph, e.precision) for e in rec.ranked] == [("int8-avx2", "int8")]
    assert manifest.total_bytes < 0.6 * open_bundle(bundle).manifest.total_bytes
    for name in SERVED_HOSTS:  # AVX2, AVX-512 and AMX hosts are all served INT8, by the same graph
        as_class(name)
        with rt.load(out, threads=1) as ex:
            described = ex.describe()
            assert (ex.precision, described["graph_key"]) == ("int8", "int8-avx2"), described
            assert ex.logits([REQUEST]).shape[0] == 1
    as_class("arm")  # the twin serves the ARM classes too (7-bit weights): nothing refused
    with rt.load(out, threads=1) as ex:
        assert ex.precision == "int8"


@pytest.mark.slow
def test_slim_for_cpu_vnni_keeps_the_full_range_graphs_and_auto_refuses_avx2(int8_bundle, tmp_path, as_class):
    bundle, _ = int8_bundle
    manifest = slim(bundle, tmp_path / "vnni", target="cpu-vnni")
    assert list(manifest.graphs) == ["int8"] and manifest.slimmed["for"] == "cpu-vnni"
    assert manifest.served_cpu_classes == (*X86_DOT_PRODUCT, "arm-dotprod")
    as_class("x86-amx")
    with rt.load(tmp_path / "vnni", threads=1) as ex:
        assert (ex.precision, ex.describe()["graph_key"]) == ("int8", "int8")
    as_class("x86-avx2")
    with pytest.raises(BundleError) as err:
        rt.load(tmp_path / "vnni", threads=1)
    message = str(err.value)
    assert "\n" not in message and err.value.field == "slimmed.cpu_classes"
    assert "slimmed --for cpu-vnni" in message and "x86-avx2" in message and "x86-amx" in message
    with rt.load(tmp_path / "vnni", precision="int8", threads=1) as ex:  # asked for by name: served
        assert ex.describe()["graph_key"] == "int8"


@pytest.mark.slow
def test_fp32_is_kept_only_for_the_classes_no_int8_graph_serves(int8_bundle):
    bundle, _ = int8_bundle
    typed = open_bundle(bundle).manifest
    assert graphs_for(typed, "cpu") == ["int8-avx2"]

    def failing(*keys: str) -> Manifest:
        parity = {k: ({**v, "passed": False} if k in keys else v) for k, v in typed.parity.items()}
        return dataclasses.replace(typed, parity=parity)

    # the twin missed its guard: the full-range graph serves VNNI / AMX, fp32 (fused) the classes without them
    assert graphs_for(failing("int8-avx2"), "cpu") == ["ort", "int8"]
    assert graphs_for(failing("int8-avx2"), "cpu-vnni") == ["int8"]
    # no INT8 graph passed: fp32 only
    assert graphs_for(failing("int8", "int8-avx2"), "cpu") == ["ort"]
    # the precision auto ranks is the one kept: here nothing but fp32 is ranked, so fp32 serves
    no_int8 = dataclasses.replace(typed, defaults=dataclasses.replace(typed.defaults, auto={
        s: dataclasses.replace(r, ranked=tuple(e for e in r.ranked if e.precision == "fp32"))
        for s, r in typed.defaults.auto.items()}))
    assert graphs_for(no_int8, "cpu") == ["ort"]
    with pytest.raises(Exception, match="choose one of"):
        graphs_for(typed, "tpu")


def test_slim_of_an_fp32_bundle_serves_every_class_with_fp32(tiny_bundle, tmp_path):
    manifest = slim(tiny_bundle, tmp_path / "cpu", target="cpu")
    assert list(manifest.graphs) == ["ort"] and manifest.served_cpu_classes == tuple(CPU_CLASSES)
    doc = json.loads((tmp_path / "cpu" / "manifest.json").read_text())
    assert doc["slimmed"]["cpu_classes"] == list(CPU_CLASSES) and doc["slimmed"]["served_by"]["x86-avx2"] == "ort"
    assert Manifest.from_json({**doc, "slimmed": None}).served_cpu_classes is None
    unserved = Manifest.from_json({**doc, "slimmed": {**doc["slimmed"], "for": "keep", "cpu_classes": ["x86-amx"]}})
    with pytest.raises(BundleError, match=r"slimmed --for keep and serves the CPU classes \['x86-amx'\]"):
        unserved.check_serves("x86-avx2")
    unserved.check_serves("x86-amx")
