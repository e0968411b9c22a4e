"""Options of the precision step: the step's own (data, guard, latency), declared as a frozen dataclass whose
fields carry their command-line flags (:func:`option`), the defaults that depend on the model's size, and
the checks made before anything is loaded. Each recipe declares its own options the same way
(``dfma.export.recipes``); ``dfma.export.precision.command_line`` turns both into ``export/to_precision.py``'s
command line."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from dfma.contract.errors import ExportError

DEFAULT_DATA = Path(os.environ.get("DFMA_MNRE_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "mnre"))
# defaults (calibration sentences, guard sentences, guard rounds, latency sentences) for a small model and a
# large one (portable graph over 100 MB, e.g. base: every sentence also runs the ResNet on 4 image slots)
# a small model's guard runs every validation sentence (0 = all): the guard's figures are then the
# validation set's, not a sample's
SMALL, LARGE = (256, 0, 5, 64), (64, 96, 1, 16)
LARGE_BYTES = 100 << 20
F1_TOLERANCE = 0.5  # points: with the agreement target, what "meets the guard" means for the auto default


class UsageError(ExportError):
    """A bad option value (exit status 2)."""


def option(default, help: str, *, flag: str | None = None, choices: tuple | None = None, metavar: str | None = None,
           type=None):
    """A dataclass field that is also a command-line option (``flag`` default: ``--`` + the field name with
    dashes; a bool is a switch; ``type`` default: the default's type)."""
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices, "metavar": metavar,
                                            "type": type})


def option_fields(options_class) -> list[dataclasses.Field]:
    """The fields of an options dataclass that are command-line options."""
    return [f for f in dataclasses.fields(options_class) if "help" in f.metadata]


@dataclass(frozen=True)
class NoOptions:
    """A recipe without options of its own."""


@dataclass(frozen=True)
class StepOptions:
    """What the precision step shares across recipes: data, guard, latency, progress."""

    calibration_samples: int | None = option(
        None, f"MNRE training sentences used for calibration (default: {SMALL[0]} for a small model such as the "
              f"tiny preset, {LARGE[0]} for a large one such as base)", metavar="N", type=int)
    images: Path | None = option(None, "post images (named by img_id) for calibration and the guard; without it "
                                       "scikit-image's sample photographs stand in (random crops and flips)",
                                 metavar="DIR", type=Path)
    crops: Path | None = option(None, "object crops (X-0.jpg ... of image X.jpg)", metavar="DIR", type=Path)
    no_photos: bool = option(False, "without --images, leave every image slot absent instead of using "
                                    "scikit-image's sample photographs (then the image encoder stays fp32 in "
                                    "static INT8)")
    data: Path = option(DEFAULT_DATA, "folder with mnre_train.txt (calibration) and mnre_val.txt (guard)",
                        metavar="DIR", type=Path)
    target_agreement: float = option(0.99, "top-1 agreement with fp32 a graph must reach")
    guard_samples: int | None = option(
        None, f"MNRE validation sentences for the guard, 0 = all 1,624 (default: all for a small model, "
              f"{LARGE[1]} large: every sentence runs the ResNet on 4 image slots); each serving condition "
              f"(text-only; with images) runs them, split into a tune half (the fp32-node search) and a "
              f"confirm half (acceptance)", metavar="N", type=int)
    guard_budget: int | None = option(
        None, f"re-quantization rounds the guard may spend, round r keeping 2**(r-1) more kinds (or nodes) fp32 "
              f"(default: {SMALL[2]} small model, {LARGE[2]} large)", metavar="K", type=int)
    guard_by: str = option("kind", "what a search round keeps in fp32: whole kinds of node (every layer's "
                                   "instance of one module role, e.g. text.encoder.layer.*.output.dense) or "
                                   "single nodes", choices=("kind", "node"))
    guard_order: str = option("sensitivity", "the order in which the search keeps units in fp32: most sensitive "
                                             "first, or most quantization noise removed per weight element first "
                                             "(measured worse on the MiniLM checkpoint: docs/precision.md)",
                              choices=("sensitivity", "gain-per-cost"))
    no_speed_stop: bool = option(False, "search on even once the INT8 graph is no faster than fp32 (by default "
                                        "the search stops there: keeping more in fp32 cannot make it faster)")
    latency_samples: int | None = option(
        None, f"sentences per batch-1 latency figure (default: {SMALL[3]} small model, {LARGE[3]} large)",
        metavar="N", type=int)
    allow_batch_dependent: bool = option(
        False, "let defaults.auto choose a graph whose answers depend on the batch (dynamic INT8: its activation "
               "scale is computed over the batch); without it such a graph is marked and passed over")
    seed: int = option(0, "seed of the sentence draws")
    quiet: bool = option(False, "no progress bars or step lines")
    f1_tolerance: float = F1_TOLERANCE  # not on the command line: |F1 delta| a graph meeting the guard keeps

    def check(self) -> None:
        """Usage errors (UsageError) before anything is loaded."""
        if not 0 < self.target_agreement <= 1:
            raise UsageError(f"--target-agreement {self.target_agreement}: must be in (0, 1]")
        for name, least in (("calibration_samples", 1), ("latency_samples", 1), ("guard_budget", 0),
                            ("guard_samples", 0)):
            if getattr(self, name) is not None and getattr(self, name) < least:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: too small")
        if self.guard_samples == 1:  # a tune part and a confirm part need a sentence each
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: too small")
        for name in ("mnre_train.txt", "mnre_val.txt"):
            if not (self.data / name).is_file():
                raise UsageError(f"--data {self.data}: {name} not found (set --data or DFMA_MNRE_DIR)")

    def sized(self, graph_bytes: int) -> StepOptions:
        """These options with the size-dependent defaults filled in for a portable graph of ``graph_bytes``."""
        defaults = LARGE if graph_bytes > LARGE_BYTES else SMALL
        names = ("calibration_samples", "guard_samples", "guard_budget", "latency_samples")
        return dataclasses.replace(self, **{n: d for n, d in zip(names, defaults) if getattr(self, n) is None})
