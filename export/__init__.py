"""dfma.export: eager DFMA -> validated ONNX bundle -> fp16 / int8 -> TensorRT, Triton, slimmed copies.

Commands: ``to_onnx`` (export), ``to_precision`` (fp16, int8, accuracy guard, ``defaults.auto``),
``to_tensorrt`` (engines), ``to_triton`` (Triton repository), ``slim_bundle`` (a copy for one target),
``graph_report`` (op counts, fused attention blocks). Modules: ``sources`` (checkpoint or preset),
``onnx_export`` (dynamo trace + translation), ``ort_fusion`` (ONNX Runtime fusions), ``graph_stats``,
``random_feeds`` (contract-valid random inputs), ``validate`` (eager vs graph parity through the runners of
``dfma.backends``), ``manifest`` (its sections), ``pipeline`` (the export steps), ``fp16``, ``quantize``,
``qdq_concat`` (the Concat quantization OpenVINO compiles), ``graph_entry`` (a graph's manifest entry),
``precision`` (the precision step as a library: context, options, accuracy guard, calibration, latency,
two-stage pairs, the step), ``recipes`` (one file per precision the step builds), ``trt_build``,
``triton_config``. The bundle contract itself (reader, writer, catalogue, IO spec,
preprocessing) is ``dfma.contract``; nothing here imports ``dfma.runtime``.
"""
