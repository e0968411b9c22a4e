"""Resident memory of a loaded extractor against its graphs' weight bytes, measured in this (fresh) process.

``python tests/support/rss_probe.py BUNDLE [--precision P] [--stages two-stage|whole] [--minimal]`` prints one
JSON object: ``rss_before`` (after the imports and a warm ONNX Runtime: one session of a one-node graph created
and run, so that the runtime's process-wide state is not counted), ``rss_after`` (the extractor loaded and one
request served), ``growth``, ``weight_bytes`` (the distinct initializer bytes of the graphs it serves: each
tensor of the weight store counted once, inline ones per graph), ``load_seconds`` and the graph files.
``--minimal`` measures the same growth for two sessions of one-node graphs instead (the fixed overhead);
``--extractors N`` loads the same pair N times, one growth each (``growths``: the second is the marginal cost).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def weight_bytes(folder: Path, files: list[str]) -> int:
    """Distinct initializer bytes of ``files``: a store tensor (location, offset) once, inline ones each."""
    import onnx

    from dfma.export.weight_store import graph_tensors

    seen, total = set(), 0
    for rel in files:
        model = onnx.load(str(folder / rel), load_external_data=False)
        for t in graph_tensors(model.graph):
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                key = (info["location"], info.get("offset", "0"))
                if key not in seen:
                    seen.add(key)
                    total += int(info["length"])
            else:
                total += len(t.raw_data)
    return total


def _minimal_graph(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _warm(tmp: Path) -> list:
    import numpy as np
    import onnxruntime as ort

    path = tmp / "minimal.onnx"
    if not path.exists():
        _minimal_graph(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    s.run(None, {"x": np.zeros(1, np.float32)})
    return [s]


def main(argv: list[str] | None = None) -> int:
    """Measure and print the JSON object (module doc)."""
    p = argparse.ArgumentParser()
    p.add_argument("bundle", type=Path)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--stages", default="two-stage")
    p.add_argument("--backend", default="onnxruntime-cpu")
    p.add_argument("--minimal", action="store_true")
    p.add_argument("--extractors", type=int, default=1, help="load the same pair this many times (one growth each)")
    args = p.parse_args(argv)
    import dfma.runtime as rt

    request = {"words": "obama meets merkel in berlin".split(), "head": [0, 1], "tail": [2, 3]}
    growths, seconds, files, weights = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        keep = _warm(Path(tmp))
        first = rss()
        for _ in range(args.extractors):
            before = rss()
            t = time.perf_counter()
            if args.minimal:
                keep += _warm(Path(tmp)) + _warm(Path(tmp))
            else:
                ex = rt.load(args.bundle, backend=args.backend, precision=args.precision, stages=args.stages,
                             threads=1, self_check="never")
                ex.predict(request)
                d = ex.describe()
                files = list((d["stages"]["files"] or {}).values()) or [d["graph"]]
                keep.append(ex)
            seconds.append(round(time.perf_counter() - t, 3))
            growths.append(rss() - before)
        after = rss()
        if not args.minimal:
            weights = weight_bytes(args.bundle, files)
    print(json.dumps({"rss_before": first, "rss_after": after, "growth": growths[0], "growths": growths,
                      "weight_bytes": weights, "load_seconds": seconds[0], "seconds": seconds, "files": files,
                      "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
