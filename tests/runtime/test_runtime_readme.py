"""The `## Embed in Python` example of README.md and runtime/README.md runs as written (tiny bundle)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_bundle import jpeg_bytes

from repo_paths import REPO


READMES = [REPO / "README.md", REPO / "runtime" / "README.md"]


def embed_example(readme: Path) -> str:
    """The first ```python block after the `## Embed in Python` heading."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Embed in Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under '## Embed in Python'"
    return match.group(1)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_is_about_ten_lines(readme):
    assert len(embed_example(readme).strip().splitlines()) <= 12


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_runs_as_written(readme, tiny_bundle, tmp_path):
    (tmp_path / "bundle").symlink_to(tiny_bundle, target_is_directory=True)
    (tmp_path / "post.jpg").write_bytes(jpeg_bytes(0))
    proc = subprocess.run([sys.executable, "-c", embed_example(readme)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "onnxruntime-cpu"
    relation, probability, n = lines[1].split()
    assert relation.startswith("/") or relation == "None"
    assert 0 < float(probability) <= 1 and n == "23"
