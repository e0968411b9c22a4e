"""Where the time goes: ONNX Runtime's profiler on one bundle graph, aggregated by op type and by model part.

    python benchmarks/profile_ops.py --bundle bundles/base --graph ort-fused --batch 1 --length 80
    python benchmarks/profile_ops.py --bundle bundles/base --graph ort-int8 ort-int8-dynamic --batch 8 --json out.json
    python benchmarks/profile_ops.py --bundle bundles/base --eager --batch 1 --length 80     # torch profiler

ONNX Runtime: ``SessionOptions.enable_profiling``; the kernel events (``*_kernel_time``) of the last
``--reps`` runs (warm-up runs excluded by their ``model_run`` windows) are summed per op type and per
top-level model part (``vision``, ``text``, ``pfe``, ``mmf``, ... from the exporter's name scopes). Eager:
``torch.profiler`` self CPU time per aten op. Times are per run, in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `python benchmarks/X.py` puts benchmarks/ first on sys.path, where our module names could shadow another
# package's; every module is imported as dfma.benchmarks.* instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from dfma.benchmarks import backends as bk
from dfma.benchmarks.workload import make_feeds


def node_parts(path: Path) -> dict[str, str]:
    """Node name (and output value name) -> top-level module of the eager model it came from."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    parts = {}
    for node in model.graph.node:
        part = ""
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
                named = [s for s in scopes[:-1] if s and not s.startswith("_empty_nn_module")]
                part = named[0].split(".")[0] if named else "(top level)"
        parts[node.name] = part or "(unscoped)"
        for out in node.output:  # ORT's NCHWc layout pass names its nodes after the values they produce
            parts.setdefault("value:" + out, part or "(unscoped)")
    return parts


def _part_of(name: str, parts: dict[str, str]) -> str:
    if name in parts:
        return parts[name]
    base = re.sub(r"(_token_\d+)+$", "", name)
    for candidate in (base, base.removesuffix("_nchwc")):
        if candidate in parts:
            return parts[candidate]
        if "value:" + candidate in parts:
            return parts["value:" + candidate]
    if base.startswith("Reorder"):
        return "(ORT layout reorder)"
    return "(created by ORT)"


def profile_graph(path: Path, feeds: dict, threads: int, reps: int, warmup: int) -> dict:
    """Per-run milliseconds by op type and by model part, from ONNX Runtime's profiler."""
    from dfma.backends.ort_runner import OrtRunner

    with tempfile.TemporaryDirectory(prefix="dfma-profile-") as tmp:
        runner = OrtRunner(path, threads=threads, profile_prefix=str(Path(tmp) / "ort")).open()
        wall = []
        for i in range(warmup + reps):
            t0 = time.perf_counter()
            runner.infer(feeds)
            if i >= warmup:
                wall.append(time.perf_counter() - t0)
        trace = json.loads(Path(runner.end_profiling()).read_text())
        runner.close()
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[-reps:]
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in runs]
    parts = node_parts(path)
    by_op: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in trace:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in windows):
            continue
        op = e.get("args", {}).get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        by_op[op] += e["dur"] / 1e3 / reps
        by_part[_part_of(node, parts)] += e["dur"] / 1e3 / reps
        count[op] += 1
    total = sum(by_op.values())
    run_ms = sum(b - a for a, b in windows) / 1e3 / max(len(windows), 1)
    return {"graph": path.name, "run_ms": run_ms, "wall_ms_median": 1e3 * sorted(wall)[len(wall) // 2],
            "kernel_ms": total,
            "by_op": {k: {"ms": v, "share": v / total if total else 0.0, "calls": count[k] // reps}
                      for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "by_part": {k: {"ms": v, "share": v / total if total else 0.0}
                        for k, v in sorted(by_part.items(), key=lambda kv: -kv[1])}}


def profile_eager(model, feeds: dict, threads: int, reps: int, warmup: int, bf16: bool = False) -> dict:
    """Per-run milliseconds by aten op (self CPU time) from torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    tf = {k: torch.from_numpy(v) for k, v in feeds.items()}
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.inference_mode())
    with torch.inference_mode():
        for _ in range(warmup):
            with ctx():
                model(**tf)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                with ctx():
                    model(**tf)
        run_ms = (time.perf_counter() - t0) * 1e3 / reps
    rows = [(e.key, e.self_cpu_time_total / 1e3 / reps, e.count // reps) for e in prof.key_averages()]
    total = sum(r[1] for r in rows)
    return {"graph": "eager" + (" bf16" if bf16 else ""), "run_ms": run_ms, "kernel_ms": total,
            "by_op": {k: {"ms": ms, "share": ms / total if total else 0.0, "calls": n}
                      for k, ms, n in sorted(rows, key=lambda r: -r[1]) if ms > 0}}


def render(result: dict, top: int) -> str:
    """Text tables of one profile."""
    from dfma.benchmarks.latency_report import table

    lines = [f"== {result['graph']}: {result['run_ms']:.1f} ms per run"
             + (f" (wall median {result['wall_ms_median']:.1f} ms)" if "wall_ms_median" in result else "")
             + f", kernels {result['kernel_ms']:.1f} ms"]
    rows = [[op, f"{v['ms']:.2f}", f"{100 * v['share']:.1f}%", str(v.get("calls", ""))]
            for op, v in list(result["by_op"].items())[:top]]
    lines.append(table(["op type", "ms/run", "share", "calls/run"], rows))
    if result.get("by_part"):
        rows = [[p, f"{v['ms']:.2f}", f"{100 * v['share']:.1f}%"] for p, v in result["by_part"].items()]
        lines.append(table(["model part", "ms/run", "share"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile the requested graphs (and/or eager) at one batch x length."""
    p = argparse.ArgumentParser(prog="python benchmarks/profile_ops.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, metavar="DIR")
    p.add_argument("--graph", nargs="*", default=["ort-fused"], metavar="KEY",
                   help=f"contender keys with an ONNX Runtime graph: {', '.join(k for k in bk.GRAPHS if k.startswith('ort-'))} "
                        "(default: ort-fused)")
    p.add_argument("--eager", action="store_true", help="also profile the eager model (torch.profiler)")
    p.add_argument("--bf16", action="store_true", help="with --eager: also under bf16 autocast")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--length", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5, help="profiled runs (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=15, help="op types shown per graph")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every profile as JSON too")
    args = p.parse_args(argv)
    manifest = bk.read_bundle(args.bundle)
    cfg = bk.model_config(manifest)
    feeds = make_feeds(cfg, manifest, args.batch, args.length)
    results = []
    for key in args.graph:
        if not (key in bk.GRAPHS and key.startswith("ort-")):
            p.error(f"--graph {key}: choose from {[k for k in bk.GRAPHS if k.startswith('ort-')]}")
        path = args.bundle / bk.graph_file(key)
        if not path.is_file():
            print(f"{key}: {path.name} not in the bundle, skipped", file=sys.stderr)
            continue
        results.append({"key": key, **profile_graph(path, feeds, args.threads, args.reps, args.warmup)})
    if args.eager:
        model, _ = bk.build_eager(manifest)
        results.append({"key": "eager-fp32", **profile_eager(model, feeds, args.threads, args.reps, args.warmup)})
        if args.bf16:
            results.append({"key": "eager-bf16",
                            **profile_eager(model, feeds, args.threads, args.reps, args.warmup, bf16=True)})
    for r in results:
        print(render(r, args.top) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "batch": args.batch, "length": args.length,
                                         "threads": args.threads, "profiles": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
