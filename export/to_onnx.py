"""Export DFMA to a validated ONNX bundle: ``python export/to_onnx.py [--preset tiny|base | --checkpoint DIR]``.

Writes a bundle folder (docs/contract.md section 4) with two fp32 graphs (``model.onnx``: standard ONNX
ops, opset 23 ``Attention``; ``model.ort.onnx``: ONNX Runtime fused kernels), the tokenizer, the label map,
the preprocessing constants and a manifest with the IO spec, tool versions, sha256 of every file and the
eager-vs-graph parity report. Exit status 0 on success, 1 on an export error (nothing written), 2 on a
usage error.
"""
from __future__ import annotations

import os
import sys

# `python export/to_onnx.py` puts export/ first on sys.path, where our module names (bundle, manifest,
# validate, ...) could shadow another package's; this script imports everything as dfma.export.*.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.errors import DFMAError  # noqa: E402

EPILOG = """\
inputs of both graphs (dynamic axes: batch, sequence):
  input_ids       int64   [batch, sequence]       [CLS] ... [SEP] word pieces, right-padded with [PAD]=0;
                                                  the first <s> and <o> mark head and tail (found in-graph)
  attention_mask  int64   [batch, sequence]       1 = real piece, 0 = padding
  pixel_values    float32 [batch, 4, 3, S, S]     main image + 3 object crops, ImageNet-normalised
  image_mask      int64   [batch, 4]              1 = image present, 0 = absent (its pixels are ignored)
output: logits float32 [batch, num_labels]

examples:
  python export/to_onnx.py                          # base preset, random weights -> bundles/base
  python export/to_onnx.py --preset tiny --out /tmp/tiny-bundle
  python export/to_onnx.py --checkpoint checkpoints/tiny-mnre --out bundles/tiny-mnre --force
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in --help)."""
    from dfma.export.pipeline import DEFAULT_MAX_BATCH

    p = argparse.ArgumentParser(
        prog="python export/to_onnx.py", description=__doc__.split("\n\n")[1].replace("\n", " ").replace("``", ""),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, metavar="DIR",
                     help="trained checkpoint folder (config.json, model.safetensors, tokenizer.json, vocab.txt)")
    src.add_argument("--preset", default=None, metavar="NAME",
                     help="export a preset with random weights instead: tiny or base (default: base); "
                          "nothing is downloaded")
    p.add_argument("--tokenizer", type=Path, metavar="DIR",
                   help="with --preset: folder with the tokenizer to bundle (default: checkpoints/tiny-mnre)")
    p.add_argument("--seed", type=int, default=0, help="with --preset: seed of the random weights (default: 0)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="bundle folder to create (default: bundles/<preset or checkpoint name>); must not exist")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (atomically, at the end)")
    p.add_argument("--opset", type=int, default=23, metavar="N",
                   help="ONNX opset of the portable graph (default: 23, the first with the Attention op that "
                        "TensorRT >= 10.14 takes; 18..22 keep attention as MatMul/Softmax)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"largest batch the graphs are traced and validated for, recorded in the manifest's "
                        f"limits (default: {DEFAULT_MAX_BATCH})")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="largest sequence length in word pieces, [CLS] and [SEP] included (default: the "
                        "config's max_length, 80); validated at this length")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest allowed |graph - eager| logit difference at any validated shape (default: 1e-4)")
    p.add_argument("--full-validation", action="store_true",
                   help="validate at 18 shapes (batch 1,3,7 x length 8,33,max x with/without crops) instead of the "
                        "default 4 (batch 1 and 7 x length 8 and max, crops and none)")
    p.add_argument("--validation-seed", type=int, default=None, metavar="N",
                   help="seed of the validation inputs (default: fresh each run; recorded in the manifest)")
    p.add_argument("--quiet", action="store_true", help="print only the bundle path (and errors)")
    p.add_argument("--verbose", action="store_true", help="show the exporter's own warnings and logs")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, export, print the summary; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.checkpoint is None and args.preset is None:
        args.preset = "base"
    if args.checkpoint is not None and args.tokenizer is not None:
        print("error: --tokenizer goes with --preset; a checkpoint brings its own tokenizer", file=sys.stderr)
        return 2
    name = args.checkpoint.name if args.checkpoint is not None else args.preset
    out = args.out if args.out is not None else Path("bundles") / name

    from dfma.export.pipeline import ExportOptions, export_bundle

    opts = ExportOptions(out=out, checkpoint=args.checkpoint, preset=args.preset or "base",
                         tokenizer=args.tokenizer, seed=args.seed, force=args.force, opset=args.opset,
                         max_batch=args.max_batch, max_length=args.max_length, atol=args.atol,
                         validation_seed=args.validation_seed, full_validation=args.full_validation,
                         quiet=args.quiet, verbose=args.verbose)
    try:
        result = export_bundle(opts)
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    if args.quiet:
        print(result.bundle)
    else:
        print()
        print(result.summary())
        print(f"\nbundle: {result.bundle}  ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
