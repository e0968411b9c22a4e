"""The default rows of ``benchmarks/latency.py``: real MNRE traffic end to end through ``dfma.runtime`` as it is
served, each contender in its own worker process (:mod:`dfma.timing`), calls interleaved one by one.

Workloads (``WORKLOADS``), all from the MNRE validation split (seeded draw; synthetic stand-ins when it is
absent, and the result says so):

- ``b1``: one sentence per call, at its own length, text only (MNRE's images are not in this repository);
- ``b8``: eight sentences per call (padded to the longest of the eight, as the runtime pads);
- ``post``: one call per post with all its entity pairs (1.74 per post on average), each post with its own
  JPEG and crops (``traffic_workload``): the vision path and the feature cache are timed too.

Contenders (:func:`contenders`): ``auto`` (``load(bundle)``: what ``precision="auto"`` serves, with its stages),
``ort-fp32`` (``precision="fp32"`` on ONNX Runtime CPU), each INT8 graph of the bundle on ONNX Runtime CPU,
``eager`` (PyTorch fp32 behind the runtime's preprocessing), and where ``torch.cuda`` has a device the CUDA
rows (eager fp32, fp16 autocast, ``torch.compile``, ONNX Runtime's CUDA provider). Every runtime row is
``dfma.runtime.load(bundle, backend=..., precision=..., stages="auto", image_cache_mb=...)``.

The targets (issue INT8): what ``auto`` serves over ONNX Runtime fp32, >= 1.5x at batch 1 and >= 2x at batch 8
on real sentences. The consistency check: the fastest guarded contender at batch 1 against the bundle's
recorded ``defaults.auto`` choice, and the ranking of fp32 / int8 / int8-dynamic against the precision step's
(``precision.latency`` of the manifest).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from dfma.benchmarks.disturbance import LEVEL, compared_disturbance, ratio_interval
from dfma.contract.graphs import FP32, INT8, INT8_DYNAMIC
from dfma.contract.manifest import Manifest
from dfma.timing import Calls, Worker, best_median

REPO = Path(__file__).resolve().parent.parent
MNRE_VAL = Path(os.environ.get("DFMA_MNRE_DIR", REPO.parent / "shared" / "data" / "mnre")) / "mnre_val.txt"
WORKLOADS = {"b1": (1, "text"), "b8": (8, "text"), "post": (None, "post")}  # name -> (batch, kind)
TARGETS = (("b1", 1.5), ("b8", 2.0))  # auto over ort-fp32 through dfma.runtime (the INT8 issue)
REFERENCE, AUTO, EAGER = "ort-fp32", "auto", "eager"
INT8_PRECISIONS = (INT8, INT8_DYNAMIC)


# ---------------------------------------------------------------------------- workloads (built in each worker)

def requests(workload: str, count: int, seed: int = 0, data: str | None = None, num_crops: int = 3) -> list[list[dict]]:
    """``count`` calls of ``workload`` (a list of requests each), the same in every process for the same arguments."""
    from dfma.benchmarks.traffic_workload import mnre_posts, sample_posts, synthetic_groups

    batch, kind = WORKLOADS[workload]
    path = Path(data) if data else MNRE_VAL
    groups = mnre_posts(path) if path.is_file() else synthetic_groups(2000, seed)
    if kind == "post":
        return [list(p.requests) for p in sample_posts(groups, count, seed=seed, num_crops=num_crops)]
    sentences = [{"words": list(r.words), "head": list(r.head), "tail": list(r.tail)} if not isinstance(r, dict)
                 else dict(r) for g in groups for r in g]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(sentences), size=min(count * batch, len(sentences)), replace=False)
    chosen = [{**sentences[int(p)], "id": f"s{int(p)}"} for p in picks]
    return [chosen[i:i + batch] for i in range(0, len(chosen) - batch + 1, batch)]


def source_of(data: str | None) -> str:
    """Where the requests come from (said in the result)."""
    path = Path(data) if data else MNRE_VAL
    return f"MNRE {path.name}" if path.is_file() else "synthetic (MNRE split not found): 1 + Poisson(0.74) pairs"


def _logits(predictions) -> np.ndarray:
    return np.asarray([p.logits for p in predictions], dtype=np.float32)


# ---------------------------------------------------------------------------- factories (run in a worker)

def all_calls(workloads: list[str], count: int, seed: int, data: str | None, num_crops: int) -> tuple[list, dict]:
    """The calls of every workload in one list, and ``{workload: [offset, n]}`` (the same in every worker)."""
    calls, where = [], {}
    for w in workloads:
        part = requests(w, count, seed, data, num_crops)
        where[w] = [len(calls), len(part)]
        calls += part
    return calls, where


def served(bundle: str, workloads: list[str], count: int, seed: int = 0, data: str | None = None, *,
           backend: str = "auto", precision: str = "auto", threads: int | None = None,
           cache_mb: float | None = 64.0) -> Calls:
    """Factory: ``dfma.runtime.load(bundle, backend, precision, stages="auto", image_cache_mb)`` on ``workloads``."""
    import dfma.runtime as rt

    from dfma.contract.bundle import read_manifest

    ex = rt.load(bundle, backend=backend, precision=precision, threads=threads, image_cache_mb=cache_mb)
    calls, where = all_calls(workloads, count, seed, data, int(read_manifest(Path(bundle))["preprocess"]["num_crops"]))
    d = ex.describe()
    opened = list(((d.get("stages") or {}).get("files") or {}).values()) or [d.get("graph")]  # the graph files read
    info = {"workloads": where, "backend": ex.backend, "precision": ex.precision, "graph": d.get("graph"),
            "graph_key": d.get("graph_key"), "files": opened,
            "stages": (d.get("stages") or {}).get("mode"), "precision_reason": d.get("precision_reason")}
    return Calls(len(calls), lambda i: _logits(ex.predict_batch(calls[i])), info, ex.close)


def eager(bundle: str, workloads: list[str], count: int, seed: int = 0, data: str | None = None, *,
          threads: int | None = None, device: str = "cpu", fp16: bool = False, compile: bool = False) -> Calls:
    """Factory: the eager PyTorch model (``device``, fp16 autocast, ``torch.compile``) behind the runtime's
    preprocessing (each distinct image of a call decoded once, as the runtime does)."""
    import torch

    from dfma.benchmarks.backends import Pipeline, build_eager, read_bundle

    if threads:
        torch.set_num_threads(threads)
    manifest = read_bundle(Path(bundle))
    model, note = build_eager(manifest)
    model = model.to(device)
    module = torch.compile(model, dynamic=True) if compile else model
    pipe = Pipeline(Path(bundle), manifest)
    calls, where = all_calls(workloads, count, seed, data, int(manifest.preprocess.num_crops))
    pre = pipe.preprocessor

    def call(batch: list[dict]) -> np.ndarray:
        from dfma.contract.prediction import to_predictions

        from dfma.benchmarks.workload import eager_features

        features = eager_features(pre, batch)
        feeds = {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in pre.collate(features).items()}
        with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=torch.float16,
                                                     enabled=fp16):
            logits = module(**feeds).float().cpu().numpy()
        return _logits(to_predictions(logits, pipe.labels, [f.id for f in features]))

    return Calls(len(calls), lambda i: call(calls[i]),
                 {"workloads": where, "backend": f"eager ({device})", "precision": "fp16-autocast" if fp16 else "fp32",
                  "weights": note, "compiled": compile})


# ---------------------------------------------------------------------------- contenders

def contenders(folder: Path, manifest: Manifest, wanted: list[str] | None = None) -> tuple[dict, dict[str, str]]:
    """``{label: (factory, kwargs)}`` of the served rows this bundle and machine can run, and
    ``{label: why not}`` for the others (the CUDA rows without a device, INT8 graphs the bundle lacks)."""
    from dfma.contract.graphs import CATALOGUE

    files = manifest.files
    rows: dict[str, tuple[str, dict]] = {
        AUTO: ("dfma.benchmarks.served:served", {}),
        REFERENCE: ("dfma.benchmarks.served:served", {"backend": "onnxruntime-cpu", "precision": FP32}),
    }
    skipped = {}
    for precision in INT8_PRECISIONS:
        if any(row.precision == precision and row.file in files for row in CATALOGUE.values()):
            rows[f"ort-{precision}"] = ("dfma.benchmarks.served:served",
                                        {"backend": "onnxruntime-cpu", "precision": precision})
        else:
            skipped[f"ort-{precision}"] = f"the bundle has no {precision} graph"
    rows[EAGER] = ("dfma.benchmarks.served:eager", {})
    cuda = cuda_unavailable()
    gpu = {"eager-cuda-fp32": ("dfma.benchmarks.served:eager", {"device": "cuda"}),
           "eager-cuda-fp16": ("dfma.benchmarks.served:eager", {"device": "cuda", "fp16": True}),
           "compile-cuda": ("dfma.benchmarks.served:eager", {"device": "cuda", "compile": True}),
           "ort-cuda-fp32": ("dfma.benchmarks.served:served", {"backend": "onnxruntime-cuda", "precision": FP32})}
    for label, spec in gpu.items():
        if cuda:
            skipped[label] = cuda
        else:
            rows[label] = spec
    if wanted:
        rows = {k: v for k, v in rows.items() if k in wanted or k in (AUTO, REFERENCE)}
    return rows, skipped


def cuda_unavailable() -> str | None:
    """Why the CUDA rows cannot run here (None when torch sees a CUDA device)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"


# ---------------------------------------------------------------------------- measuring

def measure(folder: Path, manifest: Manifest, workloads: list[str], *, count: int, repeats: int, threads: int | None,
            seed: int = 0, data: str | None = None, cache_mb: float = 64.0, wanted: list[str] | None = None,
            log: Callable[[str], None] = print) -> tuple[list[dict], dict, dict[str, str]]:
    """Time every contender on every workload, one worker process each for the whole run, a disturbed workload
    measured again: ``(rows, {label: info}, skipped)``; rows carry ``seconds``/``sample``/``cpu`` per call and
    their ``disturbance`` verdict (:mod:`dfma.benchmarks.disturbance`)."""
    from dfma.benchmarks.disturbance import measure_cell
    from dfma.benchmarks.timing import CpuLoad
    from dfma.timing import WorkerError, interleave

    specs, skipped = contenders(folder, manifest, wanted)
    common = {"bundle": str(folder), "workloads": list(workloads), "count": count, "seed": seed, "data": data,
              "threads": threads}
    workers, info = [], {}
    for label, (factory, extra) in specs.items():
        log(f"[served] starting {label} ({factory.rsplit(':', 1)[1]}) ...")
        try:
            w = Worker(label, factory, {**common, **extra, **({"cache_mb": cache_mb} if factory.endswith(":served")
                                                                else {})})
        except WorkerError as exc:
            skipped[label] = str(exc)
            log(f"[served] {label} skipped: {exc}")
            continue
        workers.append(w)
        info[label] = {**w.info, "load_s": round(w.load_seconds, 2)}
    rows: list[dict] = []
    try:
        for workload in workloads:
            offset, n = (workers[0].info["workloads"][workload] if workers else (0, 0))

            def run_once(_workload=workload, _samples=range(offset, offset + n)):
                times = interleave(workers, _samples, repeats=repeats, warmup=min(2, len(_samples)))
                out = []
                for label, t in times.items():
                    if "error" in t:
                        skipped[label] = t["error"]
                        continue
                    sec = t["seconds"]
                    out.append({"mode": "served", "workload": _workload, "batch": WORKLOADS[_workload][0],
                                "backend": label, "seconds": [s for rep in sec for s in rep],
                                "sample": [i for rep in sec for i in _samples[:len(rep)]],
                                "cpu": [c for rep in t["cpu"] for c in rep],
                                "ctx": [c for rep in t["ctx"] for c in rep],
                                "spin": [c for rep in t["spin"] for c in rep],
                                "after": [a for rep in t["after"] for a in rep],
                                "best_median_ms": 1e3 * best_median(sec), "logits": t["logits"]})
                return out

            log(f"[served] {workload}: {n} calls x {repeats} repeats, {', '.join(w.label for w in workers)} interleaved")
            cell = measure_cell(run_once, lambda: CpuLoad(pids=lambda: [w.proc.pid for w in workers]), log=log)
            _agreement(cell)
            rows += cell
            log(f"[served] {workload}: " + ", ".join(f"{r['backend']} {r['best_median_ms']:.2f} ms" for r in cell))
    finally:
        for w in workers:
            w.close()
    return rows, info, skipped


def _agreement(cell: list[dict]) -> None:
    """Top-1 agreement of each row's last-repeat logits with ort-fp32's (same requests)."""
    ref = next((r["logits"] for r in cell if r["backend"] == REFERENCE), None)
    for r in cell:
        got = r.pop("logits")
        if ref is None:
            continue
        same = [np.argmax(got[i], -1) == np.argmax(ref[i], -1) for i in ref if i in got]
        r["top1_vs_fp32"] = float(np.mean(np.concatenate([np.ravel(s) for s in same]))) if same else None


# ---------------------------------------------------------------------------- verdicts

def speedups(rows: list[dict]) -> list[dict]:
    """Each row with ``vs_fp32`` and ``vs_eager``: best-median ratios within its workload."""
    ref = {(r["workload"], r["backend"]): r["best_median_ms"] for r in rows}
    for r in rows:
        w = r["workload"]
        r["vs_fp32"] = ref[(w, REFERENCE)] / r["best_median_ms"] if (w, REFERENCE) in ref else None
        r["vs_eager"] = ref[(w, EAGER)] / r["best_median_ms"] if (w, EAGER) in ref else None
    return rows


def targets(rows: list[dict]) -> list[dict]:
    """The INT8 issue's targets on the served rows: met or missed from an undisturbed cell, else unmeasured."""
    out = []
    for workload, goal in TARGETS:
        row = next((r for r in rows if r["workload"] == workload and r["backend"] == AUTO), None)
        batch = WORKLOADS[workload][0]
        entry = {"name": f"auto over ONNX Runtime fp32, batch {batch}, MNRE sentences through dfma.runtime",
                 "threshold": f">= {goal}x", "value": None, "met": None, "where": "not measured"}
        if row is not None and row.get("vs_fp32") is not None:
            ref = next((r for r in rows if r["workload"] == workload and r["backend"] == REFERENCE), None)
            why = compared_disturbance([row, ref], goal)  # only the two rows compared, and the machine
            entry["value"] = round(row["vs_fp32"], 3)
            interval = ratio_interval(row, ref) if ref is not None else None
            entry["interval"] = None if interval is None else [round(v, 3) for v in interval]
            entry["where"] = (f"{workload}: auto {row['best_median_ms']:.2f} ms"
                              + (f"; {100 * LEVEL:.0f}% interval {interval[0]:.2f}-{interval[1]:.2f}x" if interval else ""))
            if why:
                entry.update(disturbed=True, where=f"unmeasured (disturbed): {why}")
            else:
                entry["met"] = row["vs_fp32"] >= goal
            if row.get("bimodal") or any(r.get("bimodal") for r in rows if r["workload"] == workload
                                         and r["backend"] == REFERENCE):
                entry["where"] += " (a bimodal row: see its modes)"
        out.append(entry)
    return out


def consistency(rows: list[dict], manifest: Manifest, guard: Mapping[str, bool | None]) -> dict:
    """The benchmark's fastest guarded contender at batch 1 against the bundle's recorded ``auto`` choice, and
    the fp32 / int8 / int8-dynamic ranking against the precision step's (``precision.latency``)."""
    b1 = {r["backend"]: r["best_median_ms"] for r in rows if r["workload"] == "b1"}
    rec = manifest.defaults.auto.get("cpu") if manifest.defaults is not None else None
    recorded = rec.to_json() if rec is not None else {}
    out: dict = {"recorded_auto": {k: recorded.get(k) for k in ("label", "precision", "backend", "graph", "batch1_ms")}}
    pool = {k: v for k, v in b1.items() if k == REFERENCE or (k.startswith("ort-int8") and guard.get(k))}
    mine = f"ort-{recorded.get('precision')}" if recorded.get("backend") == "onnxruntime-cpu" else None
    if recorded and mine is None and AUTO in b1:  # auto serves another backend (OpenVINO): its own row is that choice
        pool[AUTO], mine = b1[AUTO], AUTO
    if pool:
        fastest = min(pool, key=pool.get)
        out["fastest_guarded"] = fastest
        if recorded and mine in b1:
            out["agree"] = mine == fastest
            out["recorded_over_fastest"] = round(b1[mine] / pool[fastest], 3)
        elif recorded:
            out["agree"] = None
            out["note"] = f"auto serves {recorded.get('label')} on {recorded.get('backend')}: not a row of this run"
    step = manifest.precision.latency if manifest.precision is not None else {}
    ours = {"fp32": b1.get(REFERENCE), **{p: b1.get(f"ort-{p}") for p in INT8_PRECISIONS}}
    common = [k for k, v in ours.items() if v and (step.get(k) or {}).get("batch1_median_ms")]
    if len(common) >= 2:
        theirs = {k: float(step[k]["batch1_median_ms"]) for k in common}
        ratios = {k: round((ours[k] / ours["fp32"]) / (theirs[k] / theirs["fp32"]), 3)
                  for k in common if k != "fp32" and "fp32" in common}
        out["ranking"] = {"benchmark": sorted(common, key=lambda k: ours[k]),
                          "precision_step": sorted(common, key=lambda k: theirs[k]),
                          "benchmark_ms": {k: round(ours[k], 3) for k in common}, "precision_step_ms": theirs,
                          "ratio_of_ratios": ratios}
        out["ranking"]["same_order"] = out["ranking"]["benchmark"] == out["ranking"]["precision_step"]
        out["ranking"]["within_10pct"] = all(abs(v - 1) <= 0.10 for v in ratios.values())
    return out
