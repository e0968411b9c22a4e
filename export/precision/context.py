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
from dfma.config import special_token_ids
from dfma.export.precision import accuracy_guard as guard
from dfma.export.precision import guard_sets as sets
from dfma.export.precision.options import StepOptions

CPU_BACKEND = "onnxruntime-cpu"  # the registry's backend every graph is guarded on unless a recipe says otherwise


def log_line(options: StepOptions) -> Callable[[str], None]:
    """A progress printer on stderr (silent with ``quiet``)."""
    return (lambda line: None) if options.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


@dataclass(frozen=True)
class DataSources:
    """The step's data, drawn on first use: guard feeds per serving condition and split, calibration feeds,
    fp32 reference logits (:mod:`~dfma.export.precision.guard_sets`)."""

    bundle: object  # dfma.contract.bundle.Bundle
    options: StepOptions
    photos: bool  # scikit-image's photographs stand in for missing images

    def _feeds(self, name: str, n: int, batch_size: int, *, text_only: bool = False):
        from dfma.export.precision.calibration import mnre_feeds

        o = self.options
        if text_only:
            return mnre_feeds(self.bundle.folder, self.bundle.manifest, o.data / name, n, seed=o.seed,
                              batch_size=batch_size)
        return mnre_feeds(self.bundle.folder, self.bundle.manifest, o.data / name, n, seed=o.seed,
                          batch_size=batch_size, images=o.images, photos=self.photos, crops=o.crops)

    @cached_property
    def conditions(self) -> dict:
        """condition -> every guard sentence of it (a FeedSet): ``with-images`` (from --images, or photos)
        where there are images, and always ``text-only`` (every image slot absent)."""
        out = {}
        if self.options.images is not None or self.photos:
            out[sets.WITH_IMAGES] = self._feeds("mnre_val.txt", self.options.guard_samples, 32)
        out[sets.TEXT_ONLY] = self._feeds("mnre_val.txt", self.options.guard_samples, 32, text_only=True)
        return out

    @cached_property
    def guard(self):
        """The first condition's guard sentences (a FeedSet): what the latency and batch-invariance
        measurements run on where one set is enough."""
        return next(iter(self.conditions.values()))

    @cached_property
    def parts(self) -> dict:
        """``(condition, part)`` -> FeedSet: each condition split into ``tune`` and ``confirm``."""
        pad = next((v for k, v in special_token_ids(self.bundle.manifest).items() if "pad" in k.lower()), 0)
        return {(c, part): fs for c, feeds in self.conditions.items()
                for part, fs in sets.split(feeds, self.options.seed, pad).items()}

    @property
    def source(self) -> dict:
        """What the guard ran on, for the manifest: per condition its sentences and its split."""
        return {"conditions": {c: {**fs.source, "split": {p: len(self.parts[(c, p)]) for p in sets.PARTS}}
                               for c, fs in self.conditions.items()},
                "split": "seeded permutation of each condition's sentences: the first half (rounded up) tunes "
                         "the fp32-node search, the rest confirms acceptance",
                **{k: v for k, v in self.guard.source.items() if k in ("file", "samples", "of", "seed")}}

    @cached_property
    def calibration(self):
        """MNRE training sentences (a FeedSet) for calibration and the sensitivity ranking."""
        return self._feeds("mnre_train.txt", self.options.calibration_samples, 8)

    @cached_property
    def fp32(self) -> dict:
        """``(condition, part)`` -> the portable fp32 graph's logits on ONNX Runtime CPU: the reference."""
        path = self.bundle.graph_path(fp32_rows()[0].key)
        runner = open_runner(path)
        return {key: guard.run_feeds(runner, fs, desc=f"guard: fp32 {path.name} {key[0]} {key[1]}",
                                     progress=not self.options.quiet) for key, fs in self.parts.items()}


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
        from dfma.contract.weight_store import graph_bytes
        from dfma.export import photos
        from dfma.progress import Steps

        b = open_bundle(bundle)
        options = options.sized(graph_bytes(b.graph_path(fp32_rows()[0].key)))  # with its weights in weights.bin
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
    def logits(self, runner, what: str, parts: Sequence[str] = sets.PARTS) -> dict:
        """``(condition, part)`` -> guard logits of an open runner, for each serving condition and each of
        ``parts`` (``tune``, ``confirm``)."""
        return {key: guard.run_feeds(runner, fs, desc=f"guard: {what} {key[0]} {key[1]}",
                                     progress=not self.options.quiet)
                for key, fs in self.data.parts.items() if key[1] in parts}

    def compare(self, logits: Mapping) -> dict:
        """A guard row from :meth:`logits`: per part and condition, the logits against the fp32 reference and
        the gold labels (:func:`~dfma.export.precision.accuracy_guard.condition_row`). The row's own fields
        are the ``confirm`` part's binding condition (its ``tune`` figures under ``tune``), or the ``tune``
        part's when only that ran (the search)."""
        from dfma.backends.compare import compare_with_labels

        by_part: dict = {}
        for (condition, part), values in logits.items():
            labels = self.data.parts[(condition, part)].labels
            by_part.setdefault(part, {})[condition] = {**compare_with_labels(
                self.data.fp32[(condition, part)], values, labels, self.none_id), "samples": int(labels.size)}
        rows = {part: guard.condition_row(by_part[part], part) for part in sets.PARTS if part in by_part}
        if sets.CONFIRM not in rows:
            return rows[sets.TUNE]
        return {**rows[sets.CONFIRM], **({sets.TUNE: rows[sets.TUNE]} if sets.TUNE in rows else {})}

    def evaluate(self, path: Path, what: str, backend: str = CPU_BACKEND, parts: Sequence[str] = sets.PARTS,
                 **runner_options) -> dict:
        """Run a graph on the guard sets (``parts``) and compare it with the fp32 graph (:meth:`compare`)."""
        return self.compare(self.logits(open_runner(path, backend, **runner_options), what, parts))

    def meets(self, row: Mapping) -> bool:
        """Whether a guard row reaches the agreement target in each serving condition."""
        return guard.meets_guard(row, self.options.target_agreement, None)

    def search(self, evaluate: Callable[[list[str]], dict], rank: Callable[[], list[dict]], *,
               confirm: Callable[[], dict], start: Sequence[str] = (), rebuild: Callable | None = None,
               order: Callable | None = None, stop: Callable | None = None) -> dict:
        """The guard's fp32-node search (:func:`~dfma.export.precision.accuracy_guard.search`) with the step's
        target, budget, F1 tolerance and unit, on the ``tune`` part (``evaluate(excluded)`` returns
        :meth:`evaluate` with ``parts=("tune",)``); then ``confirm()`` evaluates the chosen graph on both parts
        (its row becomes ``final``), and the target counts as met only if the ``confirm`` part meets it too.
        ``order`` / ``stop``: the search's speed side (:mod:`~dfma.export.precision.keep_cost`)."""
        o = self.options
        found = guard.search(evaluate, rank, target=o.target_agreement, budget=o.guard_budget, start=start,
                             rebuild=rebuild, log=self.log, f1_tolerance=o.f1_tolerance, by=o.guard_by,
                             order=order, stop=stop)
        final = confirm()
        confirmed = guard.meets_guard(final, o.target_agreement, o.f1_tolerance)
        self.log(f"guard confirm ({final.get('samples', '?')} held-out sentences per condition): agreement "
                 f"{final['top1_agreement']:.4f} ({final.get('condition')}), F1 delta {final['f1_delta_points']:+.2f}"
                 f" ({'met' if confirmed else 'not met'})")
        tail = ("; confirmed on the held-out part" if confirmed else
                f"; NOT confirmed on the held-out part (agreement {final['top1_agreement']:.4f} in "
                f"{final.get('condition')}, F1 delta {final['f1_delta_points']:+.2f})")
        return {**found, "final": final, "met": bool(found["met"] and confirmed), "tuned": found["met"],
                "confirmed": confirmed, "stopped": found["stopped"] + tail}
