"""What every recipe of the precision step is given: a frozen :class:`PrecisionContext` (the bundle, the work
folder, the step's options and each recipe's, the lazily drawn data) and the guard helpers built on it.

The data are drawn on first use and kept (:class:`DataSources`): the guard feeds (MNRE validation
sentences), the calibration feeds (MNRE training sentences), the fp32 graph's guard-set logits (the
reference every graph is compared with). The manifest is read here and nowhere else in the step's library
but the step's merge (:mod:`dfma.export.precision.step`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dfma.contract.graphs import fp32_rows
from dfma.export.precision import accuracy_guard as guard
from dfma.export.precision.options import StepOptions

CPU_BACKEND = "onnxruntime-cpu"  # the registry's backend every graph is guarded on unless a recipe says otherwise


def log_line(options: StepOptions) -> Callable[[str], None]:
    """A progress printer on stderr (silent with ``quiet``)."""
    return (lambda line: None) if options.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


@dataclass(frozen=True)
class DataSources:
    """The step's data, drawn on first use: guard feeds, calibration feeds, fp32 reference logits."""

    bundle: object  # dfma.contract.bundle.Bundle
    options: StepOptions
    photos: bool  # scikit-image's photographs stand in for missing images

    def _feeds(self, name: str, n: int, batch_size: int):
        from dfma.export.precision.calibration import mnre_feeds

        o = self.options
        return mnre_feeds(self.bundle.folder, self.bundle.manifest, o.data / name, n, seed=o.seed,
                          batch_size=batch_size, images=o.images, photos=self.photos, crops=o.crops)

    @cached_property
    def guard(self):
        """The guard set: MNRE validation sentences (a FeedSet)."""
        return self._feeds("mnre_val.txt", self.options.guard_samples, 32)

    @cached_property
    def calibration(self):
        """MNRE training sentences (a FeedSet) for calibration and the sensitivity ranking."""
        return self._feeds("mnre_train.txt", self.options.calibration_samples, 8)

    @cached_property
    def fp32(self):
        """The portable fp32 graph's guard-set logits on ONNX Runtime CPU: the reference."""
        path = self.bundle.graph_path(fp32_rows()[0].key)
        return guard.run_feeds(open_runner(path), self.guard, desc=f"guard: fp32 {path.name}",
                               progress=not self.options.quiet)


def open_runner(path: Path, backend: str = CPU_BACKEND, **options):
    """An open runner of the backend registry on a graph file (ONNX Runtime CPU unless told otherwise)."""
    from dfma.backends.registry import backend as backend_row

    return backend_row(backend).build(path, **options).open()


@dataclass(frozen=True)
class PrecisionContext:
    """The precision step's inputs, immutable: what a recipe reads (it writes only into ``work``)."""

    bundle: object  # dfma.contract.bundle.Bundle (verified)
    work: Path
    options: StepOptions
    recipe_options: Mapping[type, object] = field(default_factory=dict)  # options class -> its instance
    data: DataSources | None = None
    steps: object = None  # dfma.progress.Steps

    @classmethod
    def open(cls, bundle: Path, work: Path, options: StepOptions, recipe_options: Sequence = (), *,
             steps: int = 0) -> PrecisionContext:
        """Open and verify ``bundle``, fill in the size-dependent defaults, prepare (not draw) the data."""
        from dfma.contract.bundle import open_bundle
        from dfma.export import photos
        from dfma.progress import Steps

        b = open_bundle(bundle)
        options = options.sized(b.graph_path(fp32_rows()[0].key).stat().st_size)
        use_photos = options.images is None and not options.no_photos and photos.available()
        if options.images is None and not use_photos:
            log_line(options)("no images and no photos (scikit-image not installed, or --no-photos): the image "
                              "encoder stays fp32 in static INT8 and the guard does not exercise it")
        return cls(b, Path(work), options, {type(o): o for o in recipe_options}, DataSources(b, options, use_photos),
                   Steps(steps, quiet=options.quiet))

    # ------------------------------------------------------------------ what recipes read
    @property
    def manifest(self) -> Mapping:
        """The bundle's manifest as it was read (the step merges into a fresh copy at the end)."""
        return self.bundle.manifest

    @property
    def portable(self) -> Path:
        """The export's first fp32 graph (standard ONNX ops): what most recipes build from."""
        return self.bundle.graph_path(fp32_rows()[0].key)

    @property
    def photos(self) -> bool:
        """Whether photographs stand in for missing images."""
        return self.data.photos

    @property
    def none_id(self) -> int:
        """The label id of ``None`` (no relation): F1 leaves it out."""
        return list(self.manifest.labels).index("None")

    def graph_path(self, key: str | None) -> Path:
        """A graph of the bundle by catalogue key, the portable graph where the bundle lacks it (or for None)."""
        return self.bundle.graph_path(key) if key in self.manifest.graphs else self.portable

    def options_of(self, options_class: type):
        """A recipe's options (its defaults unless given)."""
        return self.recipe_options.get(options_class) or options_class()

    def log(self, line: str) -> None:
        """A progress line on stderr (not with --quiet)."""
        log_line(self.options)(line)

    # ------------------------------------------------------------------ the guard
    def logits(self, runner, what: str):
        """Guard-set logits of an open runner."""
        return guard.run_feeds(runner, self.data.guard, desc=f"guard: {what}", progress=not self.options.quiet)

    def compare(self, logits) -> dict:
        """A guard row: ``logits`` against the fp32 reference and the gold labels."""
        from dfma.backends.compare import compare_with_labels

        return compare_with_labels(self.data.fp32, logits, self.data.guard.labels, self.none_id)

    def evaluate(self, path: Path, what: str, backend: str = CPU_BACKEND, **runner_options) -> dict:
        """Run a graph on the guard set and compare it with the fp32 graph."""
        return self.compare(self.logits(open_runner(path, backend, **runner_options), what))

    def meets(self, row: Mapping) -> bool:
        """Whether a guard row reaches the agreement target."""
        return bool(row["top1_agreement"] >= self.options.target_agreement)

    def search(self, evaluate: Callable[[list[str]], dict], rank: Callable[[], list[dict]], *,
               start: Sequence[str] = (), rebuild: Callable | None = None) -> dict:
        """The guard's fp32-node search (:func:`~dfma.export.precision.accuracy_guard.search`) with the step's
        target, budget, F1 tolerance and unit."""
        o = self.options
        return guard.search(evaluate, rank, target=o.target_agreement, budget=o.guard_budget, start=start,
                            rebuild=rebuild, log=self.log, f1_tolerance=o.f1_tolerance, by=o.guard_by)
