"""The recipe interface of the precision step: one recipe builds one graph of the catalogue.

A recipe is keyed by its catalogue row (the row whose ``recipe`` column names it; ``derived_from`` there
says which graph it builds from) and declares:

- ``options``: a frozen dataclass of its own options, each field an ``option(...)`` with its command-line
  flag (:func:`dfma.export.precision.options.option`); ``switch``: the command-line selector that asks for
  it (``("--fp16", None)``: a switch; ``("--int8", "static")``: one value of a choice); ``follows``: the
  recipe whose outcome it reuses (a variant: built whenever that one is, after it); ``opt_in``: built only
  when its selector is given (an optional dependency, a long build), not by a run without selectors;
- :meth:`Recipe.build`: writes the graph and says what to record (:class:`Built`);
- how it is guarded: by default the graph runs the guard set on ONNX Runtime CPU against fp32
  (:meth:`Recipe.guard`); a recipe that searches (INT8) returns the guard row of its chosen round;
  ``vs_whole_atol``: its stage graphs's bound against the whole graph;
- what it records: the manifest ``graphs`` entry and ``parity`` record (:meth:`Recipe.record`), its search,
  its companion files; ``timed``: whether ``precision="auto"`` may choose it on the CPU (its batch-1 latency
  is measured against fp32's).

:meth:`Recipe.run` is the template the step calls: build, guard, record.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from dfma.contract.graphs import GraphKind, of_recipe
from dfma.export.precision.options import NoOptions

ORT_EXECUTOR = "onnxruntime"


@dataclass(frozen=True)
class Built:
    """What :meth:`Recipe.build` made: the entry fields to record and, where the build guarded the graph
    itself (a search), its guard row."""

    fields: Mapping = field(default_factory=dict)  # more manifest ``graphs`` entry fields (producer, quantization)
    guard: Mapping | None = None  # the guard row when the build measured it
    search: Mapping | None = None  # the search record (met, stopped, rounds, chosen_round)
    executor: str = ORT_EXECUTOR  # what ran the guard: onnxruntime or reference
    parity: Mapping = field(default_factory=dict)  # more parity fields (random shapes, TensorRT emulation)
    passed: bool | None = None  # the parity verdict when the recipe decides more than agreement
    files: Mapping[str, Path] = field(default_factory=dict)  # companion files: bundle name -> work path
    state: object = None  # what a recipe that follows this one reuses


@dataclass(frozen=True)
class Outcome:
    """A recipe's result: its graph file, guard row and manifest records."""

    key: str
    path: Path
    guard: Mapping
    entry: Mapping
    parity: Mapping
    search: Mapping | None
    executor: str
    files: Mapping[str, Path]
    state: object
    vs_whole_atol: float
    timed: bool


class Recipe:
    """One catalogue row's builder (module doc). Subclasses set ``name`` and implement :meth:`build`."""

    name: ClassVar[str]  # what the catalogue row's ``recipe`` column says
    options: ClassVar[type] = NoOptions
    switch: ClassVar[tuple[str, str | None] | None] = None
    switch_help: ClassVar[str] = ""
    follows: ClassVar[str | None] = None
    timed: ClassVar[bool] = False
    vs_whole_atol: ClassVar[float] = 1e-2

    @property
    def row(self) -> GraphKind:
        """The catalogue row this recipe builds."""
        return of_recipe(self.name)

    @property
    def key(self) -> str:
        """The catalogue key of the graph it builds."""
        return self.row.key

    @property
    def opt_in(self) -> bool:
        """Built only when its selector is given, not by a run without selectors (the row's ``opt_in``)."""
        return self.row.opt_in

    @property
    def source(self) -> str | None:
        """The catalogue key of the graph it builds from (the row's ``derived_from``)."""
        return self.row.derived_from

    def build(self, ctx, out: Path, parent: Outcome | None) -> Built:
        """Write the graph to ``out`` (``parent``: the outcome of the recipe this one follows)."""
        raise NotImplementedError

    def guard(self, ctx, out: Path, built: Built) -> Mapping:
        """The guard row: the graph on the guard set against fp32 (ONNX Runtime CPU)."""
        return ctx.evaluate(out, self.key)

    def passed(self, ctx, guard: Mapping, built: Built) -> bool:
        """The parity verdict: the recipe's own where it gave one, else agreement >= the target."""
        return bool(built.passed) if built.passed is not None else ctx.meets(guard)

    def record(self, ctx, out: Path, built: Built, guard: Mapping) -> Outcome:
        """The manifest records of the graph: its ``graphs`` entry and its ``parity`` record."""
        import onnx

        from dfma.export.graph_entry import graph_entry

        entry = graph_entry(onnx.load(str(out)), self.key, guarded_here=True, **built.fields)
        parity = {**guard, "passed": self.passed(ctx, guard, built), "executor": built.executor,
                  "target_agreement": ctx.options.target_agreement,
                  "reference": f"fp32 {ctx.portable.name} on ONNX Runtime CPU (validated against eager: "
                               "parity.portable; the fused graph matches it within parity.ort)",
                  "inputs": f"MNRE validation sentences: {ctx.data.guard.source}", **built.parity}
        return Outcome(self.key, out, dict(guard), entry, parity, built.search, built.executor, dict(built.files),
                       built.state, self.vs_whole_atol, self.timed)

    def run(self, ctx, parent: Outcome | None = None) -> Outcome:
        """Build, guard, record (the template every recipe follows)."""
        out = ctx.work / self.row.file
        built = self.build(ctx, out, parent)
        guard = built.guard if built.guard is not None else self.guard(ctx, out, built)
        return self.record(ctx, out, built, guard)
