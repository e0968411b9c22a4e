"""The precision step as a library (``export/to_precision.py`` is its command line).

- :mod:`~dfma.export.precision.options`: the step's options (a frozen dataclass whose fields declare their flags);
- :mod:`~dfma.export.precision.context`: the frozen :class:`PrecisionContext` every recipe is given (bundle,
  work folder, options, lazily drawn guard / calibration feeds and the fp32 reference logits);
- :mod:`~dfma.export.precision.accuracy_guard`: guard runs, the sensitivity ranking, the fp32-node search,
  the latency table and the ``auto`` choice; :mod:`~dfma.export.precision.calibration`: MNRE feeds and
  activation ranges;
- :mod:`~dfma.export.precision.guard_sets`: the guard's serving conditions (text-only, with images) and
  their tune / confirm split; :mod:`~dfma.export.precision.batch_invariance`: each graph alone vs in batches
  of 8 and 32, and the ``batch_dependent`` mark;
- :mod:`~dfma.export.precision.latency`: the ``auto`` candidates and their batch-1 latency on the served path;
- :mod:`~dfma.export.precision.stages`: the stage graphs of each new graph, guarded;
- :mod:`~dfma.export.precision.step`: runs the chosen recipes (``dfma.export.recipes``) and merges the bundle;
- :mod:`~dfma.export.precision.command_line`: the generated command line;
- :mod:`~dfma.export.precision.sensitivity_probe`: the end-to-end per-kind INT8 diagnostic.
"""
