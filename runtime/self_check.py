"""``precision="auto"`` on the serving host: walk the bundle's ranked choices, checking an INT8 graph on the
golden set where this CPU is of another class than the one its guard ran on, and fall back when it fails.

The precision step measured every graph on the export host; a CPU of another class may compute INT8
differently (AVX2 without VNNI saturates U8xS8 products). So a non-fp32 graph is served here only if it was
measured on this CPU class, or passes its golden set here (``dfma.contract.golden.judge``); the reasons of
every graph passed over go into the choice's reason (``describe()["precision_reason"]``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dfma.backends.golden_check import run_golden
from dfma.contract.bundle import Bundle
from dfma.contract.errors import BundleError
from dfma.contract.golden import judge, load_golden
from dfma.contract.graphs import batch_dependent, recorded_default
from dfma.host import host_info

SELF_CHECK = ("auto", "always", "never")


def ranked_precisions(manifest: Mapping, backend: str, device: str) -> tuple[list[str], str]:
    """The precisions ``auto`` tries on ``backend``, best first (fp32 last), and the recorded reason."""
    rec = recorded_default(manifest, backend) or recorded_default(manifest, device)
    if rec is None:
        return ["fp32"], f"auto: the bundle records no {device} default (run export/to_precision.py); fp32"
    ranked = [e["precision"] for e in rec.get("ranked") or [] if e.get("backend") in (backend, None)]
    order = list(dict.fromkeys(ranked or [rec["precision"]]))
    if "fp32" not in order:
        order.append("fp32")
    return order, f"auto: {rec.get('reason', 'the bundle default')}"


def needs_check(manifest: Mapping, key: str, precision: str, mode: str) -> tuple[bool, str]:
    """Whether graph ``key`` must pass the golden set here before ``auto`` serves it, and why."""
    if mode == "never" or precision == "fp32":
        return False, ""
    if mode == "always":
        return True, "self-check asked for"
    expected = ((manifest.get("golden") or {}).get("expected") or {}).get(key) or {}
    measured_on = (expected.get("host") or {}).get("class")
    here = host_info()["class"]
    if measured_on == here:
        return False, ""
    return True, f"measured on {measured_on or 'an unrecorded CPU class'}, this host is {here}"


BATCH_DEPENDENT_NOTE = ("batch-dependent (its answers change with the other requests in a batch); "
                        "allow_batch_dependent=True serves it")


def auto_open(bundle: Bundle, open_precision: Callable[[str], tuple[Any, str]], backend: str, device: str,
              mode: str = "auto", allow_batch_dependent: bool = False) -> tuple[Any, str, str, str]:
    """``(runner, graph key, precision, reason)``: the first ranked precision whose graph opens, is not
    marked batch-dependent (:func:`batch_dependent`; unless ``allow_batch_dependent``) and, where
    :func:`needs_check` says so, passes the golden set here; fp32 last. ``open_precision(p)`` opens the
    backend's preferred graph of precision ``p`` (raises BundleError when there is none)."""
    order, reason = ranked_precisions(bundle.manifest, backend, device)
    golden, notes = None, []
    for precision in order:
        try:
            runner, key = open_precision(precision)
        except BundleError as exc:
            notes.append(f"{precision}: {exc}")
            continue
        if not allow_batch_dependent and batch_dependent(bundle.manifest, key):
            runner.close()
            notes.append(f"{key} passed over: {BATCH_DEPENDENT_NOTE}")
            continue
        check, why = needs_check(bundle.manifest, key, precision, mode)
        if not check:
            return runner, key, precision, "; ".join([reason, *notes]) if notes else reason
        section = bundle.manifest.get("golden") or {}
        if golden is None:
            golden = load_golden(bundle.folder, bundle.manifest)
        if golden is None:
            runner.close()
            notes.append(f"{key}: {why}, and the bundle has no golden set to check it here")
            continue
        passed, detail = judge(run_golden(runner, golden), (section.get("expected") or {}).get(key),
                               section.get("tolerance") or {})
        if passed:
            return runner, key, precision, "; ".join([reason, *notes, f"{key} passed its golden set here ({why}: {detail})"])
        runner.close()
        notes.append(f"{key} failed its golden set here ({why}: {detail})")
    raise BundleError("auto: no graph passes on this host: " + "; ".join(notes))
