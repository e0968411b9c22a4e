"""Command line: ``python -m dfma.runtime {predict,evaluate,info} BUNDLE ...`` (torch-free).

``predict`` writes one JSON line per input line (the prediction, or the error of a bad line), and one per
entity pair for a line with ``entities`` (see ``runtime/README.md``);
``evaluate`` prints micro P/R/F1 over non-"None" relations and a per-relation table against the gold
``relation`` of every line. Bad lines (undecodable and over-long ones included) are reported on stderr
with their line number and skipped, and the good lines of the same batch are still predicted; input
streams (``--input -`` or a pipe). The output is written under a temporary name and renamed into place
when the run ends, and only once the bundle has loaded. Exit status 0 when every line was used, 1 when
some were bad, 2 when nothing could run (bundle, backend, unreadable input, usage): one line on
stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

from dfma.runtime.api_guards import STAGE_MODES, request_error
from dfma.runtime.backend_choice import BACKEND_NAMES
from dfma.runtime.extractor import Extractor, load
from dfma.runtime.line_source import check_input
from dfma.runtime.output_file import OutputFile, check_output
from dfma.runtime.request_file import FORMATS, RequestLine, count_lines, read_requests

from dfma.contract.errors import DataError, DFMAError
from dfma.contract.graphs import AUTO, PRECISIONS
from dfma.contract.limits import LIMIT_NAMES, Limits
from dfma.contract.prediction import Prediction
from dfma.progress import Progress
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


Result = tuple[RequestLine, "tuple[int, int] | None", "Prediction | None", "BaseException | None"]


def _prepare_line(extractor: Extractor, line: RequestLine, check=None) -> list[tuple[Any, tuple[int, int] | None]]:
    """``[(Features or the line's error, pair)]``: one row per request, one per pair of an ``entities`` line."""
    if line.error is not None:
        return [(line.error, None)]
    try:
        if check is not None:
            check(line)
        if line.pairs is None:
            return [(extractor.prepare(line.sample), None)]
        r = line.pairs
        rows = extractor.prepare_pairs(r.sentence, r.entities, r.image, r.crops, r.pairs)  # ids: (head, tail)
        return [(f, tuple(f.id)) for f in rows]
    except DFMAError as e:
        return [(e, None)]
    except Exception as e:  # noqa: BLE001  one line's untyped error is that line's, never the run's
        return [(request_error(e), None)]


def _run_in_order(extractor: Extractor, lines: Iterable[RequestLine], batch_size: int,
                  check=None) -> Iterator[Result]:
    """``(line, pair, prediction, error)`` in input order (``pair`` None but for ``entities`` lines); bad
    lines carry their error, good rows are batched."""
    pending: list[tuple[RequestLine, Any, tuple[int, int] | None]] = []

    def flush():
        good = [(i, f) for i, (_, f, _) in enumerate(pending) if not isinstance(f, BaseException)]
        preds: dict[int, Any] = {}
        try:
            preds = dict(zip([i for i, _ in good], extractor.run([f for _, f in good]), strict=True))
        except Exception:  # noqa: BLE001  isolate the sample the batch failed on; the others still run
            for i, f in good:
                try:
                    preds[i] = extractor.run([f])[0]
                except DFMAError as e:
                    preds[i] = e
                except Exception as e:  # noqa: BLE001
                    preds[i] = request_error(e)
        for i, (line, f, pair) in enumerate(pending):
            out = preds.get(i, f)
            yield (line, pair, None, out) if isinstance(out, BaseException) else (line, pair, out, None)
        pending.clear()

    for line in lines:
        pending += [(line, item, pair) for item, pair in _prepare_line(extractor, line, check)]
        if sum(not isinstance(f, BaseException) for _, f, _ in pending) >= batch_size:
            yield from flush()
    yield from flush()


def _limits(args) -> Limits:
    """The --max-* flags over the defaults."""
    return Limits().merged({k: v for k, v in vars(args).items() if k in LIMIT_NAMES and v is not None})


def _load(args) -> Extractor:
    """The extractor the options ask for."""
    return load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                limits=_limits(args), stages=args.stages, image_cache_mb=args.image_cache_mb,
                allow_batch_dependent=getattr(args, "allow_batch_dependent", False))


def _open_extractor(args) -> Extractor:
    ex = _load(args)
    info = ex.describe()
    skipped = f"; skipped {'; '.join(info['skipped'])}" if info["skipped"] else ""
    print(f"dfma.runtime: {args.bundle}: {info['backend']} ({info['graph']}, {info['precision']}, "
          f"{info['stages']['mode']}){skipped}", file=sys.stderr)
    return ex


def _requests(args, limits: Limits) -> tuple[Iterator[RequestLine], int | None]:
    folders = ImageFolders(images=args.images, crops=args.crops, strict=args.strict_images)
    total = count_lines(args.input, limits.max_line_bytes)  # None for a pipe: it is read once
    lines = read_requests(args.input, args.format, folders, limits)
    if args.limit is not None:
        total = min(total, args.limit) if total is not None else None
        lines = (line for _, line in zip(range(args.limit), lines))
    return lines, total


def _process(args, ex: Extractor, label: str, check=None, on_result=None) -> tuple[int, int, int]:
    """Run every line; returns (lines, bad lines, missing images); ``on_result(line, pred, err, pair)`` per
    output record (one per line, one per pair of an ``entities`` line)."""
    lines, total = _requests(args, ex.limits)
    progress = Progress(label, total, enabled=not args.quiet)
    n = bad = missing = 0
    previous, previous_bad = None, False

    def finish_line() -> None:
        if previous is not None:
            progress.update(1, int(previous_bad))

    with ex:
        for line, pair, pred, err in _run_in_order(ex, lines, args.batch_size, check):
            if line is not previous:
                finish_line()
                previous, previous_bad = line, False
                n += 1
                missing += line.image_missing
            if err is not None:
                bad += not previous_bad
                previous_bad = True
                rec = error_record(err)
                field = f" ({rec['field']})" if rec["field"] else ""
                where = f" pair {list(pair)}" if pair is not None else ""
                progress.note(f"{args.input}:{line.line_no}{where}: {rec['type']}{field}: {rec['message']}")
            if on_result is not None:
                on_result(line, pred, err, pair)
        finish_line()
    progress.close()
    if missing:
        print(f"dfma.runtime: {missing} image(s) not found under {args.images}: predicted without them "
              f"(--strict-images makes them errors)", file=sys.stderr)
    return n, bad, missing


def _output(path: str | None):
    """Where predictions go: nothing, stdout (``-``) or an :class:`OutputFile` (opened after the load)."""
    return nullcontext(None) if path is None else OutputFile(path)


def _check_paths(args) -> None:
    """Input and output paths refused before the bundle loads (so nothing is touched on a bad path)."""
    check_input(args.input)
    if args.output is not None:
        check_output(args.output)


def _writer(out):
    def write(line: RequestLine, pred: Prediction | None, err: BaseException | None,
              pair: tuple[int, int] | None = None) -> None:
        if out is None:
            return
        rec: dict = {"line": line.line_no}
        if pair is not None:  # an entities line: the pair, and the line's own id (not the (head, tail) one)
            rec["pair"] = list(pair)
            if line.pairs.id is not None:
                rec["id"] = line.pairs.id
        result = pred.to_dict() if pred is not None else {"error": error_record(err)}
        if pair is not None:
            result.pop("id", None)
        rec.update(result)
        if line.gold is not None:
            rec["gold"] = line.gold
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return write


def cmd_predict(args) -> int:
    """Predict every line of --input into --output (JSON lines)."""
    _check_paths(args)
    ex = _open_extractor(args)
    with _output(args.output) as out:
        n, bad, _ = _process(args, ex, "predict", on_result=_writer(out))
    print(f"dfma.runtime: {n} line(s), {n - bad} predicted, {bad} bad; wrote {args.output}", file=sys.stderr)
    return EXIT_BAD_LINES if bad else EXIT_OK


def cmd_evaluate(args) -> int:
    """Score every line of --input against its gold relation; print micro P/R/F1 and a table."""
    from dfma.metrics import evaluate, format_report

    _check_paths(args)
    ex = _open_extractor(args)
    names = ex.labels.names
    gold: list[int] = []
    pred: list[int] = []

    def check(line: RequestLine) -> None:
        if line.pairs is not None:
            raise DataError("evaluate scores one head/tail pair per line against its gold relation; this line "
                            "has 'entities' (use predict)", field="entities")
        if line.gold is None:
            raise DataError("no gold relation on this line", field="relation")
        if line.gold not in names:
            raise DataError(f"unknown relation {line.gold!r} (not among the bundle's {len(names)} labels)",
                            field="relation")

    write = None

    def collect(line, p, err, pair=None):
        write(line, p, err, pair)
        if p is not None:
            gold.append(names.index(line.gold))
            pred.append(p.label_id)

    with _output(args.output) as out:
        write = _writer(out)
        _, bad, _ = _process(args, ex, "evaluate", check=check, on_result=collect)
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
    with _load(args) as ex:
        print(json.dumps(ex.describe(), indent=2))
    return EXIT_OK


def cmd_verify(args) -> int:
    """Run every graph on the bundle's golden set on this host; exit 1 when one fails."""
    from dfma.runtime.verify import render, verify

    report = verify(args.bundle, backend=args.backend if args.backend != "auto" else "onnxruntime-cpu",
                    threads=args.threads)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK if all(r["passed"] is not False for r in report["graphs"]) else EXIT_BAD_LINES


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2), like every other fatal error of the command line."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: usage error: message`` and exit 2."""
        self.exit(EXIT_FATAL, f"dfma.runtime: usage error: {message} (see {self.prog} --help)\n")


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request limits (docs/contract.md section 3.1; the same flags as dfma_cli)")
    for f in dataclasses.fields(Limits):
        kind = float if f.type == "float" else int
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None,
                           metavar="N", help=f"default {f.default}")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m dfma.runtime`` argument parser."""
    parser = _Parser(prog="python -m dfma.runtime",
                     description="Torch-free DFMA relation extraction over a bundle.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("bundle", help="bundle folder (manifest.json, model graphs, tokenizer)")
    common.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    common.add_argument("--precision", default=AUTO, choices=(AUTO, *PRECISIONS),
                        help="graph precision (default auto: the bundle's guarded default for this device, else fp32)")
    common.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    common.add_argument("--allow-batch-dependent", action="store_true",
                        help="let --precision auto serve a graph marked batch-dependent (dynamic INT8: a request's "
                             "answer changes with the other requests in its batch)")
    _limit_flags(common)
    serve = _Parser(add_help=False)
    serve.add_argument("--stages", default="auto", choices=STAGE_MODES,
                       help="auto (default): the graph's stage graphs when the bundle has them (each image "
                            "encoded once), else the whole graph; two-stage: require them; whole")
    serve.add_argument("--image-cache-mb", type=float, default=None, metavar="MB",
                       help="cache image features across lines, at most MB MiB (with the stage graphs)")
    io = _Parser(add_help=False)
    io.add_argument("--input", required=True, help="MNRE annotation file or JSON lines ('-': stdin; a pipe works)")
    io.add_argument("--format", default="auto", choices=FORMATS)
    io.add_argument("--images", default=None, help="folder of the posts' images (MNRE img_id, relative paths)")
    io.add_argument("--crops", default=None, help="folder of object crops: <img stem>-<k>.<ext>")
    io.add_argument("--strict-images", action="store_true", help="a missing image file is a bad line")
    io.add_argument("--batch-size", type=int, default=16)
    io.add_argument("--limit", type=int, default=None, help="only the first N non-blank lines")
    io.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p = sub.add_parser("predict", parents=[common, serve, io], help="predict relations into a JSON-lines file")
    p.add_argument("--output", required=True, help="JSON-lines output ('-' for stdout)")
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("evaluate", parents=[common, serve, io], help="micro P/R/F1 and per-relation table")
    e.add_argument("--output", default=None, help="also write the predictions (JSON lines)")
    e.add_argument("--json", default=None, help="also write the scores as JSON")
    e.set_defaults(func=cmd_evaluate)
    i = sub.add_parser("info", parents=[common, serve], help="print the chosen backend and graph")
    i.set_defaults(func=cmd_info)
    v = sub.add_parser("verify", parents=[common], help="every graph on the bundle's golden set, on this host")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_verify)
    return parser


def _fatal(error: BaseException) -> int:
    """Report a fatal error on one line of stderr; returns EXIT_FATAL."""
    text = " ".join(str(error).split()) or type(error).__name__
    kind = type(error).__name__ if isinstance(error, DFMAError) else f"internal error ({type(error).__name__})"
    print(f"dfma.runtime: {kind}: {text}", file=sys.stderr)
    return EXIT_FATAL


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 bad lines, 2 fatal: one line on stderr, no traceback)."""
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "batch_size", 1) < 1:
            raise DataError(f"must be >= 1, got {args.batch_size}", field="--batch-size")
        _limits(args)  # a bad --max-* value is a usage error before anything loads
        return args.func(args)
    except DFMAError as e:
        return _fatal(e)
    except KeyboardInterrupt:
        print("dfma.runtime: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (| head)
        return EXIT_FATAL
    except Exception as e:  # noqa: BLE001  the promise: one line, exit 2, never a traceback
        return _fatal(e)
