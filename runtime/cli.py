"""Command line: ``python -m dfma.runtime {predict,evaluate,info} BUNDLE ...`` (torch-free).

``predict`` writes one JSON line per input line (the prediction, or the error of a bad line);
``evaluate`` prints micro P/R/F1 over non-"None" relations and a per-relation table against the gold
``relation`` of every line. Bad lines are reported on stderr with their line number and skipped; the
exit status is 0 when every line was used, 1 when some were bad, 2 when nothing could run (bundle,
backend, unreadable input file, usage).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from dfma.contract.errors import DataError, DFMAError

from dfma.contract.graphs import AUTO, PRECISIONS
from dfma.runtime.backend_choice import BACKEND_NAMES
from dfma.runtime.extractor import Extractor, load
from dfma.contract.prediction import Prediction
from dfma.contract.progress import Progress
from dfma.runtime.request_file import FORMATS, RequestLine, count_lines, read_requests
from dfma.contract.samples import ImageFolders

EXIT_OK, EXIT_BAD_LINES, EXIT_FATAL = 0, 1, 2


def error_record(error: BaseException) -> dict:
    """``{"type", "field", "message"}`` of a typed error, the message without its file:line prefix."""
    message = str(error)
    file, line = getattr(error, "file", None), getattr(error, "line", None)
    prefix = ":".join(str(p) for p in (file, line) if p is not None) + ": "
    if prefix != ": " and message.startswith(prefix):
        message = message[len(prefix):]
    return {"type": type(error).__name__, "field": getattr(error, "field", None), "message": message}


def _run_in_order(extractor: Extractor, lines: Iterable[RequestLine], batch_size: int,
                  check=None) -> Iterator[tuple[RequestLine, Prediction | None, BaseException | None]]:
    """``(line, prediction, error)`` in input order; bad lines carry their error, good ones are batched."""
    pending: list[tuple[RequestLine, Any]] = []

    def flush():
        good = [(i, f) for i, (_, f) in enumerate(pending) if not isinstance(f, BaseException)]
        preds: dict[int, Any] = {}
        try:
            preds = dict(zip([i for i, _ in good], extractor.run([f for _, f in good])))
        except DFMAError:
            for i, f in good:  # isolate the sample the batch failed on
                try:
                    preds[i] = extractor.run([f])[0]
                except DFMAError as e:
                    preds[i] = e
        for i, (line, f) in enumerate(pending):
            out = preds.get(i, f)
            yield (line, None, out) if isinstance(out, BaseException) else (line, out, None)
        pending.clear()

    for line in lines:
        item: Any = line.error
        if item is None:
            try:
                if check is not None:
                    check(line)
                item = extractor.prepare(line.sample)
            except DFMAError as e:
                item = e
        pending.append((line, item))
        if sum(not isinstance(f, BaseException) for _, f in pending) >= batch_size:
            yield from flush()
    yield from flush()


def _open_extractor(args) -> Extractor:
    ex = load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads)
    info = ex.describe()
    skipped = f"; skipped {'; '.join(info['skipped'])}" if info["skipped"] else ""
    print(f"dfma.runtime: {args.bundle}: {info['backend']} ({info['graph']}, {info['precision']}){skipped}",
          file=sys.stderr)
    return ex


def _requests(args) -> tuple[Iterator[RequestLine], int]:
    folders = ImageFolders(images=args.images, crops=args.crops, strict=args.strict_images)
    total = count_lines(args.input)
    lines = read_requests(args.input, args.format, folders)
    if args.limit is not None:
        total = min(total, args.limit)
        lines = (line for i, line in zip(range(args.limit), lines))
    return lines, total


def _process(args, ex: Extractor, label: str, check=None, on_result=None) -> tuple[int, int, int]:
    """Run every line; returns (lines, bad, missing images); ``on_result(line, pred, err)`` per line."""
    lines, total = _requests(args)
    progress = Progress(label, total, enabled=not args.quiet)
    n = bad = missing = 0
    with ex:
        for line, pred, err in _run_in_order(ex, lines, args.batch_size, check):
            n += 1
            missing += line.image_missing
            if err is not None:
                bad += 1
                rec = error_record(err)
                field = f" ({rec['field']})" if rec["field"] else ""
                progress.note(f"{args.input}:{line.line_no}: {rec['type']}{field}: {rec['message']}")
            if on_result is not None:
                on_result(line, pred, err)
            progress.update(1, int(err is not None))
    progress.close()
    if missing:
        print(f"dfma.runtime: {missing} image(s) not found under {args.images}: predicted without them "
              f"(--strict-images makes them errors)", file=sys.stderr)
    return n, bad, missing


def _output(path: str | None):
    if path is None:
        return nullcontext(None)
    if path == "-":
        return nullcontext(sys.stdout)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8")


def _writer(out):
    def write(line: RequestLine, pred: Prediction | None, err: BaseException | None) -> None:
        if out is None:
            return
        rec: dict = {"line": line.line_no}
        rec.update(pred.to_dict() if pred is not None else {"error": error_record(err)})
        if line.gold is not None:
            rec["gold"] = line.gold
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return write


def cmd_predict(args) -> int:
    """Predict every line of --input into --output (JSON lines)."""
    with _output(args.output) as out:
        n, bad, _ = _process(args, _open_extractor(args), "predict", on_result=_writer(out))
    print(f"dfma.runtime: {n} line(s), {n - bad} predicted, {bad} bad; wrote {args.output}", file=sys.stderr)
    return EXIT_BAD_LINES if bad else EXIT_OK


def cmd_evaluate(args) -> int:
    """Score every line of --input against its gold relation; print micro P/R/F1 and a table."""
    from dfma.contract.metrics import evaluate, format_report

    ex = _open_extractor(args)
    names = ex.labels.names
    gold: list[int] = []
    pred: list[int] = []

    def check(line: RequestLine) -> None:
        if line.gold is None:
            raise DataError("no gold relation on this line", field="relation")
        if line.gold not in names:
            raise DataError(f"unknown relation {line.gold!r} (not among the bundle's {len(names)} labels)",
                            field="relation")

    write = None

    def collect(line, p, err):
        write(line, p, err)
        if p is not None:
            gold.append(names.index(line.gold))
            pred.append(p.label_id)

    with _output(args.output) as out:
        write = _writer(out)
        n, bad, _ = _process(args, ex, "evaluate", check=check, on_result=collect)
    if not gold:
        print(f"dfma.runtime: no usable line in {args.input}", file=sys.stderr)
        return EXIT_FATAL
    report = evaluate(gold, pred, names)
    print(format_report(report))
    print(f"micro P/R/F1 (non-None): {100 * report.precision:.2f} / {100 * report.recall:.2f} / "
          f"{100 * report.f1:.2f}  ({len(gold)} scored, {bad} bad line(s))")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "precision": report.precision, "recall": report.recall, "f1": report.f1,
            "accuracy": report.accuracy, "scored": len(gold), "bad_lines": bad,
            "per_relation": [vars(r) for r in report.per_relation]}, indent=2) + "\n")
    return EXIT_BAD_LINES if bad else EXIT_OK


def cmd_info(args) -> int:
    """Load the bundle and print what would run (backend, graph, skipped candidates) as JSON."""
    with load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads) as ex:
        print(json.dumps(ex.describe(), indent=2))
    return EXIT_OK


def cmd_verify(args) -> int:
    """Run every graph on the bundle's golden set on this host; exit 1 when one fails."""
    from dfma.runtime.verify import render, verify

    report = verify(args.bundle, backend=args.backend if args.backend != "auto" else "onnxruntime-cpu",
                    threads=args.threads)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK if all(r["passed"] is not False for r in report["graphs"]) else EXIT_BAD_LINES


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dfma.runtime`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m dfma.runtime",
                                     description="Torch-free DFMA relation extraction over a bundle.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("bundle", help="bundle folder (manifest.json, model graphs, tokenizer)")
    common.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    common.add_argument("--precision", default=AUTO, choices=(AUTO, *PRECISIONS),
                        help="graph precision (default auto: the bundle's guarded default for this device, else fp32)")
    common.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    io = argparse.ArgumentParser(add_help=False)
    io.add_argument("--input", required=True, help="MNRE annotation file or JSON lines")
    io.add_argument("--format", default="auto", choices=FORMATS)
    io.add_argument("--images", default=None, help="folder of the posts' images (MNRE img_id, relative paths)")
    io.add_argument("--crops", default=None, help="folder of object crops: <img stem>-<k>.<ext>")
    io.add_argument("--strict-images", action="store_true", help="a missing image file is a bad line")
    io.add_argument("--batch-size", type=int, default=16)
    io.add_argument("--limit", type=int, default=None, help="only the first N non-blank lines")
    io.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p = sub.add_parser("predict", parents=[common, io], help="predict relations into a JSON-lines file")
    p.add_argument("--output", required=True, help="JSON-lines output ('-' for stdout)")
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("evaluate", parents=[common, io], help="micro P/R/F1 and per-relation table")
    e.add_argument("--output", default=None, help="also write the predictions (JSON lines)")
    e.add_argument("--json", default=None, help="also write the scores as JSON")
    e.set_defaults(func=cmd_evaluate)
    i = sub.add_parser("info", parents=[common], help="print the chosen backend and graph")
    i.set_defaults(func=cmd_info)
    v = sub.add_parser("verify", parents=[common], help="every graph on the bundle's golden set, on this host")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 bad lines, 2 fatal)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("dfma.runtime: --batch-size must be >= 1", file=sys.stderr)
        return EXIT_FATAL
    try:
        return args.func(args)
    except DFMAError as e:
        print(f"dfma.runtime: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("dfma.runtime: interrupted", file=sys.stderr)
        return 130
