"""Runs the shared hostile-request table against the Python API in a process of its own (a clean peak RSS).

    python tests/support/hostile_worker.py BUNDLE FOLDER  ->  one JSON line per case on stdout

Per case: the error type and field, the seconds the refusal took, how much it raised the peak RSS
(``resource.getrusage`` after - before; the process is warmed up first, so its normal working set is
already counted), and whether the next good request gives exactly the logits it gave before.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dfma.runtime as rt
from fixtures_bundle import jpeg_bytes
from hostile_cases import build_cases


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(bundle: str, folder: str) -> int:
    """Run every case with an API request; print its result as one JSON line."""
    good, cases = build_cases(Path(folder))
    with rt.load(bundle, threads=1) as ex:
        baseline = ex.predict(good).logits
        print(json.dumps({"name": "__baseline__", "logits": list(baseline)}), flush=True)
        for _ in range(3):  # warm up: the normal working set of a request with an image
            ex.predict({**good, "image": jpeg_bytes(1, 320, 240), "crops": [jpeg_bytes(2, 90, 60)]})
        for case in cases:
            if case.request is None:
                continue
            before = _peak_kb()
            start = time.perf_counter()
            kind = field = message = None
            try:
                ex.predict(case.request)
            except Exception as e:  # noqa: BLE001  reported: the test asserts it is a typed error
                kind, field, message = type(e).__name__, getattr(e, "field", None), str(e)[:300]
            seconds = time.perf_counter() - start
            grew_mb = (_peak_kb() - before) / 1024
            same = ex.predict(good).logits == baseline
            print(json.dumps({"name": case.name, "kind": kind, "field": field, "message": message,
                              "seconds": seconds, "rss_mb": grew_mb, "next_same": same}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
