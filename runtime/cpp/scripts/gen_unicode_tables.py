"""Generates runtime/cpp/src/unicode_tables.cpp: the per-character behaviour of Hugging Face
`tokenizers`' BertNormalizer and BertPreTokenizer, measured on every Unicode scalar value.

The tables are not derived from a Unicode database but from the library itself, so that the C++
tokenizer follows exactly the Unicode versions compiled into the `tokenizers` release the Python runtime
uses (its "is control" table, its NFD, Rust's lowercase and whitespace tables can be different versions).

Run: .venv/bin/python runtime/cpp/scripts/gen_unicode_tables.py  (rewrites the .cpp; commit the result)
"""
from __future__ import annotations

import sys
from pathlib import Path

import tokenizers
from tokenizers import normalizers, pre_tokenizers

OUT = Path(__file__).resolve().parents[1] / "src" / "unicode_tables.cpp"
MAX_CP = 0x110000


def bert(**flags) -> normalizers.BertNormalizer:
    base = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    base.update(flags)
    return normalizers.BertNormalizer(**base)


def scalar_values():
    for cp in range(MAX_CP):
        if not 0xD800 <= cp < 0xE000:
            yield cp


def ranges(cps: list[int]) -> list[tuple[int, int]]:
    """Sorted code points -> inclusive [first, last] runs."""
    out: list[tuple[int, int]] = []
    for cp in cps:
        if out and out[-1][1] + 1 == cp:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def measure():
    clean, cjk = bert(clean_text=True), bert(handle_chinese_chars=True)
    strip, lower = bert(strip_accents=True), bert(lowercase=True)
    both = bert(strip_accents=True, lowercase=True)
    full = bert(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True)
    pretok = pre_tokenizers.BertPreTokenizer()
    removed, space, chinese, punct = [], [], [], []
    strip_map: dict[int, str] = {}
    lower_map: dict[int, str] = {}
    for cp in scalar_values():
        c = chr(cp)
        s, lo = strip.normalize_str(c), lower.normalize_str(c)
        if s != c:
            strip_map[cp] = s
        if lo != c:
            lower_map[cp] = lo
    for cp in scalar_values():
        c = chr(cp)
        cl = clean.normalize_str(c)
        if cl == "":
            removed.append(cp)
        elif cl == " " and c != " ":
            space.append(cp)
        elif cl != c:
            sys.exit(f"unexpected clean_text output for U+{cp:04X}: {cl!r}")
        cj = cjk.normalize_str(c)
        if cj == f" {c} ":
            chinese.append(cp)
        elif cj != c:
            sys.exit(f"unexpected handle_chinese_chars output for U+{cp:04X}: {cj!r}")
        # The per-character composition the C++ code uses must equal the library's own pipeline.
        folded = "".join(lower_map.get(ord(x), x) for x in strip_map.get(cp, c))
        if both.normalize_str(c) != folded:
            sys.exit(f"strip+lower of U+{cp:04X} is not per-character composable")
        expect = "" if cl == "" else " " if cl == " " else (f" {folded} " if cj != c else folded)
        if full.normalize_str(c) != expect:
            sys.exit(f"full BertNormalizer of U+{cp:04X} differs from the composed tables")
        pieces = pretok.pre_tokenize_str(f"a{c}b")
        if [p for p, _ in pieces] == ["a", c, "b"]:
            punct.append(cp)
        elif [p for p, _ in pieces] == ["a", "b"]:
            if cl not in ("", " "):  # removed characters never reach the pre-tokenizer
                sys.exit(f"pre-tokenizer splits on U+{cp:04X} but clean_text keeps it")
        elif [p for p, _ in pieces] != [f"a{c}b"]:
            sys.exit(f"unexpected pre-tokenization around U+{cp:04X}: {pieces}")
    # Characters produced by the maps must not need clean_text or CJK treatment again.
    return removed, space, chinese, punct, strip_map, lower_map


def emit_ranges(name: str, rs: list[tuple[int, int]]) -> str:
    body = ",".join(f"{{0x{a:X},0x{b:X}}}" + ("\n    " if i % 6 == 5 else "") for i, (a, b) in enumerate(rs))
    return (f"const CodeRange {name}[] = {{\n    {body}}};\n"
            f"const std::size_t {name}Count = sizeof({name}) / sizeof({name}[0]);\n")


def emit_map(name: str, mapping: dict[int, str]) -> str:
    pool: list[int] = []
    entries = []
    for cp in sorted(mapping):
        target = [ord(x) for x in mapping[cp]]
        entries.append((cp, len(pool), len(target)))
        pool.extend(target)
    ent = ",".join(f"{{0x{cp:X},{off},{n}}}" + ("\n    " if i % 6 == 5 else "")
                   for i, (cp, off, n) in enumerate(entries))
    pl = ",".join(f"0x{x:X}" + ("\n    " if i % 12 == 11 else "") for i, x in enumerate(pool)) or "0"
    return (f"const CodeMap {name}[] = {{\n    {ent}}};\n"
            f"const std::size_t {name}Count = sizeof({name}) / sizeof({name}[0]);\n"
            f"const char32_t {name}Pool[] = {{\n    {pl}}};\n")


def hangul_nfd(cp: int) -> str:
    """Unicode's algorithmic decomposition of a precomposed Hangul syllable (U+AC00..U+D7A3)."""
    s = cp - 0xAC00
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")


def split_strip_map(strip_map: dict[int, str]) -> tuple[list[int], dict[int, str]]:
    """Dropped marks become ranges; Hangul syllables are decomposed in code; the rest stays a map."""
    dropped = sorted(cp for cp, t in strip_map.items() if t == "")
    rest = {}
    for cp, t in strip_map.items():
        if 0xAC00 <= cp <= 0xD7A3:
            if t != hangul_nfd(cp):
                sys.exit(f"Hangul U+{cp:04X} does not decompose algorithmically")
        elif t:
            rest[cp] = t
    missing = [cp for cp in range(0xAC00, 0xD7A4) if cp not in strip_map]
    if missing:
        sys.exit(f"Hangul syllables not decomposed: {missing[:5]}")
    return dropped, rest


def reordering(strip_map: dict[int, str], dropped: list[int]) -> tuple[dict[int, int], list[int]]:
    """NFD's canonical reordering as seen after accent stripping.

    Returns (class rank of every surviving character with a non-zero combining class, dropped characters
    that are starters). Ranks come from the library's own ordering of pairs, so they follow its Unicode
    version; a dropped starter ends a reordering run although nothing of it is left.
    """
    strip = bert(strip_accents=True)
    hi, lo = "\U0001D16D", "\U0001D165"  # classes 226 and 216, both kept by strip_accents
    if strip.normalize_str(hi + lo) != lo + hi:
        sys.exit("U+1D16D U+1D165 are not reordered: the probe characters do not work")
    movers = []
    for cp in scalar_values():
        c = chr(cp)
        if strip_map.get(cp, c) != c or c in (hi, lo):
            continue
        if strip.normalize_str(hi + c)[0] != hi or strip.normalize_str(c + lo)[0] != c:
            movers.append(cp)
    movers += [ord(hi), ord(lo)]

    def before(a: int, b: int) -> int:  # -1: a sorts before b, 1: after, 0: same class
        ab = strip.normalize_str(chr(a) + chr(b))
        ba = strip.normalize_str(chr(b) + chr(a))
        if ab == ba:
            return -1 if ab == chr(a) + chr(b) else 1
        return 0

    import functools
    order = sorted(set(movers), key=functools.cmp_to_key(before))
    rank, r = {}, 1
    for i, cp in enumerate(order):
        if i and before(order[i - 1], cp) != 0:
            r += 1
        rank[cp] = r
    for a in order:  # the ranks must reproduce every pairwise order
        for b in order:
            want = chr(a) + chr(b) if rank[a] <= rank[b] else chr(b) + chr(a)
            if strip.normalize_str(chr(a) + chr(b)) != want:
                sys.exit(f"ranks do not reproduce the order of U+{a:04X} U+{b:04X}")
    starters = [cp for cp in dropped if strip.normalize_str(hi + chr(cp) + lo) == hi + lo]
    return rank, starters


def main() -> None:
    removed, space, chinese, punct, strip_map, lower_map = measure()
    dropped, strip_rest = split_strip_map(strip_map)
    rank, dropped_starters = reordering(strip_map, dropped)
    text = (
        "// GENERATED by runtime/cpp/scripts/gen_unicode_tables.py from Hugging Face tokenizers "
        f"{tokenizers.__version__}; do not edit.\n"
        "// Per-character behaviour of BertNormalizer (clean_text, handle_chinese_chars, strip_accents,\n"
        "// lowercase) and BertPreTokenizer (punctuation), measured on every Unicode scalar value.\n"
        "#include \"unicode_tables.hpp\"\n\nnamespace dfma::detail::tables {\n\n"
        f"const char* const kTokenizersVersion = \"{tokenizers.__version__}\";\n\n"
        "// clean_text: removed characters (control, format, unassigned, private use, NUL, U+FFFD)\n"
        + emit_ranges("kRemoved", ranges(removed))
        + "\n// clean_text: characters replaced by a space (whitespace); the pre-tokenizer splits on these\n"
        + emit_ranges("kWhitespace", ranges(space))
        + "\n// handle_chinese_chars: characters surrounded by spaces\n"
        + emit_ranges("kChinese", ranges(chinese))
        + "\n// BertPreTokenizer: punctuation, isolated as its own piece\n"
        + emit_ranges("kPunctuation", ranges(punct))
        + "\n// strip_accents: non-spacing marks, dropped\n"
        + emit_ranges("kDroppedMarks", ranges(dropped))
        + "\n// strip_accents: NFD, with marks dropped (Hangul syllables U+AC00..U+D7A3 are decomposed in code)\n"
        + emit_map("kStripAccents", strip_rest)
        + "\n// strip_accents: dropped characters that are starters (combining class 0): they end a reordering run\n"
        + emit_ranges("kDroppedStarters", ranges(dropped_starters))
        + "\n// strip_accents: kept characters with a non-zero combining class -> rank of that class (NFD reorders\n"
        + "// runs of them stably by class)\n"
        + emit_map("kCombiningRank", {cp: chr(r) for cp, r in rank.items()})
        + "\n// lowercase: Rust char::to_lowercase\n"
        + emit_map("kLowercase", lower_map)
        + "\n}  // namespace dfma::detail::tables\n"
    )
    OUT.write_text(text)
    print(f"wrote {OUT}: {len(ranges(removed))} removed ranges, {len(ranges(punct))} punctuation ranges, "
          f"{len(dropped)} dropped marks ({len(dropped_starters)} starters), {len(rank)} reordered, "
          f"{len(strip_rest)} strip entries, {len(lower_map)} lowercase entries")


if __name__ == "__main__":
    main()
