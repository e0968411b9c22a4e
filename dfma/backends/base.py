"""The runner interface every backend implements (Polygraphy-style: cheap to build, ``open`` loads).

    runner = OrtRunner("bundle/model.ort.onnx", io=manifest.io)      # nothing loaded yet
    with runner:                                                     # open(): load, check IO once
        logits = runner.infer(feeds)["logits"]
        runner.describe()                                            # what runs, where, how

``infer`` takes the contract's input arrays by name (extra entries are ignored, a missing one is an
InputError naming it) and returns ``{output name: array}``. A runner is thread-safe once open unless its
class says otherwise. ``runs(graph)`` / ``preference(graph)`` tell the runtime which catalogue rows a
backend can execute and which it prefers.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from dfma.contract.errors import BackendUnavailable, InputError
from dfma.contract.graphs import GraphKind
from dfma.contract.io_spec import OUTPUT_NAME, check_graph_io
from dfma.contract.manifest import IoSpec, as_io


class Runner(abc.ABC):
    """open / infer / describe / close; subclasses implement ``_open``, ``_infer`` and ``_describe``."""

    name: ClassVar[str] = "runner"

    def __init__(self, *, io: IoSpec | Mapping | None = None, graph: GraphKind | None = None, where: str = ""):
        """``io``: the manifest's ``io`` section (``Manifest.io``, or its JSON) to check the graph against at
        open (None: no check); ``graph``: the catalogue row being run (for ``describe`` and ``precision``)."""
        self.io, self.graph, self.where = as_io(io), graph, where
        self.input_names: list[str] = []
        self.is_open = False

    # ------------------------------------------------------------------ graph selection

    @classmethod
    def check_available(cls, **options: Any) -> None:
        """Raise BackendUnavailable (one line) when this backend cannot run on this machine at all."""

    @classmethod
    def runs(cls, graph: GraphKind, **options: Any) -> bool:
        """Whether this backend can execute a graph of this catalogue row."""
        return False

    @classmethod
    def preference(cls, graph: GraphKind, **options: Any) -> Any:
        """Order among the rows it runs for one precision (lower first)."""
        return 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> Runner:
        """Load the graph (idempotent) and check its inputs and outputs against ``io`` once."""
        if not self.is_open:
            self._open()
            inputs, outputs = self.metadata()
            if self.io is not None:
                check_graph_io(self.where or self.name, self.io, inputs, outputs)
            self.input_names = list(inputs)
            self.is_open = True
        return self

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for one batch of named input arrays."""
        if not self.is_open:
            raise BackendUnavailable(f"{self.name}: runner is not open (closed, or open() never called)")
        try:
            selected = {k: feeds[k] for k in self.input_names}
        except KeyError as exc:
            raise InputError(f"missing input array (the graph takes {self.input_names})",
                             field=str(exc.args[0])) from None
        return self._infer(selected)

    def logits(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ``logits`` output of :meth:`infer`."""
        return self.infer(feeds)[OUTPUT_NAME]

    def describe(self) -> dict:
        """What runs: backend, graph file, precision, and backend-specific facts."""
        row = self.graph
        return {"backend": self.name, "graph": row.file if row else self.where,
                "precision": row.precision if row else None, **(self._describe() if self.is_open else {})}

    @property
    def precision(self) -> str | None:
        """The precision of the catalogue row being run (None when unknown)."""
        return self.graph.precision if self.graph else None

    def close(self) -> None:
        """Release what ``open`` loaded (idempotent)."""
        if self.is_open:
            self._close()
        self.is_open = False

    def __enter__(self) -> Runner:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ to implement

    @abc.abstractmethod
    def _open(self) -> None:
        """Load the model; raise BackendUnavailable (cannot run here) or BundleError (bad file)."""

    @abc.abstractmethod
    def metadata(self) -> tuple[dict[str, tuple[str, Sequence[Any]]], dict[str, tuple[str, Sequence[Any]]]]:
        """``(inputs, outputs)``: ``name -> (dtype, shape)`` as the loaded model declares them."""

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (feeds hold exactly the model's inputs)."""

    def _describe(self) -> dict:
        return {}

    def _close(self) -> None:
        pass
