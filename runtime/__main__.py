"""``python -m dfma.runtime`` (and the ``dfma-runtime`` script): see :mod:`dfma.runtime.cli`."""
from __future__ import annotations

import sys

from dfma.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
