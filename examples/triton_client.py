"""Send MNRE-format samples to a Triton server running a DFMA repository (``export/to_triton.py``).

    python examples/triton_client.py data/mnre_val.txt --images data/img_org/val --crops data/img_vg/val \\
        --url localhost:8001 --limit 100

Reads MNRE lines (or JSON lines: anything ``dfma.runtime`` accepts) with the runtime's own reader,
sends one request per sample to the ensemble (gRPC, ``--concurrency`` requests in flight, so that
Triton's dynamic batcher can group them), prints one JSON line per sample in input order
(``line``, ``relation``, ``probability``, ``gold``; or ``error``) and, where the file has gold labels,
the accuracy on stderr. Needs ``tritonclient[grpc]``; exit status 0 when every line was answered,
1 when some failed, 2 when nothing could run.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dfma.contract.errors import DFMAError, InputError
from dfma.runtime.request_file import FORMATS, read_requests
from dfma.contract.samples import ImageFolders, Sample
from dfma.contract.text import text_to_words


def _file_bytes(source: Any, field: str) -> bytes:
    """Image file bytes of a path or bytes (empty for None: an absent image)."""
    if source is None:
        return b""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    raise InputError(f"the Triton client sends image files: give a path or bytes, got {type(source).__name__}",
                     field=field)


def request_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The ensemble's input arrays (batch of one) for a :class:`dfma.runtime.Sample`."""
    if sample.words is not None:
        words, head, tail = list(sample.words), sample.head, sample.tail
    else:
        words, head, tail = text_to_words(sample.text, sample.head, sample.tail)
    arrays = {
        "TOKENS": np.array([[w.encode("utf-8") for w in words]], dtype=np.object_),
        "HEAD": np.array([list(head)], dtype=np.int64),
        "TAIL": np.array([list(tail)], dtype=np.int64),
        "IMAGE": np.array([[_file_bytes(sample.image, "image")]], dtype=np.object_),
    }
    if any(c is not None for c in sample.crops):
        arrays["CROPS"] = np.array([[_file_bytes(c, "crops") for c in sample.crops]], dtype=np.object_)
    return arrays


def infer_inputs(arrays: dict[str, np.ndarray]) -> list:
    """``tritonclient.grpc.InferInput`` objects for the arrays (BYTES for object arrays)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def result_of(response) -> dict:
    """``relation``, ``probability`` and ``probabilities`` (list, label order) of one response."""
    label = response.as_numpy("LABEL").reshape(-1)[0]
    return {"relation": label.decode("utf-8") if isinstance(label, bytes) else str(label),
            "probability": float(response.as_numpy("PROBABILITY").reshape(-1)[0]),
            "probabilities": [float(p) for p in response.as_numpy("PROBABILITIES").reshape(-1)]}


def infer_all(client, model: str, samples: list[Sample], *, concurrency: int = 8,
              timeout_s: float = 60.0) -> list[dict]:
    """Results (or ``{"error": ...}``) for many samples, in order, with at most ``concurrency`` in flight."""
    results: list[dict | None] = [None] * len(samples)
    slots = threading.Semaphore(max(1, concurrency))
    done = threading.Event()
    pending = [len(samples)]
    lock = threading.Lock()

    def finish(i: int, value: dict) -> None:
        results[i] = value
        slots.release()
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                done.set()

    for i, sample in enumerate(samples):
        slots.acquire()
        try:
            inputs = infer_inputs(request_arrays(sample))
        except (DFMAError, OSError) as e:
            finish(i, {"error": f"{type(e).__name__}: {e}"})
            continue
        client.async_infer(model, inputs, client_timeout=timeout_s,
                           callback=lambda result, error, i=i: finish(
                               i, {"error": str(error)} if error is not None else result_of(result)))
    if samples and not done.wait(timeout_s * (len(samples) / max(1, concurrency) + 1)):
        raise TimeoutError(f"no answer for {sum(r is None for r in results)} request(s)")
    return [r if r is not None else {"error": "no answer"} for r in results]


def main(argv: list[str] | None = None) -> int:
    """Read the file, send the samples, print the results; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path, help="MNRE annotation file or JSON lines")
    p.add_argument("--url", default="localhost:8001", help="Triton gRPC address (default localhost:8001)")
    p.add_argument("--model", default="dfma", help="ensemble name (default dfma)")
    p.add_argument("--images", type=Path, help="folder of the posts' images (img_id file names)")
    p.add_argument("--crops", type=Path, help="folder of object crops (<stem>-<k>.jpg)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: auto)")
    p.add_argument("--limit", type=int, default=None, help="send only the first N usable lines")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    args = p.parse_args(argv)
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        print("error: needs tritonclient[grpc] (pip install 'tritonclient[grpc]')", file=sys.stderr)
        return 2
    folders = ImageFolders(images=args.images, crops=args.crops) if args.images or args.crops else None
    try:
        lines = []
        for line in read_requests(args.file, args.format, folders):
            if args.limit is not None and len(lines) >= args.limit:
                break
            lines.append(line)
    except DFMAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    good = [ln for ln in lines if ln.error is None]
    try:
        client = grpcclient.InferenceServerClient(args.url)
        answers = dict(zip((ln.line_no for ln in good),
                           infer_all(client, args.model, [ln.sample for ln in good],
                                     concurrency=args.concurrency, timeout_s=args.timeout)))
    except Exception as e:  # connection refused, timeouts: tritonclient raises its own types
        print(f"error: {args.url}: {e}", file=sys.stderr)
        return 2
    failed = correct = gold = 0
    for ln in lines:
        out = {"line": ln.line_no}
        answer = answers.get(ln.line_no, {"error": f"{type(ln.error).__name__}: {ln.error}"})
        out.update({k: v for k, v in answer.items() if k != "probabilities"})
        failed += "error" in answer
        if ln.gold is not None and "error" not in answer:
            out["gold"] = ln.gold
            gold += 1
            correct += answer["relation"] == ln.gold
        print(json.dumps(out, ensure_ascii=False))
    if gold:
        print(f"accuracy {correct}/{gold} = {correct / gold:.4f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
