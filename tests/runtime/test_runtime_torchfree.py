"""The runtime imports and runs where ``import torch`` fails (it must never need PyTorch)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from fixtures_bundle import tiny_bundle  # noqa: F401

# Installed before anything else runs: every import of torch (or a torch submodule) raises ImportError.
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
    for _m in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        del sys.modules[_m]
""")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=300)


def test_blocker_blocks_torch():
    proc = _run("import torch")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_runtime_loads_and_predicts_without_torch(tiny_bundle, tmp_path):
    proc = _run("""
        import io, json, sys
        import numpy as np
        from PIL import Image
        import dfma.runtime as rt
        ex = rt.load(sys.argv[1], threads=1)
        buf = io.BytesIO()
        Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(buf, format="PNG")
        p = ex.predict({"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18], "image": buf.getvalue()})
        q = ex.predict_batch([{"token": ["Obama", "met", "Merkel"], "h": {"pos": [0, 1]}, "t": {"pos": [2, 3]}}])
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print(json.dumps({"backend": ex.backend, "relation": p.relation, "p": p.probability, "n": len(q),
                          "sum": sum(p.probabilities.values())}))
    """, str(tiny_bundle))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "onnxruntime-cpu" and out["n"] == 1
    assert abs(out["sum"] - 1) < 1e-9 and 0 < out["p"] <= 1


def test_command_line_runs_without_torch(tiny_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "Obama visits Paris", "head": [0, 5], "tail": [13, 18]}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = _run("""
        import sys
        from dfma.runtime.cli import main
        sys.exit(main(sys.argv[1:]))
    """, "predict", str(tiny_bundle), "--input", str(src), "--output", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["relation"]
