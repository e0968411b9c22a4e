"""The load table's parts (benchmarks/load_files.py, benchmarks/memory.py): bytes that follow ONNX external data
(a shared store counted once per row, as the ranges its graphs reference), the page-cache eviction on a real
file, and a load row measured on the tiny bundle in fresh processes. The table inside a whole served run:
tests/benchmarks/test_benchmark_served.py (test_a_served_run_on_the_tiny_bundle)."""
from __future__ import annotations

import os
from pathlib import Path

import fixtures_bundle
from fixtures_bundle import loaded_bytes
import numpy as np
import pytest

from dfma.benchmarks import latency_report as report
from dfma.benchmarks import load_files as lf
from dfma.benchmarks import memory as memprobe
from dfma.contract.errors import BundleError

tiny_bundle = fixtures_bundle.tiny_bundle


def _graph_with_external_data(folder: Path, name: str = "g.onnx", store: str = "weights.bin") -> tuple[Path, int]:
    """A two-initializer MatMul + Add graph saved with every tensor in ``store``; its tensors' bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(64 * 32, dtype=np.float32).reshape(64, 32), "w")
    b = numpy_helper.from_array(np.ones(32, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / name
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=store,
                    size_threshold=0)
    return path, 64 * 32 * 4 + 32 * 4


def test_bytes_follow_external_data_and_count_a_shared_store_once(tmp_path):
    import onnx

    path, weights = _graph_with_external_data(tmp_path)
    store = tmp_path / "weights.bin"
    assert store.is_file() and path.stat().st_size < weights  # the weights are not in the graph file
    assert lf.external_data(path) == {"weights.bin": weights}
    with store.open("ab") as f:  # bytes no graph refers to (another graph's weights in a shared store)
        f.write(b"\0" * 10_000)
    assert lf.external_data(path) == {"weights.bin": weights}  # what the graph references, not the file's size
    row = lf.row_files(tmp_path, [path.name])
    assert row["bytes"] == path.stat().st_size + weights and row["stores"] == {"weights.bin": weights}
    assert sorted(row["paths"]) == sorted([str(path), str(store)])
    # a second graph with the same tensors in the same store (stage graphs sharing weights): the store once
    twin = tmp_path / "twin.onnx"
    onnx.save_model(onnx.load(str(path), load_external_data=False), str(twin))
    both = lf.row_files(tmp_path, [path.name, twin.name])
    assert both["stores"] == {"weights.bin": weights}
    assert both["bytes"] == path.stat().st_size + twin.stat().st_size + weights
    assert len(both["paths"]) == 3


def test_inline_graph_bytes_are_its_size_and_a_missing_store_is_named(tmp_path):
    import onnx

    path, _ = _graph_with_external_data(tmp_path)
    inline = tmp_path / "inline.onnx"
    onnx.save_model(onnx.load(str(path)), str(inline))  # weights loaded, saved inside the graph
    assert lf.external_data(inline) == {}
    assert lf.row_files(tmp_path, ["inline.onnx"])["bytes"] == inline.stat().st_size
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(BundleError, match=r"g.onnx: tensor 'w' refers to 'weights.bin'"):
        lf.row_files(tmp_path, [path.name])
    with pytest.raises(BundleError, match="nope.onnx"):
        lf.row_files(tmp_path, ["nope.onnx"])


def test_union_bytes_counts_overlaps_once():
    assert lf.union_bytes([(0, 10), (5, 10), (20, 5)]) == 20
    assert lf.union_bytes([(0, 100), (10, 5)]) == 100
    assert lf.union_bytes([]) == 0


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")
def test_evict_drops_a_file_from_the_page_cache(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(4 << 20))
    path.read_bytes()
    before = lf.resident_bytes(path)
    lf.evict([path])  # dirty pages written first, then dropped: no error without root
    after = lf.resident_bytes(path)
    if before is None or _fs_type(tmp_path) in ("tmpfs", "ramfs", ""):
        return  # no mincore, or a memory file system whose pages cannot be dropped: the call alone is checked
    assert before > (4 << 20) // 2  # just read: in the page cache
    assert after < (4 << 20) // 10  # evicted
    assert lf.resident_share([path]) == pytest.approx(after / (4 << 20))


def test_a_load_row_on_the_tiny_bundle(tiny_bundle, mnre_dir):
    """ort-fp32 through dfma.runtime.load in 3 fresh processes: real bytes, warm and cold seconds, RSS growth."""
    table = memprobe.load_table(tiny_bundle, {"ort-fp32": {"backend": "onnxruntime-cpu", "precision": "fp32"}},
                                threads=1, data=str(mnre_dir / "mnre_val.txt"))
    (row,) = table["rows"]
    assert "error" not in row, row
    files = [tiny_bundle / f for f in row["graphs"]]
    assert files and all(f.is_file() for f in files)
    assert row["bytes"] == loaded_bytes(tiny_bundle, row["graphs"])  # graph files + the store ranges they use
    assert row["stores"] == {"weights.bin": row["bytes"] - sum(f.stat().st_size for f in files)} and \
        row["stores"]["weights.bin"] > 0
    assert row["load_warm_s"] > 0 and row["rss_growth_mb"] > 0 and row["peak_growth_mb"] >= row["rss_growth_mb"] - 1
    assert row["growth_per_byte"] == pytest.approx(row["rss_growth_mb"] * 2**20 / row["bytes"], rel=0.01)
    if row["cold"] is None:  # the eviction worked: nearly nothing of the files stayed cached
        assert row["load_cold_s"] > 0 and row["resident_before_cold"] <= memprobe.COLD_RESIDENT_MAX
    else:
        assert row["load_cold_s"] is None and row["cold"].startswith("not measurable here")
    text = report.load_table({"served": {"load": table}})
    assert text.startswith("== load:") and "load cold s" in text and "RSS growth MiB" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("ort-fp32"))
    assert f"{row['bytes'] / 2**20:.1f}" in line and f"{row['load_warm_s']:.3f}" in line


def test_load_table_switch_defaults_on_for_the_served_rows_alone():
    from dfma.benchmarks.latency_options import parse_args

    assert parse_args(["--modes", "served"]).load_table is True  # what `make demo` runs
    assert parse_args([]).load_table is False  # beside the grid: its memory probes give the grid's load table
    assert parse_args(["--modes", "served,model", "--load-table"]).load_table is True
    assert parse_args(["--modes", "served", "--no-load-table"]).load_table is False


def test_load_table_command_names_a_row_the_bundle_cannot_serve(tiny_bundle):
    import subprocess
    import sys

    from repo_paths import REPO

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory.py"), "--load-table", "--bundle",
                           str(tiny_bundle), "--rows", "ort-fp32,ort-int8"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode != 0 and "--rows ['ort-int8']" in proc.stderr and "no int8 graph" in proc.stderr
