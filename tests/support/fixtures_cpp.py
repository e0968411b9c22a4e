"""The C++ runtime's command-line tool, built once per test session (``cli``), for the tests that compare
it with Python (tests/cpp/test_cpp_runtime.py, tests/cpp/test_cpp_verify.py); shared through tests/conftest.py."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from repo_paths import REPO


CPP = REPO / "runtime" / "cpp"
BUILD = Path(os.environ.get("DFMA_CPP_BUILD", CPP / "build"))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def cli() -> Path:
    """Path of a freshly (incrementally) built dfma_cli."""
    if not shutil.which("cmake") or not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("cmake or a C++ compiler is not installed: the C++ runtime cannot be built here")
    if not os.environ.get("ONNXRUNTIME_ROOT"):
        fetch = _run(["bash", CPP / "scripts" / "fetch_deps.sh"], timeout=600)
        assert fetch.returncode == 0, f"fetch_deps.sh failed:\n{fetch.stdout}\n{fetch.stderr}"
    if not (BUILD / "CMakeCache.txt").is_file():
        conf = _run(["cmake", "-S", CPP, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"], timeout=600)
        assert conf.returncode == 0, f"cmake configure failed:\n{conf.stdout[-3000:]}\n{conf.stderr[-3000:]}"
    build = _run(["cmake", "--build", BUILD, "-j2"], timeout=1800)
    assert build.returncode == 0, f"build failed:\n{build.stdout[-5000:]}\n{build.stderr[-5000:]}"
    return BUILD / "dfma_cli"
