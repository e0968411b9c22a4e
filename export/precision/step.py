"""The precision step: run the chosen recipes on a bundle, cut and guard each new graph's two-stage pair,
time the candidates of ``precision="auto"`` and choose it, compute the golden expectations, and merge it
all into the bundle atomically (:func:`run`). ``export/to_precision.py`` is its command line."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from dfma.contract.manifest import AutoDefault, Defaults, GoldenExpected, GraphEntry, Manifest, PrecisionRecords
from dfma.export.precision.context import PrecisionContext
from dfma.export.precision.options import StepOptions

LATENCY_NOTE = "batch 1 on the host recorded with each row; see docs/precision.md"


def count_steps(manifest_keys: set, recipes: Sequence) -> int:
    """How many progress steps :func:`run` announces."""
    return len(recipes) + int(any(r.timed for r in recipes)) + int("golden" in manifest_keys) + int("stages" in manifest_keys)


def build(ctx: PrecisionContext, recipes: Sequence) -> dict:
    """Run each recipe (after the one it follows) and cut its two-stage pair; key -> Outcome."""
    import dataclasses

    from dfma.export.precision.stages import stage_pair

    outcomes, by_name = {}, {}
    for recipe in recipes:
        with ctx.steps.step(f"{recipe.key} graph"):
            outcome = recipe.run(ctx, by_name.get(recipe.follows))
        outcomes[recipe.key] = by_name[recipe.name] = outcome
    if ctx.manifest.stages is not None:
        with ctx.steps.step(f"two-stage pairs of {', '.join(outcomes)} (cut, guarded, checked against the whole)"):
            for key, outcome in outcomes.items():
                pair = stage_pair(ctx, outcome)
                if pair is not None:
                    outcomes[key] = dataclasses.replace(outcome, entry={**outcome.entry, "stages": pair[0]},
                                                        files={**outcome.files, **pair[1]})
    return outcomes


def golden_expected(ctx: PrecisionContext, outcomes: Mapping) -> dict:
    """Each new graph on the bundle's golden set on this host (``golden.expected``); {} without a golden set."""
    from dfma.contract.golden import GOLDEN_FILE
    from dfma.export.golden_set import expected_results

    golden = ctx.manifest.golden
    if golden is None:
        ctx.log("the bundle has no golden set: `verify` cannot check the new graphs")
        return {}
    view = dataclasses.replace(ctx.manifest, graphs={**ctx.manifest.graphs, **{
        k: GraphEntry.from_json(o.entry) for k, o in outcomes.items()}})
    paths = {key: o.path for key, o in outcomes.items()}
    with ctx.steps.step(f"golden set on {', '.join(paths)}"):
        return expected_results(ctx.bundle.path(golden.file or GOLDEN_FILE), view, paths)


def choose(ctx: PrecisionContext, outcomes: Mapping) -> tuple[dict, dict, dict]:
    """``(guard rows, latency, defaults.auto)``: this run's guard rows merged over the bundle's earlier ones
    (of graphs it still has), the latency table (measured when a timed recipe ran, else the bundle's), and
    what ``auto`` serves (:func:`~dfma.export.precision.accuracy_guard.choose_auto`; {} without a new table)."""
    from dfma.export.precision import accuracy_guard as guard
    from dfma.export.precision import latency

    results = {k: o.guard for k, o in outcomes.items()}
    measured = {}
    if any(o.timed for o in outcomes.values()):
        measured, rows = latency.measure(ctx, outcomes)
        results.update(rows)
    previous = ctx.manifest.precision or PrecisionRecords()
    merged = {**{k: v for k, v in previous.guard.items() if k in ctx.manifest.graphs and k not in results},
              **results}
    auto = guard.choose_auto(merged, measured, ctx.options.target_agreement, ctx.options.f1_tolerance)
    return merged, measured or previous.latency, auto


def run(bundle: Path, options: StepOptions, recipes: Sequence, recipe_options: Sequence = ()) -> dict:
    """Build ``recipes`` into ``bundle`` and update it atomically; returns the new manifest. UsageError on
    bad options (before anything is loaded), DFMAError on any other failure (the bundle is unchanged)."""
    from dfma.contract.bundle import read_manifest
    from dfma.contract.bundle_writer import update_bundle
    from dfma.contract.stale_temps import temp_prefix

    options.check()
    started = _dt.datetime.now(_dt.timezone.utc)
    bundle = Path(bundle).absolute()
    with tempfile.TemporaryDirectory(prefix=temp_prefix(bundle, "precision"), dir=bundle.parent) as tmp:
        ctx = PrecisionContext.open(bundle, Path(tmp), options, recipe_options,
                                    steps=count_steps(set(read_manifest(bundle)), recipes))
        outcomes = build(ctx, recipes)
        merged, lat_all, auto = choose(ctx, outcomes)
        expected = golden_expected(ctx, outcomes)
        files = {o.entry["file"]: o.path for o in outcomes.values()}
        for o in outcomes.values():
            files.update(o.files)

        def edit(manifest: Manifest) -> Manifest:
            section = manifest.precision or PrecisionRecords()
            section = section.with_fields(
                updated=started.replace(microsecond=0).isoformat(), guard=merged, guard_data=ctx.data.guard.source,
                target_agreement=options.target_agreement, f1_tolerance_points=options.f1_tolerance,
                latency=lat_all, latency_note=LATENCY_NOTE, search={**(section.search or {}), **{
                    k: o.search for k, o in outcomes.items() if o.search is not None}})
            changes: dict = {
                "graphs": {**manifest.graphs, **{k: GraphEntry.from_json(o.entry) for k, o in outcomes.items()}},
                "parity": {**manifest.parity, **{k: o.parity for k, o in outcomes.items()}},
                "precision": section}
            if expected and manifest.golden is not None:
                changes["golden"] = manifest.golden.with_fields(expected={
                    **manifest.golden.expected, **{k: GoldenExpected.from_json(v) for k, v in expected.items()}})
            if auto:
                defaults = manifest.defaults or Defaults()
                changes["defaults"] = defaults.with_fields(auto={k: AutoDefault.from_json(v) for k, v in auto.items()})
            return dataclasses.replace(manifest, **changes)

        return update_bundle(bundle, files, edit=edit)
