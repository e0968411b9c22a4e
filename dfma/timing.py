"""Latency timing shared by the benchmarks and the precision step: one worker process per contender, calls
interleaved one by one, and one statistic.

Why workers: ONNX Runtime's, OpenVINO's and PyTorch's (OpenMP) thread pools are created per process and
outlive a call; in one process every runtime's pool is alive beside the one being timed. Here each contender
is built in its own process (``python -m dfma.timing``, started by :class:`Worker`), which holds one runtime
only: nothing else in that process can spin, pin or resize a pool. The parent interleaves: for every sample
it asks each worker in turn to time one call, so that drift of the machine (other processes, frequency, heat)
hits every contender alike. The parent times nothing itself, so its imports do not matter.

Why a worker settles before it answers: a runtime's pool keeps spinning after a call (PyTorch's OpenMP threads,
ONNX Runtime's intra-op pool), and on 2 cores the next contender's call, in another process, pays for those
spinning threads. So after each timed call the worker waits until no other thread of its process is running
or runnable (:func:`settle`, read from ``/proc/self/task``: a spinning thread stays runnable even when another
process holds its core, so a loaded machine does not fool it; at most ``QUIET_MAX_S``) and only then replies; the parent starts the next call after the reply. The CPU the pool burnt
after the call is returned (``spin_cpu``) and reported. ``DFMA_TIMING_SETTLE=0`` turns this off (to measure what
it changes).

Why the order is a Williams design (:func:`call_order`), not a rotation: what a call pays for is mostly its
predecessor's leftovers, and a rotation keeps the cyclic order, so one contender followed the same neighbour
(e.g. eager's pool) in nearly every round. A Williams design puts every contender right after every other
equally often (balanced first-order carry-over).

The statistic (:func:`best_median`): per sample the fastest of its repeats, then the median over samples.
The fastest of N of one sample discards the calls that something else slowed; the median over samples
keeps the real spread of lengths. Ranking two contenders = comparing their ``best_median``.

A contender is named by a *factory*: ``"module:function"`` with JSON keyword arguments, called in the
worker; it returns an object with ``__len__`` (number of samples), ``__call__(i) -> logits`` (one timed
call on sample ``i``) and optionally ``info`` (dict) and ``close()``. :func:`graph_on_feeds` is the
factory for a graph file of the backend registry on saved input arrays (the precision step's case);
``dfma.benchmarks.served`` has those of the runtime (``dfma.runtime.load``) and eager PyTorch.

The precision step times its candidates with :func:`batch1_latency` (drop-in for its old in-process loop).
Threads: ``None`` leaves them to the runtime (what ``dfma.runtime.load`` does by default), in both places.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

STAT = "per sample the fastest of its repeats, median over samples; one worker process per contender, interleaved"
QUIET_WINDOW_S = 0.002  # a worker is quiet when its process used less than QUIET_SHARE of a core over this window
QUIET_SHARE = 0.1
QUIET_MAX_S = 0.5  # a pool that spins longer is left spinning (and its spin_cpu says so)


def call_order(n: int, round_index: int) -> list[int]:
    """The order of ``n`` contenders in round ``round_index``: the rows of a Williams design (``n`` rows for even
    ``n``, ``2n`` for odd), so that over a full cycle every contender directly follows every other equally often."""
    if n <= 1:
        return list(range(n))
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(v + r) % n for v in first] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows[round_index % len(rows)]


def _running_threads() -> int | None:
    """Threads of this process other than the caller that are running or runnable (state ``R`` in
    ``/proc/self/task/*/stat``): a spinning pool thread is ``R`` even while another process holds the core; a
    parked one sleeps (``S``). None where ``/proc`` is not there."""
    me = str(threading.get_native_id())
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    running = 0
    for tid in tasks:
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        running += state == b"R"
    return running


def settle() -> tuple[float, float]:
    """Wait until this process's other threads stop running (a pool spinning after a call): ``(cpu_s, wall_s)``
    spent waiting, ``cpu_s`` being what those threads burnt meanwhile. Quiet = no other thread running or
    runnable (:func:`_running_threads`), which holds on a loaded machine too; without ``/proc``, less than
    ``QUIET_SHARE`` of a core used over a ``QUIET_WINDOW_S`` window."""
    c0 = last = time.process_time()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < QUIET_MAX_S:
        running = _running_threads()
        if running == 0:
            break
        time.sleep(QUIET_WINDOW_S / 2 if running is not None else QUIET_WINDOW_S)
        now = time.process_time()
        if running is None and now - last < QUIET_SHARE * QUIET_WINDOW_S:
            break
        last = now
    return time.process_time() - c0, time.perf_counter() - t0


class WorkerError(RuntimeError):
    """A worker process failed to start or to run a call (the message has its stderr's last lines)."""


class Worker:
    """One contender in its own process, driven over a pipe (JSON lines)."""

    def __init__(self, label: str, factory: str, kwargs: Mapping | None = None, *, env: Mapping | None = None,
                 timeout_s: float = 900.0):
        self.label = label
        self._err = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "dfma.timing", factory, json.dumps(dict(kwargs or {}))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     env={**os.environ, **(env or {})}, text=True, bufsize=1)
        self.timeout_s = timeout_s
        hello = self._read()
        self.samples, self.info = int(hello["samples"]), hello.get("info") or {}
        self.load_seconds = float(hello.get("load_s", 0.0))

    def _read(self) -> dict:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.proc.wait(timeout=30)
            self._err.seek(0)
            tail = self._err.read().decode(errors="replace").strip().splitlines()[-6:]
            raise WorkerError(f"{self.label}: worker exited ({self.proc.returncode}): " + " | ".join(tail))
        msg = json.loads(line)
        if "error" in msg:
            raise WorkerError(f"{self.label}: {msg['error']}")
        return msg

    def call(self, i: int, *, logits: bool = False) -> dict:
        """Time one call on sample ``i``: ``{"s": wall seconds, "cpu": process CPU seconds, "ctx": involuntary
        context switches, "spin_cpu": CPU seconds its pools burnt after the call (waited out before the reply),
        "logits": [...] when asked}``."""
        self.proc.stdin.write(json.dumps({"op": "call", "i": int(i), "logits": logits}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def ask(self, op: str, i: int = 0) -> dict:
        """An untimed request to the contender: ``prepare`` (its first call on sample ``i``, e.g. compiling),
        ``report`` (what it has to say after its calls) or ``open`` (switch to its variant ``i``, e.g. a mode);
        ``{"value": ...}`` (``failed``: why, when it raised)."""
        self.proc.stdin.write(json.dumps({"op": op, "i": int(i)}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Stop the worker."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def interleave(workers: Sequence[Worker], samples: Sequence[int], *, repeats: int, warmup: int = 1,
               gap_s: float = 0.0) -> dict[str, dict]:
    """Every worker calls every sample ``repeats`` times, call by call in :func:`call_order` (after ``warmup``
    untimed calls each on the first samples). Returns ``{label: {"seconds": [[...] per repeat], "cpu", "ctx",
    "spin" (the pool's CPU after each call), "after" (the label of the call before): same shape, "logits": last
    logits per sample}}``; a worker that fails is reported as ``{"error": ...}`` and dropped."""
    active = list(workers)
    keys = ("seconds", "cpu", "ctx", "spin", "after")
    out: dict[str, dict] = {w.label: {**{k: [] for k in keys}, "logits": {}} for w in active}
    previous = [""]

    def one(w: Worker, i: int, timed: bool, want: bool) -> None:
        if gap_s > 0:
            time.sleep(gap_s)
        try:
            r = w.call(i, logits=want)
        except (WorkerError, OSError, ValueError) as exc:
            active.remove(w)
            out[w.label] = {"error": str(exc)}
            return
        if want:
            out[w.label]["logits"][i] = r["logits"]
        if timed:
            for key, value in (("seconds", r["s"]), ("cpu", r["cpu"]), ("ctx", r["ctx"]),
                               ("spin", r.get("spin_cpu", 0.0)), ("after", previous[0])):
                out[w.label][key][-1].append(value)
        previous[0] = w.label

    for i in list(samples)[:max(warmup, 0)]:
        for w in list(active):
            one(w, i, False, False)
    turn = 0
    for rep in range(repeats):
        for w in active:
            for key in keys:
                out[w.label][key].append([])
        for i in samples:
            for w in [active[k] for k in call_order(len(active), turn)]:
                if w in active:  # one that failed earlier in this round is gone
                    one(w, i, True, rep == repeats - 1)
            turn += 1
    return out


def best_median(seconds: Sequence[Sequence[float]]) -> float | None:
    """Per sample the fastest of its repeats (``seconds[repeat][sample]``), median over samples (seconds)."""
    a = np.asarray(seconds, dtype=np.float64)
    if a.size == 0:
        return None
    return float(np.median(a.min(axis=0)))


def normalized(seconds: Sequence[Sequence[float]]) -> np.ndarray:
    """Every call divided by the fastest call of its sample (1.0 = as fast as that sample ever ran)."""
    a = np.asarray(seconds, dtype=np.float64)
    return (a / a.min(axis=0, keepdims=True)).ravel() if a.size else a.ravel()


def batch1_latency(candidates: Mapping[str, tuple[str, str | os.PathLike] | tuple[str, Mapping]],
                   samples: Sequence[Mapping[str, np.ndarray]], *, repeats: int = 3, warmup: int = 2,
                   threads: int | None = None, info: dict | None = None,
                   errors: dict | None = None) -> dict[str, float]:
    """Batch-1 latency (ms) of each candidate on ``samples`` (one input dict each, at its own length), with
    :data:`STAT`: each in its own worker process, calls interleaved. A candidate is ``(registry backend, graph
    file)`` (:func:`graph_on_feeds`) or ``("module:factory", kwargs)``, a factory that takes ``feeds`` (the saved
    samples) and ``threads`` besides ``kwargs``. What ``export/to_precision.py`` times ``precision="auto"``'s
    candidates with; the benchmark's rows use the same worker, order, settling and statistic. ``info`` receives
    each worker's info; with ``errors``, a candidate that fails is recorded there (label -> why) and left out,
    else the first failure raises :class:`WorkerError`."""
    with tempfile.TemporaryDirectory(prefix="dfma-timing-") as tmp:
        feeds = Path(tmp) / "feeds.npz"
        np.savez(feeds, **{f"{i}/{k}": np.asarray(v) for i, s in enumerate(samples) for k, v in s.items()})
        workers = []
        try:
            for label, (first, second) in candidates.items():
                factory, kwargs = ((first, dict(second)) if isinstance(second, Mapping) else
                                   ("dfma.timing:graph_on_feeds", {"backend": first, "path": str(second)}))
                try:
                    workers.append(Worker(label, factory, {**kwargs, "feeds": str(feeds), "threads": threads}))
                except WorkerError as exc:
                    if errors is None:
                        raise
                    errors[label] = str(exc)
                    continue
                if info is not None:
                    info[label] = workers[-1].info
            times = interleave(workers, range(len(samples)), repeats=repeats, warmup=warmup)
        finally:
            for w in workers:
                w.close()
    out = {}
    for label, t in times.items():
        if "error" in t:
            if errors is None:
                raise WorkerError(t["error"])
            errors[label] = t["error"]
            continue
        out[label] = round(1e3 * best_median(t["seconds"]), 3)
    return out


# ---------------------------------------------------------------------------- factories (run in the worker)

class Calls:
    """What a factory returns: ``call(i) -> logits`` over ``n`` samples, with ``info`` and a closer."""

    def __init__(self, n: int, call, info: Mapping | None = None, closer=None, prepare=None, report=None, opener=None):
        self.n, self.call, self.info, self.closer = n, call, dict(info or {}), closer
        if prepare is not None:
            self.prepare = prepare  # (i) -> JSON-able dict: an untimed first call (compiling)
        if report is not None:
            self.report = report  # () -> JSON-able dict
        if opener is not None:
            self.open = opener  # (i) -> JSON-able dict: switch to variant i (a mode of the grid)

    def __len__(self) -> int:
        return self.n

    def __call__(self, i: int):
        return self.call(i)

    def close(self) -> None:
        """Release the runtime."""
        if self.closer is not None:
            self.closer()


def load_feeds(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The samples :func:`batch1_latency` saved (``"<i>/<input>"`` arrays; no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        out: dict[int, dict] = {}
        for key in z.files:
            i, name = key.split("/", 1)
            out.setdefault(int(i), {})[name] = z[key]
    return [out[i] for i in sorted(out)]


def graph_on_feeds(backend: str, path: str, feeds: str, threads: int | None = None, **options) -> Calls:
    """Factory: a graph file opened by the backend registry, run on saved input arrays."""
    from dfma.backends.registry import backend as backend_row

    if threads:
        options["threads"] = threads
    runner = backend_row(backend).build(Path(path), **options).open()
    samples = load_feeds(feeds)
    return Calls(len(samples), lambda i: runner.logits(samples[i]), {"backend": backend, "graph": Path(path).name},
                 runner.close)


def _serve(factory: str, kwargs: dict) -> int:
    """The worker's loop: build the factory's contender, then answer calls on stdin until told to quit."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr; stdout is the protocol's
    sys.stdout = sys.stderr

    def say(msg: dict) -> None:
        proto.write(json.dumps(msg) + "\n")

    settle_pools = os.environ.get("DFMA_TIMING_SETTLE", "1") != "0"
    t0 = time.perf_counter()
    try:
        module, _, name = factory.partition(":")
        calls = getattr(importlib.import_module(module), name)(**kwargs)
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which records the row as skipped)
        say({"error": f"cannot build: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return 1
    say({"samples": len(calls), "info": getattr(calls, "info", {}), "load_s": time.perf_counter() - t0})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") in ("prepare", "report", "open"):  # untimed: a first call of a shape, a report, a switch
            fn = getattr(calls, msg["op"], None)
            try:
                value = None if fn is None else (fn() if msg["op"] == "report" else fn(int(msg["i"])))
            except Exception as exc:  # noqa: BLE001
                say({"value": None, "failed": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
                continue
            say({"value": value})
            continue
        if msg.get("op") != "call":
            break
        try:
            ru0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            t0 = time.perf_counter()
            out = calls(int(msg["i"]))
            dt = time.perf_counter() - t0
            cpu, ru1 = time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF)
        except Exception as exc:  # noqa: BLE001
            say({"error": f"call {msg.get('i')}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
            return 1
        spin = settle()[0] if settle_pools else 0.0
        reply = {"s": dt, "cpu": cpu, "ctx": ru1.ru_nivcsw - ru0.ru_nivcsw, "spin_cpu": spin}
        if msg.get("logits"):
            reply["logits"] = np.asarray(out, dtype=np.float32).round(5).tolist()
        say(reply)
    if hasattr(calls, "close"):
        calls.close()
    return 0


USAGE = ("usage: python -m dfma.timing MODULE:FACTORY [KWARGS_JSON]\n\n"
         "A timing worker (started by dfma.timing.Worker, not by hand): builds FACTORY(**KWARGS) from MODULE and\n"
         "answers timing requests, one JSON line each, on stdin/stdout until stdin closes.")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    sys.exit(_serve(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
