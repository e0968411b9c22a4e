"""Accuracy guard: reduced-precision graphs vs fp32 on held-out MNRE sentences, and the INT8 sensitivity search.

- :func:`run_feeds` runs a graph (ONNX Runtime CPU, or the onnx reference evaluator for fp16) over a
  :class:`~dfma.export.calibration.FeedSet`; :func:`compare` reports top-1 agreement with fp32, max/mean
  logit error and micro-F1 (MNRE metric) of both against the gold labels.
- :func:`node_sensitivity` ranks quantizable nodes by the local signal-to-quantization-noise ratio of their
  inputs (what onnxruntime's ``qdq_loss_debug`` calls ``qdq_err``): the activation quantized with its
  calibrated U8 range (or, for dynamic INT8, its per-batch range) and the weight per channel in S8,
  noise powers added. Computed on fp32 activations, so each node's own error, not the error it inherits.
- :func:`search` re-quantizes with the most sensitive nodes kept in fp32 (1, 2, 4, ... more per round)
  until the agreement target is met or the round budget is spent, and says which.
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dfma.errors import ExportError

Runner = Callable[[dict], np.ndarray]


def ort_runner(path: Path, threads: int | None = None, *, as_written: bool = False) -> Runner:
    """feeds -> logits with an ONNX Runtime CPU session (only the inputs the graph declares are passed).

    ``as_written``: basic graph optimizations only, so Q/DQ pairs run as written (float math between
    them) instead of being fused into ONNX Runtime's integer kernels: how TensorRT-style S8 graphs are emulated.
    """
    import onnxruntime as ort

    from dfma.export.validate import make_session

    if as_written:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    else:
        session = make_session(Path(path), threads)
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(["logits"], {k: feeds[k] for k in names})[0]


def reference_runner(path: Path) -> Runner:
    """feeds -> logits with :func:`dfma.export.fp16.reference_evaluator` (honest fp16 arithmetic, slow)."""
    from dfma.export.fp16 import reference_evaluator

    evaluator = reference_evaluator(str(path))
    names = list(evaluator.input_names)

    def run(feeds: dict) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):  # fp16 masks: -65504 + score -> -inf, by design
            return np.asarray(evaluator.run(["logits"], {k: feeds[k] for k in names})[0], dtype=np.float32)

    return run


def run_feeds(run: Runner, feeds, *, desc: str = "running", progress: bool = True) -> np.ndarray:
    """Logits of every sample of a FeedSet, in order (float32 ``[N, num_labels]``), with a progress bar."""
    from tqdm.auto import tqdm

    out = [run(batch) for batch in tqdm(feeds.batches, desc=desc, unit="batch", disable=not progress,
                                        leave=False, file=sys.stderr)]
    return np.concatenate(out).astype(np.float32)


def compare(reference: np.ndarray, actual: np.ndarray, gold: np.ndarray, none_id: int) -> dict:
    """Agreement and logit errors of ``actual`` vs ``reference`` (fp32), and micro-F1 of both vs ``gold``."""
    from dfma.metrics import micro_prf

    if actual.shape != reference.shape:
        raise ExportError(f"logits shape {actual.shape} != fp32 {reference.shape}")
    finite = bool(np.isfinite(actual).all())
    diff = np.abs(actual.astype(np.float64) - reference) if finite else np.full(reference.shape, np.inf)
    f1_ref = micro_prf(gold, reference.argmax(-1), none_id)[2]
    f1 = micro_prf(gold, actual.argmax(-1), none_id)[2] if finite else 0.0
    return {"samples": int(reference.shape[0]), "finite": finite,
            "top1_agreement": float((actual.argmax(-1) == reference.argmax(-1)).mean()) if finite else 0.0,
            "max_abs_error": float(diff.max()), "mean_abs_error": float(diff.mean()),
            "max_rel_error": float(diff.max() / max(float(np.abs(reference).max()), 1e-30)),
            "f1_fp32": round(100 * f1_ref, 3), "f1": round(100 * f1, 3),
            "f1_delta_points": round(100 * (f1 - f1_ref), 3)}


def latency_table(runners: dict[str, Runner], samples: Sequence[dict], *, repeats: int = 3,
                  warmup: int = 2) -> dict[str, float]:
    """Batch-1 latency (ms) of each runner: per sample the fastest of ``repeats`` runs, then the median.

    Each repeat runs every graph over all samples in turn (graph by graph, so one session's spinning
    worker threads never compete with another's), and the fastest-of-N per sample discards the runs that
    other processes on the machine slowed down.
    """
    best = {key: [math.inf] * len(samples) for key in runners}
    for _ in range(repeats):
        for key, run in runners.items():
            for feeds in samples[:warmup]:
                run(feeds)
            for i, feeds in enumerate(samples):
                start = time.perf_counter()
                run(feeds)
                best[key][i] = min(best[key][i], time.perf_counter() - start)
    return {key: round(1000 * float(np.median(times)), 3) for key, times in best.items()}


def single_samples(feeds, n: int) -> list[dict]:
    """The first ``n`` samples of a FeedSet as batch-1 feeds, each cut to its own length (no padding)."""
    out = []
    for batch in feeds.batches:
        for r in range(batch["input_ids"].shape[0]):
            length = int(batch["attention_mask"][r].sum())
            out.append({k: (v[r:r + 1, :length] if k in ("input_ids", "attention_mask") else v[r:r + 1])
                        for k, v in batch.items()})
            if len(out) == n:
                return out
    return out


# ---------------------------------------------------------------- sensitivity

def _snr_terms(x: np.ndarray, xq: np.ndarray) -> tuple[float, float]:
    x64 = x.astype(np.float64)
    return float(np.sum(x64 * x64)), float(np.sum((x64 - xq) ** 2))


def _fake_quant_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def _fake_quant_weight(w: np.ndarray, axis: int) -> np.ndarray:
    amax = np.max(np.abs(w), axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.round(w / scale), -127, 127) * scale


def _db(signal: float, noise: float) -> float:
    return 200.0 if noise <= 0 else 10 * math.log10(max(signal, 1e-300) / noise)


def node_sensitivity(fp32_model_path: Path, nodes: Sequence[str], feeds: Sequence[dict],
                     ranges: dict[str, list[float]] | None) -> list[dict]:
    """Per node: local SQNR (dB) of its quantized activation input and weight, and both combined; most
    sensitive (lowest combined SQNR) first. ``ranges`` None means dynamic (per-batch) activation ranges."""
    from dfma.export.fp16 import module_of

    model = onnx.load(str(fp32_model_path))
    inits = {t.name: t for t in model.graph.initializer}
    wanted = {n.name: n for n in model.graph.node if n.name in set(nodes)}
    acts = sorted({n.input[0] for n in wanted.values() if n.input[0] not in inits})
    for name in acts:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sums: dict[str, list[float]] = {name: [0.0, 0.0] for name in acts}
    with tempfile.TemporaryDirectory(prefix="dfma-sens-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(model, str(path))
        run_all = ort_runner_outputs(path, acts)
        for batch in feeds:
            for name, x in zip(acts, run_all(batch)):
                if ranges is None:
                    xq = _fake_quant_u8(x, float(x.min()), float(x.max()))
                elif name in ranges:
                    xq = _fake_quant_u8(x, *ranges[name])
                else:
                    xq = x
                s, e = _snr_terms(x, xq)
                sums[name][0] += s
                sums[name][1] += e
    rows = []
    for name, node in wanted.items():
        act_db = _db(*sums[node.input[0]]) if node.input[0] in sums else 200.0
        w_db = 200.0
        if len(node.input) > 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and _trans_b(node)) else w.ndim - 1
            w_db = _db(*_snr_terms(w, _fake_quant_weight(w, axis)))
        combined = -10 * math.log10(10 ** (-act_db / 10) + 10 ** (-w_db / 10))
        rows.append({"node": name, "op": node.op_type, "module": module_of(node), "sqnr_db": round(combined, 2),
                     "activation_sqnr_db": round(act_db, 2), "weight_sqnr_db": round(w_db, 2)})
    return sorted(rows, key=lambda r: r["sqnr_db"])


def _trans_b(node: onnx.NodeProto) -> bool:
    return any(a.name == "transB" and a.i for a in node.attribute)


def ort_runner_outputs(path: Path, outputs: Sequence[str]) -> Callable[[dict], list[np.ndarray]]:
    """feeds -> the named outputs of a graph (ONNX Runtime CPU, optimizations off so names survive)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(list(outputs), {k: feeds[k] for k in names})


# ---------------------------------------------------------------- search

def search(evaluate: Callable[[list[str]], dict], rank: Callable[[], list[dict]], *, target: float, budget: int,
           start: Sequence[str] = (), rebuild: Callable[[list[str]], object] | None = None,
           log: Callable[[str], None] | None = None) -> dict:
    """Keep the most sensitive nodes in fp32 until ``top1_agreement >= target`` or ``budget`` rounds are spent.

    ``evaluate(excluded)`` re-quantizes with those nodes (and ``start``) left in fp32 and returns
    :func:`compare`'s dict; ``rank()`` returns :func:`node_sensitivity`'s list (called only when the first
    graph misses the target). Round r keeps 2**(r-1) more nodes. When the target is not met, the best round
    (highest agreement, then fewest nodes kept) is the result and ``rebuild(excluded)`` re-creates its graph
    if it was not the last. A target above 1 can never be met.
    Returns ``{"met", "stopped", "rounds", "kept", "final", "excluded", "chosen_round"}``; ``kept`` says why.
    """
    log = log or (lambda line: None)
    history = [evaluate(list(start))]
    rounds = [{"round": 0, "kept_fp32": 0, **_brief(history[0])}]
    log(f"guard round 0: agreement {history[0]['top1_agreement']:.4f} (target {target})")
    ranking = rank() if history[0]["top1_agreement"] < target and budget > 0 else []
    queue = [r for r in ranking if r["node"] not in set(start)]
    kept: list[dict] = []
    step, n = 1, 0
    while history[-1]["top1_agreement"] < target and n < budget and queue:
        n += 1
        take, queue = queue[:step], queue[step:]
        step *= 2
        for row in take:
            kept.append({**row, "round": n,
                         "reason": f"sensitivity rank {ranking.index(row) + 1}/{len(ranking)}: local SQNR "
                                   f"{row['sqnr_db']:.1f} dB (activation {row['activation_sqnr_db']:.1f}, weight "
                                   f"{row['weight_sqnr_db']:.1f}); agreement was "
                                   f"{history[-1]['top1_agreement']:.4f} < target {target}"})
        history.append(evaluate(list(start) + [r["node"] for r in kept]))
        rounds.append({"round": n, "kept_fp32": len(kept), **_brief(history[-1])})
        log(f"guard round {n}: {len(kept)} node(s) kept fp32, agreement {history[-1]['top1_agreement']:.4f}")
    met = history[-1]["top1_agreement"] >= target
    chosen = n if met else max(range(len(history)), key=lambda i: (history[i]["top1_agreement"], -i))
    kept = [r for r in kept if r["round"] <= chosen]
    excluded = list(start) + [r["node"] for r in kept]
    if chosen != n and rebuild is not None:
        rebuild(excluded)
    if met:
        stopped = f"target met after {n} round(s)" if n else "target met without keeping any node in fp32"
    else:
        why = ("no search (budget 0)" if budget <= 0 else f"budget of {budget} round(s) spent" if n >= budget
               else f"no quantized node left to keep in fp32 after {n} round(s)")
        stopped = (f"{why}; target {target} not met; kept the best round, {chosen} "
                   f"(agreement {history[chosen]['top1_agreement']:.4f}, {len(kept)} node(s) fp32)")
    return {"met": met, "stopped": stopped, "rounds": rounds, "kept": kept, "final": history[chosen],
            "excluded": excluded, "chosen_round": chosen}


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("top1_agreement", "max_abs_error", "mean_abs_error", "f1_delta_points")}


def choose_cpu_int8(results: dict, latency: dict, target: float, f1_tolerance: float) -> tuple[str | None, str]:
    """The default CPU INT8 graph: among those meeting the guard (agreement >= target and |F1 delta| <=
    ``f1_tolerance`` points), the faster at batch 1; when none meets it, the more accurate. Returns
    ``(key or None, reason)``."""
    built = [k for k in ("int8", "int8-dynamic") if k in results]
    if not built:
        return None, "no INT8 graph built"
    guard = f"agreement >= {target}, |F1 delta| <= {f1_tolerance} points"
    ok = [k for k in built if results[k]["top1_agreement"] >= target
          and abs(results[k]["f1_delta_points"]) <= f1_tolerance]
    speed = ", ".join(f"{k} {latency[k]['batch1_median_ms']} ms" for k in built if k in latency)
    agree = ", ".join(f"{k} {100 * results[k]['top1_agreement']:.2f}%" for k in built)
    if len(ok) > 1 and all(k in latency for k in ok):
        best = min(ok, key=lambda k: latency[k]["batch1_median_ms"])
        return best, f"{best}: both meet the guard ({guard}); it is faster at batch 1 ({speed})"
    if ok:
        what = "the only INT8 graph built" if len(built) == 1 else "the only one meeting the guard"
        return ok[0], f"{ok[0]}: {what} ({guard}; agreement {agree})"
    best = max(built, key=lambda k: (results[k]["top1_agreement"], -abs(results[k]["f1_delta_points"])))
    return best, f"{best}: no INT8 graph met the guard ({guard}); it is the more accurate ({agree}; {speed})"


def summary(manifest: dict) -> str:
    """The closing table of export/to_precision.py: per graph agreement, errors, F1, latency; search outcomes."""
    from dfma.export.progress import human_bytes, table

    prec = manifest.get("precision", {})
    rows = []
    for key in ("fp16", "int8", "int8-dynamic"):
        if key in prec.get("guard", {}) and key in manifest["graphs"]:
            r, file = prec["guard"][key], manifest["graphs"][key]["file"]
            lat = prec.get("latency", {}).get(key, {}).get("batch1_median_ms", "-")
            rows.append([key, file, human_bytes(manifest["files"][file]["bytes"]), f"{100 * r['top1_agreement']:.2f}%",
                         f"{r['max_abs_error']:.3g}", f"{r['mean_abs_error']:.3g}", f"{r['f1_fp32']:.2f}",
                         f"{r['f1_delta_points']:+.2f}", lat])
    fp32_lat = prec.get("latency", {}).get("fp32", {}).get("batch1_median_ms", "-")
    text = table(["graph", "file", "size", "agree", "max err", "mean err", "F1 fp32", "F1 delta", "ms (b=1)"], rows)
    text += f"\nfp32 latency (b=1): {fp32_lat} ms; guard: {prec.get('guard_data', {})}"
    for key, s in prec.get("search", {}).items():
        text += f"\n{key}: {s['stopped']}"
    if "defaults" in manifest:
        text += f"\ndefault CPU int8: {manifest['defaults'].get('cpu_int8_reason')}"
    return text
