"""Shared test fixtures (the helpers themselves live in tests/support/, on sys.path via pyproject's pytest
`pythonpath`): the MNRE annotations (skipped when absent), the tiny bundle, the C++ tool."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_bundle import tiny_bundle, tiny_eager  # noqa: F401  (shared: one tiny bundle per session)
from fixtures_cpp import cli  # noqa: F401  (shared: the C++ tool, built once per session)
from repo_paths import SHARED_MNRE


@pytest.fixture(scope="session")
def mnre_dir() -> Path:
    """The folder with mnre_train.txt, mnre_val.txt and rel2id.json; skips the test when absent."""
    if not (SHARED_MNRE / "mnre_train.txt").is_file():
        pytest.skip(f"MNRE annotations not found at {SHARED_MNRE} (set DFMA_MNRE_DIR)")
    return SHARED_MNRE


def pytest_report_header(config):
    """The CPU class the INT8 tests are judged for (tests assert what is right for this class)."""
    from dfma.host import host_info

    info = host_info()
    return [f"dfma host: {info['cpu']}; CPU class {info['class']} (from {info['class_from']}); "
            f"flags {' '.join(info['flags']) or '-'}"]
