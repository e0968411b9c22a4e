"""Options of `export/to_precision.py`: its defaults, its command line and the checks made before loading."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from dfma.contract.errors import ExportError

DESCRIPTION = ("Builds from the bundle's portable fp32 graph an FP16 graph, a static INT8 graph calibrated on MNRE "
               "training sentences and a dynamic INT8 graph, compares each with fp32 on MNRE validation sentences "
               "(the accuracy guard) and updates the bundle atomically.")
CALIBRATION_FILE = "calibration.json"
DEFAULT_DATA = Path(os.environ.get("DFMA_MNRE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnre"))
DEFAULT_METHOD = "minmax"  # measured best on the trained tiny checkpoint (docs/precision.md)
# defaults (calibration sentences, guard sentences, guard rounds, latency sentences) for a small model and a
# large one (portable graph over 100 MB, e.g. base: every sentence also runs the ResNet on 4 image slots)
SMALL, LARGE = (256, 512, 5, 16), (64, 96, 1, 8)
LARGE_BYTES = 100 << 20
SENSITIVITY_BATCHES = 2  # calibration batches (of 8 sentences) the sensitivity ranking observes
F1_TOLERANCE = 0.5  # points: with the agreement target, what "meets the guard" means for the auto default
IMAGE_ONLY_REASON = ("image encoder (depends on pixels only): no images or photos were given, so its ranges would come "
                     "from all-zero images; pass --images DIR to quantize it")
FP16_REL_TOL = 0.02  # fp16 vs fp32 on random shapes: max |diff| <= 2% of the largest |fp32 logit|


class UsageError(ExportError):
    """A bad option value (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in --help)."""
    p = argparse.ArgumentParser(prog="python export/to_precision.py", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", type=Path, help="bundle folder written by export/to_onnx.py (updated in place)")
    p.add_argument("--fp16", action="store_true", help="build the FP16 graph (with no --fp16/--int8: everything)")
    p.add_argument("--int8", choices=("static", "dynamic", "both"), help="build these INT8 graphs")
    p.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default=None,
                   help="static INT8 range estimator (default: minmax, or the cache's)")
    p.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                   help=f"MNRE training sentences used for calibration (default: {SMALL[0]} for a small "
                        f"model such as the tiny preset, {LARGE[0]} for a large one such as base)")
    p.add_argument("--calibration-cache", type=Path, metavar="FILE",
                   help="reuse these ranges (a calibration.json of a bundle with the same fp32 graph)")
    p.add_argument("--images", type=Path, metavar="DIR", help="post images (named by img_id) for calibration and "
                   "the guard; without it scikit-image's sample photographs stand in (random crops and flips)")
    p.add_argument("--crops", type=Path, metavar="DIR", help="object crops (X-0.jpg ... of image X.jpg)")
    p.add_argument("--no-photos", action="store_true",
                   help="without --images, leave every image slot absent instead of using scikit-image's sample "
                        "photographs (then the image encoder stays fp32 in static INT8)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                   help="folder with mnre_train.txt (calibration) and mnre_val.txt (guard)")
    p.add_argument("--target-agreement", type=float, default=0.99, help="INT8 top-1 agreement with fp32 to reach")
    p.add_argument("--guard-samples", type=int, default=None, metavar="N",
                   help=f"MNRE validation sentences for the guard, 0 = all 1,624 (default: {SMALL[1]} small "
                        f"model, {LARGE[1]} large: every sentence runs the ResNet on 4 image slots)")
    p.add_argument("--guard-budget", type=int, default=None, metavar="K",
                   help=f"re-quantization rounds the guard may spend, round r keeping 2**(r-1) more kinds (or nodes) fp32 "
                        f"(default: {SMALL[2]} small model, {LARGE[2]} large)")
    p.add_argument("--guard-by", choices=("kind", "node"), default="kind",
                   help="what a search round keeps in fp32: whole kinds of node (every layer's instance of one "
                        "module role, e.g. text.encoder.layer.*.output.dense) or single nodes")
    p.add_argument("--fp16-executor", choices=("auto", "onnxruntime", "reference"), default="auto",
                   help="what runs the fp16 graph here: the onnx reference evaluator computes in fp16; ONNX "
                        "Runtime's CPU provider casts most fp16 nodes back to fp32 (auto: reference when "
                        "ONNX Runtime would cast and the model is small)")
    p.add_argument("--fp16-keep", default="", metavar="OPS",
                   help="more op types to keep in fp32 in the FP16 graph, comma-separated (e.g. Attention; "
                        "always kept: LayerNormalization, Softmax, Reduce*, CumSum, Exp, Log, Pow, Sqrt, ...)")
    p.add_argument("--latency-samples", type=int, default=None, metavar="N",
                   help=f"sentences per batch-1 latency figure (default: {SMALL[3]} small model, {LARGE[3]} large)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sentence draws")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines")
    return p


def check_args(args) -> None:
    """Usage errors (UsageError) before anything is loaded."""
    if not 0 < args.target_agreement <= 1:
        raise UsageError(f"--target-agreement {args.target_agreement}: must be in (0, 1]")
    for name, least in (("calibration_samples", 1), ("latency_samples", 1), ("guard_budget", 0), ("guard_samples", 0)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: too small")
    for name in ("mnre_train.txt", "mnre_val.txt"):
        if not (args.data / name).is_file():
            raise UsageError(f"--data {args.data}: {name} not found (set --data or DFMA_MNRE_DIR)")
