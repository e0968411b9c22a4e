"""The command line of ``python benchmarks/latency.py``: its grids (batch x length cells with their time
budgets) and every option."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from dfma.benchmarks import backends as bk
from dfma.benchmarks.disturbance import MIN_REPS_BATCH1
from dfma.benchmarks.timing import Budget

DESCRIPTION = ("Latency of DFMA on every backend, side by side, in one interleaved run: "
               "``python benchmarks/latency.py``.")


GRIDS = {
    # name: (batches, lengths, Budget)
    # base at batch 32 is ~1.3-1.6 TFLOP per call (7-9 s at the full fp32 GEMM rate): such cells get the
    # warm-up and 2 timed rounds; batch-1 cells get as many rounds as fit in the budget (7 at least)
    "full": ((1, 8, 32), (32, 80), Budget(warmup=1, min_reps=2, max_reps=50, budget_s=20.0)),
    "small": ((1, 8), (80,), Budget(warmup=1, min_reps=3, max_reps=20, budget_s=5.0)),
    "quick": ((1, 4), (16, 32), Budget(warmup=2, min_reps=5, max_reps=40, budget_s=0.4)),
}
# The grid of `python benchmarks/latency.py` with no arguments: the base preset at batch 1 and 8 x length 80,
# both modes, every backend of the bundle, memory probes: ~10 min on this project's 2-core machines (the
# full grid's batch-32 cells alone take ~20 min there: each round of 13 backends at 32x80 is ~2 min)
DEFAULT_GRID = "small"
SERVED = "served"  # the mode of the real-traffic rows (benchmarks/served.py)

EPILOG = """\
examples:
  python benchmarks/latency.py                      # base preset, batch 1, 8 x length 80, both modes, every
                                                    # backend, memory probes: ~10 min (exports bundles/base if needed)
  python benchmarks/latency.py --grid full          # the complete sweep, batch 1, 8, 32 x length 32, 80: ~40-60 min
  python benchmarks/latency.py --compile            # ... with the torch.compile row (compiling: minutes per batch class)
  python benchmarks/latency.py --quick              # tiny preset, quick grid: a smoke run in a minute or two
  python benchmarks/latency.py --bundle bundles/minilm-mnre --modes served --workloads b1,b8   # what `make demo` runs
  python benchmarks/latency.py --bundle B --modes model --isolation shared   # the grid in one process (to compare)
  python benchmarks/latency.py --bundle B --batch 1 8 --length 80 --backends ort-fused,ort-int8,eager-compile
served rows (default): MNRE validation traffic through dfma.runtime.load() as served (stages, cache, auto), each
contender in its own worker process, calls interleaved one by one; per call the fastest of --repeats, median over
--calls (dfma/timing.py, the precision step's statistic); targets: auto over ONNX Runtime fp32 >= 1.5x at batch 1,
>= 2x at batch 8. disturbed = others > 10 % of the CPUs or p90/p50 > 1.25 of a backend whose calls are not bimodal.
timing: per (batch, length) cell and mode, a warm-up call per backend, then rounds in which every backend
runs once (order rotated each round; each backend in its own worker process unless --isolation shared) until
>= min-reps calls and >= budget seconds (or max-reps); speed-up = eager fp32 p50 / backend p50 of the same cell. Efficiency = FLOPs (formula in flops.py) / p50 / fp32 GEMM
rate, the GEMM (torch 2048^3 matmul, same threads) being timed as one more backend in the same rounds
(its p50 per cell and mode: contention slows it like the backends it is compared with). INT8 rows also
show "eff int8": the same against the INT8 GEMM rate (ONNX Runtime MatMulInteger u8 x s8 -> s32, same
size and threads, timed in the rounds of every cell with an INT8 row), named with the CPU's INT8
instruction class (x86-amx, x86-avx512-vnni, x86-avx2, ...).
rows: eager-compile is torch.compile (inductor, dynamic shapes) of the eager model; its first call in each
cell (where it compiles) is untimed and reported as "compile s" (JSON: backends.eager-compile.compile);
without a C++ compiler it is skipped with the reason. It is opt-in (--compile, or named in --backends): it
compiles once per batch-size class (batch 1, batch > 1), 2-4 min each on 2 cores with a cold inductor cache
(base: 205 s for batch 1, 249 s for batch 8). eager-bf16 is labelled "(emulated)" on CPUs without
AVX512_BF16 or AMX, where bf16 autocast is slower than fp32.
duration: the run prints its expected duration first, computed from its plan (cells x modes x budget and
the backends' expected call times, loads, memory probes, compiling, export when the bundle is missing).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python benchmarks/latency.py", description=DESCRIPTION,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, metavar="DIR",
                   help="benchmark this bundle as it is (default: export the preset into --cache, reuse it when "
                        "its manifest matches, and add the precision graphs when export/to_precision.py exists)")
    p.add_argument("--preset", choices=("tiny", "base"), default=None,
                   help="preset to export when no --bundle is given (default: base; tiny with --quick)")
    p.add_argument("--cache", type=Path, metavar="DIR", help="bundle cache folder (default: bundles/<preset>)")
    p.add_argument("--rebuild", action="store_true", help="re-export the cached bundle even if it matches")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny preset (unless --bundle), grid 'quick', fraction-of-a-second budgets")
    p.add_argument("--grid", choices=sorted(GRIDS), default=None,
                   help="small: batch 1,8 x length 80, 5 s per cell and mode (default: ~10 min on base with 2 cores); "
                        "full: batch 1,8,32 x length 32,80, 20 s per cell (the complete sweep: its batch-32 cells "
                        "take minutes per round on base; ~40-60 min); quick: batch 1,4 x length 16,32 (with --quick)")
    p.add_argument("--quick-sweep", dest="grid", action="store_const", const="small", help="same as --grid small")
    p.add_argument("--batch", type=int, nargs="+", metavar="N", help="batch sizes (overrides the grid's)")
    p.add_argument("--length", type=int, nargs="+", metavar="N",
                   help="sequence lengths in word pieces, [CLS]/[SEP] included (overrides the grid's)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, ONNX Runtime and the GEMM rate (default: CPUs available to this process)")
    p.add_argument("--backends", default=None, metavar="K1,K2",
                   help=f"subset of backends (eager-fp32 always runs): {', '.join(bk.KEYS)}, trt-<precision>")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="add the torch.compile row (eager-compile). Off by default, on every grid, because it "
                        "compiles once per batch-size class (batch 1, batch > 1) before timing: 2-4 min each on 2 "
                        "cores with a cold inductor cache on base, untimed but on the clock; naming eager-compile in "
                        "--backends also adds it")
    p.add_argument("--modes", default="served,model", metavar="M1,M2",
                   help="served (real MNRE traffic through dfma.runtime, one worker process per contender: the "
                        "targets of the INT8 issue), model and e2e (the batch x length grid, synthetic inputs; "
                        "e2e: synthetic requests through the runtime); default served,model")
    p.add_argument("--workloads", default=None, metavar="W1,W2",
                   help="served workloads: b1 (one MNRE sentence per call), b8 (eight), post (a post's pairs with "
                        "its JPEG and crops); default b1,b8,post (b1,b8 with --quick)")
    p.add_argument("--calls", type=int, default=None, metavar="N",
                   help="served: calls per workload (default 12; 8 with --quick)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="served: times each call is repeated, interleaved (default 3); the "
                        "statistic is per call the fastest repeat, median over calls")
    p.add_argument("--served-backends", default=None, metavar="K1,K2",
                   help="served rows besides auto and ort-fp32 (default all: ort-int8, ort-int8-dynamic, eager, "
                        "and the CUDA rows where torch sees a device)")
    p.add_argument("--isolation", choices=("process", "shared"), default="process",
                   help="the grid: process (default): every backend and GEMM probe in its own worker process, so no "
                        "other runtime's thread pool lives beside the one timed; shared: all in this process (the "
                        "old way: compare the two to see what the pools of several runtimes in one process cost)")
    p.add_argument("--data", type=Path, default=None, metavar="FILE",
                   help="MNRE split of the served rows (default ../shared/data/mnre/mnre_val.txt)")
    p.add_argument("--budget", type=float, default=None, metavar="S", help="seconds per cell and mode (grid default)")
    p.add_argument("--min-reps", type=int, default=None, metavar="N", help="calls per backend per cell, at least")
    p.add_argument("--max-reps", type=int, default=None, metavar="N", help="calls per backend per cell, at most")
    p.add_argument("--warmup", type=int, default=None, metavar="N", help="warm-up calls per backend per cell")
    p.add_argument("--image-size", default=None, metavar="WxH",
                   help="size of the end-to-end requests' JPEG image (default 500x375; crops are 1/3 of it; "
                        "160x120 with --quick)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="the peak-memory probes: one fresh process per backend, load + 1 call at the largest cell "
                        "(default: on; a few seconds each at batch 8, more at batch 32); --no-memory skips them")
    p.add_argument("--load-table", action=argparse.BooleanOptionalAction, default=None,
                   help="the served rows' load table: each row that dfma.runtime.load serves loaded in 3 fresh "
                        "processes after the timed calls (bytes it reads, load s with a cold and a warm page cache, "
                        "RSS growth; ~2 s a row on the tiny bundle). Default: on when the served rows run alone "
                        "(--modes served, as `make demo`); off beside the grid, whose memory probes give the grid "
                        "rows' load table at no extra cost (the no-argument run stays within its 20 minutes)")
    p.add_argument("--memory-budget", type=float, default=None, metavar="MiB",
                   help="memory the backends opened side by side may need together (default: 80%% of MemAvailable); "
                        "backends that do not fit together are timed in groups, each with its own eager runs")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where the JSON and PNG go (default: benchmarks/results for the full grid, "
                        "runs/benchmarks otherwise)")
    p.add_argument("--name", default=None, help="file name stem (default: latency-<preset>-<grid>)")
    args = p.parse_args(argv)
    if args.quick and args.grid is None:
        args.grid = "quick"
    args.grid = args.grid or DEFAULT_GRID
    if args.compile is None:  # opt-in: --compile, or eager-compile named in --backends
        args.compile = bk.COMPILE in (wanted_backends(args) or [])
    args.no_memory = not args.memory
    if args.preset is None:
        args.preset = "tiny" if args.quick else "base"
    for name in ("batch", "length"):
        if any(v < 1 for v in (getattr(args, name) or [])):
            p.error(f"--{name} values must be positive")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in (SERVED, *bk.MODES) for m in args.modes):
        p.error(f"--modes: choose from {[SERVED, *bk.MODES]}")
    if args.load_table is None:
        args.load_table = args.modes == [SERVED]
    from dfma.benchmarks.served import WORKLOADS

    args.workloads = [w.strip() for w in (args.workloads or ("b1,b8" if args.quick else "b1,b8,post")).split(",")
                      if w.strip()]
    if not args.workloads or any(w not in WORKLOADS for w in args.workloads):
        p.error(f"--workloads: choose from {list(WORKLOADS)}")
    args.calls = args.calls or (8 if args.quick else 12)
    args.repeats = args.repeats or 3
    if args.calls < 1 or args.repeats < 2:
        p.error("--calls must be >= 1 and --repeats >= 2 (the spread needs repeats of each call)")
    return args


def grid_modes(args: argparse.Namespace) -> list[str]:
    """The modes of the batch x length grid (model, e2e) this run asks for."""
    return [m for m in args.modes if m in bk.MODES]


def wanted_backends(args: argparse.Namespace) -> list[str] | None:
    """The ``--backends`` list (None: every backend)."""
    return [k.strip() for k in args.backends.split(",") if k.strip()] if args.backends else None


def settings_of(args: argparse.Namespace) -> tuple[str, tuple[int, ...], tuple[int, ...], Budget]:
    """``(grid name, batches, lengths, budget)`` of a run: the grid's, with --batch/--length (grid
    ``custom``) and --budget/--min-reps/--max-reps/--warmup applied."""
    batches, lengths, budget = GRIDS[args.grid]
    grid_name = args.grid if not (args.batch or args.length) else "custom"
    batches, lengths = tuple(args.batch or batches), tuple(args.length or lengths)
    budget = Budget(warmup=args.warmup if args.warmup is not None else budget.warmup,
                    min_reps=args.min_reps or budget.min_reps, max_reps=args.max_reps or budget.max_reps,
                    budget_s=args.budget if args.budget is not None else budget.budget_s)
    return grid_name, batches, lengths, budget


def cell_budget(budget: Budget, batch: int) -> Budget:
    """The grid's budget, with at least MIN_REPS_BATCH1 timed calls per backend at batch 1."""
    if batch != 1 or budget.min_reps >= MIN_REPS_BATCH1:
        return budget
    return Budget(warmup=budget.warmup, min_reps=MIN_REPS_BATCH1, max_reps=max(budget.max_reps, MIN_REPS_BATCH1),
                  budget_s=budget.budget_s, gap_s=budget.gap_s)


def run_threads(args: argparse.Namespace) -> int:
    """--threads, else the CPUs available to this process."""
    return args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


COMPILE_OFF = ("not run: the torch.compile row is opt-in (it compiles once per batch-size class, minutes each); "
               "--compile adds it")


def backend_keys(folder: Path, manifest, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The contenders of this run and ``{key: why not}`` for those left out (the compile row unless asked)."""
    wanted = wanted_backends(args)
    if not args.compile and wanted is None:  # every backend but the compile row (nor its compiler check)
        wanted = [k for k in bk.KEYS if k != bk.COMPILE] + sorted(bk.trt_engines(manifest))
    keys, skipped = bk.available(folder, manifest, wanted)
    if not args.compile and (wanted_backends(args) is None or bk.COMPILE in keys):
        if bk.COMPILE in keys:
            keys.remove(bk.COMPILE)
        skipped[bk.COMPILE] = COMPILE_OFF
    return keys, skipped
