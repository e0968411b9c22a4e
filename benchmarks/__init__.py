"""dfma.benchmarks: ``python benchmarks/latency.py`` (eager vs every backend, one interleaved run), its
contenders (``backends``; the torch.compile row in ``compiled``), timing, the fp32 and INT8 GEMM limits
(``timing``, ``gemm_int8``, the CPU's instruction classes in ``isa``), FLOPs, memory probes, op profiles and
reports."""
