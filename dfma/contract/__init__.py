"""The bundle contract: what export writes and every runtime reads (torch-free; imports no other dfma part).

Training, export, both Python runtimes, Triton's Python models and the benchmarks import these modules;
they import none of them. See ``docs/contract.md``.

- ``errors``: the typed errors (each names the file, field or value);
- ``bundle`` / ``bundle_writer``: read and verify a bundle (``open_bundle``: the one opening path, which
  honours ``DFMA_BUNDLE_KEY_FILE``); write one atomically; ``manifest``: the typed manifest view
  (``Bundle.manifest``; writers build it, ``bundle_writer`` serialises it); ``atomic``: every atomic write
  (``AtomicFile`` / ``write_atomic`` for files, ``AtomicFolder`` for folders); ``manifest_digest``: the manifest's own
  digest ``manifest.sha256`` and optional HMAC signature ``manifest.sig`` (over its bytes, so that Python
  and C++ agree); ``manifest_checks``: consistency of constants, limits, graph IO and model config;
  ``stale_temps``: naming and removing the work folders a killed writer left;
- ``graphs``: the graph catalogue (one row per graph kind: file, precision, ops, devices, source) and the
  manifest's recorded ``auto`` defaults;
- ``io_spec``: the declarative model inputs and outputs;
- preprocessing: ``tokenizer``, ``text`` (markers, word pieces, truncation), ``images``, ``labels``,
  ``mnre`` (the annotation format), ``samples`` (request forms), ``features`` (``Preprocessor``:
  requests -> the four input arrays, ``collate``), ``prediction`` (logits -> results), ``metrics``;
- request bounds: ``limits`` (``Limits``: image, text, batch and line limits and their checks),
  ``image_files`` (regular files only, bounded reads), ``png_chunks`` (inflated text / ICC chunks),
  ``reprs`` (short, safe reprs for messages);
- ``host``: the CPU class of this machine; ``progress``: progress lines and text tables for the CLIs.
"""
