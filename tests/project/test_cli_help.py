"""``--help`` of every command-line tool (each file with a ``__main__`` block, found, not listed) and of each
of its subcommands: it runs, and no option's help says its default twice or says ``(default: None)``."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from repo_paths import REPO


# run as files, the way their docs call them
SCRIPT_FOLDERS = ("export", "benchmarks", "examples")
# run with -m under the dfma namespace: folder -> import name
MODULE_FOLDERS = {"dfma": "dfma", "runtime": "dfma.runtime"}
SKIP_PARTS = {"cpp", "tests", "triton_models", "__pycache__"}
# export/precision_options.py builds its parser with argparse.ArgumentDefaultsHelpFormatter; another branch
# rewrites it: there `formatter_class=dfma.help_format.DefaultsOnceFormatter` fixes it, and this entry goes.
KNOWN_DUPLICATES: set[str] = set()


def _commands() -> list[tuple[str, list[str]]]:
    """(id, argv before --help) of every command-line tool of the repository."""
    out = []
    for folder in (*SCRIPT_FOLDERS, *MODULE_FOLDERS):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            if SKIP_PARTS & set(rel.parts) or 'if __name__ == "__main__"' not in path.read_text(encoding="utf-8"):
                continue
            if folder in MODULE_FOLDERS:
                parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
                if parts[-1] == "__main__":
                    parts = parts[:-1]
                out.append((rel.as_posix(), ["-m", ".".join([MODULE_FOLDERS[folder], *parts])]))
            else:
                out.append((rel.as_posix(), [str(path)]))
    return out


COMMANDS = _commands()


def _help(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, f"{' '.join(argv)} --help: {proc.stderr[-2000:]}"
    return proc.stdout


def _option_entries(text: str) -> list[str]:
    """Each option's entry of an argparse help (its flag line and the indented lines after it), joined."""
    entries: list[str] = []
    for line in text.splitlines():
        if re.match(r"^ {2}\S", line):
            entries.append(line.strip())
        elif entries and entries[-1] and re.match(r"^ {3,}\S", line):
            entries[-1] += " " + line.strip()
        else:  # a heading or a blank line ends the entry
            entries.append("")
    return [e for e in entries if e]


def _subcommands(text: str) -> list[str]:
    """The subcommands named in the usage line's ``{a,b,c}``."""
    usage = text.split("\n\n", 1)[0]
    match = re.search(r"\{([\w,-]+)\}", usage)
    return match.group(1).split(",") if match else []


def test_every_tool_is_found():
    ids = {i for i, _ in COMMANDS}
    assert {"export/to_onnx.py", "export/to_precision.py", "benchmarks/latency.py", "benchmarks/traffic.py",
            "runtime/__main__.py"} <= ids, sorted(ids)


def test_entries_parse():
    text = "options:\n  -h, --help  show\n  --x X       the x (default:\n              3) (default: 4)\n"
    assert _option_entries(text) == ["-h, --help  show", "--x X       the x (default: 3) (default: 4)"]


@pytest.mark.slow
@pytest.mark.parametrize("name, argv", COMMANDS, ids=[i for i, _ in COMMANDS])
def test_help_says_each_default_once(name, argv):
    text = _help(argv)
    pages = {name: text, **{f"{name} {sub}": _help([*argv, sub]) for sub in _subcommands(text)}}
    bad = [f"{page}: {entry}" for page, page_text in pages.items() for entry in _option_entries(page_text)
           if len(re.findall(r"\(default", entry, re.I)) > 1 or re.search(r"\(default: (None|False|)\)", entry)]
    if name in KNOWN_DUPLICATES:
        assert bad, f"{name} says each default once now: remove it from KNOWN_DUPLICATES"
        pytest.xfail(f"{name}: fixed on merge (see KNOWN_DUPLICATES): {bad[0]}")
    assert not bad, "\n".join(bad)
