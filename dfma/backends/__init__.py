"""Runners: one small interface over every way of executing a DFMA graph (torch-free but for ``eager``).

- :mod:`~dfma.backends.base`: :class:`Runner` (``open`` / ``infer`` / ``describe`` / ``close``, inputs
  checked against the manifest's IO spec once, at open), in the style of Polygraphy's runners;
- :mod:`~dfma.backends.registry`: the one table of backends (name -> module, class, options, extra);
- :mod:`~dfma.backends.sessions`: the one place ONNX Runtime sessions are built;
- :mod:`~dfma.backends.compare`: the one comparator (max abs / rel error, top-1 agreement, F1 delta;
  non-finite rows count as mismatches);
- one file per backend: ``ort_runner`` (ONNX Runtime CPU / CUDA / TensorRT providers), ``trt_runner``
  (serialized TensorRT engines), ``openvino_runner`` (OpenVINO CPU), ``reference_runner`` (the onnx
  reference evaluator, honest fp16 arithmetic); the eager model's runner is ``dfma.model.runner``.

Validation, the accuracy guard, the benchmarks and the runtime all run graphs through these.
"""
