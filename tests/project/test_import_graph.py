"""The import graph of the ``dfma`` namespace: no cycles, and a contract that depends on nothing of ours.

Every ``import`` counts, also those inside functions (a lazy import still ties two modules together: a cycle
through one is a cycle a reader must untangle, and the one through ``export/to_precision.py`` loaded that
script twice). Parsed with ``ast``, so nothing is imported and the test needs neither torch nor ONNX.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from repo_paths import REPO


# import name -> folder, as pyproject.toml's package-dir maps them
ROOTS = {"dfma": REPO / "dfma", "dfma.export": REPO / "export", "dfma.runtime": REPO / "runtime",
         "dfma.benchmarks": REPO / "benchmarks"}
CONTRACT_MAY_IMPORT = {"numpy", "tokenizers", "PIL"}


def _modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if any(part in ("cpp", "tests", "triton_models", "build") for part in rel.parts[:-1]):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if prefix == "dfma" and parts and f"dfma.{parts[0]}" in ROOTS:
                continue
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute and relative, at any depth of the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        graph[name] = {m for m in _imports(name, path) if m in MODULES and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_walk_sees_every_part():
    for name in ("dfma.contract.bundle", "dfma.backends.base", "dfma.export.to_precision", "dfma.runtime.extractor",
                 "dfma.benchmarks.latency", "dfma.model.dfma_model"):
        assert name in MODULES, name


def test_a_cycle_is_found_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_dfma():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (every import counts, lazy ones too):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("dfma.contract")))
def test_contract_imports_only_the_standard_library_numpy_tokenizers_pillow(name):
    stdlib = set(sys.stdlib_module_names)
    bad = sorted(m for m in _imports(name, MODULES[name])
                 if not m.startswith("dfma.contract") and m != "__future__"
                 and m.split(".")[0] not in stdlib | CONTRACT_MAY_IMPORT)
    # `from dfma.contract import x` also yields "dfma.contract.x"; "dfma" alone would be the namespace package
    assert not bad, f"{MODULES[name].relative_to(REPO)} imports {bad}"
