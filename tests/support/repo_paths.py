"""Where things are, for every test and helper: the repository root and the shared MNRE annotations."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # tests/support/repo_paths.py -> the repository root
TESTS = REPO / "tests"
SUPPORT = TESTS / "support"  # the helper modules (on sys.path through pyproject's pytest `pythonpath`)
CASES = TESTS / "cases"  # test data tables
SHARED_MNRE = Path(os.environ.get("DFMA_MNRE_DIR", REPO.parent / "shared" / "data" / "mnre"))
