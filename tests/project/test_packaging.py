"""Packaging: the `cpu` / `gpu` extras pick one ONNX Runtime wheel, every source folder is a listed package,
and ``import dfma.runtime`` without ONNX Runtime says in one line what to install.

The resolution tests ask pip (``install --dry-run --report``, nothing installed) what it would install into an
empty environment under the project's constraints; they need the package index, as ``make setup`` does.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from repo_paths import REPO


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# folders of Python files that are not part of the package: the C++ runtime's scripts and test-data makers
NOT_SHIPPED = ("runtime/cpp",)


def _would_install(tmp_path: Path, requirement: str) -> dict[str, str]:
    """name -> version of everything pip resolves for ``requirement`` in an empty environment."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), "-c", "constraints.txt", requirement],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in items}


@pytest.mark.slow
@pytest.mark.parametrize("extras, wanted, unwanted", [
    ("gpu", "onnxruntime-gpu", "onnxruntime"),
    ("cpu", "onnxruntime", "onnxruntime-gpu"),
    # what a GPU host installs for export and benchmarks: no other extra drags the CPU wheel back in
    ("gpu,torch,export,openvino,dev", "onnxruntime-gpu", "onnxruntime"),
])
def test_extra_chooses_one_onnxruntime_wheel(tmp_path, extras, wanted, unwanted):
    names = _would_install(tmp_path, f".[{extras}]")
    assert "dfma" in names
    assert wanted in names, sorted(names)
    assert unwanted not in names, f".[{extras}] would install {unwanted} {names.get(unwanted)} beside {wanted}"


def test_base_dependencies_name_no_onnxruntime_wheel():
    deps = PYPROJECT["project"]["dependencies"]
    assert not [d for d in deps if d.lower().startswith("onnxruntime")], deps
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [d.split(">")[0].split("=")[0] for d in extras["cpu"]] == ["onnxruntime"]
    assert [d.split(">")[0].split("=")[0] for d in extras["gpu"]] == ["onnxruntime-gpu"]


def test_every_folder_of_python_files_is_a_listed_package():
    """setuptools warns ("Package would be ignored") about an importable folder it is not told to ship."""
    setup = PYPROJECT["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for name, folder in setup["package-dir"].items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.parent.relative_to(REPO).as_posix()
            if any(rel == p or rel.startswith(p + "/") for p in NOT_SHIPPED) or "__pycache__" in rel:
                continue
            sub = path.parent.relative_to(REPO / folder).parts
            found.add(".".join([name, *sub]))
    missing = found - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert not listed - found, f"listed packages with no Python files: {sorted(listed - found)}"


def test_runtime_without_onnxruntime_says_what_to_install():
    code = "import sys; sys.modules['onnxruntime'] = None\nimport dfma.runtime"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dfma.contract.errors.OnnxRuntimeMissing: "), proc.stderr
    assert "pip install 'dfma[cpu]'" in last and "'dfma[gpu]'" in last, last
    from dfma.contract.errors import DFMAError, OnnxRuntimeMissing
    assert issubclass(OnnxRuntimeMissing, ImportError) and issubclass(OnnxRuntimeMissing, DFMAError)


def test_runtime_command_without_onnxruntime_says_what_to_install():
    code = "import sys, runpy; sys.modules['onnxruntime'] = None; runpy.run_module('dfma.runtime', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "pip install 'dfma[cpu]'" in proc.stderr.strip().splitlines()[-1], proc.stderr
