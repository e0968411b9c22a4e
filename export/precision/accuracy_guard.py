"""Accuracy guard: reduced-precision graphs vs fp32 on held-out MNRE sentences, and the INT8 sensitivity search.

- :func:`run_feeds` runs a runner (``dfma.backends``: ONNX Runtime CPU, or the onnx reference evaluator for
  fp16) over a :class:`~dfma.export.precision.calibration.FeedSet`; ``dfma.backends.compare.compare_with_labels``
  reports top-1 agreement with fp32, max/mean logit error and micro-F1 (MNRE metric) against gold labels.
- :func:`node_sensitivity` ranks quantizable nodes by the local signal-to-quantization-noise ratio of their
  inputs (what onnxruntime's ``qdq_loss_debug`` calls ``qdq_err``): the activation quantized with its
  calibrated U8 range (or, for dynamic INT8, its per-batch range) and the weight per channel in S8,
  noise powers added. Computed on fp32 activations, so each node's own error, not the error it inherits.
- :func:`search` re-quantizes with the most sensitive nodes kept in fp32 (1, 2, 4, ... more per round)
  until the guard is met or the round budget is spent, and says which. ``by="kind"`` (the precision step's
  default) keeps whole kinds of node at once: every layer's instance of one module role
  (``text.encoder.layer.*.output.dense``), ranked by its most sensitive member. Measured on a fine-tuned
  MiniLM (docs/precision.md): the damage is spread over every layer's FFN projections, about 2-3 % agreement
  each when quantized alone, so node-by-node rounds spend the budget on one layer at a time.
"""
from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dfma.backends.base import Runner


def run_feeds(runner: Runner, feeds, *, desc: str = "running", progress: bool = True) -> np.ndarray:
    """Logits of every sample of a FeedSet from an open runner, in order (float32 ``[N, num_labels]``),
    with a progress bar."""
    from dfma.progress import bar

    out = [runner.logits(batch) for batch in bar(feeds.batches, desc=desc, unit="batch", enabled=progress)]
    return np.concatenate(out).astype(np.float32)


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

    from dfma.backends.ort_runner import OrtRunner

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
        probe = OrtRunner(path, optimization="none", outputs=acts).open()
        for batch in feeds:
            outputs = probe.infer(batch)
            for name, x in ((a, outputs[a]) for a in acts):
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


# ---------------------------------------------------------------- search

def kind_of(row: dict) -> str:
    """A node's role with layer indices wildcarded (``text.encoder.layer.*.output.dense``), from its
    ``module``; the node name itself when the module is unknown."""
    module = row.get("module") or ""
    return re.sub(r"\.\d+(?=\.|$)", ".*", module) if module else row["node"]


def group_ranking(ranking: list[dict], by: str) -> list[list[dict]]:
    """The ranking as search units: one node each (``by="node"``) or one kind each (``by="kind"``, ordered by
    each kind's most sensitive member, members in ranking order)."""
    if by == "node":
        return [[row] for row in ranking]
    if by != "kind":
        raise ValueError(f"by={by!r}: choose 'node' or 'kind'")
    groups: dict[str, list[dict]] = {}
    for row in ranking:  # ranking is most sensitive first, so dict order is the kinds' order
        groups.setdefault(kind_of(row), []).append(row)
    return list(groups.values())


def meets_guard(metrics: Mapping, target: float, f1_tolerance: float | None) -> bool:
    """The guard: ``top1_agreement >= target`` and (unless ``f1_tolerance`` is None) |F1 delta| <= tolerance;
    for a row with serving ``conditions`` (:func:`condition_row`), in each of them, and in its ``tune`` part
    too where the row has one."""
    conditions = metrics.get("conditions")
    if isinstance(conditions, Mapping) and conditions:
        tune = metrics.get("tune")
        return all(meets_guard(c, target, f1_tolerance) for c in conditions.values()) and (
            not isinstance(tune, Mapping) or meets_guard(tune, target, f1_tolerance))
    return metrics["top1_agreement"] >= target and (
        f1_tolerance is None or abs(metrics["f1_delta_points"]) <= f1_tolerance)


def condition_row(by_condition: Mapping[str, dict], part: str) -> dict:
    """One part's guard row over the serving conditions (condition -> ``compare_with_labels`` row): its own
    fields are the binding condition's (lowest agreement, then largest |F1 delta|), so a reader of the
    top-level figures sees the worst case; ``conditions`` keeps each one apart."""
    worst = min(by_condition, key=lambda c: (by_condition[c]["top1_agreement"],
                                              -abs(by_condition[c]["f1_delta_points"])))
    return {**by_condition[worst], "condition": worst, "part": part, "conditions": dict(by_condition)}


def search(evaluate: Callable[[list[str]], dict], rank: Callable[[], list[dict]], *, target: float, budget: int,
           start: Sequence[str] = (), rebuild: Callable[[list[str]], object] | None = None,
           log: Callable[[str], None] | None = None, f1_tolerance: float | None = None, by: str = "node",
           order: Callable[[list[list[dict]]], list[list[dict]]] | None = None,
           stop: Callable[[list[str]], str | None] | None = None) -> dict:
    """Keep the most sensitive nodes in fp32 until the guard is met (:func:`meets_guard`: agreement >= ``target``
    and, with ``f1_tolerance``, |F1 delta| within it) or ``budget`` rounds are spent.

    ``evaluate(excluded)`` re-quantizes with those nodes (and ``start``) left in fp32 and returns
    :func:`compare`'s dict; ``rank()`` returns :func:`node_sensitivity`'s list (called only when the first
    graph misses the target). Round r keeps 2**(r-1) more units: nodes, or with ``by="kind"`` whole kinds
    (:func:`group_ranking`). When the target is not met, the best round
    (highest agreement, then fewest nodes kept) is the result and ``rebuild(excluded)`` re-creates its graph
    if it was not the last. A target above 1 can never be met.
    The speed side (:mod:`~dfma.export.precision.keep_cost`): ``order(units)`` re-orders the units (e.g. by
    accuracy recovered per millisecond lost); ``stop(excluded)``, asked after every graph that misses the guard,
    returns why no graph keeping more in fp32 can be faster than fp32 (the search ends there, said in
    ``stopped``), or None.
    Returns ``{"met", "stopped", "rounds", "kept", "final", "excluded", "chosen_round"}``; ``kept`` says why.
    """
    log = log or (lambda line: None)
    ok = lambda m: meets_guard(m, target, f1_tolerance)
    goal = f"target {target}" + (f", |F1 delta| <= {f1_tolerance}" if f1_tolerance is not None else "")
    history = [evaluate(list(start))]
    rounds = [{"round": 0, "kept_fp32": 0, **_brief(history[0])}]
    log(f"guard round 0: agreement {history[0]['top1_agreement']:.4f}, F1 delta "
        f"{history[0]['f1_delta_points']:+.2f} ({goal})")
    too_slow = stop(list(start)) if stop is not None and not ok(history[0]) and budget > 0 else None
    ranking = rank() if not ok(history[0]) and budget > 0 and not too_slow else []
    queue = group_ranking([r for r in ranking if r["node"] not in set(start)], by)
    if order is not None:
        queue = order(queue)
    kept: list[dict] = []
    step, n = 1, 0
    while not ok(history[-1]) and n < budget and queue and not too_slow:
        n += 1
        take, queue = [row for unit in queue[:step] for row in unit], queue[step:]
        step *= 2
        for row in take:
            unit = f"kind {kind_of(row)}, " if by == "kind" else ""
            kept.append({**row, "round": n, **({"kind": kind_of(row)} if by == "kind" else {}),
                         "reason": f"{unit}sensitivity rank {ranking.index(row) + 1}/{len(ranking)}: local SQNR "
                                   f"{row['sqnr_db']:.1f} dB (activation {row['activation_sqnr_db']:.1f}, weight "
                                   f"{row['weight_sqnr_db']:.1f}); agreement was "
                                   f"{history[-1]['top1_agreement']:.4f}, F1 delta "
                                   f"{history[-1]['f1_delta_points']:+.2f} ({goal} not met)"})
        history.append(evaluate(list(start) + [r["node"] for r in kept]))
        rounds.append({"round": n, "kept_fp32": len(kept), **_brief(history[-1])})
        kinds = f" ({len({kind_of(r) for r in kept})} kind(s))" if by == "kind" else ""
        log(f"guard round {n}: {len(kept)} node(s) kept fp32{kinds}, agreement {history[-1]['top1_agreement']:.4f}, "
            f"F1 delta {history[-1]['f1_delta_points']:+.2f}")
        if stop is not None and not ok(history[-1]) and n < budget and queue:
            too_slow = stop(list(start) + [r["node"] for r in kept])
    met = ok(history[-1])
    chosen = n if met else max(range(len(history)), key=lambda i: (
        history[i]["top1_agreement"], -abs(history[i]["f1_delta_points"]), -i))
    kept = [r for r in kept if r["round"] <= chosen]
    excluded = list(start) + [r["node"] for r in kept]
    if chosen != n and rebuild is not None:
        rebuild(excluded)
    if met:
        stopped = f"target met after {n} round(s)" if n else "target met without keeping any node in fp32"
    else:
        why = ("no search (budget 0)" if budget <= 0 else f"stopped after {n} round(s): {too_slow}" if too_slow
               else f"budget of {budget} round(s) spent" if n >= budget
               else f"no quantized node left to keep in fp32 after {n} round(s)")
        stopped = (f"{why}; {goal} not met; kept the best round, {chosen} "
                   f"(agreement {history[chosen]['top1_agreement']:.4f}, {len(kept)} node(s) fp32)")
    return {"met": met, "stopped": stopped, "rounds": rounds, "kept": kept, "final": history[chosen],
            "excluded": excluded, "chosen_round": chosen}


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("top1_agreement", "max_abs_error", "mean_abs_error", "f1_delta_points")}


def choose_auto(results: dict, latency: dict, target: float, f1_tolerance: float,
                batch: Mapping[str, Mapping] | None = None, allow_batch_dependent: bool = False) -> dict[str, dict]:
    """What ``precision="auto"`` serves on the CPU: among the measured candidates (``latency``: label ->
    backend, graph, batch-1 ms) that meet the guard (:func:`meets_guard`: agreement >= ``target`` and |F1
    delta| <= ``f1_tolerance`` points in each serving condition and split; fp32 on ONNX Runtime always does:
    it is the reference) and whose answers do not depend on their batch (``batch``: graph key ->
    :mod:`~dfma.export.precision.batch_invariance` record; a ``batch_dependent`` graph only with
    ``allow_batch_dependent``), the fastest.

    Returns the manifest's ``defaults.auto``: ``cpu`` (the overall choice) and one entry per backend
    (its own fastest), each ``{graph, backend, precision, batch1_ms, reason, host, ranked}``; ``ranked``
    lists every candidate meeting the guard, fastest first (what a serving host falls back through when
    one fails its golden set there), each with ``batch_dependent`` (a runtime skips those unless told it
    may serve them); empty without latency.
    """
    guard = f"agreement >= {target}, |F1 delta| <= {f1_tolerance} points in each serving condition"
    batch = batch or {}

    def meets(label: str) -> bool:
        row = results.get(label)
        if label == "fp32":
            return True
        return bool(row) and meets_guard(row, target, f1_tolerance)

    def dependent(label: str) -> bool:
        return bool((batch.get(latency[label]["graph"]) or {}).get("batch_dependent"))

    speed = ", ".join(f"{k} {v['batch1_median_ms']} ms" for k, v in latency.items())
    failed = [k for k in latency if not meets(k)]
    out: dict[str, dict] = {}
    for scope in ["cpu", *sorted({v["backend"] for v in latency.values()})]:
        ranked = sorted((k for k in latency if meets(k) and (scope == "cpu" or latency[k]["backend"] == scope)),
                        key=lambda k: latency[k]["batch1_median_ms"])
        skipped = [k for k in ranked if dependent(k)]
        pool = ranked if allow_batch_dependent else [k for k in ranked if not dependent(k)]
        if not pool:
            continue
        best = pool[0]
        entry = latency[best]
        why_batch = ""
        if skipped:
            why_batch = (f"; batch-dependent (answers change with the batch), served only where allowed: "
                         f"{', '.join(skipped)}" + (" (allowed: --allow-batch-dependent)" if allow_batch_dependent
                                                    else " (passed over)"))
        reason = (f"{best} on {entry['backend']}: the fastest at batch 1 of those meeting the guard ({guard}; "
                  f"{speed}" + (f"; missed the guard: {', '.join(failed)}" if failed else "") + why_batch + ")")
        if scope in ("cpu", "onnxruntime-cpu") and "fp32" not in ranked:
            ranked.append("fp32")
        out[scope] = {"graph": entry["graph"], "backend": entry["backend"],
                      "precision": entry.get("precision") or ("fp32" if best == "fp32" else best), "label": best, "batch1_ms": entry["batch1_median_ms"], "reason": reason,
                      "host": entry.get("host", {}), "allow_batch_dependent": bool(allow_batch_dependent),
                      "ranked": [{"label": k, "backend": latency[k]["backend"], "graph": latency[k]["graph"],
                                  "precision": latency[k].get("precision") or k,
                                  "batch1_ms": latency[k]["batch1_median_ms"],
                                  "batch_dependent": dependent(k)} for k in ranked]}
    return out


def summary(manifest) -> str:
    """The closing table of export/to_precision.py (of a typed manifest, or its JSON): per graph agreement,
    errors, F1, latency; search outcomes."""
    from dfma.contract.manifest import Manifest, PrecisionRecords
    from dfma.progress import human_bytes, table

    manifest = Manifest.from_json(manifest)
    records = manifest.precision or PrecisionRecords()
    prec = {**records.extra, "guard": records.guard, "latency": records.latency, "search": records.search or {}}
    rows = []
    latency = prec["latency"]
    for key, r in prec["guard"].items():
        file = manifest.graphs[key].file if key in manifest.graphs else latency.get(key, {}).get("file")
        if file is None:
            continue
        size = human_bytes(manifest.files[file].bytes) if file in manifest.files else "-"
        where = f" ({latency[key]['backend']})" if key in latency and latency[key].get("backend") != "onnxruntime-cpu" else ""
        rows.append([key + where, file, size, f"{100 * r['top1_agreement']:.2f}%", f"{r['max_abs_error']:.3g}",
                     f"{r['mean_abs_error']:.3g}", f"{r['f1_fp32']:.2f}", f"{r['f1_delta_points']:+.2f}",
                     latency.get(key, {}).get("batch1_median_ms", "-")])
    fp32_lat = prec.get("latency", {}).get("fp32", {}).get("batch1_median_ms", "-")
    text = table(["graph", "file", "size", "agree", "max err", "mean err", "F1 fp32", "F1 delta", "ms (b=1)"], rows)
    data = prec.get("guard_data", {})
    shown = {c: f"{v.get('samples')} sentences, {v.get('images')}, split {v.get('split')}"
             for c, v in (data.get("conditions") or {}).items()} or data
    text += f"\nfp32 latency (b=1): {fp32_lat} ms; guard: {shown}"
    for key, s in prec.get("search", {}).items():
        text += f"\n{key}: {s['stopped']}"
    for key, rec in (prec.get("batch_invariance") or {}).items():
        text += f"\n{key}: {'BATCH-DEPENDENT: ' if rec.get('batch_dependent') else 'batch-invariant: '}{rec.get('why', '')}"
    for key, r in prec.get("guard", {}).items():
        if isinstance(r.get("conditions"), dict):
            parts = [f"{p} {c} {100 * v['top1_agreement']:.2f}%" for p, row in (("tune", r.get("tune") or {}),
                     ("confirm", r)) for c, v in (row.get("conditions") or {}).items()]
            text += f"\n{key} by condition: {', '.join(parts)}"
    auto = manifest.defaults.auto if manifest.defaults is not None else {}
    if "cpu" in auto:
        text += f"\nauto (CPU): {auto['cpu'].reason}"
    return text
