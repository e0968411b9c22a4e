"""Print a few predictions of a bundle on real MNRE sentences: ``python examples/predict_mnre.py BUNDLE [N]``.

Each line: the sentence with the head entity in [brackets] and the tail in {braces}, the predicted relation
and its probability, and the annotated one. Then every entity pair of one post in a single
``predict_pairs`` call (one image encoding, the text side batched). Uses only the torch-free runtime.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import dfma.runtime as rt
from dfma.mnre import read_mnre

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
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
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
        post = next(g for g in _posts(samples) if len({s.words for s in g}) == 1 and len(_entities(g)) >= 3)
        entities = _entities(post)
        words = post[0].words
        gold = {(s.head, s.tail): s.relation for s in post}
        names = [" ".join(words[a:b]) for a, b in entities]
        print(f"every pair of one post ({len(entities)} entities, {len(entities) * (len(entities) - 1)} ordered pairs, "
              f"{extractor.describe()['stages']['mode']}): {' '.join(words)[:100]}")
        for p in extractor.predict_pairs(list(words), entities):
            h, t = p.id
            note = f"  (gold {gold[(entities[h], entities[t])]})" if (entities[h], entities[t]) in gold else ""
            print(f"  {names[h][:24]:24s} -> {names[t][:24]:24s} {p.relation:28s} {p.probability:.2f}{note}")
    return 0


def _posts(samples):
    """Validation samples grouped by image, in file order."""
    groups: dict = {}
    for s in samples:
        groups.setdefault(s.img_id, []).append(s)
    return list(groups.values())


def _entities(post) -> list:
    """The distinct entity spans of a post's annotated pairs, in order of appearance."""
    return list(dict.fromkeys(span for s in post for span in (s.head, s.tail)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
