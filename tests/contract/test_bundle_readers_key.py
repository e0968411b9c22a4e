"""Every reader of a bundle honours ``DFMA_BUNDLE_KEY_FILE`` (issue 25): one opening path, ``open_bundle``.

A copy of the tiny bundle is signed with one key; with ``DFMA_BUNDLE_KEY_FILE`` naming another key every
reader refuses it with a BundleError about the signature (field ``hmac-sha256``), before it reads anything
else: the Python runtime, ``verify``, the benchmarks' bundle loading, ``graph_report``, ``slim_bundle``,
``to_triton``, ``to_tensorrt``, ``update_bundle`` and Triton's Python models (preprocess, postprocess). With
the right key (or none: the digest alone) the same readers accept it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dfma.contract.errors import BundleError
from dfma.contract.manifest_digest import KEY_ENV, SIGNATURE_SCHEME, write_digest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401


@pytest.fixture(scope="module")
def signed(tiny_bundle, tmp_path_factory):  # noqa: F811
    """``(bundle, right key file, wrong key file)``: a copy of the tiny bundle signed with the right key."""
    root = tmp_path_factory.mktemp("signed")
    bundle = root / "bundle"
    copy_bundle(tiny_bundle, bundle)
    right, wrong = root / "right.key", root / "wrong.key"
    right.write_bytes(b"the right key, 32 bytes of it...")
    wrong.write_bytes(b"another key, not the one it used")
    write_digest(bundle, key=right.read_bytes())
    return bundle, right, wrong


def _refused(call) -> BundleError:
    with pytest.raises(BundleError) as info:
        call()
    assert info.value.field == SIGNATURE_SCHEME and "signature does not match" in str(info.value), info.value
    return info.value


def _runtime_load(bundle: Path, tmp: Path) -> None:
    import dfma.runtime as rt

    rt.load(bundle, threads=1).close()


def _verify(bundle: Path, tmp: Path) -> None:
    from dfma.runtime.verify import verify

    verify(bundle, repeats=1)


def _benchmarks(bundle: Path, tmp: Path) -> None:
    from dfma.benchmarks.backends import read_bundle

    read_bundle(bundle)


def _graph_report(bundle: Path, tmp: Path) -> None:
    from dfma.export.graph_report import bundle_report

    bundle_report(bundle)


def _slim(bundle: Path, tmp: Path) -> None:
    from dfma.export.slim_bundle import slim

    slim(bundle, tmp / "slim", keep=["ort"], force=True)


def _to_triton(bundle: Path, tmp: Path) -> None:
    from dfma.export.to_triton import TritonOptions, build_repository

    build_repository(TritonOptions(bundle=bundle, out=tmp / "repo", force=True))


def _to_tensorrt(bundle: Path, tmp: Path) -> None:
    from dfma.export.to_tensorrt import run

    run(argparse.Namespace(bundle=bundle, precision="fp16", workspace_mib=None, opt_batch=8, opt_length=48,
                           timing_cache=None, device=0, verbose=False))


def _update_bundle(bundle: Path, tmp: Path) -> None:
    from dfma.contract.bundle_writer import update_bundle

    update_bundle(bundle, {}, edit=lambda m: m)


READERS = {"runtime.load": _runtime_load, "verify": _verify, "benchmarks": _benchmarks,
           "graph_report": _graph_report, "slim_bundle": _slim, "to_triton": _to_triton,
           "update_bundle": _update_bundle}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_a_bundle_signed_with_another_key(signed, reader, tmp_path, monkeypatch):
    bundle, right, wrong = signed
    monkeypatch.setenv(KEY_ENV, str(wrong))
    _refused(lambda: READERS[reader](bundle, tmp_path))
    monkeypatch.setenv(KEY_ENV, str(right))
    READERS[reader](bundle, tmp_path)  # the right key: accepted (the refusal above was the key's)


def test_to_tensorrt_refuses_before_it_needs_tensorrt(signed, tmp_path, monkeypatch):
    bundle, _, wrong = signed
    monkeypatch.setenv(KEY_ENV, str(wrong))
    _refused(lambda: _to_tensorrt(bundle, tmp_path))


def test_tritons_python_models_refuse_a_copy_signed_with_another_key(signed, tmp_path, monkeypatch):
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from triton_harness import PythonModel

    bundle, right, wrong = signed
    monkeypatch.setenv(KEY_ENV, str(right))
    repo = tmp_path / "repo"
    _to_triton(bundle, tmp_path)
    for name in ("dfma_preprocess", "dfma_postprocess"):
        PythonModel(repo, name, monkeypatch)  # the right key: initialize() loads
        monkeypatch.setenv(KEY_ENV, str(wrong))
        _refused(lambda: PythonModel(repo, name, monkeypatch))
        monkeypatch.setenv(KEY_ENV, str(right))
