"""``precision="auto"`` on the serving host: walk the bundle's ranked choices, checking an INT8 graph on the
golden set where this CPU is of another class than the one its guard ran on, and fall back when it fails.

The precision step measured every graph on the export host; a CPU of another class may compute INT8
differently (AVX2 without VNNI saturates U8xS8 products). So a non-fp32 graph is served here only if it was
measured on this CPU class, or passes its golden set here (``dfma.contract.golden.judge``); the reasons of
every graph passed over go into the choice's reason (``describe()["precision_reason"]``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dfma.backends.golden_check import run_golden
from dfma.contract.bundle import Bundle
from dfma.contract.errors import BundleError
from dfma.contract.golden import judge, load_golden
from dfma.contract.manifest import Manifest
from dfma.host import host_info

SELF_CHECK = ("auto", "always", "never")


def ranked_precisions(manifest: Manifest, backend: str, device: str) -> tuple[list[str], str]:
    """The precisions ``auto`` tries on ``backend``, best first (fp32 last), and the recorded reason."""
    rec = manifest.recorded_default(backend) or manifest.recorded_default(device)
    if rec is None:
        return ["fp32"], f"auto: the bundle records no {device} default (run export/to_precision.py); fp32"
    ranked = [e.precision for e in rec.ranked if e.backend in (backend, None)]
    order = list(dict.fromkeys(ranked or [rec.precision]))
    if "fp32" not in order:
        order.append("fp32")
    return order, f"auto: {rec.reason or 'the bundle default'}"


def needs_check(manifest: Manifest, key: str, precision: str, mode: str) -> tuple[bool, str]:
    """Whether graph ``key`` must pass the golden set here before ``auto`` serves it, and why."""
    if mode == "never" or precision == "fp32":
        return False, ""
    if mode == "always":
        return True, "self-check asked for"
    expected = manifest.golden_expected(key)
    measured_on = expected.host_class if expected is not None else None
    here = host_info()["class"]
    if measured_on == here:
        return False, ""
    return True, f"measured on {measured_on or 'an unrecorded CPU class'}, this host is {here}"


BATCH_DEPENDENT_NOTE = ("batch-dependent (its answers change with the other requests in a batch); "
                        "allow_batch_dependent=True serves it")


def auto_open(bundle: Bundle, open_precision: Callable[[str], tuple[Any, str]], backend: str, device: str,
              mode: str = "auto", allow_batch_dependent: bool = False) -> tuple[Any, str, str, str]:
    """``(runner, graph key, precision, reason)``: the first ranked precision whose graph opens, is not
    marked batch-dependent (``Manifest.batch_dependent``; unless ``allow_batch_dependent``) and, where
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
        if not allow_batch_dependent and bundle.manifest.batch_dependent(key):
            runner.close()
            notes.append(f"{key} passed over: {BATCH_DEPENDENT_NOTE}")
            continue
        check, why = needs_check(bundle.manifest, key, precision, mode)
        if not check:
            return runner, key, precision, "; ".join([reason, *notes]) if notes else reason
        section = bundle.manifest.golden
        if golden is None:
            golden = load_golden(bundle.folder, bundle.manifest)
        if golden is None:
            runner.close()
            notes.append(f"{key}: {why}, and the bundle has no golden set to check it here")
            continue
        passed, detail = judge(run_golden(runner, golden), section.expected.get(key), section.tolerance)
        if passed:
            return runner, key, precision, "; ".join([reason, *notes, f"{key} passed its golden set here ({why}: {detail})"])
        runner.close()
        notes.append(f"{key} failed its golden set here ({why}: {detail})")
    raise BundleError("auto: no graph passes on this host: " + "; ".join(notes))
