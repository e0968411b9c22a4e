"""mypy over the TensorRT code against the TensorRT 10.13 API (type stubs), where TensorRT cannot run.

Which modules and every option: ``[tool.mypy]`` in pyproject.toml. mypy does not follow the editable
install's ``package-dir`` mapping (export/ -> dfma.export, ...), so the packages are linked into
build/mypy-tree first. A sentinel module proves the stubs are in use: were ``tensorrt`` typed Any, its
``# type: ignore[call-arg]`` would be unused, which ``warn_unused_ignores`` reports.
"""
from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from trt_stubs import REPO, prepare

TREE = REPO / "build" / "mypy-tree"
SENTINEL = "import tensorrt\n\ntensorrt.Builder()  # type: ignore[call-arg]  # needs a logger: the stubs are used\n"
WRONG = '''import tensorrt as trt


def build(logger: trt.Logger) -> None:
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 30
    builder.build_engine(builder.create_network(0), config)
'''


def link_tree(extra: dict[str, str]) -> list[str]:
    """Link pyproject's package-dir mapping into TREE, add ``extra`` modules; returns mypy's arguments."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    for pkg in sorted(mapping, key=lambda p: p.count(".")):
        dest, src = TREE.joinpath(*pkg.split(".")), REPO / mapping[pkg]
        if any(p.startswith(pkg + ".") for p in mapping):  # holds mapped subpackages: a real folder
            dest.mkdir(parents=True, exist_ok=True)
            for link in dest.iterdir():
                if link.is_symlink():
                    link.unlink()
            for entry in src.iterdir():
                if f"{pkg}.{entry.name}" not in mapping and entry.name != "__pycache__":
                    (dest / entry.name).symlink_to(entry)
        else:
            if dest.is_symlink():
                dest.unlink()
            dest.symlink_to(src, target_is_directory=True)
    for name, text in extra.items():
        (TREE / f"{name}.py").write_text(text)
    modules = config["tool"]["mypy"]["modules"] + list(extra)
    return [arg for m in modules for arg in ("-m", m)]


def run_mypy(extra: dict[str, str]) -> subprocess.CompletedProcess:
    """mypy with the project's configuration over its TensorRT modules and ``extra``."""
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                           *link_tree(extra)], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def stubs():
    pytest.importorskip("mypy")
    version = prepare()
    if version is None:
        pytest.skip("tensorrt-stubs not installed in build/trt-stubs (make test installs it)")
    return version


def test_tensorrt_code_type_checks_against_the_stubs(stubs):
    proc = run_mypy({"_trt_stubs_in_use": SENTINEL})
    out = (proc.stdout + proc.stderr).replace(str(TREE) + "/", "")
    assert proc.returncode == 0, out


def test_the_check_catches_tensorrt_8_calls(stubs):
    """TensorRT 8 API (removed in 10) written against the stubs fails the check, naming each call."""
    proc = run_mypy({"_trt_stubs_in_use": SENTINEL, "_trt8_api": WRONG})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert '"IBuilderConfig" has no attribute "max_workspace_size"' in out
    assert '"Builder" has no attribute "build_engine"' in out
