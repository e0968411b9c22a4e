"""Consistency of a manifest's preprocessing constants and limits with its graphs and model (contract section 4).

A manifest whose numbers disagree with each other would load and then fail inside ONNX Runtime (or
index past the position embeddings); :func:`check_consistency` refuses it at load instead, each refusal
a :class:`~dfma.contract.errors.BundleError` naming the file and the field (``field`` attribute: the dotted
path, e.g. ``preprocess.image_size``). The C++ runtime makes the same checks in the same order with the
same field names (runtime/cpp/src/manifest_checks.cpp). Checked:

- ``labels``: a non-empty list of distinct non-empty strings, ``"None"`` (no relation) among them;
- ``preprocess``: ``max_length`` an int in ``MIN_MAX_LENGTH..MAX_LENGTH``; ``image_size`` in
  ``1..MAX_IMAGE_SIZE``; ``resize_size`` in ``image_size..MAX_RESIZE_SIZE``; ``num_crops`` in
  ``0..MAX_CROPS``; ``mean`` / ``std`` three finite numbers (std > 0); ``max_image_pixels`` a positive int
  when present; ``lowercase`` a bool when present; ``special_tokens`` ``{token: str, id: int >= 0}``;
  ``tokenizer`` / ``vocab`` names of files the manifest lists;
- ``limits``: ``max_batch`` an int in ``1..MAX_BATCH``; ``max_length`` an int >= ``preprocess.max_length``;
- ``model.config`` (when it is there): ``max_position_embeddings`` >= ``limits.max_length``; its
  ``image_size``, ``resize_size``, ``num_crops``, ``num_labels`` (= number of labels) equal to the
  manifest's; special token ids below ``vocab_size``;
- ``io`` (when it has ``inputs``): exactly the contract's inputs and output (``dfma.contract.io_spec``)
  for these ``image_size``, ``1 + num_crops`` slots and labels: names, dtypes and every dimension, so
  that the runners' check of each loaded graph against ``io`` ties the graphs' own input shapes to the
  preprocessing constants.

- the optional sections the load path reads, by type: each ``graphs`` entry's ``ops`` (str),
  ``devices`` (list of str), ``cpu_classes`` (null or list of str); ``defaults.auto.<scope>``: an object
  with ``graph`` and ``precision`` (str), ``backend`` (str or null), ``reason`` (str), ``host`` (object),
  ``ranked`` (list of objects with a str ``precision``); ``golden``: an object whose ``file`` (str) the
  manifest lists, ``tolerance`` an object of numbers, ``expected`` graph key -> an object with numeric
  ``top1_agreement`` and ``max_abs_error`` (and an object ``host`` where there is one).
- ``stages`` (when it is there): ``features`` is ``image_features`` float32 ``[batch, 1 + num_crops, tokens,
  width]``; ``vision`` / ``text`` name the contract's stage inputs and outputs with ``io``'s dtypes and
  shapes; every ``graphs.<key>.stages.<stage>.file`` is a file the manifest lists.

Integers are JSON integers (``true`` and ``64.0`` are not).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from dfma.contract.errors import BundleError
from dfma.contract.graphs import STAGES
from dfma.contract.io_spec import BATCH, FEATURES_NAME, OUTPUT_NAME, STAGE_INPUTS, input_specs, output_specs

MIN_MAX_LENGTH = 4  # [CLS] + two pieces + [SEP] (dfma.contract.text.MIN_MAX_LENGTH)
MAX_LENGTH = 8192
MAX_IMAGE_SIZE = 2048
MAX_RESIZE_SIZE = 4096
MAX_CROPS = 64
MAX_BATCH = 4096  # the exporter's largest --max-batch
NONE_LABEL = "None"  # dfma.contract.labels.NONE_LABEL


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, message: str):
        raise BundleError(f"{self.where}: field {field!r} {message}", file=self.where, field=field)

    def integer(self, section: Mapping, name: str, field: str, lo: int, hi: int | None = None,
                optional: bool = False) -> int | None:
        if name not in section or (optional and section[name] is None):
            if optional:
                return None
            self.fail(field, "missing")
        v = section[name]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(field, f"must be an integer, got {_short(v)}")
        if v < lo or (hi is not None and v > hi):
            self.fail(field, f"is {v}, must be in {lo}..{hi}" if hi is not None else f"is {v}, must be >= {lo}")
        return v

    def numbers3(self, section: Mapping, name: str, field: str, positive: bool) -> None:
        v = section.get(name)
        ok = (isinstance(v, list) and len(v) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and _finite(x) and (x > 0 or not positive)
            for x in v))
        if not ok:
            self.fail(field, f"must be 3 finite numbers{' > 0' if positive else ''}, got {_short(v)}")

    def equal(self, field: str, have: Any, other: str, want: Any) -> None:
        if have != want:
            self.fail(field, f"is {_short(have)}, but {other} is {_short(want)}")


def _finite(x: float) -> bool:
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an int past the float range
        return False


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def check_labels(c: _Checker, labels: list) -> None:
    """Labels: non-empty, distinct, non-empty strings."""
    if not labels:
        c.fail("labels", "is empty")
    for i, name in enumerate(labels):
        if not isinstance(name, str) or not name:
            c.fail(f"labels[{i}]", f"must be a non-empty string, got {_short(name)}")
    if len(set(labels)) != len(labels):
        c.fail("labels", "repeats a name")
    if NONE_LABEL not in labels:
        c.fail("labels", f"has no {NONE_LABEL!r} (no relation) label")


def check_preprocess(c: _Checker, pre: Mapping, files: Mapping) -> dict[str, int]:
    """The ``preprocess`` section on its own; returns its integer constants."""
    out = {"max_length": c.integer(pre, "max_length", "preprocess.max_length", MIN_MAX_LENGTH, MAX_LENGTH),
           "image_size": c.integer(pre, "image_size", "preprocess.image_size", 1, MAX_IMAGE_SIZE)}
    out["resize_size"] = c.integer(pre, "resize_size", "preprocess.resize_size", out["image_size"], MAX_RESIZE_SIZE)
    out["num_crops"] = c.integer(pre, "num_crops", "preprocess.num_crops", 0, MAX_CROPS)
    c.numbers3(pre, "mean", "preprocess.mean", positive=False)
    c.numbers3(pre, "std", "preprocess.std", positive=True)
    c.integer(pre, "max_image_pixels", "preprocess.max_image_pixels", 1, optional=True)
    if "lowercase" in pre and not isinstance(pre["lowercase"], bool):
        c.fail("preprocess.lowercase", f"must be true or false, got {_short(pre['lowercase'])}")
    special = pre.get("special_tokens", {})
    if not isinstance(special, Mapping):
        c.fail("preprocess.special_tokens", f"must be an object, got {_short(special)}")
    for key, entry in special.items():
        field = f"preprocess.special_tokens.{key}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
            c.fail(field, f"must be {{token: str, id: int}}, got {_short(entry)}")
        c.integer(entry, "id", field + ".id", 0)
    for name in ("tokenizer", "vocab"):
        if name in pre and (not isinstance(pre[name], str) or pre[name] not in files):
            c.fail(f"preprocess.{name}", f"is {_short(pre[name])}, not a file the manifest lists")
    return out


def check_model_config(c: _Checker, cfg: Mapping, pre: dict[str, int], limits: dict[str, int],
                       labels: list, special: Mapping) -> None:
    """``model.config`` against the preprocessing constants and limits."""
    mpe = c.integer(cfg, "max_position_embeddings", "model.config.max_position_embeddings", 1, optional=True)
    if mpe is not None and limits["max_length"] > mpe:
        c.fail("limits.max_length", f"is {limits['max_length']}, past the model's position embeddings "
                                    f"(model.config.max_position_embeddings {mpe})")
    for name in ("image_size", "resize_size", "num_crops"):
        if cfg.get(name) is not None:
            c.equal(f"preprocess.{name}", pre[name], f"model.config.{name}", cfg[name])
    if cfg.get("num_labels") is not None and cfg["num_labels"] != len(labels):
        c.fail("labels", f"has {len(labels)} names, but model.config.num_labels is {_short(cfg['num_labels'])}")
    vocab = c.integer(cfg, "vocab_size", "model.config.vocab_size", 1, optional=True)
    if vocab is not None:
        for key, entry in special.items():
            if entry["id"] >= vocab:
                c.fail(f"preprocess.special_tokens.{key}.id", f"is {entry['id']}, past model.config.vocab_size {vocab}")


def check_io(c: _Checker, io: Mapping, pre: dict[str, int], labels: list) -> None:
    """``io`` must be the contract's tensors for these constants (every dimension, every dtype)."""
    cfg = SimpleNamespace(image_size=pre["image_size"], num_images=1 + pre["num_crops"], num_labels=len(labels))
    for section, specs in (("inputs", input_specs(cfg)), ("outputs", output_specs(cfg))):
        entries = io.get(section)
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            c.fail(f"io.{section}", f"must be a list of {{name, dtype, shape}}, got {_short(entries)}")
        wanted = [s.name for s in specs]
        if not all(isinstance(e.get("name"), str) for e in entries):
            c.fail(f"io.{section}", f"names are {[e.get('name') for e in entries]}, the contract's are {wanted}")
        by_name = {e["name"]: e for e in entries}
        if sorted(by_name) != sorted(wanted) or len(by_name) != len(entries):
            c.fail(f"io.{section}", f"names are {[e.get('name') for e in entries]}, the contract's are {wanted}")
        for spec in specs:
            entry, field = by_name[spec.name], f"io.{section}.{spec.name}"
            if entry.get("dtype") != spec.dtype:
                c.fail(field + ".dtype", f"is {_short(entry.get('dtype'))}, the contract's is {spec.dtype!r}")
            shape, want = entry.get("shape"), list(spec.shape)
            if shape != want or any(isinstance(d, bool) for d in shape):
                c.fail(field + ".shape", f"is {_short(shape)}, but the preprocess section (image_size "
                                         f"{pre['image_size']}, num_crops {pre['num_crops']}) and {len(labels)} "
                                         f"labels give {want}")


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)


def check_graph_entries(c: _Checker, graphs: Mapping) -> None:
    """The optional catalogue columns of each ``graphs`` entry, by type."""
    for key, entry in graphs.items():
        if "ops" in entry and not isinstance(entry["ops"], str):
            c.fail(f"graphs.{key}.ops", f"must be a string, got {_short(entry['ops'])}")
        if "devices" in entry and not _strings(entry["devices"]):
            c.fail(f"graphs.{key}.devices", f"must be a list of strings, got {_short(entry['devices'])}")
        if entry.get("cpu_classes") is not None and not _strings(entry["cpu_classes"]):
            c.fail(f"graphs.{key}.cpu_classes", f"must be null or a list of strings, got {_short(entry['cpu_classes'])}")


def check_stages(c: _Checker, manifest: Mapping, pre: dict[str, int]) -> None:
    """The two-stage section: ``stages.features`` is ``image_features`` float32 (batch, 1 + num_crops, tokens,
    width); each stage's ``io`` names the contract's tensors (``io`` and the features, same dtypes and shapes);
    each graph's ``stages`` files are strings the manifest lists."""
    stages = manifest.get("stages")
    if stages is None:
        return
    if not isinstance(stages, Mapping):
        c.fail("stages", f"must be an object, got {_short(stages)}")
    feat = stages.get("features")
    if not isinstance(feat, Mapping):
        c.fail("stages.features", f"must be an object, got {_short(feat)}")
    shape = feat.get("shape")
    if (feat.get("name") != FEATURES_NAME or feat.get("dtype") != "float32" or not isinstance(shape, list)
            or len(shape) != 4 or shape[0] != BATCH or shape[1] != 1 + pre["num_crops"]
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[2:])):
        c.fail("stages.features", f"must be {FEATURES_NAME!r} float32 [batch, {1 + pre['num_crops']}, tokens, width], "
                                  f"got {_short(feat)}")
    known = {e.get("name"): e for e in list(manifest["io"].get("inputs", [])) + list(manifest["io"].get("outputs", []))
             if isinstance(e, Mapping)} | {FEATURES_NAME: feat}
    for stage in STAGES:
        io = stages.get(stage)
        if not isinstance(io, Mapping):
            c.fail(f"stages.{stage}", f"must be an object of inputs and outputs, got {_short(io)}")
        want = {"inputs": list(STAGE_INPUTS[stage]), "outputs": [FEATURES_NAME if stage == "vision" else OUTPUT_NAME]}
        for section, names in want.items():
            entries = io.get(section)
            got = [e.get("name") for e in entries] if isinstance(entries, list) and all(
                isinstance(e, Mapping) for e in entries) else None
            if got != names:
                c.fail(f"stages.{stage}.{section}", f"names are {_short(got if got is not None else entries)}, "
                                                   f"the contract's are {names}")
            for e in entries:
                ref = known.get(e["name"])
                if ref is not None and (e.get("dtype") != ref.get("dtype") or e.get("shape") != ref.get("shape")):
                    c.fail(f"stages.{stage}.{section}.{e['name']}", f"is {_short(e)}, but io / stages.features say "
                                                                    f"{_short(ref)}")
    for key, entry in manifest["graphs"].items():
        staged = entry.get("stages") if isinstance(entry, Mapping) else None
        if staged is None:
            continue
        if not isinstance(staged, Mapping):
            c.fail(f"graphs.{key}.stages", f"must be an object, got {_short(staged)}")
        for stage in STAGES:
            rel = (staged.get(stage) or {}).get("file") if isinstance(staged.get(stage), Mapping) else None
            if not isinstance(rel, str) or rel not in manifest["files"]:
                c.fail(f"graphs.{key}.stages.{stage}.file", f"is {_short(rel)}, not a file the manifest lists")


def check_defaults(c: _Checker, defaults: Any) -> None:
    """``defaults.auto``: scope -> the recorded choice (what ``precision="auto"`` reads)."""
    if not isinstance(defaults, Mapping):
        c.fail("defaults", f"must be an object, got {_short(defaults)}")
    auto = defaults.get("auto", {})
    if not isinstance(auto, Mapping):
        c.fail("defaults.auto", f"must be an object, got {_short(auto)}")
    for scope, rec in auto.items():
        field = f"defaults.auto.{scope}"
        if not isinstance(rec, Mapping):
            c.fail(field, f"must be an object, got {_short(rec)}")
        for name in ("graph", "precision"):
            if not isinstance(rec.get(name), str):
                c.fail(f"{field}.{name}", f"must be a string, got {_short(rec.get(name))}")
        for name, ok in (("backend", lambda v: v is None or isinstance(v, str)), ("reason", lambda v: isinstance(v, str)),
                         ("host", lambda v: isinstance(v, Mapping)), ("ranked", lambda v: isinstance(v, list))):
            if name in rec and not ok(rec[name]):
                c.fail(f"{field}.{name}", f"has the wrong type: {_short(rec[name])}")
        for i, entry in enumerate(rec.get("ranked", [])):
            if not (isinstance(entry, Mapping) and isinstance(entry.get("precision"), str)
                    and (entry.get("backend") is None or isinstance(entry.get("backend"), str))
                    and (entry.get("graph") is None or isinstance(entry.get("graph"), str))):
                c.fail(f"{field}.ranked[{i}]", f"must be {{precision: str, backend, graph}}, got {_short(entry)}")


def check_golden(c: _Checker, golden: Any, files: Mapping) -> None:
    """The ``golden`` section (what ``verify`` and ``auto``'s self-check read)."""
    if not isinstance(golden, Mapping):
        c.fail("golden", f"must be an object, got {_short(golden)}")
    rel = golden.get("file", "golden.safetensors")
    if not isinstance(rel, str) or rel not in files:
        c.fail("golden.file", f"is {_short(rel)}, not a file the manifest lists")
    tolerance = golden.get("tolerance", {})
    if not isinstance(tolerance, Mapping) or not all(_number(v) for v in tolerance.values()):
        c.fail("golden.tolerance", f"must be an object of numbers, got {_short(tolerance)}")
    expected = golden.get("expected", {})
    if not isinstance(expected, Mapping):
        c.fail("golden.expected", f"must be an object, got {_short(expected)}")
    for key, entry in expected.items():
        field = f"golden.expected.{key}"
        if not (isinstance(entry, Mapping) and _number(entry.get("top1_agreement"))
                and _number(entry.get("max_abs_error"))):
            c.fail(field, f"needs numeric top1_agreement and max_abs_error, got {_short(entry)}")
        if "host" in entry and not isinstance(entry["host"], Mapping):
            c.fail(field + ".host", f"must be an object, got {_short(entry['host'])}")


def check_consistency(manifest: Mapping, where: str) -> None:
    """Every check of the module doc, in order; BundleError naming ``where`` (the manifest path) and the field."""
    c = _Checker(where)
    check_labels(c, manifest["labels"])
    pre = check_preprocess(c, manifest["preprocess"], manifest["files"])
    limits_section = manifest["limits"]
    limits = {"max_batch": c.integer(limits_section, "max_batch", "limits.max_batch", 1, MAX_BATCH),
              "max_length": c.integer(limits_section, "max_length", "limits.max_length", 1, MAX_LENGTH)}
    if limits["max_length"] < pre["max_length"]:
        c.fail("preprocess.max_length", f"is {pre['max_length']}, past limits.max_length {limits['max_length']} "
                                        "(the longest row the graphs were traced and validated for)")
    cfg = manifest["model"].get("config")
    if isinstance(cfg, Mapping):
        check_model_config(c, cfg, pre, limits, manifest["labels"], manifest["preprocess"].get("special_tokens", {}))
    elif cfg is not None:
        c.fail("model.config", f"must be an object, got {_short(cfg)}")
    if "inputs" in manifest["io"] or "outputs" in manifest["io"]:
        check_io(c, manifest["io"], pre, manifest["labels"])
    check_graph_entries(c, manifest["graphs"])
    check_stages(c, manifest, pre)
    if "defaults" in manifest:
        check_defaults(c, manifest["defaults"])
    if "golden" in manifest:
        check_golden(c, manifest["golden"], manifest["files"])
