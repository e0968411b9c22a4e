"""Property-based tests (Hypothesis) of the manifest reader: random and mutated manifests.

Whatever the bytes, :func:`dfma.contract.bundle.parse_manifest` either accepts them or raises BundleError,
in bounded time; a manifest it accepts is one that the load path's other readers of the manifest
(labels, preprocessing, graph rows, the ``auto`` defaults, the golden section, the file table on disk)
also handle with typed errors only. Mutations start from the tiny bundle's real manifest, so that most
examples get past the first checks and exercise the deep ones.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401

pytest.importorskip("hypothesis", reason="hypothesis is a test dependency (pyproject dev extra)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfma.contract.bundle import open_bundle, parse_manifest
from dfma.contract.errors import BundleError, DataError
from dfma.contract.manifest_digest import write_digest

EXAMPLES = 300
BOUND_SECONDS = 5.0  # per example, on a loaded 2-core machine; a typical one takes milliseconds
SETTINGS = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=BOUND_SECONDS), derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PATH = Path("manifest.json")

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=False) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)


@pytest.fixture(scope="module")
def base(tiny_bundle) -> dict:  # noqa: F811
    """The tiny bundle's manifest, with the ``defaults`` section the precision step would add."""
    manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    rec = {"graph": "ort", "backend": "onnxruntime-cpu", "precision": "fp32", "label": "fp32", "reason": "test",
           "host": {"class": "x86-avx2", "cpu": "test"},
           "ranked": [{"label": "fp32", "backend": "onnxruntime-cpu", "graph": "ort", "precision": "fp32"},
                      {"label": "openvino-fp32", "backend": "openvino", "graph": "portable", "precision": "fp32"}]}
    manifest["defaults"] = {"auto": {"cpu": rec, "onnxruntime-cpu": copy.deepcopy(rec)}}
    parse_manifest(json.dumps(manifest).encode(), PATH)  # the unmutated base is accepted
    return manifest


@pytest.fixture(scope="module")
def tokenizer(tiny_bundle):  # noqa: F811
    """The tiny bundle's tokenizer (loaded once)."""
    from dfma.contract.tokenizer import load_tokenizer

    return load_tokenizer(tiny_bundle)


@pytest.fixture(scope="module")
def paths(base) -> list[tuple]:
    """Every key path of the manifest (tuples of keys and indices), outer first."""
    out, stack = [], [((), base)]
    while stack:
        prefix, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append((*prefix, k))
            stack.append(((*prefix, k), v))
    return sorted(out, key=lambda p: (len(p), str(p)))


def _mutate(manifest: dict, path: tuple, how: str, value):
    """Replace, delete, nudge or retype the value at ``path``."""
    parent = manifest
    for k in path[:-1]:
        parent = parent[k]
    key, old = path[-1], parent[path[-1]]
    if how == "delete":
        del parent[key]
    elif how == "nudge" and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = old + (value if isinstance(value, int) and not isinstance(value, bool) else -1)
    elif how == "retype":
        parent[key] = str(old) if not isinstance(old, str) else [old]
    else:
        parent[key] = value


def _downstream(manifest: dict, tokenizer) -> None:
    """What the load path reads from an accepted manifest besides the reader; typed errors only."""
    from dfma.runtime.backend_choice import _candidates
    from dfma.runtime.self_check import ranked_precisions

    from dfma.contract.features import Preprocessor
    from dfma.contract.golden import judge
    from dfma.contract.labels import LabelMap
    from dfma.contract.manifest import Manifest

    typed = Manifest.from_json(manifest)
    assert typed.to_json() == manifest and list(typed.to_json()) == list(manifest)  # the typed view loses nothing
    try:
        LabelMap.from_list(list(typed.labels))
    except DataError:  # the runtime turns it into a BundleError naming the labels
        pass
    Preprocessor.from_manifest(typed.preprocess, tokenizer)
    rows = typed.present()
    assert rows and set(rows) <= set(manifest["graphs"])
    typed.engines()
    for device in ("cpu", "gpu"):
        for backend in (None, "onnxruntime-cpu", "openvino"):
            typed.resolve_precision("auto", device, backend)
            if backend and typed.recorded_default(device):
                ranked_precisions(typed, backend, device)
    _candidates(typed, "auto")
    golden = typed.golden
    for entry in (golden.expected.values() if golden is not None else ()):
        judge({"top1_agreement": 1.0, "max_abs_error": 0.0}, entry, golden.tolerance)


def _accepts_or_refuses(data: bytes, tokenizer=None) -> dict | None:
    t0 = time.perf_counter()
    try:
        manifest = parse_manifest(data, PATH)
    except BundleError:
        manifest = None
    if manifest is not None and tokenizer is not None:
        try:
            _downstream(manifest, tokenizer)
        except BundleError:
            pass
    assert time.perf_counter() - t0 < BOUND_SECONDS
    return manifest


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    _accepts_or_refuses(data)


@SETTINGS
@given(json_values)
def test_random_json_documents(doc):
    _accepts_or_refuses(json.dumps(doc).encode())


@SETTINGS
@given(st.dictionaries(st.sampled_from(["format", "format_version", "created", "model", "labels", "preprocess",
                                        "io", "limits", "opset", "graphs", "files", "tools", "parity"]),
                       json_values, max_size=13))
def test_random_objects_with_the_manifest_keys(doc):
    doc = {"format": "dfma-bundle", "format_version": 1, **doc}
    _accepts_or_refuses(json.dumps(doc).encode())


@SETTINGS
@given(data=st.data())
def test_mutated_real_manifests(base, paths, tokenizer, data):
    manifest = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        section = data.draw(st.sampled_from(sorted(manifest)), label="section")
        live = [p for p in paths if p[0] == section and _exists(manifest, p)] or [(section,)]
        path = data.draw(st.sampled_from(live), label="path")
        how = data.draw(st.sampled_from(["replace", "delete", "nudge", "retype"]), label="how")
        _mutate(manifest, path, how, data.draw(json_values, label="value"))
    _accepts_or_refuses(json.dumps(manifest).encode(), tokenizer)


def _exists(manifest, path) -> bool:
    node = manifest
    for k in path:
        if (isinstance(node, dict) and k in node) or (isinstance(node, list) and isinstance(k, int) and k < len(node)):
            node = node[k]
        else:
            return False
    return True


@SETTINGS
@given(st.binary(min_size=1, max_size=64), st.integers(0, 10))
def test_byte_flips_of_the_real_manifest(base, tokenizer, noise, where):
    data = bytearray(json.dumps(base, indent=2).encode())
    start = (where * len(data)) // 11
    data[start:start + len(noise)] = noise
    _accepts_or_refuses(bytes(data), tokenizer)


@settings(max_examples=60, deadline=timedelta(seconds=5), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_and_graph_tables_on_disk(tiny_bundle, tmp_path_factory, base, data):  # noqa: F811
    """Mutations of ``files`` and ``graphs`` through open_bundle on a real folder: hashes, sizes, links."""
    folder = tmp_path_factory.mktemp("mutated") / "b"
    copy_bundle(tiny_bundle, folder, writable=True)
    manifest = copy.deepcopy(base)
    section = data.draw(st.sampled_from(["files", "graphs"]), label="section")
    key = data.draw(st.sampled_from(sorted(manifest[section])), label="key")
    field = data.draw(st.sampled_from(sorted(manifest[section][key])), label="field")
    manifest[section][key][field] = data.draw(json_values | st.integers(-5, 10 ** 7), label="value")
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_digest(folder)
    t0 = time.perf_counter()
    try:
        open_bundle(folder)
    except BundleError:
        pass
    assert time.perf_counter() - t0 < 5.0
    shutil.rmtree(folder)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_python_and_cpp_accept_and_refuse_the_same_mutated_manifests(cli, tiny_bundle, tmp_path_factory, base,  # noqa: F811
                                                                       paths, data):
    """Both runtimes, whole loads, on the same mutations: the same verdict, each refusal typed."""
    import dfma.runtime as rt
    from fixtures_cpp import _run

    folder = tmp_path_factory.mktemp("parity") / "b"
    copy_bundle(tiny_bundle, folder, writable=True)
    manifest = copy.deepcopy(base)
    section = data.draw(st.sampled_from(["preprocess", "limits", "io", "graphs", "files", "labels", "model",
                                         "defaults", "golden"]), label="section")
    path = data.draw(st.sampled_from([p for p in paths if p[0] == section]), label="path")
    _mutate(manifest, path, data.draw(st.sampled_from(["replace", "delete", "nudge", "retype"]), label="how"),
            data.draw(json_values, label="value"))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    write_digest(folder)
    try:
        rt.load(folder, threads=1).close()
        python = "accepted"
    except BundleError as exc:
        python = f"refused: {exc}"
    proc = _run([cli, "info", "--bundle", folder], timeout=60)
    assert proc.returncode in (0, 2) and "terminate" not in proc.stderr, proc.stderr
    cpp = "accepted" if proc.returncode == 0 else f"refused: {proc.stderr.strip()}"
    assert python.split(":")[0] == cpp.split(":")[0], f"python {python}\nc++ {cpp}"
    shutil.rmtree(folder)
