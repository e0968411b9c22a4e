"""A killed writer's work folders (issue 14): the next AtomicFolder / update_bundle for the same target removes
its own stale ones (dead or reused pid on this host; other hosts' after 24 h) and never anything else."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401

from dfma.contract.bundle import verify_bundle
from dfma.contract.bundle_writer import AtomicFolder, update_bundle
from dfma.contract.stale_temps import host_tag, stale_temps

from repo_paths import REPO


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:  # noqa: F811
    """A writable copy of the tiny bundle."""
    return copy_bundle(tiny_bundle, tmp_path / "bundle", writable=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, hours: float) -> None:
    t = time.time() - hours * 3600
    os.utime(path, (t, t))


def test_the_next_writer_removes_its_own_stale_work_folders_and_nothing_else(tmp_path):
    host, dead = host_tag(), _dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        target = tmp_path / "b"
        stale = [f".b.tmp-{host}-{dead}-abc123xy", f".b.old-{host}-{dead}-0f3a9c1e",
                 f".b.precision-{host}-{dead}-q1w2e3r4", f".b.probe-{host}-{dead}-zz", ".b.tmp-legacy12",
                 f".b.tmp-otherhost-{sleeper.pid}-old"]
        live = [f".b.tmp-{host}-{sleeper.pid}-live1234", f".b.tmp-{host}-{os.getpid()}-mine5678",
                f".b.tmp-otherhost-{dead}-young", ".b.tmp-young123"]
        unrelated = [f".c.tmp-{host}-{dead}-other123", f".bb.tmp-{host}-{dead}-other123", ".cache", ".b.tmpfoo",
                     f".b.cache-{host}-{dead}-x"]
        for name in stale + live + unrelated:
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.onnx").write_bytes(b"half a graph")
        for name in (".b.tmp-legacy12", f".b.tmp-otherhost-{sleeper.pid}-old"):
            for p in (tmp_path / name / "model.onnx", tmp_path / name):
                _age(p, 48)
        (tmp_path / f".b.tmp-{host}-{dead}-afile").write_text("a file, not a work folder")
        (tmp_path / "precious").mkdir()
        (tmp_path / "precious" / "keep.txt").write_text("x")
        (tmp_path / f".b.tmp-{host}-{dead}-link").symlink_to(tmp_path / "precious")
        assert sorted(p.name for p in stale_temps(target)) == sorted(stale)

        with AtomicFolder(target) as folder:
            (folder.tmp / "x").write_text("new")
            folder.commit()
        left = {p.name for p in tmp_path.iterdir()}
        assert not left & set(stale)
        assert set(live + unrelated) <= left and (tmp_path / "precious" / "keep.txt").is_file()
        assert {f".b.tmp-{host}-{dead}-afile", f".b.tmp-{host}-{dead}-link"} <= left
        assert (target / "x").read_text() == "new"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reused_pid_does_not_keep_a_stale_folder(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / f".b.tmp-{host_tag()}-{sleeper.pid}-reused12"
        folder.mkdir()
        _age(folder, 1)  # last changed an hour before that process started: it cannot be the owner
        assert stale_temps(tmp_path / "b") == [folder]
    finally:
        sleeper.kill()
        sleeper.wait()


KILLED_WRITER = """
import sys, time
from dfma.contract.bundle_writer import BundleWriter
with BundleWriter(sys.argv[1]) as w:
    w.path("model.onnx").write_bytes(b"half a graph")
    print(w.tmp, flush=True)
    time.sleep(120)
"""


def test_a_writer_killed_outright_leaves_nothing_after_the_next_run(tmp_path):
    target = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_dir() and tmp.parent == tmp_path and f"-{proc.pid}-" in tmp.name
    assert stale_temps(target) == []  # its owner lives: not stale
    proc.kill()
    proc.wait()
    assert tmp.is_dir()  # SIGKILL: nothing could clean up
    with AtomicFolder(target) as folder:
        (folder.tmp / "ok").write_text("1")
        folder.commit()
    assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_update_bundle_removes_its_targets_stale_folders(bundle):
    stale = bundle.parent / f".{bundle.name}.tmp-{host_tag()}-{_dead_pid()}-deadbeef"
    stale.mkdir()
    update_bundle(bundle, {}, {"tools": {"note": "x"}})
    assert not stale.exists()
    assert verify_bundle(bundle)["tools"]["note"] == "x"


def test_work_folder_names_carry_host_and_pid():
    assert socket.gethostname()  # host_tag falls back to "host" where there is none
    assert host_tag().isalnum()
