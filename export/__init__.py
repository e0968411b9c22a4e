"""dfma.export: eager DFMA -> validated ONNX bundle (``python export/to_onnx.py``).

Modules: ``io_spec`` (declarative inputs/outputs, random contract-valid feeds), ``sources`` (checkpoint or
preset), ``onnx_export`` (dynamo trace + translation), ``ort_fusion`` (ONNX Runtime fusions),
``graph_stats`` / ``report`` (op counts, fused attention blocks), ``validate`` (eager vs graph parity),
``manifest`` and ``bundle`` (atomic bundle writing and updating; reading is ``dfma.runtime.bundle``),
``pipeline`` (the steps) and ``to_onnx`` (the command line).
"""
