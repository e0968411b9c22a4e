"""What a request to the runtime looks like, and how every accepted form becomes one :class:`Sample`.

Accepted forms (all torch-free):

- :class:`Sample` itself;
- an MNRE record: :class:`dfma.mnre.MNRESample`, or a dict ``{"token": [...], "h": {"pos": [s, e]},
  "t": {"pos": [s, e]}, "img_id": ...}`` (word spans, end exclusive);
- a dict with ``"words"`` and word spans ``"head"`` / ``"tail"``;
- a dict with raw ``"text"`` and character spans ``"head"`` / ``"tail"`` (``[start, end)``).

Images: ``"image"`` (a path, bytes, a PIL image or an HxWx3 uint8 array, or None) and ``"crops"``
(a list of up to ``num_crops`` of the same). An MNRE ``img_id`` names a file in the images folder (and its crops in the crops
folder) of :class:`ImageFolders`, used only when folders are given. Nothing here touches pixels or the tokenizer: spans and text
are checked later, by the same text encoder that training and export use.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfma.contract.errors import ImageError, InputError
from dfma.contract.images import find_crops, find_image

Span = tuple[int, int]
IMAGE_TYPES_HINT = "a path, bytes, a PIL image, an HxWx3 uint8 array, or None"


@dataclass(frozen=True)
class Sample:
    """One request: either ``words`` with word spans or ``text`` with character spans, plus images.

    ``head`` / ``tail`` are ``(start, end)``, end exclusive. ``image`` is the post's image and ``crops``
    its object crops (either may be absent). ``id`` is echoed in results and command-line output.
    """

    head: Any
    tail: Any
    words: Sequence[str] | None = None
    text: str | None = None
    image: Any = None
    crops: Sequence[Any] = field(default_factory=tuple)
    id: Any = None

    def __post_init__(self):
        if self.words is not None and self.text is not None:
            raise InputError("got both 'text' (character spans) and 'words' (word spans); give one",
                             field="text")
        if self.words is None and self.text is None:
            raise InputError("give exactly one of 'words' (word spans) or 'text' (character spans)",
                             field="sample")
        object.__setattr__(self, "crops", _crops(self.crops))

    @classmethod
    def from_text(cls, text: str, head: Span, tail: Span, image: Any = None,
                  crops: Sequence[Any] = (), id: Any = None) -> Sample:
        """A raw-text request with character spans ``[start, end)``."""
        return cls(head=head, tail=tail, text=text, image=image, crops=crops, id=id)

    @classmethod
    def from_words(cls, words: Sequence[str], head: Span, tail: Span, image: Any = None,
                   crops: Sequence[Any] = (), id: Any = None) -> Sample:
        """A word-list request with word spans ``[start, end)`` (the MNRE form)."""
        return cls(head=head, tail=tail, words=words, image=image, crops=crops, id=id)


def _mnre_span(entity: Any, field: str) -> Any:
    if isinstance(entity, Mapping):
        if "pos" not in entity:
            raise InputError("missing 'pos' (the [start, end) word span)", field=f"{field}.pos")
        return entity["pos"]
    return entity  # a bare [start, end] pair is accepted too


@dataclass(frozen=True)
class ImageFolders:
    """Where MNRE ``img_id`` files and their crops live, and what a missing file means.

    ``images``: folder of the posts' images (``images/<img_id>``); ``crops``: folder of object crops
    (``crops/<stem>-<k>.<ext>``, see :func:`dfma.contract.images.find_crops`); ``strict``: a missing image is an
    ImageError instead of an absent image (mask 0, as in training).
    """

    images: str | os.PathLike | None = None
    crops: str | os.PathLike | None = None
    num_crops: int = 3
    strict: bool = False


def _resolve_image_id(img_id: Any, folders: ImageFolders | None) -> tuple[Any, tuple]:
    """(image path or None, crop paths) of an MNRE ``img_id``; nothing without folders."""
    if folders is None or img_id is None or (folders.images is None and folders.crops is None):
        return None, ()
    image = None
    if folders.images is not None:
        image = find_image(folders.images, img_id)  # InputError(field="img_id") on a path-like id
        if image is None and folders.strict:
            raise ImageError(f"{Path(folders.images) / img_id}: no such image file", field="img_id")
    crops: tuple = ()
    if folders.crops is not None:
        found = find_crops(folders.crops, img_id, folders.num_crops)
        while found and found[-1] is None:
            found.pop()
        crops = tuple(found)
    return image, crops


def _crops(value: Any) -> tuple:
    """The crops of a request as a tuple: None -> (); a list or tuple as is; anything else InputError."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise InputError(f"expected a list of images ({IMAGE_TYPES_HINT}), got {type(value).__name__}",
                     field="crops")


_TEXT_KEYS = ("text", "words", "token")


def _under(root: str | os.PathLike | None, value: Any) -> Any:
    return Path(root) / value if root is not None and isinstance(value, str) else value


def text_key(rec: Mapping) -> str | None:
    """Which of ``text`` / ``words`` / MNRE ``token`` a request mapping gives (None: none); InputError
    naming the first when it gives more than one."""
    given = [k for k in _TEXT_KEYS if k in rec]
    if len(given) > 1:
        raise InputError(f"got {' and '.join(repr(k) for k in given)}; give one of 'text' (character "
                         "spans), 'words' or MNRE 'token' (word spans)", field=given[0])
    return given[0] if given else None


def request_images(rec: Mapping, folders: ImageFolders | None) -> tuple[Any, tuple]:
    """``(image, crops)`` of a request mapping: its ``image`` / ``crops`` (string paths resolved against
    the images folder), else those of its MNRE ``img_id`` in ``folders``."""
    image, crops = rec.get("image"), _crops(rec.get("crops"))
    if image is None and not crops and "img_id" in rec:
        return _resolve_image_id(rec.get("img_id"), folders)
    root = folders.images if folders is not None else None
    return _under(root, image), tuple(_under(root, c) for c in crops)


def _from_mapping(rec: Mapping, folders: ImageFolders | None) -> Sample:
    text_key(rec)
    image, crops = request_images(rec, folders)
    sample_id = rec.get("id")
    if "token" in rec:
        for key in ("h", "t"):
            if key not in rec:
                raise InputError("missing key of an MNRE record", field=key)
        return Sample(head=_mnre_span(rec["h"], "h"), tail=_mnre_span(rec["t"], "t"), words=rec["token"],
                      image=image, crops=crops, id=sample_id)
    for key in ("head", "tail"):
        if key not in rec:
            raise InputError("missing key: give 'head' and 'tail' as [start, end)", field=key)
    if "words" in rec:
        return Sample(head=rec["head"], tail=rec["tail"], words=rec["words"], image=image, crops=crops,
                      id=sample_id)
    if "text" in rec:
        return Sample(head=rec["head"], tail=rec["tail"], text=rec["text"], image=image, crops=crops,
                      id=sample_id)
    raise InputError("a request needs 'text' (character spans), 'words' or MNRE 'token' (word spans)",
                     field="text")


def as_sample(obj: Any, *, folders: ImageFolders | None = None) -> Sample:
    """Normalise any accepted request form (module doc) to a :class:`Sample`.

    ``folders``: where MNRE ``img_id`` files and crops are looked up, and the folder against which
    image / crop paths given as strings are resolved; without it an MNRE ``img_id`` is ignored (no
    image) and string paths are used as given. Raises InputError naming the field it cannot read.
    """
    if isinstance(obj, Sample):
        return obj
    if isinstance(obj, Mapping):
        return _from_mapping(obj, folders)
    words = getattr(obj, "words", None)
    if words is not None and hasattr(obj, "head") and hasattr(obj, "tail"):  # dfma.mnre.MNRESample
        image, crops = _resolve_image_id(getattr(obj, "img_id", None), folders)
        return Sample(head=obj.head, tail=obj.tail, words=words, image=image, crops=crops)
    raise InputError(f"expected a Sample, an MNRE record or a dict, got {type(obj).__name__}",
                     field="sample")
