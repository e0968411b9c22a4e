"""MNRE-like traffic, end to end: ``python benchmarks/traffic.py``.

Requests come grouped by post as in the MNRE validation split (its pairs per image: 1.74 on average, up to
21), each post with its own JPEG image and crops, through the runtime's whole path (decode, resize,
tokenize, run). Compared in one interleaved run (post by post, the paths' order rotating every post):
eager PyTorch fp32, the whole graph and its stage graphs (vision once per image, text per entity pair), each at
fp32 and at INT8 (ONNX Runtime, and OpenVINO where installed). Reported per path: throughput (requests/s
over the time spent in calls), p50/p99 latency per request, speed-up over eager and over the whole graph
of the same precision and backend, the feature cache's hits, the CPU time other processes took (a run
where they took more than 10 % is marked disturbed and its targets are not judged). Arrival ``post``
(default): each post's pairs in one ``predict_batch`` call, as a client extracting a post's relations
sends them; ``request``: one call per pair, so the two-stage path's image-feature cache carries a post's
features from one pair to the next. Prints a table, writes JSON and a PNG plot.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import every module as dfma.benchmarks.*

import numpy as np  # noqa: E402

from dfma.benchmarks import backends as bk  # noqa: E402
from dfma.benchmarks.environment import ensure_bundle, log, machine_info  # noqa: E402
from dfma.benchmarks.analysis import is_int8  # noqa: E402
from dfma.benchmarks.latency_report import model_title  # noqa: E402
from dfma.benchmarks.timing import CpuLoad  # noqa: E402
from dfma.progress import bar as progress_bar  # noqa: E402
from dfma.benchmarks.traffic_contenders import DEFAULT_PATHS, PATHS, open_path  # noqa: E402
from dfma.benchmarks.traffic_workload import (  # noqa: E402
    mnre_posts, pairs_per_post, sample_posts, synthetic_groups,
)

MNRE_VAL = REPO.parent / "shared" / "data" / "mnre" / "mnre_val.txt"
DISTURBED_OTHERS = 0.10
TARGETS = (("two-stage-fp32", "whole-fp32", 1.35, "two-stage fp32 throughput over the whole fp32 graph"),
           ("best-two-stage-int8", "eager", 5.0, "best two-stage INT8 throughput over eager fp32"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python benchmarks/traffic.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python benchmarks/traffic.py                 # base preset, 40 posts\n"
                                       "  python benchmarks/traffic.py --quick         # tiny preset, a smoke run\n"
                                       "  python benchmarks/traffic.py --arrival request --posts 60")
    p.add_argument("--bundle", type=Path, metavar="DIR", help="benchmark this bundle (default: bundles/<preset>, "
                   "exported with its precision graphs when missing)")
    p.add_argument("--preset", choices=("tiny", "base"), default=None, help="default base; tiny with --quick")
    p.add_argument("--quick", action="store_true", help="tiny preset, 12 posts: a smoke run in a minute")
    p.add_argument("--posts", type=int, default=None, metavar="N", help="posts timed per path (default 40; 12 quick)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed posts per path first (default 2)")
    p.add_argument("--arrival", choices=("post", "request"), default="post",
                   help="post: a post's pairs in one call (default); request: one call per pair")
    p.add_argument("--paths", default=",".join(DEFAULT_PATHS), metavar="K1,K2",
                   help=f"paths to compare (default all: {', '.join(PATHS)})")
    p.add_argument("--cache-mb", type=float, default=64.0, metavar="MB",
                   help="the two-stage paths' image-feature cache (default 64)")
    p.add_argument("--gap-ms", type=float, default=50.0, metavar="MS",
                   help="untimed pause before each path's turn (default 50), so that the previous path's idle "
                        "threads (ONNX Runtime, OpenMP and OpenVINO spin after a run) stop before the next is timed")
    p.add_argument("--threads", type=int, default=None, help="threads (default: CPUs available to this process)")
    p.add_argument("--seed", type=int, default=0, help="which posts are drawn (default 0)")
    p.add_argument("--data", type=Path, default=MNRE_VAL, help=f"MNRE split to group (default {MNRE_VAL})")
    p.add_argument("--out", type=Path, default=HERE / "results", metavar="DIR", help="where JSON and PNG go")
    p.add_argument("--name", default=None, help="file name stem (default traffic-<preset>-<arrival>)")
    args = p.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.quick else "base")
    args.posts = args.posts or (12 if args.quick else 40)
    unknown = [k for k in args.paths.split(",") if k.strip() and k.strip() not in PATHS]
    if unknown:
        p.error(f"--paths: unknown {unknown}; choose from {list(PATHS)}")
    if not args.cache_mb > 0:
        p.error(f"--cache-mb {args.cache_mb}: must be > 0")
    return args


def _calls(path, post, arrival: str) -> tuple[list[float], np.ndarray]:
    """Per-request latencies (s) of one post on one path, and its logits."""
    if arrival == "post":
        t0 = time.perf_counter()
        logits = path.call(list(post.requests))
        return [time.perf_counter() - t0] * len(post.requests), logits
    lat, rows = [], []
    for r in post.requests:
        t0 = time.perf_counter()
        rows.append(path.call([r]))
        lat.append(time.perf_counter() - t0)
    return lat, np.concatenate(rows)


def run(args) -> dict:
    """Open the paths, time them post by post (interleaved), summarize; returns the JSON-ready result."""
    import torch

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    folder = args.bundle or ensure_bundle(args.preset, REPO / "bundles" / args.preset, False)
    manifest = bk.read_bundle(folder)
    num_crops = int(manifest.preprocess.num_crops)
    if Path(args.data).is_file():
        groups, source = mnre_posts(Path(args.data)), f"MNRE {Path(args.data).name}, grouped by img_id"
    else:
        groups, source = synthetic_groups(2000, args.seed), "synthetic (MNRE split not found): 1 + Poisson(0.74) pairs"
    posts = sample_posts(groups, args.warmup + args.posts, seed=args.seed, num_crops=num_crops)
    warm, timed = posts[:args.warmup], posts[args.warmup:]
    log(f"[traffic] {len(timed)} posts, {sum(len(p.requests) for p in timed)} requests ({source}); "
        f"arrival {args.arrival}; {threads} threads")
    paths, skipped = [], {}
    for key in [k.strip() for k in args.paths.split(",") if k.strip()]:
        try:
            paths.append(open_path(key, folder, manifest, threads=threads, cache_mb=args.cache_mb))
            log(f"[traffic] opened {key} in {paths[-1].load_seconds:.1f} s")
        except Exception as exc:  # noqa: BLE001  (a path that cannot run here is reported, not fatal)
            skipped[key] = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"[traffic] {key} skipped: {skipped[key]}")
    for path in paths:  # warm-up: sessions, thread pools, first allocations
        for post in warm:
            _calls(path, post, args.arrival)
    latencies = {p.key: [] for p in paths}
    busy = {p.key: 0.0 for p in paths}
    logits = {p.key: [] for p in paths}
    load = CpuLoad()
    for i, post in enumerate(progress_bar(timed, desc="posts", unit="post")):
        order = paths[i % len(paths):] + paths[:i % len(paths)]
        for path in order:
            time.sleep(args.gap_ms / 1000)
            lat, out = _calls(path, post, args.arrival)
            latencies[path.key] += lat
            busy[path.key] += sum(lat) if args.arrival == "request" else lat[0]
            logits[path.key].append(out)
    others = load.others()
    rows = _summarize(paths, latencies, busy, logits)
    disturbed = bool(others and others["others_cpu_fraction"] > DISTURBED_OTHERS)
    return {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/traffic.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "bundle": {"folder": str(folder), "preset": manifest.model.preset, "source": manifest.model.source,
                       "checkpoint": manifest.model.checkpoint},
            "machine": {**machine_info(threads), "cpu_use_during_run": others},
            "traffic": {"source": source, "arrival": args.arrival, "seed": args.seed, **pairs_per_post(timed)},
            "settings": {"threads": threads, "warmup_posts": args.warmup, "cache_mb": args.cache_mb,
                         "gap_ms": args.gap_ms},
            "rows": rows, "skipped": skipped, "disturbed": disturbed,
            "targets": _targets(rows, disturbed)}


def _summarize(paths, latencies, busy, logits) -> list[dict]:
    eager = busy.get("eager")
    n_req = {k: len(v) for k, v in latencies.items()}
    out = []
    for p in paths:
        lat_ms = np.asarray(latencies[p.key]) * 1e3
        thr = n_req[p.key] / busy[p.key] if busy[p.key] > 0 else None
        whole = p.key.replace("two-stage", "whole") if p.key.startswith("two-stage") else None
        row = {"key": p.key, "label": p.label, "stages": p.stages, "backend": p.backend, "precision": p.precision,
               "requests": n_req[p.key], "throughput_rps": thr, "p50_ms": float(np.percentile(lat_ms, 50)),
               "p99_ms": float(np.percentile(lat_ms, 99)), "busy_s": round(busy[p.key], 3),
               "load_s": round(p.load_seconds, 2), **p.info}
        if eager and thr:
            row["vs_eager"] = thr / (n_req["eager"] / eager)
        if whole in busy and busy[whole] > 0 and thr:
            row["vs_whole"] = thr / (n_req[whole] / busy[whole])
            diff = np.abs(np.concatenate(logits[p.key]) - np.concatenate(logits[whole]))
            row["max_abs_vs_whole"] = float(diff.max())
        same_weights = not str(next((q.info.get("weights", "") for q in paths if q.key == "eager"), "")).startswith("random")
        if "eager" in logits and p.key != "eager" and same_weights:
            ref, got = np.concatenate(logits["eager"]), np.concatenate(logits[p.key])
            row["top1_vs_eager"] = float((ref.argmax(1) == got.argmax(1)).mean())
        if p.stats is not None:
            row["image_cache"] = p.stats()
        out.append(row)
    return out


def _targets(rows: list[dict], disturbed: bool) -> list[dict]:
    by = {r["key"]: r for r in rows}
    int8 = [r for r in rows if r["stages"] == "two-stage" and is_int8(r["precision"]) and r.get("vs_eager")]
    best = max(int8, key=lambda r: r["vs_eager"], default=None)
    out = []
    for key, ref, goal, what in TARGETS:
        row = best if key == "best-two-stage-int8" else by.get(key)
        value = None
        if row is not None:
            value = row.get("vs_eager") if ref == "eager" else row.get("vs_whole")
        status = ("unmeasured" if value is None else "unmeasured (disturbed)" if disturbed
                  else "met" if value >= goal else "missed")
        out.append({"target": what, "goal": goal, "value": value, "path": row["key"] if row else None,
                    "status": status})
    return out


def table(result: dict) -> str:
    """The terminal table and the targets."""
    from dfma.progress import table as fmt

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    rows = [[r["key"], r["precision"], r["requests"], f(r["throughput_rps"], ".2f"), f(r.get("vs_eager"), ".2f") + "x",
             f(r.get("vs_whole"), ".2f") + ("x" if r.get("vs_whole") else ""), f(r["p50_ms"], ".1f"), f(r["p99_ms"], ".1f"),
             f(r.get("top1_vs_eager"), ".3f"),
             "-" if not r.get("image_cache") else f"{r['image_cache'].get('hits', 0)}/{r['image_cache'].get('misses', 0)}"]
            for r in result["rows"]]
    head = ["path", "precision", "requests", "req/s", "vs eager", "vs whole", "p50 ms", "p99 ms", "top-1 = eager",
            "cache hit/miss"]
    t = result["traffic"]
    m = result["machine"]
    others = (m.get("cpu_use_during_run") or {}).get("others_cpu_fraction")
    lines = [f"MNRE-like traffic: {t['posts']} posts, {t['requests']} requests, {t['mean']} pairs per post "
             f"(max {t['max']}), arrival {t['arrival']}; {m.get('cpu')} ({m.get('cpu_class')}), "
             f"{result['settings']['threads']} threads; other processes took "
             f"{'?' if others is None else f'{100 * others:.0f} %'} of the CPUs"
             + (" (DISTURBED)" if result["disturbed"] else ""), fmt(head, rows)]
    for tg in result["targets"]:
        lines.append(f"target: {tg['target']} >= {tg['goal']}x: {f(tg['value'], '.2f')}x ({tg['path']}) {tg['status']}")
    for key, why in result["skipped"].items():
        lines.append(f"skipped {key}: {why}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """PNG: throughput per path and p50/p99 latency per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["key"] for r in rows]
    colors = ["#777777" if r["stages"] == "eager" else "#4c72b0" if r["stages"] == "whole" else "#dd8452" for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    a.bar(names, [r["throughput_rps"] or 0 for r in rows], color=colors)
    for i, r in enumerate(rows):
        if r.get("vs_eager"):
            a.text(i, (r["throughput_rps"] or 0), f"{r['vs_eager']:.2f}x", ha="center", va="bottom", fontsize=8)
    a.set_ylabel("requests / s (higher is better)")
    a.set_title("throughput; label: speed-up over eager fp32", fontsize=9)
    x = np.arange(len(rows))
    b.bar(x - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50", color=colors)
    b.bar(x + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99", color=colors, alpha=0.5)
    b.set_xticks(x, names)
    b.set_yscale("log")
    b.set_ylabel("latency per request, ms (log)")
    b.set_title("p50 (solid) and p99 (light) latency per request", fontsize=9)
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=35, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    t, m = result["traffic"], result["machine"]
    fig.suptitle(f"DFMA {model_title(result['bundle'])}: MNRE-like traffic ({t['requests']} requests, {t['mean']} pairs "
                 f"per post, arrival {t['arrival']}) - {m.get('cpu')}, {result['settings']['threads']} threads"
                 + (" - DISTURBED" if result["disturbed"] else ""), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run, print, write JSON and PNG; returns the exit status."""
    args = parse_args(argv)
    result = run(args)
    print(table(result))
    stem = args.name or f"traffic-{result['bundle']['preset']}-{args.arrival}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    plot(result, args.out / f"{stem}.png")
    log(f"[traffic] wrote {args.out / (stem + '.json')} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
