"""The command line of ``python benchmarks/latency.py``: its grids (batch x length cells with their time
budgets) and every option."""
from __future__ import annotations

import argparse
from pathlib import Path

from dfma.benchmarks import backends as bk
from dfma.benchmarks.timing import Budget

DESCRIPTION = ("Latency of DFMA on every backend, side by side, in one interleaved run: "
               "``python benchmarks/latency.py``.")


GRIDS = {
    # name: (batches, lengths, Budget, default preset)
    # base at batch 32 is ~1.3-1.6 TFLOP per call (7-9 s at the full fp32 GEMM rate): such cells get the
    # warm-up and 2 timed rounds; batch-1 cells get as many rounds as fit in the budget
    "full": ((1, 8, 32), (32, 80), Budget(warmup=1, min_reps=2, max_reps=50, budget_s=20.0)),
    "small": ((1, 8), (80,), Budget(warmup=1, min_reps=3, max_reps=20, budget_s=5.0)),
    "quick": ((1, 4), (16, 32), Budget(warmup=2, min_reps=5, max_reps=40, budget_s=0.4)),
}

EPILOG = """\
examples:
  python benchmarks/latency.py                      # base preset, full grid (exports bundles/base if needed)
  python benchmarks/latency.py --quick              # tiny preset, small grid: a smoke run in minutes
  python benchmarks/latency.py --quick --compile    # ... with the torch.compile row (compiling: minutes)
  python benchmarks/latency.py --bundle bundles/tiny-mnre --quick --no-memory   # what `make demo` runs
  python benchmarks/latency.py --bundle B --batch 1 8 --length 80 --backends ort-fused,ort-int8,eager-compile
timing: per (batch, length) cell and mode, a warm-up call per backend, then rounds in which every backend
runs once (order rotated each round) until >= min-reps calls and >= budget seconds (or max-reps); speed-up =
eager fp32 p50 / backend p50 of the same cell. Efficiency = FLOPs (formula in flops.py) / p50 / fp32 GEMM
rate, the GEMM (torch 2048^3 matmul, same threads) being timed as one more backend in the same rounds
(its p50 per cell and mode: contention slows it like the backends it is compared with). INT8 rows also
show "eff int8": the same against the INT8 GEMM rate (ONNX Runtime MatMulInteger u8 x s8 -> s32, same
size and threads, timed in the rounds of every cell with an INT8 row), named with the CPU's INT8
instruction class (x86-amx, x86-avx512-vnni, x86-avx2, ...).
rows: eager-compile is torch.compile (inductor, dynamic shapes) of the eager model; its first call in each
cell (where it compiles) is untimed and reported as "compile s" (JSON: backends.eager-compile.compile);
without a C++ compiler it is skipped with the reason; --quick leaves it out unless --compile is given. eager-bf16 is labelled "(emulated)" on CPUs without
AVX512_BF16 or AMX, where bf16 autocast is slower than fp32.
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
                   help="full: batch 1,8,32 x length 32,80 (default); small: batch 1,8 x length 80, 5 s per cell; "
                        "quick: batch 1,4 x length 16,32")
    p.add_argument("--quick-sweep", dest="grid", action="store_const", const="small", help="same as --grid small")
    p.add_argument("--batch", type=int, nargs="+", metavar="N", help="batch sizes (overrides the grid's)")
    p.add_argument("--length", type=int, nargs="+", metavar="N",
                   help="sequence lengths in word pieces, [CLS]/[SEP] included (overrides the grid's)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, ONNX Runtime and the GEMM rate (default: CPUs available to this process)")
    p.add_argument("--backends", default=None, metavar="K1,K2",
                   help=f"subset of backends (eager-fp32 always runs): {', '.join(bk.KEYS)}, trt-<precision>")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="the torch.compile row (eager-compile; its compiling is untimed but takes minutes on 2 cores): "
                        "on by default, off with --grid quick unless asked for (--compile, or named in --backends)")
    p.add_argument("--modes", default="model,e2e", metavar="M1,M2", help="model, e2e or both (default)")
    p.add_argument("--budget", type=float, default=None, metavar="S", help="seconds per cell and mode (grid default)")
    p.add_argument("--min-reps", type=int, default=None, metavar="N", help="calls per backend per cell, at least")
    p.add_argument("--max-reps", type=int, default=None, metavar="N", help="calls per backend per cell, at most")
    p.add_argument("--warmup", type=int, default=None, metavar="N", help="warm-up calls per backend per cell")
    p.add_argument("--image-size", default=None, metavar="WxH",
                   help="size of the end-to-end requests' JPEG image (default 500x375; crops are 1/3 of it; "
                        "160x120 with --quick)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes (one process per backend)")
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
    args.grid = args.grid or "full"
    if args.compile is None:
        named = bool(args.backends) and bk.COMPILE in [k.strip() for k in args.backends.split(",")]
        args.compile = named or args.grid != "quick"
    if args.preset is None:
        args.preset = "tiny" if args.quick else "base"
    for name in ("batch", "length"):
        if any(v < 1 for v in (getattr(args, name) or [])):
            p.error(f"--{name} values must be positive")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in bk.MODES for m in args.modes):
        p.error(f"--modes: choose from {list(bk.MODES)}")
    return args
