"""Image preprocessing (contract section 3) and the image/crop file convention."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dfma.contract.errors import ImageError, InputError
from dfma.contract.images import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor, find_crops, find_image
from dfma.contract.jpeg_scans import count_scans
from dfma.contract.limits import Limits

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)


def norm(rgb) -> np.ndarray:
    """Hand normalisation of one RGB triple (uint8 values) -> float32 per channel."""
    return (np.asarray(rgb, dtype=np.float32) / np.float32(255) - MEAN) / STD


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_no_resample_values_by_hand():
    # 4x2 image, resize_size 2 = its shorter side: no resampling; crop 2x2 at top 0, left (4-2)//2 = 1
    px = [[(10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120)],
          [(0, 0, 0), (255, 255, 255), (1, 2, 3), (200, 100, 0)]]
    img = Image.fromarray(np.array(px, dtype=np.uint8))
    x = ImagePreprocessor(2, 2).load(img)
    assert x.shape == (3, 2, 2) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    expected = {(0, 0): px[0][1], (0, 1): px[0][2], (1, 0): px[1][1], (1, 1): px[1][2]}
    for (r, c), rgb in expected.items():
        np.testing.assert_array_equal(x[:, r, c], norm(rgb))
    assert x[0, 0, 0] == pytest.approx((40 / 255 - 0.485) / 0.229, abs=1e-6)


def test_resized_size_truncates_the_long_side():
    p = ImagePreprocessor(3, 4)
    assert p.resized_size(5, 3) == (6, 4)       # int(4 * 5 / 3) = int(6.67)
    assert p.resized_size(3, 5) == (4, 6)
    assert p.resized_size(7, 7) == (4, 4)
    assert ImagePreprocessor(224, 256).resized_size(500, 333) == (384, 256)   # int(384.38...)


def test_uniform_image_through_a_real_resize():
    img = Image.new("RGB", (10, 6), (30, 120, 250))           # -> resized 6x4, crop 3x3
    x = ImagePreprocessor(3, 4).load(img)
    assert x.shape == (3, 3, 3)
    np.testing.assert_allclose(x, np.broadcast_to(norm((30, 120, 250))[:, None, None], (3, 3, 3)),
                               atol=1e-6)


def test_center_crop_offsets_match_hand_indices():
    img = noise(11, 7)                                        # shorter side 7 -> resize 5: (int(5*11/7)=7, 5)
    x = ImagePreprocessor(3, 5).load(img)
    resized = np.asarray(img.resize((7, 5), Image.BILINEAR))
    crop = resized[1:4, 2:5]                                  # top (5-3)//2 = 1, left (7-3)//2 = 2
    np.testing.assert_array_equal(x, ((crop.astype(np.float32) / np.float32(255) - MEAN) / STD)
                                  .transpose(2, 0, 1))


def test_sources_agree_path_bytes_pil_array(tmp_path):
    img = noise(9, 12, seed=1)
    data = encode(img)
    (tmp_path / "a.png").write_bytes(data)
    p = ImagePreprocessor(4, 6)
    ref = p.load(img)
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), data, bytearray(data), np.asarray(img)):
        np.testing.assert_array_equal(p.load(source), ref)


def test_grey_and_rgba_inputs():
    p = ImagePreprocessor(2, 2)
    grey = Image.new("L", (2, 2), 77)
    x = p.load(encode(grey))
    for c in range(3):
        np.testing.assert_allclose(x[c], norm((77, 77, 77))[c], atol=1e-6)
    rgba = Image.new("RGBA", (2, 2), (10, 200, 30, 0))        # alpha dropped, not blended
    np.testing.assert_allclose(p.load(rgba)[:, 0, 0], norm((10, 200, 30)), atol=1e-6)
    np.testing.assert_allclose(p.load(encode(rgba))[:, 1, 1], norm((10, 200, 30)), atol=1e-6)


def test_truncated_jpeg_raises(tmp_path):
    data = encode(noise(64, 64), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated"):
        ImagePreprocessor(8, 8).load(data[: len(data) // 2])
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        ImagePreprocessor(8, 8).load(tmp_path / "cut.jpg")


def test_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="not a recognised image"):
        ImagePreprocessor(8, 8).load(b"this is not an image")
    (tmp_path / "notes.jpg").write_text("hello", encoding="utf-8")
    with pytest.raises(ImageError, match="notes.jpg"):
        ImagePreprocessor(8, 8).load(tmp_path / "notes.jpg")
    with pytest.raises(ImageError, match="missing.jpg"):
        ImagePreprocessor(8, 8).load(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="unsupported"):
        ImagePreprocessor(8, 8).load(12345)


def test_pixel_limit_checked_from_the_header_before_decoding():
    data = encode(noise(100, 40), "JPEG")
    with pytest.raises(ImageError, match="100x40 = 4000 pixels exceeds the limit of 3999"):
        ImagePreprocessor(8, 8, max_image_pixels=3999).load(data[: len(data) // 2])  # pixels cut off
    assert ImagePreprocessor(8, 8, max_image_pixels=4000).load(data).shape == (3, 8, 8)
    with pytest.raises(ImageError, match="exceeds"):
        ImagePreprocessor(8, 8, max_image_pixels=399).load(np.zeros((20, 20, 3), np.uint8))


def test_pillow_bomb_error_and_warning_are_image_errors(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    p = ImagePreprocessor(8, 8)
    with pytest.raises(ImageError, match="decompression bomb"):
        p.load(encode(noise(15, 15)))          # 225 > 2 * 100: Pillow raises
    with pytest.raises(ImageError, match="decompression bomb"):
        p.load(encode(noise(12, 12)))          # 144 > 100: Pillow warns


@pytest.mark.parametrize("arr, what", [
    (np.zeros((4, 4, 3), np.float32), "float32"),
    (np.zeros((4, 4), np.uint8), "(4, 4)"),
    (np.zeros((4, 4, 4), np.uint8), "(4, 4, 4)"),
    (np.zeros((3, 4, 4), np.uint8), "(3, 4, 4)"),
])
def test_array_shape_and_dtype_errors(arr, what):
    with pytest.raises(ImageError) as e:
        ImagePreprocessor(2, 2).load(arr)
    assert what in str(e.value) and "shape" in str(e.value) and "dtype" in str(e.value)


def test_constructor_validation():
    with pytest.raises(InputError, match="resize_size"):
        ImagePreprocessor(8, 7)
    with pytest.raises(InputError, match="image_size"):
        ImagePreprocessor(0, 7)


def test_stack_slots_and_mask():
    p = ImagePreprocessor(2, 2)
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    pixels, mask = p.stack(red, [None, np.full((2, 2, 3), 9, np.uint8)])
    assert pixels.shape == (4, 3, 2, 2) and pixels.dtype == np.float32
    assert mask.dtype == np.int64 and mask.tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(pixels[0, :, 0, 0], norm((255, 0, 0)), atol=1e-6)
    assert not pixels[1].any() and not pixels[3].any()
    np.testing.assert_allclose(pixels[2, :, 1, 1], norm((9, 9, 9)), atol=1e-6)
    none, none_mask = p.stack(None, num_crops=2)
    assert none.shape == (3, 3, 2, 2) and not none.any() and none_mask.tolist() == [0, 0, 0]
    with pytest.raises(InputError, match="crops"):
        p.stack(red, [red] * 4)


def test_stack_names_the_bad_crop_and_takes_a_loader():
    p = ImagePreprocessor(2, 2)
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    for main, crops, field in ((b"nope", [red], "image"), (red, [red, b"nope"], "crops[1]"),
                               (None, [None, None, 42], "crops[2]"), (red, [np.zeros((2, 2), np.uint8)], "crops[0]")):
        with pytest.raises(ImageError) as info:
            p.stack(main, crops)
        assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    seen = []
    pixels, mask = p.stack(b"a", [None, b"bc"], load=lambda s: seen.append(s) or np.full((3, 2, 2), len(s), np.float32))
    assert seen == [b"a", b"bc"] and mask.tolist() == [1, 0, 1, 0] and pixels[2].max() == 2 and not pixels[1].any()


def test_jpeg_scans_are_bounded_before_decoding():
    img = noise(40, 30)
    baseline, progressive = encode(img, "JPEG"), encode(img, "JPEG", progressive=True)
    assert count_scans(baseline, 1000) == 1 and count_scans(progressive, 1000) == 10  # libjpeg's colour script
    assert count_scans(encode(img, "PNG"), 1000) == 0 and count_scans(b"\xff\xd8", 1000) == 0
    last, eoi = progressive.rindex(b"\xff\xda"), len(progressive) - 2
    many = progressive[:eoi] + progressive[last:eoi] * 91 + progressive[eoi:]  # 101 scans
    assert count_scans(many, 1000) == 101 and count_scans(many, 7) == 7
    with pytest.raises(ImageError, match="more than 100 scans exceeds max_jpeg_scans 100") as info:
        ImagePreprocessor(8, 10).load(many)
    assert info.value.field == "image"
    assert ImagePreprocessor(8, 10, limits=Limits(max_jpeg_scans=101)).load(many).shape == (3, 8, 8)
    with pytest.raises(ImageError, match="max_jpeg_scans 9"):
        ImagePreprocessor(8, 10, limits=Limits(max_jpeg_scans=9)).load(progressive)


def test_find_image_and_crops(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "crops").mkdir()
    (tmp_path / "imgs" / "twitter_1.jpg").write_bytes(b"x")
    for name in ("twitter_1-0.jpg", "twitter_1-2.png", "twitter_1-3.jpg", "twitter_10-1.jpg"):
        (tmp_path / "crops" / name).write_bytes(b"x")
    assert find_image(tmp_path / "imgs", "twitter_1.jpg") == tmp_path / "imgs" / "twitter_1.jpg"
    assert find_image(tmp_path / "imgs", "twitter_2.jpg") is None
    crops = find_crops(tmp_path / "crops", "twitter_1.jpg", 3)
    assert crops == [tmp_path / "crops" / "twitter_1-0.jpg", None, tmp_path / "crops" / "twitter_1-2.png"]
    for bad in ("../twitter_1.jpg", "a/b.jpg", "..", ""):
        with pytest.raises(InputError) as e:
            find_image(tmp_path / "imgs", bad)
        assert e.value.field == "img_id"
