"""The docs cannot drift silently: one "where to change what" table, the same in README.md and in
docs/contract.md section 5, naming only files, folders and names that exist; the README's first API
example on its first screen; every relative link of the user docs pointing at a file that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from repo_paths import REPO


README, CONTRACT = REPO / "README.md", REPO / "docs" / "contract.md"
BEGIN, END = "<!-- where-to-change-what:", "<!-- where-to-change-what: end -->"
# import name -> folder (pyproject.toml's package-dir: dfma/ -> dfma, export/ -> dfma.export, ...)
NAMESPACES = {"dfma.runtime": "runtime", "dfma.export": "export", "dfma.benchmarks": "benchmarks", "dfma": "dfma"}
FILE_SUFFIXES = (".py", ".md", ".toml", ".json", ".hpp", ".cpp", ".txt")
USER_DOCS = [README, REPO / "runtime" / "README.md", REPO / "runtime" / "cpp" / "README.md",
             REPO / "benchmarks" / "RESULTS.md", *sorted((REPO / "docs").glob("*.md"))]


def shared_table(path: Path) -> str:
    """The text between the table's begin and end markers of ``path`` (AssertionError when missing)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 2, f"{path.name}: expected one begin and one end marker {BEGIN!r}"
    start = text.index("\n", text.index(BEGIN)) + 1
    return text[start:text.index(END)]


def code_spans(table: str) -> list[str]:
    """Every `...` span of the table, in order."""
    return re.findall(r"`([^`]+)`", table)


def test_one_table_in_readme_and_contract():
    readme, contract = shared_table(README), shared_table(CONTRACT)
    assert readme == contract, "README.md and docs/contract.md section 5 must carry the same table"
    rows = [line for line in readme.splitlines() if line.startswith("| ")]
    assert rows[0] == "| to ... | change | and nothing else because |"
    assert len(rows) >= 7, rows
    section_5 = CONTRACT.read_text(encoding="utf-8").split("## 5.", 1)[1]
    assert END in section_5, "the table belongs to docs/contract.md section 5"


def test_every_path_in_the_table_exists():
    paths = [s for s in code_spans(shared_table(README))
             if " " not in s and ("/" in s or s.endswith(FILE_SUFFIXES))]
    assert len(paths) >= 20, paths
    missing = [p for p in paths if not (REPO / p).exists() or (p.endswith("/") and not (REPO / p).is_dir())]
    assert not missing, f"the where-to-change-what table names paths that do not exist: {missing}"


def _module_file(parts: list[str]) -> Path | None:
    """The source file of the import name ``parts`` (a module or a package), or None."""
    for prefix, folder in NAMESPACES.items():
        head = prefix.split(".")
        if parts[:len(head)] == head:
            base = REPO / folder / Path(*parts[len(head):]) if parts[len(head):] else REPO / folder
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def test_every_dotted_name_in_the_table_resolves():
    names = [s for s in code_spans(shared_table(README)) if re.fullmatch(r"dfma(\.\w+)+", s)]
    assert names, "the table names no dfma.* object"
    for name in names:
        parts = name.split(".")
        module = _module_file(parts)
        if module is not None:
            continue
        module = _module_file(parts[:-1])
        assert module is not None, f"{name}: no module {'.'.join(parts[:-1])}"
        attr = parts[-1]
        defined = re.search(rf"^(def|class) {attr}\b|^{attr}\s*[:=]", module.read_text(encoding="utf-8"), re.M)
        assert defined, f"{name}: {module.relative_to(REPO)} defines no {attr}"


def test_contract_sections_named_in_the_table_exist():
    contract = CONTRACT.read_text(encoding="utf-8")
    numbers = set()
    for first, last in re.findall(r"`docs/contract\.md` sections? ([\d.]+)(?:-([\d.]+))?", shared_table(README)):
        numbers.update(n for n in (first, last) if n)
    assert numbers
    for n in sorted(numbers):
        assert re.search(rf"^#+ {re.escape(n)}[. ]", contract, re.M), f"docs/contract.md has no section {n}"


def test_first_api_example_is_on_the_readmes_first_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    heading = next(i for i, line in enumerate(lines) if line.lstrip("#").strip() == "Embed in Python")
    block = next(i for i in range(heading, len(lines)) if lines[i] == "```python")
    assert block < 80, f"the first Python API example starts on line {block + 1}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files(doc):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z]+:", path):
            continue
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to missing files {broken}"
