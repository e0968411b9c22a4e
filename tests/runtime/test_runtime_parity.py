"""Runtime = training preprocessing = eager model, on real MNRE validation sentences and synthetic images."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from fixtures_bundle import extractor, jpeg_bytes, synthetic_image, tiny_bundle, tiny_eager  # noqa: F401

import dfma.runtime as rt
from dfma.contract.samples import ImageFolders

N_PARITY = 48  # sentences run through both models (2 cores: keep it small)


@pytest.fixture(scope="module")
def val_samples(mnre_dir):
    from dfma.contract.labels import LabelMap
    from dfma.mnre import read_mnre
    return read_mnre(mnre_dir / "mnre_val.txt", LabelMap.from_json(mnre_dir / "rel2id.json"))


@pytest.fixture(scope="module")
def image_dirs(val_samples, tmp_path_factory):
    """JPEGs for the first N_PARITY samples: every 4th has no image, every 3rd has 1-3 crops."""
    root = tmp_path_factory.mktemp("mnre_images")
    images, crops = root / "images", root / "crops"
    images.mkdir()
    crops.mkdir()
    for i, s in enumerate(val_samples[:N_PARITY]):
        if i % 4 == 3:
            continue
        (images / s.img_id).write_bytes(jpeg_bytes(i, 60 + 7 * (i % 9), 50 + 11 * (i % 5)))
        if i % 3 == 0:
            stem = s.img_id.rsplit(".", 1)[0]
            for k in range(1 + i % 3):
                (crops / f"{stem}-{k}.jpg").write_bytes(jpeg_bytes(1000 + 10 * i + k, 40, 70))
    return images, crops


def _training_encoder(extractor):
    from dfma.contract.text import TextEncoder
    from dfma.contract.tokenizer import load_tokenizer
    return TextEncoder(load_tokenizer(extractor.folder), extractor.manifest.preprocess.max_length)


def test_token_ids_identical_to_training_and_contract_reference(extractor, val_samples):
    """Every val sentence: runtime ids == training encoder's (encode_words_batch) == the contract's
    reference recipe (marked word list through `tokenizers` with is_pretokenized, then section 2.3)."""
    from dfma.contract.text import insert_markers, truncate

    training = _training_encoder(extractor)
    train_rows = training.encode_words_batch([(s.words, s.head, s.tail) for s in val_samples])
    tok = training.tokenizer
    sp = training.special
    for s, train_row in zip(val_samples, train_rows):
        row = extractor.prepare(s).encoded
        assert row.input_ids == train_row.input_ids, s.line_no
        pieces = tok.encode(insert_markers(s.words, s.head, s.tail), is_pretokenized=True,
                            add_special_tokens=False).ids
        at = {k: pieces.index(sp[k]) for k in ("head_open", "tail_open", "head_close", "tail_close")}
        ref = [sp["cls"], *truncate(pieces, training.max_length, at["head_open"], at["tail_open"],
                                    at["head_close"], at["tail_close"]), sp["sep"]]
        assert row.input_ids == ref, s.line_no
        assert row.input_ids.count(sp["head_open"]) == 1 and row.input_ids.count(sp["tail_open"]) == 1


def test_raw_text_request_matches_word_request(extractor, val_samples):
    """Joining the words with spaces and giving character spans yields the same ids."""
    for s in val_samples[:200]:
        starts = list(itertools.accumulate([0] + [len(w) + 1 for w in s.words]))
        text = " ".join(s.words)
        head = (starts[s.head[0]], starts[s.head[1]] - 1)
        tail = (starts[s.tail[0]], starts[s.tail[1]] - 1)
        a = extractor.prepare({"text": text, "head": head, "tail": tail}).encoded
        b = extractor.prepare(s).encoded
        assert a.input_ids == b.input_ids, s.line_no


def test_pixels_identical_to_training_for_every_image_form(extractor, tiny_bundle):
    """Path, bytes, PIL and array inputs give the training pipeline's pixels (to 1e-6)."""
    from dfma.contract.images import ImagePreprocessor
    pp = extractor.manifest.preprocess
    training = ImagePreprocessor(pp.image_size, pp.resize_size, pp.mean, pp.std)
    for seed, (w, h) in enumerate([(96, 80), (64, 200), (300, 73), (73, 73)]):
        data = jpeg_bytes(seed, w, h)
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        ref = training.load(data)
        for form in (data, Image.open(io.BytesIO(data)), decoded):
            got = extractor.prepare({"words": ["a", "b"], "head": [0, 1], "tail": [1, 2], "image": form})
            np.testing.assert_allclose(got.pixel_values[0], ref, atol=1e-6, rtol=0)
            assert got.image_mask.tolist() == [1, 0, 0, 0]
            assert not got.pixel_values[1:].any()
    arr = synthetic_image(7, 50, 90)
    np.testing.assert_allclose(extractor.prepare({"words": ["a"], "head": [0, 1], "tail": [0, 1],
                                                  "image": arr}).pixel_values[0],
                               training.load(arr), atol=1e-6, rtol=0)


def test_logits_match_eager_on_mnre_val(extractor, tiny_eager, val_samples, image_dirs):
    """fp32 runtime vs eager over the training data path: same top-1, logits within 1e-4."""
    torch = pytest.importorskip("torch")
    from dfma.data import MNREDataset, collate
    from dfma.contract.images import ImagePreprocessor
    from dfma.contract.labels import LabelMap

    images, crops = image_dirs
    samples = val_samples[:N_PARITY]
    pp = extractor.manifest.preprocess
    dataset = MNREDataset(samples, _training_encoder(extractor), LabelMap.from_list(extractor.labels.names),
                          ImagePreprocessor(pp.image_size, pp.resize_size, pp.mean, pp.std),
                          images_dir=images, crops_dir=crops, num_crops=pp.num_crops)
    folders = ImageFolders(images=images, crops=crops)
    requests = [rt.as_sample(s, folders=folders) for s in samples]
    batch = [dataset[i] for i in range(len(samples))]
    for size in (16, 1):  # padded batches (rows of different lengths) and single requests
        eager, runtime = [], []
        for start in range(0, len(samples), size):
            inputs = collate(batch[start:start + size])
            inputs.pop("labels")
            with torch.no_grad():
                eager.append(tiny_eager(**inputs).numpy())
            runtime.append(extractor.logits(requests[start:start + size]))
            if size == 1 and start >= 8:
                break
        e, r = np.concatenate(eager), np.concatenate(runtime)
        assert np.abs(e - r).max() < 1e-4, np.abs(e - r).max()
        assert (e.argmax(1) == r.argmax(1)).all()
    masks = np.stack([dataset[i]["image_mask"] for i in range(len(samples))])
    assert masks[:, 0].sum() < len(samples) and masks[:, 1:].sum() > 0  # absent images and crops both occur


def test_predictions_are_distributions(extractor, val_samples):
    preds = extractor.predict_batch(val_samples[:5])
    for p in preds:
        assert set(p.probabilities) == set(extractor.labels.names)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-9
        assert p.probability == max(p.probabilities.values()) and p.relation == extractor.labels.names[p.label_id]
