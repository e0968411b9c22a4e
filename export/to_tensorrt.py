"""Build a TensorRT engine into a bundle: ``python export/to_tensorrt.py BUNDLE --precision fp32|fp16|int8``.

The engine is compiled from the bundle's ONNX graph of that precision (``model.onnx``, ``model.fp16.onnx``
or ``model.int8.onnx``) as a strongly typed network, with one optimization profile over the manifest's
batch and length limits and a persisted timing cache, and added to ``engines/`` with its TensorRT version
and GPU recorded in the manifest (runtimes refuse it on another GPU or TensorRT version:
``dfma.backends.trt_runner.check_engine``). Exit status 0 on success; 3 with one line when TensorRT or a GPU is
absent; 1 on any other error (the bundle is unchanged); 2 on a usage error.
"""
from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import everything as dfma.export.*, never export/ modules by bare name

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as _dt  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.errors import BackendUnavailable, DFMAError  # noqa: E402
from dfma.help_format import DefaultsOnceFormatter  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in --help)."""
    from dfma.export.trt_build import ENGINE_PRECISIONS, BuildOptions

    d = BuildOptions()
    p = argparse.ArgumentParser(prog="python export/to_tensorrt.py", description=__doc__.split("\n\n")[1],
                                formatter_class=DefaultsOnceFormatter)
    p.add_argument("bundle", type=Path, help="bundle folder (updated in place, atomically)")
    p.add_argument("--precision", choices=ENGINE_PRECISIONS, default=d.precision,
                   help="which ONNX graph to compile; the precision is the graph's own (strongly typed)")
    p.add_argument("--workspace-mib", type=int, default=None, metavar="MIB",
                   help="builder workspace limit (MemoryPoolType.WORKSPACE); default: TensorRT's")
    p.add_argument("--opt-batch", type=int, default=d.opt_batch,
                   help="profile's optimal batch (min 1, max limits.max_batch)")
    p.add_argument("--opt-length", type=int, default=d.opt_length,
                   help="profile's optimal sequence length (min 2, max limits.max_length)")
    p.add_argument("--timing-cache", type=Path, metavar="FILE",
                   help="timing cache to load and update (default: BUNDLE/engines/timing-<gpu>-trt<version>.cache)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    return p


def run(args) -> dict:
    """Check the platform, build, add the engine (and timing cache) to the bundle; returns the new manifest."""
    from dfma.export import trt_build as tb
    from dfma.export.trt_build import INT8_ENGINE
    from dfma.contract.bundle_writer import update_bundle
    from dfma.contract.bundle import open_bundle
    from dfma.backends.trt_runner import platform_info
    from dfma.contract.graphs import engine_row
    from dfma.contract.manifest import GraphEntry, Manifest

    opts = tb.BuildOptions(precision=args.precision, workspace_mib=args.workspace_mib, opt_batch=args.opt_batch,
                           opt_length=args.opt_length, timing_cache=args.timing_cache, device=args.device,
                           verbose=args.verbose)
    bundle = open_bundle(args.bundle)
    key, file = tb.source_graph(bundle.manifest, opts.precision)
    tb.import_tensorrt()
    platform = platform_info(opts.device)  # BackendUnavailable: no TensorRT / no GPU
    row = engine_row(opts.precision, platform["gpu_name"])
    cache_rel = f"engines/timing-{tb.slug(platform['gpu_name'])}-trt{platform['tensorrt_version']}.cache"
    cache_path = opts.timing_cache or bundle.folder / cache_rel
    shapes = tb.profile_shapes(bundle.manifest, opts)
    started = time.perf_counter()
    print(f"building a {opts.precision} engine from {file} on {platform['gpu_name']} with TensorRT "
          f"{platform['tensorrt_version']} ...", file=sys.stderr, flush=True)
    engine, timing = tb.build_engine(tb.onnx_bytes(bundle.folder / file, opts.precision), shapes, opts, cache_path)
    seconds = round(time.perf_counter() - started, 1)
    engine_rel, entry_key = row.file, row.key
    with tempfile.TemporaryDirectory(prefix="dfma-trt-") as tmp:
        engine_tmp, cache_tmp = Path(tmp) / "engine.plan", Path(tmp) / "timing.cache"
        engine_tmp.write_bytes(engine)
        cache_tmp.write_bytes(timing)
        new_files = {engine_rel: engine_tmp}
        if opts.timing_cache is None:
            new_files[cache_rel] = cache_tmp
        else:
            Path(opts.timing_cache).write_bytes(timing)

        def edit(manifest: Manifest) -> Manifest:
            entry = GraphEntry.from_json({
                **row.manifest_fields(), "derived_from": file,
                "source_graph": key, **platform, "strongly_typed": True,
                "profile": {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                            for name, s in shapes.items()},
                "workspace_mib": opts.workspace_mib, "timing_cache": cache_rel if opts.timing_cache is None else None,
                "int8_activations": ("rewritten from uint8 to symmetric int8 (same ranges)"
                                     if opts.precision == INT8_ENGINE else None),
                "built": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                "build_seconds": seconds})
            return dataclasses.replace(manifest.with_graph(entry_key, entry),
                                       tools={**manifest.tools, "tensorrt": platform["tensorrt_version"]})

        manifest = update_bundle(bundle.folder, new_files, edit=edit)
    print(f"engine: {bundle.folder / engine_rel} ({len(engine) / 2**20:.1f} MiB, {seconds} s)")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and build; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.opt_batch < 1 or args.opt_length < 2 or (args.workspace_mib is not None and args.workspace_mib < 1):
        print("usage error: --opt-batch >= 1, --opt-length >= 2, --workspace-mib >= 1", file=sys.stderr)
        return 2
    try:
        run(args)
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
