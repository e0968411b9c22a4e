"""TensorRT 10.13 type stubs for mypy, prepared from the ``tensorrt-stubs`` wheel (no TensorRT needed).

``make test`` installs the wheel with ``pip install --no-deps --target build/trt-stubs`` (never into the
venv: its ``tensorrt/`` folder has no ``__init__.py`` and would make ``import tensorrt`` succeed as an
empty namespace package). As shipped (pybind11-stubgen output) mypy cannot use it: no ``py.typed`` marker,
a few lines that are not valid Python (a parameter named ``in``; a required parameter after defaulted
ones), a module-level ``bool: DataType`` that shadows the builtin in every ``-> bool``, and names used but
never imported. :func:`prepare` copies the ``.pyi`` files to ``build/typings`` with those fixed.
"""
from __future__ import annotations

import ast
import re
from importlib.metadata import distributions
from pathlib import Path

from repo_paths import REPO


WHEEL_DIR = REPO / "build" / "trt-stubs"
TYPINGS = REPO / "build" / "typings"
FIXES = [  # (regex, replacement)
    (r"(\(self(?:: IPluginV3)?, )in: ", r"\1in_: "),  # `in` is a keyword
    (r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)"),
    (r"^import tensorrt_libs as tensorrt_libs\n", ""),  # a runtime-only helper package
    (r"(?<![\w.'\"`])bool\b(?!: [\w.]*DataType)", "builtins.bool"),  # `trt.bool` shadows the builtin
    (r"\A(from __future__ import annotations\n)",
     r"\1import builtins\nimport typing_extensions\nfrom typing import Any as capsule\n"),
]


def prepare(wheel_dir: Path = WHEEL_DIR, dest: Path = TYPINGS) -> str | None:
    """Write the fixed stubs to ``dest``; returns the stubs' version, or None when the wheel is not there."""
    dist = next((d for d in distributions(path=[str(wheel_dir)]) if d.metadata["Name"] == "tensorrt-stubs"), None)
    if dist is None:
        return None
    for rel in dist.files or []:
        if rel.suffix != ".pyi":
            continue
        text = Path(dist.locate_file(rel)).read_text()
        for pattern, repl in FIXES:
            text = re.sub(pattern, repl, text, flags=re.M)
        ast.parse(text, filename=str(rel))  # SyntaxError here: a new stubs version needs another fix
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return dist.version
