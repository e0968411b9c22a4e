"""The benchmark's outputs: terminal tables, the JSON file and the PNG plot (latency and speed-up per backend).

A backend is shown by its key, with ``(emulated)`` after eager bf16 on CPUs without bf16 instructions
(:func:`shown`). INT8 rows show their efficiency against the INT8 GEMM rate (``eff int8``) beside the one
against the fp32 GEMM rate; the header names the INT8 rate and the CPU's INT8 instruction class, and the
backend table the compile seconds of the ``torch.compile`` row.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from dfma.benchmarks.gemm_int8 import DTYPE as INT8_GEMM

MODE_TITLES = {"model": "model only (prepared input arrays -> logits)",
               "e2e": "end to end (words + spans + JPEG bytes -> predictions, preprocessing included)"}


def model_title(bundle: Mapping) -> str:
    """What a run measured, for titles: the checkpoint by name (``minilm-mnre (checkpoint)``), else the preset
    (``base (preset, random weights)``); ``bundle`` is a result's ``bundle`` record."""
    if bundle.get("checkpoint"):
        return f"{bundle['checkpoint']} (checkpoint)"
    weights = ", random weights" if bundle.get("source") == "random" else ""
    return f"{bundle.get('preset')} (preset{weights})"


def _fmt(value, spec: str, missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line([str(h) for h in head]), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _pct(value) -> str:
    return _fmt(None if value is None else 100 * value, ".0f") + ("%" if value is not None else "")


def shown(result: Mapping, key: str) -> str:
    """A backend's name in tables and plots: its key, and ``(emulated)`` when the run marked it so."""
    return key + (" (emulated)" if ((result.get("backends") or {}).get(key) or {}).get("emulated") else "")


def int8_rate_line(gemm: Mapping, markdown: bool = False) -> str | None:
    """The INT8 GEMM rate sentence of the header (None when the run has no INT8 record)."""
    i8 = gemm.get(INT8_GEMM) or {}
    if not i8:
        return None
    where = f"CPU class {i8.get('cpu_class')}: {i8.get('instructions')}"
    if not i8.get("rate"):
        return f"INT8 GEMM rate: not measured ({i8.get('error')}); {where}"
    per = gemm.get("per_cell_int8") or {}
    cells = (("; timed interleaved in each cell with an INT8 row (the rate INT8 efficiency divides by): "
              if markdown else "; interleaved in each INT8 cell: ")
             + ", ".join(f"{c} {v['rate'] / 1e9:.0f}" for c, v in per.items()) + " GOP/s") if per else ""
    return (f"INT8 GEMM rate ({i8.get('op')}, {i8.get('n')}^3, same threads; {where}): "
            f"{i8['rate'] / 1e9:.0f} GOP/s (before/after the sweep){cells}")


def latency_tables(result: Mapping) -> str:
    """One table per mode: every (batch, length) cell, every backend."""
    out = []
    grouped = len(result["settings"].get("groups") or [None]) > 1
    for mode in result["settings"]["modes"]:
        rows = []
        for r in sorted((r for r in result["results"] if r["mode"] == mode),
                        key=lambda r: (r["batch"], r["length"], r.get("group", 0))):
            if grouped and r.get("group", 0) > 0 and r["backend"] == "eager-fp32":
                name = f"eager-fp32 [g{r['group']}]"
            else:
                name = shown(result, r["backend"]) + (f" [g{r.get('group', 0)}]" if grouped else "")
            if (r.get("disturbance") or {}).get("disturbed"):
                name += " *"
            if r.get("bimodal"):
                name += " (bimodal)"
            rows.append([name, f"{r['batch']}x{r['length']}", _fmt(r.get("p50_ms"), ".1f"),
                         _fmt(r.get("p90_ms"), ".1f"), _fmt(r.get("p99_ms"), ".1f"), _fmt(r.get("min_ms"), ".1f"),
                         str(r.get("n", 0)), _fmt(r.get("throughput"), ".1f"), _fmt(r.get("speedup"), ".2f") + "x",
                         _fmt(r.get("speedup_min"), ".2f") + "x",
                         _fmt(r.get("gflops_per_s"), ".0f"), _pct(r.get("efficiency")), _pct(r.get("int8_efficiency")),
                         _fmt(r.get("top1_vs_ref"), ".2f")])
        if rows:
            out.append(f"== {MODE_TITLES.get(mode, mode)}")
            out.append(table(["backend", "BxL", "p50 ms", "p90 ms", "p99 ms", "min ms", "n", "samples/s", "vs eager",
                              "(min)", "GFLOP/s", "eff", "eff int8", "top1=ref"], rows))
            if any("*" in r[0] for r in rows):
                out.append("* disturbed cell (other processes > 10 % of the CPUs, or p90/p50 > 1.25 of a backend whose "
                           "calls are not bimodal, after reruns): not used for any target")
            out += [f"{r['backend']} {r['batch']}x{r['length']} is bimodal: {r['bimodal']['fast_ms']:.1f} ms and "
                    f"{r['bimodal']['slow_ms']:.1f} ms ({100 * r['bimodal']['slow_share']:.0f}% slow)"
                    + (f"; {r['bimodal']['cause']}" if r["bimodal"].get("cause") else "")
                    for r in result["results"] if r["mode"] == mode and r.get("bimodal")]
    return "\n\n".join(out)


def compile_seconds(entry: Mapping) -> float | None:
    """Seconds a backend spent compiling in the run (its untimed first calls; None when it does not compile)."""
    return (entry.get("compile") or {}).get("compile_seconds")


def backend_table(result: Mapping) -> str:
    """Per backend: file, size, load and compile times, peak memory, parity from the manifest."""
    rows = []
    for key, b in result["backends"].items():
        mem = b.get("memory") or {}
        par = b.get("parity") or {}
        load = b.get("load_seconds") or {}
        rows.append([shown(result, key), b.get("graph") or "(torch)", _fmt(b.get("size_bytes", 0) / 2**20, ".0f"),
                     _fmt(load.get("model"), ".2f"), _fmt(load.get("e2e"), ".2f"), _fmt(compile_seconds(b), ".1f"),
                     _fmt(mem.get("peak_rss_mb"), ".0f"), _fmt(mem.get("delta_mb"), ".0f"),
                     _fmt(par.get("max_abs_error"), ".1e"), _fmt(par.get("top1_agreement"), ".3f"),
                     {True: "ok", False: "FAILED"}.get(par.get("guard_passed"), "-")])
    text = table(["backend", "file", "MiB", "load s (model)", "load s (e2e)", "compile s", "peak RSS MiB",
                  "RSS delta MiB", "parity max|err|", "parity top1", "guard"], rows)
    labels = [f"{shown(result, k)}: {b['label']}" for k, b in result["backends"].items()
              if b.get("emulated") or k == "eager-compile"]
    if labels:
        text += "\n" + "; ".join(labels)
    if result.get("skipped"):
        text += "\nnot measured: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
    return text


def targets_table(result: Mapping) -> str:
    """The issue's targets, each met or missed."""
    rows = [[t["name"], _fmt(t.get("value"), ".2f"), t["threshold"],
             "unmeasured (disturbed)" if t.get("disturbed") else {True: "met", False: "MISSED"}.get(t.get("met"), "n/a"),
             t.get("where", "")] for t in result.get("targets", [])]
    return table(["target", "value", "needs", "status", "measured at"], rows) if rows else ""


def header(result: Mapping) -> str:
    """Machine, bundle, GEMM rate, FLOPs check."""
    m, g, f = result["machine"], result.get("gemm"), result.get("flops") or {}
    lines = [(f"machine: {m.get('cpu')} ({m.get('logical_cpus')} logical CPUs"
              + (f", class {m['cpu_class']}" if m.get("cpu_class") else "") + f"), {m.get('memory_gib')} GiB, "
              f"threads {result['settings']['threads']}; load average {m.get('loadavg_start')} -> {m.get('loadavg_end')}"),
             (f"bundle: {result['bundle']['path']} ({model_title(result['bundle'])}, "
              f"{result['bundle']['bytes'] / 2**20:.0f} MiB); eager weights: {result['bundle'].get('eager_weights')}")]
    if g:
        lines.append(
             (f"GEMM rate (torch {g['fp32']['n']}^3 matmul, same threads): fp32 {g['fp32']['rate'] / 1e9:.0f} GFLOP/s"
              + (f", bf16 {g['bf16']['rate'] / 1e9:.0f} GFLOP/s" if g.get("bf16") else "")
              + (" (before/after the sweep); fp32 interleaved in each cell: "
                 + ", ".join(f"{c} {v['rate'] / 1e9:.0f}" for c, v in g["per_cell"].items()) + " GFLOP/s"
                 if g.get("per_cell") else "")))
    if g and int8_rate_line(g):
        lines.append(int8_rate_line(g))
    use = m.get("cpu_use_during_run") or {}
    if use:
        lines.append(f"CPU use during the run: others {100 * use['others_cpu_fraction']:.0f}% of "
                     f"{use['cpus']} CPUs, this benchmark {100 * use['ours_cpu_fraction']:.0f}% ({use['wall_s']:.0f} s)")
        if use["others_cpu_fraction"] > 0.1:
            lines.append("WARNING: other processes competed for the CPUs: absolute latencies are inflated and noisy; "
                         "speed-ups (interleaved, same cell) are less affected but 2-thread OpenMP runs suffer most")
    if len(result["settings"].get("groups") or []) > 1:
        lines.append(f"memory: backends timed in {len(result['settings']['groups'])} groups, each interleaved with "
                     f"its own eager runs (budget {result['settings'].get('memory_budget_mb') or 0:.0f} MiB): "
                     f"{result['settings']['groups']}")
    chk = f.get("check") or {}
    if chk.get("measured"):
        lines.append(f"FLOPs at {chk['batch']}x{chk['length']}: formula {chk['formula'] / 1e9:.3f} GFLOP, "
                     f"FlopCounterMode {chk['measured'] / 1e9:.3f} GFLOP ({100 * chk['rel_diff']:+.3f}%)")
    return "\n".join(lines)


def served_table(result: Mapping) -> str:
    """The served rows: per workload and contender the latency (statistic of dfma.timing), p50/p90 of all calls,
    speed-ups over ONNX Runtime fp32 and eager, bimodal modes and the disturbance verdict; then the consistency
    check against the bundle's ``auto`` and the precision step's ranking."""
    import numpy as np

    sv = result.get("served")
    if not sv:
        return ""
    info = sv.get("contenders") or {}
    rows, notes = [], []
    for r in sv["rows"]:
        verdict = r.get("disturbance") or {}
        c = info.get(r["backend"]) or {}
        name = r["backend"] + (" *" if verdict.get("disturbed") else "") + (" (bimodal)" if r.get("bimodal") else "")
        ms = [1e3 * s for s in r["seconds"]]
        p50, p90 = (np.percentile(ms, [50, 90]) if ms else (None, None))
        rows.append([name, r["workload"], f"{c.get('precision', '-')} {c.get('graph_key') or ''}".strip(),
                     c.get("stages") or "-", _fmt(r["best_median_ms"], ".2f"), _fmt(p50, ".2f"), _fmt(p90, ".2f"),
                     str(len(ms)), _fmt(r.get("vs_fp32"), ".2f") + "x", _fmt(r.get("vs_eager"), ".2f") + "x",
                     _fmt(r.get("top1_vs_fp32"), ".3f")])
        if r.get("bimodal"):
            b = r["bimodal"]
            notes.append(f"{r['backend']} ({r['workload']}) is bimodal: {b['fast_ms']:.2f} ms and {b['slow_ms']:.2f} ms "
                         f"({100 * b['slow_share']:.0f}% of calls slow)" + (f"; {b['cause']}" if b.get("cause") else ""))
    out = [f"== served: MNRE traffic through dfma.runtime ({sv['source']}; {sv['calls']} calls x {sv['repeats']} "
           f"repeats per workload; {sv['statistic']})",
           table(["contender", "workload", "serves", "stages", "ms", "p50 ms", "p90 ms", "n", "vs ort-fp32",
                  "vs eager", "top1=fp32"], rows)]
    if any("*" in r[0] for r in rows):
        out.append("* disturbed workload (other processes > 10 % of the CPUs, or p90/p50 > 1.25 of a unimodal row, "
                   "after reruns): not used for any target")
    out += notes
    spins = {}
    for r in sv["rows"]:
        spins.setdefault(r["backend"], []).extend(r.get("spin") or [])
    spun = {k: 1e3 * float(np.median(v)) for k, v in spins.items() if v}
    if spun and max(spun.values()) >= 0.5:
        out.append("pools spinning after a call (median CPU ms burnt until quiet): "
                   + ", ".join(f"{k} {v:.1f}" for k, v in spun.items())
                   + "; each worker waited its own out before the next contender's call (dfma.timing.settle)")
    from dfma.benchmarks.disturbance import predecessor_effect

    for workload in dict.fromkeys(r["workload"] for r in sv["rows"]):
        effect = predecessor_effect([r for r in sv["rows"] if r["workload"] == workload])
        if effect:
            out.append(f"calls right after each contender ({workload}; median of call / its sentence's fastest): "
                       + ", ".join(f"after {k} {v:.2f}" for k, v in effect.items()))
    con = sv.get("consistency") or {}
    rec = con.get("recorded_auto") or {}
    if con.get("agree") is not None:
        out.append(f"consistency: the bundle's auto serves {rec.get('label')} ({rec.get('backend')}); the fastest guarded "
                   f"row here at batch 1 is {con['fastest_guarded']}: "
                   + ("they agree" if con["agree"] else
                      f"they DISAGREE (auto's choice is {con['recorded_over_fastest']:.2f}x the fastest's time)"))
    elif con.get("note"):
        out.append(f"consistency: {con['note']}")
    rank = con.get("ranking")
    if rank:
        out.append(f"ranking at batch 1: benchmark {' < '.join(rank['benchmark'])}, precision step "
                   f"{' < '.join(rank['precision_step'])} ({'same order' if rank['same_order'] else 'DIFFERENT order'}); "
                   "ratio to fp32, benchmark / precision step: "
                   + ", ".join(f"{k} {v:.2f}" for k, v in rank["ratio_of_ratios"].items())
                   + (" (each within 10 %)" if rank["within_10pct"] else " (NOT all within 10 %)"))
    for k, v in (sv.get("skipped") or {}).items():
        out.append(f"served row {k}: not run ({v})")
    return "\n".join(out)


LOAD_HEAD = ["row", "serves", "MiB", "load cold s", "load warm s", "RSS growth MiB", "peak growth MiB",
             "growth / bytes"]


def load_rows(load: Mapping) -> list[list[str]]:
    """The cells of the load table (:data:`LOAD_HEAD`), one row per served row that dfma.runtime.load serves."""
    rows = []
    for r in load.get("rows") or []:
        if "error" in r:
            rows.append([r["row"], f"failed: {r['error']}", *["-"] * (len(LOAD_HEAD) - 2)])
            continue
        rows.append([r["row"], r.get("serves") or "-", _fmt(r["bytes"] / 2**20, ".1f"),
                     _fmt(r.get("load_cold_s"), ".3f", "n/m"), _fmt(r.get("load_warm_s"), ".3f"),
                     _fmt(r.get("rss_growth_mb"), ".1f"), _fmt(r.get("peak_growth_mb"), ".1f"),
                     _fmt(r.get("growth_per_byte"), ".2f")])
    return rows


def load_notes(load: Mapping) -> list[str]:
    """What the load table's rows read beyond their graph files, why a cold load is unmeasured, rows not loaded."""
    notes = []
    for r in load.get("rows") or []:
        if r.get("stores"):
            notes.append(f"{r['row']} reads " + ", ".join(f"{k} ({v / 2**20:.1f} MiB referenced)"
                                                         for k, v in r["stores"].items()) + " beside its graphs")
        if r.get("cold"):
            notes.append(f"{r['row']}: cold {r['cold']}")
    notes += [f"{k}: not in the load table ({v})" for k, v in (load.get("not_loaded") or {}).items()]
    return notes


def load_table(result: Mapping) -> str:
    """The load tables (benchmarks/memory.py): the served rows' (``served.load``) and the grid backends'
    (``load``, from the memory probes): bytes each row reads (ONNX external data followed), load seconds with a
    cold and a warm page cache, RSS growth of the loaded extractor."""
    out = []
    served = (result.get("served") or {}).get("load")
    if served:
        out += [f"== load: each served row loaded by dfma.runtime.load in fresh processes ({served.get('seconds', 0):.0f} s)",
                table(LOAD_HEAD, load_rows(served)),
                "MiB: the graph files the row opened + the ONNX external data they reference; cold: its files evicted "
                "from the page cache first (n/m: not measurable here); RSS growth: after load + 1 call (one sentence) "
                "minus after imports; growth / bytes: RSS growth over MiB", *load_notes(served)]
    grid = result.get("load")
    if grid:
        cell = next((r.get("cell") for r in grid.get("rows") or [] if r.get("cell")), "?")
        out += [("\n" if out else "") + "== load: grid backends (model only), from the memory probes",
                table(LOAD_HEAD, load_rows(grid)),
                "cold: the memory probe's load in a fresh process, its files evicted first; warm: the grid's own "
                f"load (model mode); RSS growth: after load + 1 call at {cell} minus after imports", *load_notes(grid)]
    return "\n".join(out)


def render_text(result: Mapping) -> str:
    """Everything printed at the end of a run."""
    parts = [header(result), served_table(result), load_table(result), latency_tables(result), backend_table(result) if result.get("backends") else "",
             targets_table(result)]
    return "\n\n".join(p for p in parts if p)


def write_json(result: Mapping, path: Path) -> None:
    """The whole result as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")


def plot(result: Mapping, path: Path) -> None:
    """PNG: p50 latency (log scale) and speed-up over eager, per cell and backend, one row per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not result["results"]:
        return plot_served(result, path)
    modes = [m for m in result["settings"]["modes"] if any(r["mode"] == m for r in result["results"])]
    keys = list(result["backends"])
    cells = [f"{b}x{L}" for b in result["settings"]["batches"] for L in result["settings"]["lengths"]]
    fig, axes = plt.subplots(max(len(modes), 1), 2, figsize=(15, 4.2 * max(len(modes), 1)), squeeze=False)
    colors = plt.get_cmap("tab10")
    width = 0.8 / max(len(keys), 1)
    x = np.arange(len(cells))
    for row, mode in enumerate(modes):
        index: dict = {}
        for r in result["results"]:
            if r["mode"] == mode:  # eager of the first group when backends ran in several groups
                index.setdefault((r["backend"], f"{r['batch']}x{r['length']}"), r)
        for col, (field, ylabel) in enumerate((("p50_ms", "p50 latency, ms (log)"), ("speedup", "speed-up over eager fp32"))):
            ax = axes[row][col]
            for i, key in enumerate(keys):
                values = [(index.get((key, c)) or {}).get(field) for c in cells]
                ys = [v if v is not None else np.nan for v in values]
                ax.bar(x + (i - (len(keys) - 1) / 2) * width, ys, width, label=shown(result, key), color=colors(i % 10))
            ax.set_xticks(x, [f"batch {c.split('x')[0]}\nlen {c.split('x')[1]}" for c in cells])
            ax.set_ylabel(ylabel)
            ax.set_title(f"{'latency' if col == 0 else 'speed-up'}: {MODE_TITLES.get(mode, mode)}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            top = max((r.get(field) or 0) for r in index.values()) if index else 0
            if col == 0 or top > 20:  # speed-ups of 100x on a contended machine: log keeps 1x readable
                ax.set_yscale("log")
            if col == 1:
                ax.axhline(1.0, color="black", linewidth=0.8)
    axes[0][1].legend(fontsize=8, ncol=2)
    m = result["machine"]
    busy = (m.get("cpu_use_during_run") or {}).get("others_cpu_fraction") or 0
    fig.suptitle(f"DFMA {model_title(result['bundle'])} - {m.get('cpu')}, {result['settings']['threads']} threads "
                 f"({result['started'][:10]})"
                 + (f" - other processes used {100 * busy:.0f}% of the CPUs: noisy" if busy > 0.1 else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_served(result: Mapping, path: Path) -> None:
    """PNG of a run of the served rows alone: latency per contender and workload, and speed-up over ort-fp32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sv = result.get("served") or {"rows": [], "workloads": []}
    keys = list(dict.fromkeys(r["backend"] for r in sv["rows"]))
    work = list(sv["workloads"])
    index = {(r["backend"], r["workload"]): r for r in sv["rows"]}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width, x = 0.8 / max(len(keys), 1), np.arange(len(work))
    for col, (field, label) in enumerate((("best_median_ms", "ms per call (log)"), ("vs_fp32", "speed-up over ort-fp32"))):
        ax = axes[col]
        for i, key in enumerate(keys):
            ys = [(index.get((key, w)) or {}).get(field) for w in work]
            ax.bar(x + (i - (len(keys) - 1) / 2) * width, [np.nan if v is None else v for v in ys], width, label=key)
        ax.set_xticks(x, work)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if col == 0:
            ax.set_yscale("log")
        else:
            ax.axhline(1.0, color="black", linewidth=0.8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"DFMA {result['bundle']['preset']}: MNRE traffic through dfma.runtime - {result['machine'].get('cpu')}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- markdown (benchmarks/RESULTS.md)

def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def markdown(result: Mapping) -> str:
    """The result as Markdown: setup, one latency table per mode, the backend table, the targets."""
    m, s = result["machine"], result["settings"]
    use = m.get("cpu_use_during_run") or {}
    int8 = int8_rate_line(result["gemm"], markdown=True)
    lines = [f"Command: `{result['command']}` ({result['started']}, {result['seconds']:.0f} s)  ",
             (f"Machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs ({', '.join(m.get('flags', []))}"
              + (f"; class {m['cpu_class']}" if m.get("cpu_class") else "") + f"), "
              f"{m.get('memory_gib')} GiB; torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}; "
              f"{s['threads']} threads  "),
             (f"Load: other processes used {100 * use.get('others_cpu_fraction', 0):.0f}% of the CPUs during the run "
              f"(load average {m.get('loadavg_start')} -> {m.get('loadavg_end')})  ") if use else "",
             (f"Bundle: `{result['bundle']['path']}` ({model_title(result['bundle'])}, "
              f"{result['bundle']['bytes'] / 2**20:.0f} MiB); eager weights {result['bundle'].get('eager_weights')}  "),
             (f"GEMM rate measured in the run: fp32 {result['gemm']['fp32']['rate'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {result['gemm']['bf16']['rate'] / 1e9:.0f} GFLOP/s (torch {result['gemm']['fp32']['n']}^3 matmul, "
              f"before and after the sweep); fp32 timed interleaved in each cell (the rate efficiency divides by): "
              + ", ".join(f"{c}: {v['rate'] / 1e9:.0f}" for c, v in (result["gemm"].get("per_cell") or {}).items())
              + " GFLOP/s  "),
             f"{int8}  " if int8 else "",
             (f"Timing: per cell, {s['budget']['warmup']} warm-up call(s) per backend, then interleaved rounds until "
              f">= {s['budget']['min_reps']} calls and >= {s['budget']['budget_s']} s (at most {s['budget']['max_reps']})")]
    out = ["\n".join(x for x in lines if x)]
    grouped = len(s.get("groups") or [None]) > 1
    for mode in s["modes"]:
        rows = []
        for r in sorted((r for r in result["results"] if r["mode"] == mode),
                        key=lambda r: (r["batch"], r["length"], r.get("group", 0))):
            name = shown(result, r["backend"]) + (f" [g{r.get('group', 0)}]" if grouped else "")
            if (r.get("disturbance") or {}).get("disturbed"):
                name += " *"
            if r.get("bimodal"):
                name += " (bimodal)"
            rows.append([name, f"{r['batch']}x{r['length']}", _fmt(r.get("p50_ms"), ".1f"), _fmt(r.get("p90_ms"), ".1f"),
                         _fmt(r.get("p99_ms"), ".1f"), _fmt(r.get("min_ms"), ".1f"), r.get("n", 0),
                         _fmt(r.get("throughput"), ".1f"), _fmt(r.get("speedup"), ".2f") + "x",
                         _fmt(r.get("speedup_min"), ".2f") + "x", _fmt(r.get("gflops_per_s"), ".0f"),
                         _pct(r.get("efficiency")), _pct(r.get("int8_efficiency"))])
        if rows:
            out.append(f"**{MODE_TITLES.get(mode, mode)}**\n\n" + _md_table(
                ["backend", "batch x len", "p50 ms", "p90 ms", "p99 ms", "min ms", "n", "samples/s", "vs eager (p50)",
                 "vs eager (min)", "GFLOP/s", "eff. vs fp32 GEMM", "eff. vs INT8 GEMM"], rows))
    rows = []
    for key, b in result["backends"].items():
        mem, par, load = b.get("memory") or {}, b.get("parity") or {}, b.get("load_seconds") or {}
        rows.append([shown(result, key), f"`{b.get('graph')}`" if b.get("graph") else "(torch)",
                     _fmt(b.get("size_bytes", 0) / 2**20, ".0f"), _fmt(load.get("model"), ".2f"),
                     _fmt(load.get("e2e"), ".2f"), _fmt(compile_seconds(b), ".1f"), _fmt(mem.get("peak_rss_mb"), ".0f"),
                     _fmt(mem.get("delta_mb"), ".0f"), _fmt(par.get("top1_agreement"), ".3f"),
                     {True: "ok", False: "failed"}.get(par.get("guard_passed"), "-")])
    out.append(_md_table(["backend", "file", "MiB", "load s (model)", "load s (e2e)", "compile s", "peak RSS MiB",
                          "RSS delta MiB", "parity top-1", "guard"], rows))
    if result.get("skipped"):
        out.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()))
    for title, load in (("load (each served row through dfma.runtime.load, fresh processes)",
                         (result.get("served") or {}).get("load")),
                        ("load (grid backends, model only, from the memory probes)", result.get("load"))):
        if load:
            out.append(f"**{title}**\n\n" + _md_table(LOAD_HEAD, load_rows(load))
                       + "".join(f"\n\n{n}" for n in load_notes(load)))
    out.append(_md_table(["target", "value", "needs", "status", "measured at"],
                         [[t["name"], _fmt(t.get("value"), ".2f"), t["threshold"],
                           "unmeasured (disturbed)" if t.get("disturbed") else
                           {True: "met", False: "**missed**"}.get(t.get("met"), "n/a"), t.get("where", "")]
                          for t in result.get("targets", [])]))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: python benchmarks/latency_report.py RESULT.json   (prints the Markdown tables of a run)")
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
