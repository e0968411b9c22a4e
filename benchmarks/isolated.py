"""The batch x length grid's contenders in worker processes (``--isolation process``, the default): each backend
of ``benchmarks/latency.py``'s grid, and each GEMM probe, lives in its own process (:mod:`dfma.timing`) for the whole
run, so that no other runtime's thread pool is alive beside the one being timed. :class:`WorkerContender` stands
where ``backends.Contender`` stands in the in-process loop (``timing.interleave``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dfma.timing import Calls, Worker


def grid_contender(bundle: str, key: str, modes: list[str], threads: int, cells: list, image_wh: list,
                   crop_wh: list) -> Calls:
    """Factory: one contender of the batch x length grid (``backends.Loader``) for every mode, one process for the
    run (as one Loader in one process: torch.compile's graphs serve both modes); ``open(m)`` opens mode ``m`` and
    closes the other's runner; sample ``i`` = cell ``i`` of the open mode; ``prepare(i)`` is its untimed first call
    of a cell (torch.compile compiles there)."""
    import torch

    from dfma.benchmarks import backends as bk
    from dfma.benchmarks.workload import Workload, make_feeds, make_samples, single_piece_words

    torch.set_num_threads(threads)
    folder = Path(bundle)
    manifest = bk.read_bundle(folder)
    cfg = bk.model_config(manifest)
    loader = bk.Loader(folder, manifest, threads)
    state: dict = {}

    def open_mode(m: int) -> dict:
        if state.get("runner") is not None:
            state["runner"].close()
            state["runner"] = None
        if m < 0:  # release: the memory group this contender was in is done
            return {}
        runner = state["runner"] = loader.load(key, modes[m])
        loads = [Workload(b, L, make_feeds(cfg, manifest, b, L)) for b, L in cells]
        if modes[m] == "e2e":
            text = loader.pipeline().preprocessor.text
            words = single_piece_words(text.tokenizer)
            for w in loads:
                w.samples = make_samples(text, words, w.batch, w.length, cfg.num_crops, tuple(image_wh), tuple(crop_wh))
        state["loads"] = loads
        return {**runner.describe(), "load_seconds": runner.load_seconds, "has_prepare": runner.prepare is not None}

    def prepare(i: int):
        return state["runner"].prepare(state["loads"][i]) if state["runner"].prepare is not None else None

    def report() -> dict:
        return state["runner"].report() if state.get("runner") is not None and state["runner"].report else {}

    return Calls(len(cells), lambda i: state["runner"].run(state["loads"][i]), {"key": key},
                 lambda: state["runner"].close() if state.get("runner") is not None else None,
                 prepare=prepare, report=report, opener=open_mode)


def gemm_probe(kind: str, n: int, threads: int) -> Calls:
    """Factory: the fp32 (torch) or INT8 (ONNX Runtime MatMulInteger) GEMM probe, timed like a contender."""
    if kind == "int8":
        from dfma.benchmarks.gemm_int8 import Int8GemmProbe

        probe = Int8GemmProbe(n, threads)
    else:
        import torch

        from dfma.benchmarks.timing import GemmProbe

        torch.set_num_threads(threads)
        probe = GemmProbe(n)
    return Calls(1 << 30, lambda i: (probe.run(None), np.zeros((1, 1), np.float32))[1],
                 {"key": probe.key, "n": probe.n, "flops": probe.flops})


class WorkerContender:
    """A grid contender (or GEMM probe) living in a worker process, used where ``backends.Contender`` is: ``timed``
    returns the worker's own time of the call (the pipe is not timed), ``run`` its output."""

    def __init__(self, worker: Worker, cells: list, probe: bool = False, mode: int | None = None,
                 owned: bool = True):
        """``mode``: open the worker's variant ``mode`` first (a grid contender's mode); ``owned``: ``close`` stops the
        worker (else its owner does, after the run)."""
        self.worker, self.index, self.owned = worker, {tuple(c): i for i, c in enumerate(cells)}, owned
        info = worker.info
        if mode is not None:
            opened = worker.ask("open", mode)
            if opened.get("failed"):
                raise RuntimeError(opened["failed"])
            info = opened["value"]
        self.key = info.get("key", worker.label)
        self.precision, self.n, self.flops = info.get("precision"), info.get("n"), info.get("flops")
        self.load_seconds = float(info.get("load_seconds", worker.load_seconds))
        self.info = info
        self.probe = probe
        self.cpu: list[float] = []  # process CPU seconds of each call (the bimodal modes' cause)
        self.prepare = self._prepare if info.get("has_prepare") else None
        self.report = self._report if not probe else None

    def describe(self) -> dict:
        """What the worker's contender described (JSON), and that it ran in its own process."""
        return {**{k: v for k, v in self.info.items() if k not in ("workloads", "has_prepare")},
                "process": "own worker process (dfma.timing)"}

    def _i(self, workload) -> int:
        return 0 if self.probe or workload is None else self.index[(workload.batch, workload.length)]

    def timed(self, workload) -> tuple[float, np.ndarray]:
        """One call timed in the worker: ``(seconds, output)``."""
        r = self.worker.call(self._i(workload), logits=not self.probe)
        self.cpu.append(r["cpu"])
        return r["s"], (None if self.probe else np.asarray(r["logits"], dtype=np.float32))

    def run(self, workload):
        """One call (timed by the worker; the time is dropped)."""
        return self.timed(workload)[1]

    def _prepare(self, workload) -> dict | None:
        r = self.worker.ask("prepare", self._i(workload))
        if r.get("failed"):
            from dfma.contract.errors import BackendUnavailable

            raise BackendUnavailable(r["failed"])
        return r.get("value")

    def _report(self) -> dict:
        return self.worker.ask("report").get("value") or {}

    def close(self) -> None:
        """Stop the worker (when this contender owns it), else have it release its runner."""
        if self.owned:
            self.worker.close()
        elif self.worker.proc.poll() is None:
            self.worker.ask("open", -1)
