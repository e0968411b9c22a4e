"""The typed view of a bundle manifest (contract section 4): frozen dataclasses, one per section.

The reader (:func:`dfma.contract.bundle.open_bundle`) parses ``manifest.json`` and checks it
(``dfma.contract.bundle.parse_manifest`` and ``dfma.contract.manifest_checks``) once, then types it with
:meth:`Manifest.from_json`; every reader uses the attributes of ``Bundle.manifest``::

    m = open_bundle(folder).manifest
    m.labels, m.preprocess.max_length, m.limits.max_batch, m.io.inputs[0].name
    m.graphs["ort"].file, m.graphs["ort"].stages.vision.file, m.present(), m.stage_files("ort")
    m.recorded_default("cpu"), m.resolve_precision("auto", "cpu"), m.engines(), m.golden.expected["ort"]

Writers build or change the typed objects (``dataclasses.replace``, :meth:`Section.with_fields`,
:meth:`Section.without`) and hand the :class:`Manifest` to ``dfma.contract.bundle_writer`` (``BundleWriter
.commit``, ``update_bundle(..., edit=...)``, ``write_manifest``), which serialises it with
:meth:`Manifest.to_json`, the one place the typed view becomes JSON.

The JSON on disk does not change: every section keeps the keys it does not type in ``extra`` and the
order of its keys, so that ``Manifest.from_json(d).to_json() == d`` key for key, in order (a
read-modify-write keeps what this reader does not know). :meth:`Manifest.from_json` itself checks nothing
(the reader did, and tests build partial manifests): a value of the wrong shape stays in ``extra`` and its
attribute keeps the default.

The C++ runtime reads the JSON (runtime/cpp/src/manifest*.cpp); nothing here changes it.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dfma.contract.errors import BundleError
from dfma.contract import graphs as catalogue
from dfma.contract.graphs import AUTO, STAGES, GraphKind
from dfma.contract.io_spec import TensorSpec

__all__ = ["Section", "FileEntry", "ModelInfo", "SpecialToken", "Preprocess", "Tensor", "IoSpec", "Limits",
           "StageFile", "GraphStages", "GraphEntry", "StagesIo", "AutoChoice", "AutoDefault", "Defaults",
           "GoldenExpected", "Golden", "PrecisionRecords", "Manifest", "as_io", "row_of", "is_engine"]


class _Unfit(Exception):
    """A value of another shape than its attribute's: kept as it is in ``extra``."""


@dataclass(frozen=True)
class Section:
    """Base of every typed section: ``extra`` holds the keys the section does not type (kept on write),
    ``read_keys`` the keys read, in their order (kept on write; a field read is written even when it equals
    its default, a field not read only when it differs from its default)."""

    extra: dict = field(default_factory=dict, kw_only=True, repr=False, compare=False)
    read_keys: tuple = field(default=(), kw_only=True, repr=False, compare=False)

    @classmethod
    def _typed_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if f.name not in ("extra", "read_keys")}

    @classmethod
    def _converters(cls) -> dict[str, Callable[[Any], Any]]:
        return {}

    @classmethod
    def from_json(cls, raw: Any):
        """Type a JSON object (its unknown keys go to ``extra``); no checks (module doc)."""
        if not isinstance(raw, Mapping):
            raise _Unfit(raw)
        typed, extra, conv = cls._typed_fields(), {}, cls._converters()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in typed:
                try:
                    values[key] = conv.get(key, _plain)(value)
                    continue
                except _Unfit:
                    pass
            extra[key] = value
        return cls(**values, extra=extra, read_keys=tuple(raw))

    def to_json(self) -> dict:
        """The JSON object of this section (the keys read first, in their order, then the new ones)."""
        typed, out = self._typed_fields(), {}
        read = self.read_keys
        order = list(read) + [k for k in typed if k not in read] + [k for k in self.extra if k not in read]
        for key in order:
            if key in out:
                continue
            if key in typed and (key not in self.extra or key not in read or _is_set(self, typed[key])):
                value = getattr(self, key)
                if key in read or not _is_default(value, typed[key]):
                    out[key] = _json(value)
            elif key in self.extra:
                out[key] = copy.deepcopy(self.extra[key])
        return out

    def with_fields(self, **changes: Any):
        """A copy with ``changes`` (typed fields or, for other names, ``extra`` entries)."""
        typed = self._typed_fields()
        extra = dict(self.extra)
        known = {}
        for k, v in changes.items():
            if k in typed:
                known[k] = v
                extra.pop(k, None)
            else:
                extra[k] = v
        return dataclasses.replace(self, **known, extra=extra)

    def without(self, *names: str):
        """A copy without the keys ``names`` (a typed field returns to its default and is not written)."""
        typed = self._typed_fields()
        defaults = {n: _default(typed[n]) for n in names if n in typed}
        return dataclasses.replace(self, **defaults, extra={k: v for k, v in self.extra.items() if k not in names},
                                   read_keys=tuple(k for k in self.read_keys if k not in names))


_NO_DEFAULT = object()


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _NO_DEFAULT


def _is_default(value: Any, f: dataclasses.Field) -> bool:
    d = _default(f)
    return d is not _NO_DEFAULT and value == d


def _is_set(section: Section, f: dataclasses.Field) -> bool:
    """A typed field whose raw value did not fit (kept in ``extra``) is written from ``extra`` unless changed."""
    return not _is_default(getattr(section, f.name), f)


def _json(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _plain(value: Any) -> Any:
    return value


def _dict(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise _Unfit(value)
    return dict(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unfit(value)
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unfit(value)
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _Unfit(value)
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Unfit(value)
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Unfit(value)
    return tuple(value)


def _opt_strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _strings(value)


def _numbers(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise _Unfit(value)
    return tuple(_number(v) for v in value)


def _list_of(cls: type[Section]) -> Callable[[Any], tuple]:
    def convert(value: Any) -> tuple:
        if not isinstance(value, list):
            raise _Unfit(value)
        return tuple(cls.from_json(v) for v in value)
    return convert


def _map_of(cls: type[Section]) -> Callable[[Any], dict]:
    def convert(value: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _Unfit(value)
        out = {}
        for k, v in value.items():
            out[k] = cls.from_json(v)  # one unfit entry keeps the whole map raw (in ``extra``)
        return out
    return convert


# --- sections --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileEntry(Section):
    """``files[rel]``: the sha256 and size of one listed file."""

    sha256: str = ""
    bytes: int = 0

    @classmethod
    def _converters(cls):
        return {"sha256": _str, "bytes": _int}


@dataclass(frozen=True)
class ModelInfo(Section):
    """``model``: the preset, where the weights came from and the model config (``DFMAConfig`` fields, as
    ``dict``: ``DFMAConfig.from_dict(m.model.config)``; None when the manifest has none)."""

    preset: str | None = None
    source: str | None = None
    config: dict | None = None
    checkpoint: str | None = None
    seed: int | None = None

    @classmethod
    def _converters(cls):
        return {"preset": _opt_str, "source": _opt_str, "config": _dict, "checkpoint": _opt_str, "seed": _int}


@dataclass(frozen=True)
class SpecialToken(Section):
    """``preprocess.special_tokens[name]``: the token text and its id."""

    token: str = ""
    id: int = 0

    @classmethod
    def _converters(cls):
        return {"token": _str, "id": _int}


@dataclass(frozen=True)
class Preprocess(Section):
    """``preprocess``: text and image constants (``Preprocessor.from_manifest`` takes this section)."""

    max_length: int = 0
    image_size: int = 0
    resize_size: int = 0
    num_crops: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    max_image_pixels: int | None = None
    lowercase: bool | None = None
    special_tokens: dict[str, SpecialToken] = field(default_factory=dict)
    tokenizer: str | None = None
    vocab: str | None = None

    @classmethod
    def _converters(cls):
        return {"max_length": _int, "image_size": _int, "resize_size": _int, "num_crops": _int, "mean": _numbers,
                "std": _numbers, "max_image_pixels": _int, "lowercase": _bool,
                "special_tokens": _map_of(SpecialToken), "tokenizer": _str, "vocab": _str}

    @property
    def num_images(self) -> int:
        """Image slots per row: the post's image and ``num_crops`` crops."""
        return 1 + self.num_crops

    @property
    def tokenizer_file(self) -> str:
        """The tokenizer's bundle file (``tokenizer.json`` unless the manifest names another)."""
        return self.tokenizer or "tokenizer.json"

    @property
    def vocab_file(self) -> str:
        """The word-piece vocabulary's bundle file (``vocab.txt`` unless the manifest names another)."""
        return self.vocab or "vocab.txt"

    def special_ids(self) -> dict[str, int]:
        """``name -> id`` of the recorded special tokens."""
        return {k: v.id for k, v in self.special_tokens.items()}


@dataclass(frozen=True)
class Tensor(Section):
    """One ``io`` / ``stages`` tensor: name, dtype, shape (``batch`` / ``sequence`` or sizes), doc."""

    name: str = ""
    dtype: str = ""
    shape: tuple[str | int, ...] = ()
    doc: str | None = None

    @classmethod
    def _converters(cls):
        def shape(v):
            if not isinstance(v, list):
                raise _Unfit(v)
            return tuple(v)
        return {"name": _str, "dtype": _str, "shape": shape}

    @classmethod
    def of(cls, spec: TensorSpec) -> Tensor:
        """The manifest entry of a contract :class:`~dfma.contract.io_spec.TensorSpec`."""
        return cls.from_json(spec.to_manifest())

    def as_spec(self) -> TensorSpec:
        """This entry as a :class:`~dfma.contract.io_spec.TensorSpec`."""
        return TensorSpec(self.name, self.dtype, tuple(self.shape), self.doc or "")


@dataclass(frozen=True)
class IoSpec(Section):
    """``io`` (and each ``stages.vision`` / ``stages.text``): the graph's inputs and outputs."""

    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()

    @classmethod
    def _converters(cls):
        return {"inputs": _list_of(Tensor), "outputs": _list_of(Tensor)}

    @classmethod
    def of(cls, specs_in: list[TensorSpec], specs_out: list[TensorSpec]) -> IoSpec:
        """The section of contract tensor specs."""
        return cls(inputs=tuple(map(Tensor.of, specs_in)), outputs=tuple(map(Tensor.of, specs_out)))

    def section(self, name: str) -> tuple[Tensor, ...]:
        """``inputs`` or ``outputs``."""
        return self.inputs if name == "inputs" else self.outputs

    def input(self, name: str) -> Tensor | None:
        """The input ``name``, None when not declared."""
        return next((t for t in self.inputs if t.name == name), None)

    @property
    def declared(self) -> bool:
        """Whether the section lists tensors (a toy bundle's ``io`` may be ``{}``)."""
        return "inputs" in self.read_keys or "outputs" in self.read_keys or bool(self.inputs or self.outputs)


def as_io(io: IoSpec | Mapping | None) -> IoSpec | None:
    """An :class:`IoSpec` of an ``io`` section given typed or as JSON (None stays None)."""
    if io is None or isinstance(io, IoSpec):
        return io
    return IoSpec.from_json(io)


@dataclass(frozen=True)
class Limits(Section):
    """``limits``: the largest batch and row length the graphs were traced and validated for."""

    max_batch: int = 0
    max_length: int = 0

    @classmethod
    def _converters(cls):
        return {"max_batch": _int, "max_length": _int}


@dataclass(frozen=True)
class StageFile(Section):
    """``graphs[key].stages.vision`` / ``.text``: the stage's file (and its node count)."""

    file: str = ""
    nodes: int | None = None

    @classmethod
    def _converters(cls):
        return {"file": _str, "nodes": _int}


@dataclass(frozen=True)
class GraphStages(Section):
    """``graphs[key].stages``: the two-stage pair cut from the whole graph, and its parity record."""

    vision: StageFile | None = None
    text: StageFile | None = None
    parity: dict | None = None

    @classmethod
    def _converters(cls):
        return {"vision": StageFile.from_json, "text": StageFile.from_json, "parity": _dict}

    def files(self) -> dict[str, str]:
        """``{stage: file}`` of the stages this entry names."""
        return {s: getattr(self, s).file for s in STAGES if getattr(self, s) is not None and getattr(self, s).file}


@dataclass(frozen=True)
class GraphEntry(Section):
    """``graphs[key]``: one graph (or TensorRT engine) of the bundle. Columns a bundle does not record
    are None; :meth:`row` fills them from the catalogue. Engines also record their build platform
    (``tensorrt_version``, ``gpu_name``, ``compute_capability``: ``dfma.backends.trt_runner``); the other
    recorded facts (``attention``, ``op_counts``, ``nodes``...) are in ``extra``."""

    file: str = ""
    precision: str | None = None
    kind: str | None = None
    ops: str | None = None
    devices: tuple[str, ...] | None = None
    cpu_classes: tuple[str, ...] | None = None
    derived_from: str | None = None
    stages: GraphStages | None = None
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: Any = None

    @classmethod
    def _converters(cls):
        return {"file": _str, "precision": _str, "kind": _str, "ops": _str, "devices": _strings,
                "cpu_classes": _opt_strings, "derived_from": _opt_str, "stages": GraphStages.from_json}

    @classmethod
    def of_row(cls, row: GraphKind) -> GraphEntry:
        """The entry a catalogue row starts (``GraphKind.manifest_fields``)."""
        return cls.from_json(row.manifest_fields())

    @property
    def is_engine(self) -> bool:
        """Whether this entry is a TensorRT engine."""
        return catalogue.is_engine_file(self.kind, self.file)

    def get(self, name: str, default: Any = None) -> Any:
        """A recorded fact by name: a typed field (when set) or an ``extra`` entry (``attention``, ``nodes``...)."""
        if name in self._typed_fields():
            value = getattr(self, name)
            return default if value is None else value
        return self.extra.get(name, default)

    def files(self) -> set[str]:
        """Every file this entry names: its graph and its stages' files."""
        return ({self.file} if self.file else set()) | (set(self.stages.files().values()) if self.stages else set())

    def row(self, key: str) -> GraphKind:
        """The catalogue row of this entry: the entry's own columns win (engines get a row from their
        entry); BundleError for a key that is neither a catalogue kind nor an engine."""
        return catalogue.row_of(key, self.to_json())


def is_engine(entry: GraphEntry | Mapping) -> bool:
    """Whether a ``graphs`` entry (typed or JSON) is a TensorRT engine."""
    return as_entry(entry).is_engine


def as_entry(entry: GraphEntry | Mapping) -> GraphEntry:
    """A :class:`GraphEntry` of an entry given typed or as JSON."""
    return entry if isinstance(entry, GraphEntry) else GraphEntry.from_json(entry)


def row_of(key: str, entry: GraphEntry | Mapping) -> GraphKind:
    """The catalogue row of a ``graphs`` entry (typed or JSON): :meth:`GraphEntry.row`."""
    return catalogue.row_of(key, entry.to_json() if isinstance(entry, GraphEntry) else entry)


@dataclass(frozen=True)
class StagesIo(Section):
    """``stages``: the boundary tensor between the two stages and each stage's inputs and outputs."""

    features: Tensor | None = None
    vision: IoSpec | None = None
    text: IoSpec | None = None

    @classmethod
    def _converters(cls):
        return {"features": Tensor.from_json, "vision": IoSpec.from_json, "text": IoSpec.from_json}

    def io(self, stage: str) -> IoSpec | None:
        """The inputs and outputs of ``stage`` (``vision`` / ``text``)."""
        return getattr(self, stage) if stage in STAGES else None

    @property
    def complete(self) -> bool:
        """Whether both stages' io are recorded."""
        return self.vision is not None and self.text is not None


@dataclass(frozen=True)
class AutoChoice(Section):
    """One entry of ``defaults.auto[scope].ranked``."""

    precision: str = ""
    backend: str | None = None
    graph: str | None = None

    @classmethod
    def _converters(cls):
        return {"precision": _str, "backend": _opt_str, "graph": _opt_str}


@dataclass(frozen=True)
class AutoDefault(Section):
    """``defaults.auto[scope]``: what ``precision="auto"`` serves on a device class or backend."""

    graph: str = ""
    precision: str = ""
    backend: str | None = None
    reason: str | None = None
    host: dict | None = None
    ranked: tuple[AutoChoice, ...] = ()

    @classmethod
    def _converters(cls):
        return {"graph": _str, "precision": _str, "backend": _opt_str, "reason": _str, "host": _dict,
                "ranked": _list_of(AutoChoice)}


@dataclass(frozen=True)
class Defaults(Section):
    """``defaults``: ``auto`` (scope -> :class:`AutoDefault`)."""

    auto: dict[str, AutoDefault] = field(default_factory=dict)

    @classmethod
    def _converters(cls):
        return {"auto": _map_of(AutoDefault)}


@dataclass(frozen=True)
class GoldenExpected(Section):
    """``golden.expected[key]``: a graph's agreement with the reference on the golden set where it was
    measured (``host``, a ``dfma.host`` record; ``backend``)."""

    top1_agreement: float = 0.0
    max_abs_error: float = 0.0
    host: dict | None = None
    backend: str | None = None

    @classmethod
    def _converters(cls):
        return {"top1_agreement": _number, "max_abs_error": _number, "host": _dict, "backend": _opt_str}

    @property
    def host_class(self) -> str | None:
        """The CPU class it was measured on (None when not recorded)."""
        return (self.host or {}).get("class")


@dataclass(frozen=True)
class Golden(Section):
    """``golden``: the golden set's file, its tolerance and each graph's recorded agreement."""

    file: str = "golden.safetensors"
    tolerance: dict = field(default_factory=dict)
    expected: dict[str, GoldenExpected] = field(default_factory=dict)

    @classmethod
    def _converters(cls):
        return {"file": _str, "tolerance": _dict, "expected": _map_of(GoldenExpected)}


@dataclass(frozen=True)
class PrecisionRecords(Section):
    """``precision``: what the precision step measured: ``guard`` (label -> its guard row: agreement and
    F1 against fp32, pass or not), ``latency`` (label -> ms and where), ``search`` (the INT8 recipes tried),
    ``f1_tolerance_points``. The rows are the precision step's (``export/to_precision.py``) and stay dicts."""

    guard: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    search: dict | None = None
    f1_tolerance_points: float | None = None

    @classmethod
    def _converters(cls):
        return {"guard": _dict, "latency": _dict, "search": _dict, "f1_tolerance_points": _number}


@dataclass(frozen=True)
class Manifest(Section):
    """The whole manifest (module doc). ``Bundle.manifest`` is one; :meth:`from_json` / :meth:`to_json`."""

    format: str = ""
    format_version: int = 0
    created: str = ""
    model: ModelInfo = field(default_factory=ModelInfo)
    labels: tuple[str, ...] = ()
    preprocess: Preprocess = field(default_factory=Preprocess)
    io: IoSpec = field(default_factory=IoSpec)
    limits: Limits = field(default_factory=Limits)
    opset: int | None = None
    graphs: dict[str, GraphEntry] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)
    stages: StagesIo | None = None
    defaults: Defaults | None = None
    golden: Golden | None = None
    precision: PrecisionRecords | None = None
    export: dict | None = None
    slimmed: dict | None = None

    @classmethod
    def _converters(cls):
        return {"format": _str, "format_version": _int, "created": _str, "model": ModelInfo.from_json,
                "labels": _strings, "preprocess": Preprocess.from_json, "io": IoSpec.from_json,
                "limits": Limits.from_json, "opset": _int, "graphs": _map_of(GraphEntry),
                "files": _map_of(FileEntry), "tools": _dict, "parity": _dict, "stages": StagesIo.from_json,
                "defaults": Defaults.from_json, "golden": Golden.from_json, "precision": PrecisionRecords.from_json,
                "export": _dict, "slimmed": _dict}

    @classmethod
    def from_json(cls, raw: Manifest | Mapping) -> Manifest:
        """Type a manifest's JSON (checked by the reader, or partial in tests); no checks of its own."""
        if isinstance(raw, Manifest):
            return raw
        try:
            return super().from_json(raw)
        except _Unfit:
            raise BundleError(f"manifest.json: expected a JSON object, got {type(raw).__name__}") from None

    # --- what the readers derive -------------------------------------------------------------------

    def graph(self, key: str) -> GraphEntry:
        """The ``graphs`` entry ``key``; BundleError listing the keys."""
        if key not in self.graphs:
            raise BundleError(f"manifest.json: no graph {key!r}; it has {sorted(self.graphs)}", field=f"graphs.{key}")
        return self.graphs[key]

    def present(self) -> dict[str, GraphKind]:
        """``key -> row`` of every graph whose file the manifest lists (and so hashes)."""
        return {key: entry.row(key) for key, entry in self.graphs.items() if entry.file in self.files}

    def engines(self) -> dict[str, GraphEntry]:
        """``key -> entry`` of every TensorRT engine."""
        return {k: g for k, g in self.graphs.items() if g.is_engine}

    def stage_files(self, key: str) -> dict[str, str] | None:
        """``{stage: file}`` of graph ``key``'s two-stage pair when the manifest lists both files, else None."""
        entry = self.graphs.get(key)
        if entry is None or entry.stages is None:
            return None
        out = entry.stages.files()
        return out if len(out) == len(STAGES) and all(f in self.files for f in out.values()) else None

    def batch_dependent(self, key: str) -> bool:
        """Whether the precision step marked graph ``key`` batch-dependent (``graphs.<key>.batch_dependent``: its
        answers change with the other requests in its batch, e.g. dynamic INT8's per-batch activation scale)."""
        entry = self.graphs.get(key)
        return entry is not None and entry.get("batch_dependent") is True

    def keys_of_file(self, file: str) -> list[str]:
        """The ``graphs`` keys whose entry's file is ``file``."""
        return [k for k, g in self.graphs.items() if g.file == file]

    def recorded_default(self, scope: str | None) -> AutoDefault | None:
        """``defaults.auto[scope]`` (a device class ``cpu`` / ``gpu``, or a backend name) when its graph is in
        the bundle, else None."""
        rec = self.defaults.auto.get(scope) if self.defaults is not None and scope else None
        return rec if rec is not None and rec.graph in self.present() else None

    def resolve_precision(self, precision: str, device: str, backend: str | None = None) -> tuple[str, str]:
        """``(precision, reason)`` for a requested precision: ``auto`` is the recorded default for that
        backend (what the precision step measured fastest on it), else for the device class, else fp32."""
        if precision != AUTO:
            return precision, "asked for"
        rec = (self.recorded_default(backend) if backend else None) or self.recorded_default(device)
        if rec is None:
            return "fp32", f"auto: the bundle records no {device} default (run export/to_precision.py); fp32"
        return rec.precision, f"auto: {rec.reason or 'the bundle default'}"

    @property
    def served_cpu_classes(self) -> tuple[str, ...] | None:
        """The CPU classes a slimmed bundle serves (``slimmed.cpu_classes``, written by
        ``export/slim_bundle.py``); None for a bundle that was not slimmed or does not record them."""
        classes = (self.slimmed or {}).get("cpu_classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            return None
        return tuple(classes)

    def check_serves(self, cpu_class: str) -> None:
        """BundleError (one line, field ``slimmed.cpu_classes``) when the bundle was slimmed for CPU classes
        that do not include ``cpu_class``."""
        classes = self.served_cpu_classes
        if classes is not None and cpu_class not in classes:
            target = (self.slimmed or {}).get("for")
            raise BundleError(f"manifest.json: this bundle was slimmed --for {target} and serves the CPU classes "
                              f"{list(classes)}, not this {cpu_class} host; use a bundle slimmed --for cpu (every "
                              f"x86 class) or the full bundle, or ask for a precision by name",
                              field="slimmed.cpu_classes")

    def golden_expected(self, key: str) -> GoldenExpected | None:
        """``golden.expected[key]`` (None when not recorded)."""
        return self.golden.expected.get(key) if self.golden is not None else None

    def guard_row(self, label: str) -> dict:
        """``precision.guard[label]`` (``{}`` when not recorded)."""
        return dict(self.precision.guard.get(label) or {}) if self.precision is not None else {}

    @property
    def total_bytes(self) -> int:
        """Sum of the listed files' sizes."""
        return sum(f.bytes for f in self.files.values())

    def file_digest(self, rel: str) -> str | None:
        """The recorded sha256 of a listed file (None when not listed)."""
        entry = self.files.get(rel)
        return entry.sha256 if entry is not None else None

    def with_graph(self, key: str, entry: GraphEntry | None) -> Manifest:
        """A copy with ``graphs[key]`` set (None: removed, with its ``parity`` record)."""
        graphs = dict(self.graphs)
        parity = dict(self.parity)
        if entry is None:
            graphs.pop(key, None)
            parity.pop(key, None)
        else:
            graphs[key] = entry
        return dataclasses.replace(self, graphs=graphs, parity=parity)
