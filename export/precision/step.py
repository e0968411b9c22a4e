"""The precision step: run the chosen recipes on a bundle, cut and guard each new graph's stage graphs,
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

LATENCY_NOTE = ("batch 1 on the host recorded with each row, through what load() serves (the stage graphs where "
                "the graph has one); see docs/precision.md")
BATCH_NOTE = ("every guard sentence alone vs inside batches of 8 and 32; batch_dependent when a top-1 label changes "
              "or a logit moves beyond logit_bound (max(1e-3, 100 x fp32's own)); see docs/precision.md")


def count_steps(manifest_keys: set, recipes: Sequence) -> int:
    """How many progress steps :func:`run` announces."""
    return (len(recipes) + 1 + int(any(r.timed for r in recipes)) + int("golden" in manifest_keys)
            + int("stages" in manifest_keys))


def build(ctx: PrecisionContext, recipes: Sequence) -> dict:
    """Run each recipe (after the one it follows) and cut its stage graphs; key -> Outcome."""
    import dataclasses

    from dfma.export.precision.stages import cut_stage_graphs

    outcomes, by_name = {}, {}
    for recipe in recipes:
        with ctx.steps.step(f"{recipe.key} graph"):
            outcome = recipe.run(ctx, by_name.get(recipe.follows))
        outcomes[recipe.key] = by_name[recipe.name] = outcome
    if ctx.manifest.stages is not None:
        with ctx.steps.step(f"stage graphs of {', '.join(outcomes)} (cut, guarded, checked against the whole)"):
            for key, outcome in outcomes.items():
                cut = cut_stage_graphs(ctx, outcome)
                if cut is not None:
                    outcomes[key] = dataclasses.replace(outcome, entry={**outcome.entry, "stages": cut[0]},
                                                        files={**outcome.files, **cut[1]})
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


def batch_records(ctx: PrecisionContext, outcomes: Mapping) -> dict:
    """graph key -> batch-invariance record (:mod:`~dfma.export.precision.batch_invariance`) of the fp32
    graph auto times and of every graph built now (each on the backend its guard ran on), merged over the
    bundle's earlier records of graphs it still has."""
    from dfma.contract.graphs import fp32_rows
    from dfma.export.precision import batch_invariance
    from dfma.export.precision.context import CPU_BACKEND

    graphs = ctx.manifest.graphs
    fp32_key = next(r.key for r in reversed(fp32_rows()) if r.key in graphs)
    todo = {fp32_key: (CPU_BACKEND, ctx.bundle.graph_path(fp32_key))}
    for key, o in outcomes.items():
        todo[key] = ("onnx-reference" if o.executor == "reference" else CPU_BACKEND, o.path)
    with ctx.steps.step(f"batch invariance of {', '.join(todo)} (alone vs batches of 8 and 32)"):
        measured = batch_invariance.measure(ctx, todo)
    previous = ctx.manifest.precision.extra.get("batch_invariance") or {} if ctx.manifest.precision else {}
    return {**{k: v for k, v in previous.items() if k in graphs and k not in measured}, **measured}


def choose(ctx: PrecisionContext, outcomes: Mapping, batch: Mapping | None = None) -> tuple[dict, dict, dict]:
    """``(guard rows, latency, defaults.auto)``: this run's guard rows merged over the bundle's earlier ones
    (of graphs it still has), the latency table (measured when a timed recipe ran, else the bundle's), and
    what ``auto`` serves (:func:`~dfma.export.precision.accuracy_guard.choose_auto`, passing over graphs
    ``batch`` marks batch-dependent unless allowed; {} without a new table)."""
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
    auto = guard.choose_auto(merged, measured, ctx.options.target_agreement, ctx.options.f1_tolerance,
                             batch=batch, allow_batch_dependent=ctx.options.allow_batch_dependent)
    return merged, measured or previous.latency, auto


def run(bundle: Path, options: StepOptions, recipes: Sequence, recipe_options: Sequence = ()) -> dict:
    """Build ``recipes`` into ``bundle`` and update it atomically; returns the new manifest. UsageError on
    bad options (before anything is loaded), DFMAError on any other failure (the bundle is unchanged)."""
    from dfma.contract.bundle import read_manifest
    from dfma.contract.bundle_writer import update_bundle
    from dfma.contract.stale_temps import temp_prefix
    from dfma.export.weight_store import pack_folder

    options.check()
    started = _dt.datetime.now(_dt.timezone.utc)
    bundle = Path(bundle).absolute()
    with tempfile.TemporaryDirectory(prefix=temp_prefix(bundle, "precision"), dir=bundle.parent) as tmp:
        ctx = PrecisionContext.open(bundle, Path(tmp), options, recipe_options,
                                    steps=count_steps(set(read_manifest(bundle)), recipes))
        outcomes = build(ctx, recipes)
        batch = batch_records(ctx, outcomes)
        merged, lat_all, auto = choose(ctx, outcomes, batch)
        expected = golden_expected(ctx, outcomes)
        files = {o.entry["file"]: o.path for o in outcomes.values()}
        for o in outcomes.values():
            files.update(o.files)

        def edit(manifest: Manifest) -> Manifest:
            section = manifest.precision or PrecisionRecords()
            section = section.with_fields(
                updated=started.replace(microsecond=0).isoformat(), guard=merged, guard_data=ctx.data.source,
                target_agreement=options.target_agreement, f1_tolerance_points=options.f1_tolerance,
                latency=lat_all, latency_note=LATENCY_NOTE, batch_invariance=batch, batch_invariance_note=BATCH_NOTE,
                search={**(section.search or {}), **{k: o.search for k, o in outcomes.items() if o.search is not None}})
            # the mark every runtime honours (auto passes over it unless allowed); fp32 entries untouched
            new_graphs = {k: GraphEntry.from_json({**o.entry, "batch_dependent": batch[k]["batch_dependent"]})
                          for k, o in outcomes.items()}
            changes: dict = {
                "graphs": {**manifest.graphs, **new_graphs},
                "parity": {**manifest.parity, **{k: o.parity for k, o in outcomes.items()}},
                "precision": section}
            if expected and manifest.golden is not None:
                changes["golden"] = manifest.golden.with_fields(expected={
                    **manifest.golden.expected, **{k: GoldenExpected.from_json(v) for k, v in expected.items()}})
            if auto:
                defaults = manifest.defaults or Defaults()
                changes["defaults"] = defaults.with_fields(auto={k: AutoDefault.from_json(v) for k, v in auto.items()})
            return dataclasses.replace(manifest, **changes)

        return update_bundle(bundle, files, edit=edit, prepare=pack_folder)  # new graphs' weights into weights.bin
