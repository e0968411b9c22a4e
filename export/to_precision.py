"""Add reduced-precision graphs to a bundle, guarded against fp32: ``python export/to_precision.py BUNDLE``.

Each recipe of ``export/recipes/`` builds one graph of the catalogue from the bundle's fp32 graphs:
``model.fp16.onnx`` (fp16 weights and math; LayerNorm, Softmax and reductions in fp32; fp32
inputs/outputs), ``model.int8.onnx`` (static QDQ: per-channel S8 weights, U8 activations calibrated on
MNRE training sentences; ranges saved as ``calibration.json``), ``model.int8-dynamic.onnx`` (dynamic INT8,
CPU) and their 7-bit-weight twins for x86 CPUs without VNNI. Each is compared with fp32 on MNRE validation
sentences (top-1 agreement, logit errors, micro-F1); an INT8 graph below the agreement target is
re-quantized with its most sensitive nodes kept in fp32 until the target is met or the budget is spent.
The fastest graph among those meeting the guard (fp32 included; OpenVINO too where installed) becomes
``defaults.auto``, what ``precision="auto"`` serves. The bundle is updated atomically.
The work is the library's (``dfma.export.precision``); this file parses the command line and reports.
Exit status 0 on success (also when a guard target is missed: the manifest says so), 1 on an error
(nothing written), 2 on a usage error, 130 when interrupted.
"""
from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import everything as dfma.export.*, never export/ modules by bare name

import signal  # noqa: E402

from dfma.contract.errors import DFMAError  # noqa: E402
from dfma.export.precision.options import UsageError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build, print the summary; returns the exit status."""
    from dfma.export.precision.command_line import parse

    bundle, options, recipe_options, recipes = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: temporary files go, the bundle stays
    try:
        from dfma.export.precision.step import run

        manifest = run(bundle, options, recipes, recipe_options)
    except UsageError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return 2
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the bundle was not changed", file=sys.stderr)
        return 130
    from dfma.export.precision.accuracy_guard import summary

    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
