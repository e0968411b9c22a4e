"""Print a few predictions of a bundle on real MNRE sentences: ``python examples/predict_mnre.py BUNDLE [N]``.

Each line: the sentence with the head entity in [brackets] and the tail in {braces}, the predicted relation
and its probability, and the annotated one. Uses only the torch-free runtime.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import dfma.runtime as rt
from dfma.contract.mnre import read_mnre

MNRE = Path(os.environ.get("DFMA_MNRE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnre"))


def marked(words, head, tail) -> str:
    """The sentence with the head in [ ] and the tail in { }."""
    out = []
    for i, w in enumerate(words):
        pre = ("[" if i == head[0] else "") + ("{" if i == tail[0] else "")
        post = ("]" if i == head[1] - 1 else "") + ("}" if i == tail[1] - 1 else "")
        out.append(pre + w + post)
    return " ".join(out)


def main(argv: list[str]) -> int:
    """Predict the first N (default 8) non-None validation samples and a couple of None ones."""
    if not argv:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    bundle, n = argv[0], int(argv[1]) if len(argv) > 1 else 8
    val = MNRE / "mnre_val.txt"
    if not val.is_file():
        print(f"MNRE annotations not found at {MNRE} (set DFMA_MNRE_DIR)", file=sys.stderr)
        return 2
    samples = read_mnre(val)
    picked = [s for s in samples if s.relation != "None"][: n - 2] + [s for s in samples if s.relation == "None"][:2]
    with rt.load(bundle) as extractor:
        info = extractor.describe()
        print(f"{bundle}: {info['backend']} {info['graph']} ({info['precision']}; {info['precision_reason'][:120]})")
        hits = 0
        for sample, p in zip(picked, extractor.predict_batch(picked)):
            hits += p.relation == sample.relation
            print(f"{'ok ' if p.relation == sample.relation else '   '}{p.relation:28s} {p.probability:.2f}  "
                  f"(gold {sample.relation:26s}) {marked(sample.words, sample.head, sample.tail)[:110]}")
        print(f"{hits}/{len(picked)} as annotated (text only: MNRE's images are not available here)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
