"""The benchmark's contenders: one per backend row of the registry x graph it runs, built from a bundle
(memory probes: benchmarks/memory.py).

Contenders (``keys``): eager PyTorch fp32, bf16 autocast (labelled *emulated* on CPUs without bf16
instructions, benchmarks/isa.py) and ``torch.compile`` (inductor, fp32, ``eager-compile``: its compile cost
is recorded, not timed, benchmarks/compiled.py); every CPU backend of
``dfma.backends.registry`` (ONNX Runtime CPU, OpenVINO) on every catalogue graph it runs that the bundle
holds (``ort-portable``, ``ort-fused``, ``ort-fp16``, ``ort-int8``, ``ort-int8-dynamic``, ``openvino-portable``,
``openvino-int8``, ...); TensorRT engines (``trt-<precision>``) when the bundle has them. A new backend
or a new precision appears here without an edit. Two modes:

- ``model``: the graph alone on prepared input arrays, through the backend's runner;
- ``e2e``: requests (words + spans + JPEG bytes) through preprocessing to predictions:
  ``dfma.runtime.load(...).predict_batch`` where ``load`` selects that graph, else the runtime's own
  ``Preprocessor`` and ``to_predictions`` around the runner (the same steps ``predict_batch`` takes).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfma.backends.registry import BACKENDS
from dfma.config import model_config  # noqa: F401  (the bundle's DFMAConfig; bk.model_config for the benchmarks)
from dfma.contract.graphs import CATALOGUE
from dfma.contract.manifest import GraphEntry, Manifest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

EAGER = "eager-fp32"
EAGER_KEYS = ("eager-fp32", "eager-bf16", "eager-compile")
COMPILE = "eager-compile"
GRAPH_NAMES = {"ort": "fused"}  # catalogue key -> contender suffix where the key alone would read badly
PREFIX = {"onnxruntime-cpu": "ort"}  # registry name -> contender prefix
MODES = ("model", "e2e")


def _contenders() -> dict[str, tuple[str, str]]:
    """contender key -> (registry backend, catalogue key), for every CPU backend x graph it runs."""
    out = {}
    for name, spec in BACKENDS.items():
        if not spec.bundles or spec.device != "cpu":
            continue
        try:
            cls = spec.runner_class()
        except Exception:  # noqa: BLE001  (an optional backend that is not installed: its rows say so later)
            cls = None
        for key, row in CATALOGUE.items():
            if cls is None or cls.runs(row, **spec.options):
                out[f"{PREFIX.get(name, name)}-{GRAPH_NAMES.get(key, key)}"] = (name, key)
    return out


GRAPHS = _contenders()
KEYS = EAGER_KEYS + tuple(GRAPHS)
LABELS = {"eager-fp32": "eager PyTorch fp32", "eager-bf16": "eager PyTorch bf16 autocast",
          COMPILE: "torch.compile (inductor) fp32",
          **{k: f"{BACKENDS[b].label or b} {CATALOGUE[g].precision}, {GRAPH_NAMES.get(g, g)} graph"
             for k, (b, g) in GRAPHS.items()}}


@dataclass
class Contender:
    """A loaded backend in one mode: ``run(workload) -> logits (batch, labels)``, with what the tables show."""

    key: str
    mode: str
    label: str
    family: str  # eager, or the registry backend's family (onnxruntime, tensorrt, openvino, ...)
    precision: str
    graph: str | None
    size_bytes: int
    load_seconds: float
    call: Callable
    closer: Callable | None = None
    info: dict = field(default_factory=dict)
    prepare: Callable | None = None  # (workload) -> dict: untimed first call of a cell (compiling), or None
    report: Callable | None = None  # () -> dict merged into the backend's JSON entry after each mode

    def run(self, workload):
        """One timed call's work."""
        return self.call(workload)

    def close(self) -> None:
        """Release the session or model."""
        if self.closer is not None:
            self.closer()
        self.call = None
        self.prepare = None

    def describe(self) -> dict:
        """JSON-ready description (no callables)."""
        return {"key": self.key, "mode": self.mode, "label": self.label, "family": self.family,
                "precision": self.precision, "graph": self.graph, "size_bytes": self.size_bytes,
                "load_seconds": round(self.load_seconds, 4), **self.info}


# ---------------------------------------------------------------------------- bundle helpers

def read_bundle(folder: Path) -> Manifest:
    """The typed manifest, through the contract's one opening path (``open_bundle``: digest, signature with
    ``DFMA_BUNDLE_KEY_FILE``, every listed file)."""
    from dfma.contract.bundle import open_bundle

    return open_bundle(folder).manifest


def trt_engines(manifest: Manifest) -> dict[str, GraphEntry]:
    """``{"trt-<precision>": graph entry}`` for every TensorRT engine the manifest lists."""
    return {f"trt-{e.precision or 'fp32'}": e for e in manifest.engines().values() if e.file in manifest.files}


def graph_file(key: str) -> str | None:
    """The bundle file a contender runs (None for eager)."""
    return CATALOGUE[GRAPHS[key][1]].file if key in GRAPHS else None


def bf16_label(host: Mapping | None = None) -> tuple[str, bool]:
    """The eager bf16 row's label on this host (or a :func:`dfma.host.host_info`-like dict), and
    whether its bf16 is emulated (no AVX512_BF16 or AMX: benchmarks/isa.py)."""
    from dfma.benchmarks.isa import bf16_emulated, bf16_note

    from dfma.host import host_info

    host = host_info() if host is None else host
    emulated = bf16_emulated(host)
    return LABELS["eager-bf16"] + (f" ({bf16_note(host)})" if emulated else ""), emulated


def precision_of(key: str) -> str:
    """The precision a contender key runs at (``fp32``, ``bf16``, ``int8``, ``int8-dynamic``, ...)."""
    if key in EAGER_KEYS:
        return "bf16" if key.endswith("bf16") else "fp32"
    if key.startswith("trt-"):
        return key[len("trt-"):]
    return CATALOGUE[GRAPHS[key][1]].precision


def available(folder: Path, manifest: Manifest, wanted: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Contender keys this bundle and machine can try, and ``{key: reason}`` for those left out."""
    from dfma.benchmarks.compiled import compile_unavailable

    files = manifest.files
    keys, skipped = [], {}
    for key in KEYS:
        if key == COMPILE and (wanted is None or key in wanted):
            why = compile_unavailable()
            if why:
                skipped[key] = why
                continue
        if key in GRAPHS:
            name = GRAPHS[key][0]
            if graph_file(key) not in files:
                skipped[key] = f"the bundle has no {graph_file(key)}"
                continue
            try:
                BACKENDS[name].runner_class()
            except Exception as exc:  # noqa: BLE001
                skipped[key] = str(exc)
                continue
        keys.append(key)
    found = trt_engines(manifest)
    if not found:
        skipped["tensorrt"] = "the bundle has no TensorRT engine (engines/*.plan are built on a GPU host)"
    keys += sorted(found)
    if wanted:
        unknown = [w for w in wanted if w not in keys and w not in skipped and w != "tensorrt"]
        if unknown:
            raise SystemExit(f"error: unknown backend(s) {unknown}; known: {list(KEYS) + sorted(found)}")
        if EAGER not in wanted:
            wanted = [EAGER, *wanted]  # speed-ups need the eager baseline
        keys = [k for k in keys if k in wanted]
    return keys, skipped


def file_bytes(folder: Path, name: str | None) -> int:
    """Size of a bundle file (0 when absent); a graph's with the weights it references in the weight store."""
    from dfma.contract.weight_store import graph_bytes

    if not name or not (folder / name).is_file():
        return 0
    return graph_bytes(folder / name) if name.endswith(".onnx") else (folder / name).stat().st_size


# ---------------------------------------------------------------------------- eager

def build_eager(manifest: Manifest):
    """The eager DFMAModel of the bundle's config, with the bundle's weights when they can be rebuilt.

    A preset bundle (``model.source == "random"``) is rebuilt bit-for-bit from its seed, as the exporter
    built it; a checkpoint bundle loads ``checkpoints/<name>`` when that folder is here. Otherwise the
    weights are random (the latency does not depend on them). Returns ``(model, weights note)``.
    """
    import torch

    from dfma.model import DFMAModel

    cfg = model_config(manifest)
    info = manifest.model
    if info.source == "checkpoint":
        ckpt = REPO / "checkpoints" / str(info.checkpoint or "")
        if info.checkpoint and (ckpt / "model.safetensors").is_file():
            try:
                from dfma.checkpoint import load_checkpoint

                loaded = load_checkpoint(ckpt)
                if loaded.config.to_dict() == cfg.to_dict():
                    return loaded.model.eval(), f"checkpoint {ckpt.name}"
            except Exception:  # noqa: BLE001, S110  (a checkpoint that does not load: random weights below)
                pass
    seed = int(info.seed or 0) if info.source == "random" else 0
    torch.manual_seed(seed)
    model = DFMAModel(cfg).eval()
    note = (f"rebuilt from preset seed {seed} (same weights as the bundle)" if info.source == "random"
            else "random (latency only: the bundle's weights are not available to the eager model)")
    return model, note


# ---------------------------------------------------------------------------- end to end

class Pipeline:
    """The runtime's preprocessing around any forward function (what ``Extractor.predict_batch`` does)."""

    def __init__(self, folder: Path, manifest: Manifest):
        from dfma.contract.features import Preprocessor
        from dfma.contract.tokenizer import load_tokenizer

        self.preprocessor = Preprocessor.from_manifest(manifest.preprocess, load_tokenizer(folder))
        self.labels = list(manifest.labels)

    def __call__(self, forward: Callable, samples: list) -> list:
        from dfma.contract.prediction import to_predictions

        features = [self.preprocessor.prepare(s) for s in samples]
        logits = np.asarray(forward(self.preprocessor.collate(features)))
        return to_predictions(logits, self.labels, [f.id for f in features])


def _logits(predictions: list) -> np.ndarray:
    return np.asarray([p.logits for p in predictions], dtype=np.float32)


# ---------------------------------------------------------------------------- factory

class Loader:
    """Builds contenders for one bundle; the eager model and the preprocessing are built once and shared."""

    def __init__(self, folder: Path, manifest: Manifest, threads: int):
        self.folder, self.manifest, self.threads = Path(folder), manifest, threads
        self._eager = None
        self._compiled = None
        self._pipeline = None
        self.eager_note = ""
        self.eager_load_seconds = 0.0

    def eager(self):
        """The shared eager model (built on first use)."""
        if self._eager is None:
            t0 = time.perf_counter()
            self._eager, self.eager_note = build_eager(self.manifest)
            self.eager_load_seconds = time.perf_counter() - t0
        return self._eager

    def compiled(self):
        """The shared ``torch.compile`` of the eager model (benchmarks/compiled.py; compiles on first calls)."""
        if self._compiled is None:
            from dfma.benchmarks.compiled import CompiledModel

            self._compiled = CompiledModel(self.eager())
        return self._compiled

    def pipeline(self) -> Pipeline:
        """The shared preprocessing of the end-to-end rows."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.folder, self.manifest)
        return self._pipeline

    def load(self, key: str, mode: str) -> Contender:
        """Open contender ``key`` in ``mode``; raises on failure (the caller records the reason)."""
        if key in EAGER_KEYS:
            return self._load_eager(key, mode)
        if key.startswith("trt-"):
            entry = trt_engines(self.manifest)[key]
            return self._load_graph(key, mode, "tensorrt", entry.precision or "fp32", None, entry)
        name, graph = GRAPHS[key]
        return self._load_graph(key, mode, name, CATALOGUE[graph].precision, graph, self.manifest.graph(graph))

    def _load_eager(self, key: str, mode: str) -> Contender:
        from dfma.model.runner import EagerRunner

        model = self.eager()
        compiled = self.compiled() if key == COMPILE else None
        runner = EagerRunner(compiled.module if compiled else model, bf16=key.endswith("bf16")).open()
        params = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        if mode == "model":
            call = lambda w: runner.logits(w.torch_feeds())
        else:
            pipe = self.pipeline()
            call = lambda w: _logits(pipe(runner.logits, w.samples))
        label, info = LABELS[key], {"weights": self.eager_note, "load_what": "build the eager model from the config"}
        prepare = report = None
        if key == "eager-bf16":
            label, info["emulated"] = bf16_label()
        if compiled is not None:
            info["load_what"] = "build the eager model, wrap it in torch.compile (compiling happens at first calls)"
            info["compile"] = compiled.describe()
            prepare = lambda w: compiled.first_call(f"{mode} {w.batch}x{w.length}", lambda: call(w))
            report = lambda: {"compile": compiled.describe()}
        return Contender(key, mode, label, "eager", precision_of(key), None, params,
                         self.eager_load_seconds, call, info=info, prepare=prepare, report=report)

    def _load_graph(self, key: str, mode: str, backend: str, precision: str, graph: str | None,
                    entry: GraphEntry) -> Contender:
        import dfma.runtime as rt

        file = entry.file
        size = file_bytes(self.folder, file)
        family = "onnxruntime" if backend.startswith("onnxruntime") else backend
        label = LABELS.get(key) or f"TensorRT {precision} engine"
        t0 = time.perf_counter()
        if mode == "e2e":  # through the runtime when load() selects this very graph
            # the whole graph: this row is that graph end to end (benchmarks/traffic.py measures the stage graphs)
            extractor = rt.load(self.folder, backend=backend, precision=precision, threads=self.threads,
                                stages="whole")
            if extractor.describe()["graph"] == file:
                call = lambda w: _logits(extractor.predict_batch(w.samples))
                return Contender(key, mode, label, family, precision, file, size, time.perf_counter() - t0, call,
                                 closer=extractor.close,
                                 info={"load_what": "dfma.runtime.load() incl. sha256 of every bundle file"})
            extractor.close()
            t0 = time.perf_counter()
        row = entry.row(graph or key)
        runner = BACKENDS[backend].build(self.folder / file, io=self.manifest.io, graph=row, entry=entry,
                                         threads=self.threads).open()
        seconds = time.perf_counter() - t0
        if mode == "model":
            call = lambda w: runner.logits(w.feeds)
            what = f"{backend} runner open"
        else:
            pipe = self.pipeline()
            call = lambda w: _logits(pipe(runner.logits, w.samples))
            what = f"{backend} runner open (runtime preprocessing around it; load() selects another graph)"
        return Contender(key, mode, label, family, precision, file, size, seconds, call, closer=runner.close,
                         info={"load_what": what})
