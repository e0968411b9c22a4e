"""MNRE reader, label map, and the PyTorch dataset / collate function."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfma.contract.errors import DataError
from dfma.contract.labels import LabelMap
from dfma.mnre import MNRESample, error_summary, read_mnre

GOOD = ("{'token': ['Bill', 'Cosby', 'on', 'Hollywood', 'Walk'], 'h': {'name': 'Bill Cosby', 'pos': [0, 2]}, "
        "'t': {'name': 'Hollywood Walk', 'pos': [3, 5]}, 'img_id': 'twitter_1.jpg', "
        "'relation': '/per/misc/present_in'}")
LABELS = LabelMap.from_list(["None", "/per/misc/present_in", "/loc/loc/contain"])


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_line(tmp_path):
    [s] = read_mnre(write(tmp_path, GOOD), LABELS)
    assert s == MNRESample(("Bill", "Cosby", "on", "Hollywood", "Walk"), (0, 2), (3, 5), "Bill Cosby",
                           "Hollywood Walk", "twitter_1.jpg", "/per/misc/present_in", 1)


BAD = [
    ("{'token': ['a'", "record", "not a Python dict literal"),
    ("['a', 'b']", "record", "expected a dict"),
    ("__import__('os').system('true')", "record", "not a Python dict literal"),
    (GOOD.replace("'img_id'", "'image'"), "img_id", "missing key"),
    (GOOD.replace("['Bill', 'Cosby', 'on', 'Hollywood', 'Walk']", "'Bill Cosby'"), "token", "list"),
    (GOOD.replace("['Bill', 'Cosby', 'on', 'Hollywood', 'Walk']", "[]"), "token", "non-empty"),
    (GOOD.replace("'Walk'", "5"), "token", "word 4 is int"),
    (GOOD.replace("'h': {'name': 'Bill Cosby', 'pos': [0, 2]}", "'h': 'Bill'"), "h", "expected a dict"),
    (GOOD.replace("'name': 'Bill Cosby'", "'name': None"), "h.name", "None"),
    (GOOD.replace("[0, 2]", "[0, 2, 3]"), "h.pos", "[0, 2, 3]"),
    (GOOD.replace("[0, 2]", "[0, True]"), "h.pos", "True"),
    (GOOD.replace("[0, 2]", "[0, 2.0]"), "h.pos", "2.0"),
    (GOOD.replace("[3, 5]", "[3, 6]"), "t.pos", "[3, 6) is not within"),
    (GOOD.replace("[3, 5]", "[3, 3]"), "t.pos", "[3, 3)"),
    (GOOD.replace("[3, 5]", "[-1, 2]"), "t.pos", "[-1, 2)"),
    (GOOD.replace("'twitter_1.jpg'", "''"), "img_id", "non-empty"),
    (GOOD.replace("'/per/misc/present_in'", "3"), "relation", "3"),
    (GOOD.replace("/per/misc/present_in", "/per/per/unknown"), "relation", "unknown relation"),
]


@pytest.mark.parametrize("line, field, message", BAD)
def test_bad_line_raises_with_file_line_field(tmp_path, line, field, message):
    path = write(tmp_path, GOOD, "", line)
    with pytest.raises(DataError) as e:
        read_mnre(path, LABELS)
    err = e.value
    assert (err.file, err.line, err.field) == (str(path), 3, field)
    assert message in str(err) and f"{path}:3:" in str(err) and repr(field) in str(err)


def test_unknown_relation_only_checked_with_labels(tmp_path):
    path = write(tmp_path, GOOD.replace("/per/misc/present_in", "/new/label"))
    assert read_mnre(path)[0].relation == "/new/label"
    with pytest.raises(DataError, match="unknown relation '/new/label'"):
        read_mnre(path, LABELS)


def test_collect_mode_counts_and_reports(tmp_path):
    path = write(tmp_path, GOOD, "oops", GOOD.replace("[3, 5]", "[3, 9]"), "", "  ", GOOD,
                 GOOD.replace("/per/misc/present_in", "/x"))
    samples, errors = read_mnre(path, LABELS, on_error="collect")
    assert [s.line_no for s in samples] == [1, 6]
    assert [(e.line, e.field) for e in errors] == [(2, "record"), (3, "t.pos"), (7, "relation")]
    summary = error_summary(errors)
    assert summary.startswith("3 line(s) dropped") and "t.pos: 1" in summary and ":7:" in summary
    assert error_summary([]) == "no lines dropped"
    with pytest.raises(ValueError, match="on_error"):
        read_mnre(path, on_error="skip")


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_mnre(tmp_path / "absent.txt")
    (tmp_path / "latin1.txt").write_bytes(b"{'token': ['caf\xe9']}\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_mnre(tmp_path / "latin1.txt")


# ---------------------------------------------------------------- label map

def test_label_map_from_json_and_lookups(tmp_path):
    (tmp_path / "rel2id.json").write_text(json.dumps({"/b": 2, "None": 0, "/a": 1}), encoding="utf-8")
    lm = LabelMap.from_json(tmp_path / "rel2id.json")
    assert lm.names == ["None", "/a", "/b"] and lm.none_id == 0 and len(lm) == 3
    assert lm.id("/b") == 2 and lm.name(1) == "/a" and lm.to_dict() == {"None": 0, "/a": 1, "/b": 2}
    assert LabelMap.from_list(["/a", "None"]).none_id == 1
    with pytest.raises(DataError, match="unknown relation '/c'") as e:
        lm.id("/c")
    assert e.value.field == "relation"
    with pytest.raises(DataError, match="out of range"):
        lm.name(3)


@pytest.mark.parametrize("content, message", [
    ({"None": 0, "/a": 2}, "contiguous"),
    ({"None": 1, "/a": 2}, "contiguous"),
    ({"None": 0, "/a": 0}, "used by both"),
    ({"None": 0, "/a": True}, "must be an int"),
    ({"/a": 0, "/b": 1}, "no 'None'"),
    (["None", "/a", "/a"], "duplicate"),
    ([], "empty"),
])
def test_label_map_errors(tmp_path, content, message):
    path = tmp_path / "rel2id.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError, match=message) as e:
        LabelMap.from_json(path)
    assert e.value.file == str(path)


def test_label_map_bad_json(tmp_path):
    (tmp_path / "r.json").write_text("{'None': 0}", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        LabelMap.from_json(tmp_path / "r.json")


# ---------------------------------------------------------------- dataset and collate

def test_dataset_and_collate(tmp_path):
    torch = pytest.importorskip("torch")
    from dfma.data import MNREDataset, collate
    from dfma.contract.images import ImagePreprocessor
    from dfma.contract.text import TextEncoder
    from dfma.contract.tokenizer import train_wordpiece

    lines = [GOOD.replace("twitter_1", f"twitter_{i}") for i in range(3)]
    samples = read_mnre(write(tmp_path, *lines), LABELS)
    samples[2] = MNRESample(("a",), (0, 1), (0, 1), "a", "a", "twitter_2.jpg", "None", 3)
    enc = TextEncoder(train_wordpiece([s.words for s in samples], 100, min_frequency=1), 16)
    images, crops = tmp_path / "img", tmp_path / "crops"
    images.mkdir(), crops.mkdir()
    Image.new("RGB", (8, 6), (255, 0, 0)).save(images / "twitter_0.jpg")        # present
    (images / "twitter_1.jpg").write_bytes(b"not a jpeg")                        # unreadable
    Image.new("RGB", (8, 6), (0, 0, 255)).save(crops / "twitter_0-1.png")        # crop slot 1
    pre = ImagePreprocessor(4, 5)
    ds = MNREDataset(samples, enc, LABELS, pre, images_dir=images, crops_dir=crops, num_crops=3)
    assert len(ds) == 3 and ds.missing_images == 1 and ds.missing_image_ids == ["twitter_2.jpg"]
    assert ds.missing_crops == 3 * 3 - 1
    batch = collate([ds[i] for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "image_mask", "labels"}
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.int64
    assert batch["pixel_values"].dtype == torch.float32 and batch["image_mask"].dtype == torch.int64
    assert batch["pixel_values"].shape == (3, 4, 3, 4, 4) and batch["image_mask"].shape == (3, 4)
    assert batch["labels"].tolist() == [1, 1, 0]
    assert batch["image_mask"].tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert not batch["pixel_values"][1:].any() and not batch["pixel_values"][0, 1].any()
    rows = [enc.encode_words(s.words, s.head, s.tail).input_ids for s in samples]
    width = max(map(len, rows))
    assert batch["input_ids"].tolist() == [r + [0] * (width - len(r)) for r in rows]
    assert batch["attention_mask"].sum(1).tolist() == [len(r) for r in rows]
    assert list(ds.image_errors) == [str(images / "twitter_1.jpg")]
    report = ds.image_report()
    assert "main images missing: 1/3" in report and "unreadable images (slot masked): 1" in report
    assert ds.scan_images() == ds.image_errors

    no_img = MNREDataset(samples, enc, LABELS, pre)
    item = no_img[0]
    assert item["pixel_values"] is None and item["image_mask"].tolist() == [0, 0, 0, 0]
    empty = collate([no_img[i] for i in range(3)])
    assert empty["pixel_values"].shape == (3, 4, 3, 4, 4) and not empty["pixel_values"].any()
    assert isinstance(item["input_ids"], np.ndarray)
