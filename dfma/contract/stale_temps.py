"""Hidden work folders beside a target (``.<target>.<kind>-<host>-<pid>-<random>``) and removing stale ones.

Every step that writes a folder builds it in a hidden sibling and renames it into place
(``dfma.contract.bundle_writer.AtomicFolder``, ``update_bundle``, the precision step's scratch folder). A
process killed outright (SIGKILL, power loss) cannot remove its sibling, so the next writer of the same
target calls :func:`remove_stale_temps`, which removes only that target's work folders, and of those only
the ones whose owner is gone:

- named by this host: the owning pid is no longer alive, or is alive but started after the folder last
  changed (the pid was reused; Linux ``/proc``);
- named by another host (a shared file system), or by the naming of earlier versions
  (``.<target>.<kind>-<random>``, no owner): untouched for ``STALE_AFTER_HOURS``.

Never: another target's folders, anything that is not a folder, a link, a folder of another user, or an
unrelated hidden folder.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

KINDS = ("tmp", "old", "probe", "precision")
STALE_AFTER_HOURS = 24.0
_MAX_CHILDREN = 1000  # children looked at for the newest change time


def host_tag() -> str:
    """This host's name reduced to ``[A-Za-z0-9]`` (at most 32 characters), as work-folder names carry it."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def temp_prefix(target: str | os.PathLike, kind: str) -> str:
    """The name prefix of a work folder of ``kind`` (one of KINDS) for ``target``, owned by this process."""
    if kind not in KINDS:
        raise ValueError(f"work-folder kind {kind!r}: one of {KINDS}")
    return f".{Path(target).name}.{kind}-{host_tag()}-{os.getpid()}-"


def _patterns(name: str) -> tuple[re.Pattern, re.Pattern]:
    kinds = "|".join(KINDS)
    owned = re.compile(rf"\.{re.escape(name)}\.(?:{kinds})-(?P<host>[A-Za-z0-9]+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+")
    legacy = re.compile(rf"\.{re.escape(name)}\.(?:{kinds})-[A-Za-z0-9_]{{6,8}}")
    return owned, legacy


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """Epoch seconds when process ``pid`` started (Linux ``/proc``), else None."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if boot is None else boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def owner_alive(pid: int, changed: float) -> bool:
    """Whether process ``pid`` of this host lives and may be the one that last changed a folder at ``changed``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    started = process_start_time(pid)
    return started is None or started <= changed + 2.0  # started after the last change: a reused pid


def _last_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    try:
        with os.scandir(path) as entries:
            for i, entry in enumerate(entries):
                if i >= _MAX_CHILDREN:
                    break
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    except OSError:
        pass
    return newest


def stale_temps(target: str | os.PathLike, *, max_age_hours: float = STALE_AFTER_HOURS,
                now: float | None = None) -> list[Path]:
    """The stale work folders of ``target`` (module doc), sorted; nothing is removed."""
    target = Path(target).absolute()
    owned, legacy = _patterns(target.name)
    now = time.time() if now is None else now
    here, uid = host_tag(), os.getuid() if hasattr(os, "getuid") else None
    out = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        m = owned.fullmatch(entry.name)
        if m is None and not legacy.fullmatch(entry.name):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or (uid is not None and entry.stat(follow_symlinks=False).st_uid != uid):
                continue
            changed = _last_change(Path(entry.path))
        except OSError:
            continue
        if m is not None and m.group("host") == here:
            stale = not owner_alive(int(m.group("pid")), changed)
        else:
            stale = now - changed > max_age_hours * 3600
        if stale:
            out.append(Path(entry.path))
    return sorted(out)


def remove_stale_temps(target: str | os.PathLike, **kw) -> list[Path]:
    """Remove :func:`stale_temps` of ``target``; returns what was removed."""
    removed = []
    for path in stale_temps(target, **kw):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
