"""Vision blocks on tiny data: the digits split, image previews, and decoding served images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from blocks.vision.digits import Digits, DigitsParams
from blocks.vision.predictor import MAX_IMAGE_BYTES, decode_image
from runtime.bundle import BadItem


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_digits_split_is_stratified_disjoint_and_the_same_for_the_same_seed():
    block = Digits()
    a = block.load(DigitsParams(test_fraction=0.2, seed=3))
    b = block.load(DigitsParams(test_fraction=0.2, seed=3))
    c = block.load(DigitsParams(test_fraction=0.2, seed=4))
    assert np.array_equal(a.test_x, b.test_x) and not np.array_equal(a.test_x, c.test_x)
    assert len(a.train_y) + len(a.test_y) == 1797 and a.size == (8, 8) and a.labels == [str(d) for d in range(10)]
    assert set(a.test_y.tolist()) == set(range(10))  # every digit is tested
    for digit in range(10):
        share = (a.test_y == digit).sum() / ((a.test_y == digit).sum() + (a.train_y == digit).sum())
        assert abs(share - 0.2) < 0.02
    assert 0.0 <= a.train_x.min() and a.train_x.max() <= 1.0
    small = block.load(DigitsParams(limit=200))
    assert len(small.train_y) + len(small.test_y) == 200


def test_the_preview_shows_images_with_their_labels():
    rows = Digits().preview(DigitsParams(), None, rows=4, seed=1)
    assert len(rows) == 4 and all(
        r["image"].startswith("data:image/png;base64,") and r["label"] in "0123456789" for r in rows
    )
    assert rows == Digits().preview(DigitsParams(), None, rows=4, seed=1)


def test_served_images_are_resized_to_the_model_input_and_dark_ink_on_paper_is_flipped():
    ink = np.full((40, 30), 255)  # white paper…
    ink[10:30, 12:18] = 0  # …with a dark stroke
    pixels = decode_image(png(ink), (8, 8), bright_ink=True)
    assert pixels.shape == (8, 8) and pixels.dtype == np.float32
    assert pixels[4, 4] > 0.7 and pixels[0, 0] < 0.1  # the stroke is bright, the paper dark, as in training
    bright = decode_image(png(255 - ink), (8, 8), bright_ink=True)
    assert np.allclose(bright, pixels, atol=1e-6)
    rgb = Image.fromarray(np.stack([ink] * 3, axis=-1).astype(np.uint8))
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG")
    assert decode_image(buf.getvalue(), (8, 8), bright_ink=True)[4, 4] > 0.7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the image is empty"),
        (b"not an image at all", "not a PNG or JPEG image"),
        (png(np.zeros((4, 4)))[:20], "not a PNG or JPEG image"),
        (b"x" * (MAX_IMAGE_BYTES + 1), "the limit is"),
    ],
)
def test_bad_images_are_one_sentence(data, message):
    with pytest.raises(BadItem, match=message):
        decode_image(data, (8, 8), bright_ink=True)
