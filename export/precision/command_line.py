"""``export/to_precision.py``'s command line, generated: the recipes' selectors (``--fp16``, ``--int8
static|dynamic|both``), the step's options and each recipe's (their dataclass fields' flags), and the
parsed arguments turned back into those frozen option objects (:func:`parse`)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from dfma.export.precision.options import StepOptions, option_fields
from dfma.export import recipes as recipe_registry

DESCRIPTION = ("Builds from the bundle's fp32 graphs each graph a recipe makes (export/recipes/: FP16, static "
               "INT8 calibrated on MNRE training sentences, dynamic INT8, ...), compares each with fp32 on MNRE "
               "validation sentences (the accuracy guard) and updates the bundle atomically.")
PROG = "python export/to_precision.py"


def _add_fields(parser: argparse.ArgumentParser, options_class: type, seen: set) -> None:
    for f in option_fields(options_class):
        if f.name in seen:
            continue
        seen.add(f.name)
        meta, flag = f.metadata, f.metadata["flag"] or "--" + f.name.replace("_", "-")
        help_text = meta["help"] + (f" (default: {f.default})" if not (f.default is None or f.default is False or f.default == "") else "")
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
            continue
        kind = meta["type"] or type(f.default)
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=meta["choices"],
                            metavar=meta["metavar"], help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in --help, each default said once)."""
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("bundle", type=Path, help="bundle folder written by export/to_onnx.py (updated in place)")
    for flag, members in recipe_registry.switches().items():
        values = [r.switch[1] for r in members if r.switch[1] is not None]
        if not values:
            p.add_argument(flag, action="store_true", help=members[0].switch_help)
        else:
            every = "both" if len(values) == 2 else "all"
            p.add_argument(flag, choices=(*values, every), help="build these graphs: " + "; ".join(
                f"{r.switch[1]} = {r.key}, {r.switch_help}" for r in members) + f"; {every} (with no selector: every graph)")
    seen: set = set()
    _add_fields(p, StepOptions, seen)
    for recipe in recipe_registry.recipes():
        _add_fields(p, recipe.options, seen)
    return p


def parse(argv: list[str] | None = None) -> tuple[Path, StepOptions, list, list]:
    """``(bundle, step options, recipe option objects, chosen recipes)`` from a command line (argparse exits
    with status 2 on a malformed one)."""
    args = vars(build_parser().parse_args(argv))
    step = StepOptions(**{f.name: args[f.name] for f in option_fields(StepOptions)})
    classes = list(dict.fromkeys(r.options for r in recipe_registry.recipes()))
    recipe_options = [c(**{f.name: args[f.name] for f in dataclasses.fields(c)}) for c in classes]
    chosen = {flag: args[flag.lstrip("-").replace("-", "_")] for flag in recipe_registry.switches()}
    return args["bundle"], step, recipe_options, recipe_registry.selected(chosen)
