"""The speed side of the guard's search (export/precision/keep_cost.py): units ordered by noise removed per weight
element, and the stop once the INT8 graph is no faster than fp32 (synthetic evaluations; a real timing of two
graphs)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dfma.export.precision import accuracy_guard as guard
from dfma.export.precision.keep_cost import SpeedCheck, noise_share, order_by_gain_per_cost, weight_elements


def _row(node, db):
    return {"node": node, "module": node, "sqnr_db": db, "activation_sqnr_db": db, "weight_sqnr_db": 99.0}


def _matmul_model(widths, rows=1):
    """x (rows, 8) through one MatMul per width (8 -> w, then w -> 8), named by their weight sizes."""
    nodes, inits, last = [], [], "x"
    rng = np.random.default_rng(0)
    for i, w in enumerate(widths):
        a = numpy_helper.from_array(rng.standard_normal((8, w)).astype(np.float32), f"w{i}a")
        b = numpy_helper.from_array(rng.standard_normal((w, 8)).astype(np.float32), f"w{i}b")
        inits += [a, b]
        nodes += [helper.make_node("MatMul", [last, a.name], [f"h{i}"], name=f"up{i}"),
                  helper.make_node("MatMul", [f"h{i}", b.name], [f"y{i}"], name=f"down{i}")]
        last = f"y{i}"
    nodes.append(helper.make_node("Identity", [last], ["logits"], name="out"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [rows, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weight_elements_counts_each_nodes_constant_weight():
    model = _matmul_model([4, 64])
    assert weight_elements(model) == {"up0": 32, "down0": 32, "up1": 512, "down1": 512}


def test_units_are_ordered_by_noise_removed_per_weight_element():
    """A slightly less sensitive kind with 16x smaller weights goes first; equal costs keep sensitivity order."""
    big, small = [_row("big", 20.0)], [_row("small", 23.0)]
    weights = {"big": 16_000, "small": 1_000}
    assert noise_share(big[0]) == pytest.approx(0.01) and noise_share(small[0]) == pytest.approx(10 ** -2.3)
    assert [u[0]["node"] for u in order_by_gain_per_cost([big, small], weights)] == ["small", "big"]
    same = {"big": 1_000, "small": 1_000}
    assert [u[0]["node"] for u in order_by_gain_per_cost([big, small], same)] == ["big", "small"]


def test_the_search_stops_once_int8_is_no_faster_and_says_why():
    """stop() is asked after each graph that misses the guard: here the second says 'too slow', so the search
    ends after round 1 with the budget unspent, not met, and the stop's reason in ``stopped``."""
    ranking = [_row(f"n{i}", float(i)) for i in range(8)]
    asked = []

    def evaluate(excluded):
        return {"top1_agreement": 0.9 + 0.01 * len(excluded), "max_abs_error": 0.1, "mean_abs_error": 0.01,
                "f1_delta_points": 0.0}

    def stop(excluded):
        asked.append(len(excluded))
        return "the INT8 graph already takes 1.04x fp32's time" if len(excluded) >= 1 else None

    found = guard.search(evaluate, lambda: ranking, target=0.99, budget=5, stop=stop)
    assert asked == [0, 1] and not found["met"] and [r["kept_fp32"] for r in found["rounds"]] == [0, 1]
    assert "stopped after 1 round(s): the INT8 graph already takes 1.04x" in found["stopped"]
    at_once = guard.search(evaluate, lambda: ranking, target=0.99, budget=5, stop=lambda excluded: "too slow")
    assert [r["round"] for r in at_once["rounds"]] == [0] and "stopped after 0 round(s): too slow" in at_once["stopped"]
    reordered = guard.search(evaluate, lambda: ranking, target=0.99, budget=1,
                             order=lambda units: list(reversed(units)))
    assert reordered["excluded"] == ["n7"]  # the order decides which unit is kept first


def test_speed_check_times_two_real_graphs_and_stops_when_slower(tmp_path):
    """A graph 16x the work of the 'fp32' one (milliseconds, not the microseconds of a call's overhead) is
    reported slower (stop reason); the fast one passes."""
    small, large = tmp_path / "small.onnx", tmp_path / "large.onnx"
    onnx.save(_matmul_model([1024], rows=64), str(small))  # ~1 M multiply-adds: work, not call overhead
    onnx.save(_matmul_model([1024] * 16, rows=64), str(large))
    samples = [{"x": np.ones((64, 8), np.float32)} for _ in range(6)]
    slower = SpeedCheck(small, large, samples, repeats=2)
    why = slower(["a", "b"])
    assert why and "with 2 node(s) in fp32 the INT8 graph already takes" in why
    assert slower.record()["checks"][0]["ratio"] > 1.0
    assert SpeedCheck(large, small, samples, repeats=2)([]) is None
