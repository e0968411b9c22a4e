"""dfma.benchmarks: ``python benchmarks/latency.py`` (eager vs every backend, one interleaved run), its
contenders (``backends``), timing, FLOPs, memory probes, op profiles and reports."""
