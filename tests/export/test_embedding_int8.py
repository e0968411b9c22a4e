"""INT8 embedding tables (export/embedding_int8.py): the rewrite against a numpy per-row quantize/dequantize on a
small graph, its op counts (the int8 rows are gathered, never the whole table dequantized), what it leaves alone,
its undoing for TensorRT, and the tiny bundle's INT8 graphs built by the precision step (whole and stage graphs)
carrying an int8 table and meeting their guard as measured with it."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from fixtures_bundle import int8_bundle, random_feeds, tiny_bundle  # noqa: F401
from onnx import TensorProto, helper, numpy_helper

from dfma.backends.ort_runner import OrtRunner
from dfma.contract.graphs import CATALOGUE
from dfma.contract.weight_store import graph_bytes
from dfma.host import host_info
from dfma.export import embedding_int8 as emb

V, D, SMALL = 3000, 96, 40  # 3000 x 96 fp32 = 1.1 MiB: above the bound; 40 x 96: below it


def _graph(tied: bool = False) -> onnx.ModelProto:
    """ids -> Gather(word table) + Gather(small table) -> Relu; ``tied``: the word table is also a MatMul weight."""
    rng = np.random.default_rng(3)
    word = (rng.standard_normal((V, D)) * rng.uniform(0.01, 2.0, (V, 1))).astype(np.float32)
    word[7] = 0.0  # an all-zero row
    small = rng.standard_normal((SMALL, D)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["word", "ids"], ["w"], name="word_gather"),
             helper.make_node("Gather", ["small", "small_ids"], ["s"], name="small_gather"),
             helper.make_node("Add", ["w", "s"], ["ws"]),
             helper.make_node("Relu", ["ws"], ["out"])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 5, D])]
    if tied:
        nodes.append(helper.make_node("MatMul", ["out", "word_t"], ["scores"]))
        nodes.insert(0, helper.make_node("Transpose", ["word"], ["word_t"], perm=[1, 0]))
        outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 5, V]))
    graph = helper.make_graph(nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5]),
                                             helper.make_tensor_value_info("small_ids", TensorProto.INT64, [2, 5])],
                              outputs, [numpy_helper.from_array(word, "word"), numpy_helper.from_array(small, "small")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


FEEDS = {"ids": np.array([[0, 7, 2999, 5, 5], [1, 2, 3, 1500, 0]], dtype=np.int64),
         "small_ids": np.array([[0, 1, 2, 3, 39], [9, 8, 7, 6, 5]], dtype=np.int64)}


def test_the_rewrite_equals_a_numpy_per_row_quantize_dequantize():
    model = _graph()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    word, small = inits["word"], inits["small"]
    # the reference: symmetric per row, scale max|row| / 127 (1 for a zero row), round to nearest, clip
    amax = np.abs(word).max(axis=1, keepdims=True)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(word / scale), -127, 127).astype(np.int8)
    expected = np.maximum(q[FEEDS["ids"]].astype(np.float32) * scale[FEEDS["ids"]] + small[FEEDS["small_ids"]], 0)

    rewritten, stats = emb.quantize_embeddings(model)
    onnx.checker.check_model(rewritten, full_check=True)
    (out,) = _run(rewritten, FEEDS)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32 and rewritten.graph.output[0].name == "out"
    (before,) = _run(model, FEEDS)
    assert 0 < np.abs(out - before).max() <= 0.5 * scale.max()  # rounded, by at most half a step of a row
    table = stats["tables"]["word"]
    assert table["shape"] == [V, D] and table["fp32_bytes"] == V * D * 4 and table["int8_bytes"] == V * D + V * 4
    assert list(stats["tables"]) == ["word"]  # the small table is left fp32
    assert emb.quantize_rows(word)[0].tobytes() == q.tobytes()


def test_the_int8_rows_are_gathered_before_they_are_dequantized():
    rewritten, _ = emb.quantize_embeddings(_graph())
    ops = Counter(n.op_type for n in rewritten.graph.node)
    assert ops["DequantizeLinear"] == 0  # never the whole table: ONNX Runtime would dequantize it every run
    assert ops["Gather"] == 3 and ops["Cast"] == 1 and ops["Mul"] == 1  # rows, their scales, the small table
    inits = {t.name: t for t in rewritten.graph.initializer}
    assert "word" not in inits and inits["small"].data_type == TensorProto.FLOAT
    table, scales = inits["word" + emb.TABLE_SUFFIX], inits["word" + emb.SCALES_SUFFIX]
    assert table.data_type == TensorProto.INT8 and list(table.dims) == [V, D]
    assert scales.data_type == TensorProto.FLOAT and list(scales.dims) == [V, 1]
    assert emb.int8_tables(rewritten) == {"word": [V, D]}
    producer = {o: n for n in rewritten.graph.node for o in n.output}
    mul = next(n for n in rewritten.graph.node if n.op_type == "Mul")
    assert mul.output[0] == "w"  # the Gather's output name, so the rest of the graph is unchanged
    cast = producer[mul.input[0]]
    assert cast.op_type == "Cast" and producer[cast.input[0]].input == ["word" + emb.TABLE_SUFFIX, "ids"]
    assert producer[mul.input[1]].input == ["word" + emb.SCALES_SUFFIX, "ids"]
    assert rewritten.ByteSize() < 0.3 * _graph().ByteSize()


def test_a_table_read_by_another_op_and_an_unchanged_graph_are_left_alone():
    tied = _graph(tied=True)
    rewritten, stats = emb.quantize_embeddings(tied)
    assert stats["tables"] == {} and emb.int8_tables(rewritten) == {}
    assert emb.quantize_embeddings(_graph(), min_bytes=V * D * 4 + 1)[1]["tables"] == {}
    assert emb.candidate_tables(_graph(), min_bytes=1) == ["word", "small"]


def test_expanding_for_tensorrt_gives_the_same_values_from_an_fp32_table():
    rewritten, _ = emb.quantize_embeddings(_graph())
    expanded, n = emb.expand_embeddings(rewritten)
    assert n == 1 and emb.int8_tables(expanded) == {}
    assert Counter(n.op_type for n in expanded.graph.node) == Counter(n.op_type for n in _graph().graph.node)
    assert {t.name: t.data_type for t in expanded.graph.initializer} == {"small": TensorProto.FLOAT,
                                                                        "word": TensorProto.FLOAT}
    onnx.checker.check_model(expanded, full_check=True)
    np.testing.assert_array_equal(_run(expanded, FEEDS)[0], _run(rewritten, FEEDS)[0])
    assert emb.expand_embeddings(_graph())[1] == 0


# ---------------------------------------------------------------- the tiny bundle's INT8 graphs

INT8_KEYS = ("int8", "int8-dynamic", "int8-avx2", "int8-dynamic-avx2")


@pytest.mark.slow
def test_the_tiny_bundles_int8_graphs_hold_an_int8_table_and_meet_their_guard(int8_bundle, tiny_bundle):
    bundle, manifest = int8_bundle
    fp32 = onnx.load(str(tiny_bundle / "model.onnx"))
    table = emb.candidate_tables(fp32)
    assert len(table) == 1 and "word_embeddings" in table[0]  # the word table: the position table is small
    shape = [int(d) for d in next(t.dims for t in fp32.graph.initializer if t.name == table[0])]
    for key in INT8_KEYS:
        entry = manifest["graphs"][key]
        stats = entry["quantization"]["stats"]["embeddings"]
        assert list(stats) == table and stats[table[0]]["int8_bytes"] < stats[table[0]]["fp32_bytes"] / 3.5
        assert "per row" in entry["quantization"]["embeddings"]
        whole = onnx.load(str(bundle / entry["file"]))
        assert emb.int8_tables(whole) == {table[0]: shape}, key
        assert not any(n.op_type == "DequantizeLinear" and n.input[0].endswith(emb.TABLE_SUFFIX)
                       for n in whole.graph.node)
        text = onnx.load(str(bundle / entry["stages"]["text"]["file"]))  # the stage graphs carry it too
        assert emb.int8_tables(text) == {table[0]: shape}, key
        # the guard measured the graph as written (int8 table): it met the target, the stage graphs too, on every
        # host class where the row computes what it means (catalogue exact_on: full-range INT8 may saturate on
        # x86 without VNNI, where only the 7-bit twins are exact)
        exact_on = CATALOGUE[key].exact_on
        if exact_on is None or host_info()["class"] in exact_on:
            assert manifest["parity"][key]["passed"] is True, (key, manifest["parity"][key])
            assert entry["stages"]["parity"]["passed"] is True, key
        assert graph_bytes(bundle / entry["file"]) < graph_bytes(tiny_bundle / "model.onnx")  # with their weights
    feeds = random_feeds(bundle, 2, 9, seed=4)  # and they run under the project's session settings
    for key in ("int8", "int8-avx2"):
        assert np.isfinite(OrtRunner(bundle / manifest["graphs"][key]["file"], threads=1).open().logits(feeds)).all()
