"""BERT WordPiece tokenizer with the entity markers (torch-free).

Pipeline (contract section 2): BERT normalizer (clean text, CJK split, lower-case, strip accents),
BERT pre-tokenizer (whitespace + punctuation), WordPiece (``##`` continuation, ``[UNK]`` for words over
100 characters or with no match), WordPiece decoder. The special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]``
and the markers ``<s> </s> <o> </o>`` are special tokens with their own ids; ``[PAD]`` must be id 0.

Id layout: a tokenizer from :func:`train_wordpiece` has ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
<s>=5 </s>=6 <o>=7 </o>=8`` and the learned pieces from 9. One from :func:`tokenizer_from_bert_vocab`
keeps the BERT ids (bert-base-uncased: ``[PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103``) and appends
the markers that the vocabulary lacks after its last id (``30522..30525``).

A folder holds ``tokenizer.json`` (Hugging Face) and ``vocab.txt`` (line k = piece with id k, all ids
including the markers) so that the C++ runtime rebuilds the same id space.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from dfma.contract.atomic import write_atomic
from dfma.contract.errors import DataError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
HEAD_OPEN, HEAD_CLOSE, TAIL_OPEN, TAIL_CLOSE = "<s>", "</s>", "<o>", "</o>"
MARKERS = (HEAD_OPEN, HEAD_CLOSE, TAIL_OPEN, TAIL_CLOSE)
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK) + MARKERS
SPECIAL_KEYS = ("pad", "unk", "cls", "sep", "mask", "head_open", "head_close", "tail_open", "tail_close")
MAX_INPUT_CHARS_PER_WORD = 100


def _pipeline(tok: Tokenizer, lowercase: bool) -> Tokenizer:
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _special(tokens: Iterable[str]) -> list[AddedToken]:
    return [AddedToken(t, special=True, normalized=False) for t in tokens]


def train_wordpiece(sentences: Iterable[list[str]], vocab_size: int, min_frequency: int = 2,
                    *, lowercase: bool = True) -> Tokenizer:
    """Learn a WordPiece vocabulary from word lists; specials take ids 0..8 (see module doc)."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = _pipeline(Tokenizer(models.WordPiece(unk_token=UNK,
                                               max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)),
                    lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=_special(SPECIAL_TOKENS),
                                        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator((" ".join(words) for words in sentences), trainer=trainer)
    tok.add_special_tokens(_special(SPECIAL_TOKENS))  # already in the vocab: marks them special
    special_ids(tok)
    return tok


def _vocab_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "vocab.txt" if path.is_dir() else path


def tokenizer_from_bert_vocab(vocab_txt: str | os.PathLike, *, lowercase: bool = True) -> Tokenizer:
    """Build the pipeline from a BERT ``vocab.txt`` (file or folder) and append the 4 markers."""
    path = _vocab_path(vocab_txt)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read the vocabulary: {e.strerror or e}", file=str(path)) from e
    except UnicodeDecodeError as e:
        raise DataError(f"vocabulary is not UTF-8: {e}", file=str(path)) from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for i, piece in enumerate(lines):
        piece = piece.rstrip("\r")
        if not piece:
            raise DataError("empty vocabulary entry", file=str(path), line=i + 1, field="vocab")
        if piece in vocab:
            raise DataError(f"duplicate piece {piece!r} (also line {vocab[piece] + 1})",
                            file=str(path), line=i + 1, field="vocab")
        vocab[piece] = i
    for t in (PAD, UNK, CLS, SEP, MASK):
        if t not in vocab:
            raise DataError(f"the vocabulary lacks {t}", file=str(path), field="vocab")
    tok = _pipeline(Tokenizer(models.WordPiece(vocab, unk_token=UNK,
                                               max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)),
                    lowercase)
    tok.add_special_tokens(_special(SPECIAL_TOKENS))
    special_ids(tok)
    return tok


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """Load ``tokenizer.json`` from ``folder``, else build from its ``vocab.txt``."""
    folder = Path(folder)
    tj = folder / "tokenizer.json"
    if tj.is_file():
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise DataError(f"invalid tokenizer file: {e}", file=str(tj)) from e
        try:
            special_ids(tok)
        except DataError as e:
            raise DataError(str(e), file=str(tj), field="special tokens") from None
        return tok
    if (folder / "vocab.txt").is_file():
        return tokenizer_from_bert_vocab(folder / "vocab.txt")
    raise DataError("no tokenizer.json or vocab.txt", file=str(folder))


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """Ids of the 9 special tokens (keys: pad unk cls sep mask head_open head_close tail_open tail_close).

    Raises DataError when one is missing or ``[PAD]`` is not id 0.
    """
    ids: dict[str, int] = {}
    for key, token in zip(SPECIAL_KEYS, SPECIAL_TOKENS):
        i = tok.token_to_id(token)
        if i is None:
            raise DataError(f"the tokenizer has no {token} token", field=key)
        ids[key] = i
    if ids["pad"] != 0:
        raise DataError(f"{PAD} must be id 0, got {ids['pad']}", field="pad")
    return ids


def vocab_lines(tok: Tokenizer) -> list[str]:
    """Pieces in id order, all ids including added tokens; asserts ids are dense and line-safe."""
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = {i: p for p, i in vocab.items()}
    n = len(by_id)
    if len(vocab) != n or set(by_id) != set(range(n)):
        missing = sorted(set(range(max(by_id, default=-1) + 1)) - set(by_id))[:5]
        raise DataError(f"token ids are not dense 0..{n - 1} (missing e.g. {missing})", field="vocab")
    lines = [by_id[i] for i in range(n)]
    for i, p in enumerate(lines):
        if not p or "\n" in p or "\r" in p:
            raise DataError(f"piece {i} ({p!r}) cannot be written as one vocab.txt line", field="vocab")
    return lines


def save_tokenizer(tok: Tokenizer, folder: str | os.PathLike) -> None:
    """Write ``tokenizer.json`` and ``vocab.txt`` (line k = piece k) atomically into ``folder``."""
    special_ids(tok)
    lines = vocab_lines(tok)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "tokenizer.json", tok.to_str(pretty=True))
    write_atomic(folder / "vocab.txt", "\n".join(lines) + "\n")
