"""Vision blocks on tiny data: the digits split, image previews, and decoding served images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from blocks.vision.digits import Digits, DigitsParams
from blocks.vision.predictor import MAX_IMAGE_BYTES, decode_image
from builder.errors import BadItem


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


def write_digit_folder(root, per_class: int = 6, classes: int = 3):
    """A folder of PNGs, one sub-folder per digit, as a user would prepare it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for d in range(classes):
        (root / f"digit{d}").mkdir(parents=True, exist_ok=True)
        for k, i in enumerate([i for i, t in enumerate(digits.target) if t == d][:per_class]):
            (root / f"digit{d}" / f"{k}.png").write_bytes(png(np.clip(digits.images[i] * 16, 0, 255)))
    return root


def test_an_image_folder_and_its_zip_give_the_same_split(tmp_path):
    import zipfile

    from blocks.vision.image_folder import ImageFolder, ImageFolderParams

    root = write_digit_folder(tmp_path / "photos")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(tmp_path).as_posix())  # photos/digit0/0.png: the class is the parent folder
    block = ImageFolder()
    a = block.load(ImageFolderParams(path="photos", size=16), tmp_path)
    b = block.load(ImageFolderParams(path="photos.zip", size=16), tmp_path)
    assert a.labels == b.labels == ["digit0", "digit1", "digit2"] and a.size == (16, 16)
    assert np.array_equal(a.train_y, b.train_y) and np.allclose(a.train_x, b.train_x)
    assert len(a.train_y) + len(a.test_y) == 18 and set(a.test_y.tolist()) == {0, 1, 2}
    assert block.check(ImageFolderParams(path="photos.zip"), tmp_path) == []
    assert block.fingerprint(ImageFolderParams(path="photos"), tmp_path) != "missing"
    rows = block.preview(ImageFolderParams(path="photos"), tmp_path, rows=2, seed=0)
    assert [r["label"] in a.labels for r in rows] == [True, True] and rows[0]["image"].startswith("data:image/png")


def test_image_folder_problems_name_the_files(tmp_path):
    from blocks.vision.image_folder import ImageFolder, ImageFolderParams

    block = ImageFolder()
    root = write_digit_folder(tmp_path / "photos")
    (root / "digit1" / "broken.png").write_bytes(b"\x89PNG not really")
    assert block.check(ImageFolderParams(path="photos"), tmp_path) == [
        (
            "path",
            "1 file(s) cannot be used as images: digit1/broken.png (not a PNG or JPEG image); remove or replace them",
        )
    ]
    write_digit_folder(tmp_path / "one", classes=1)
    assert "one label (digit0)" in block.check(ImageFolderParams(path="one"), tmp_path)[0][1]
    (tmp_path / "empty").mkdir()
    assert "holds no PNG or JPEG images" in block.check(ImageFolderParams(path="empty"), tmp_path)[0][1]
    assert "neither a folder nor a .zip" in block.check(ImageFolderParams(path="nope"), tmp_path)[0][1]
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    assert "not a readable zip file" in block.check(ImageFolderParams(path="bad.zip"), tmp_path)[0][1]


def test_augmentation_adds_seeded_copies_of_training_images_only():
    from blocks.vision.augment import augment

    images = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    a = augment(images, copies=3, degrees=10, shift=0.1, noise=0.05, seed=1)
    assert a.shape == (15, 8, 8) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, augment(images, copies=3, degrees=10, shift=0.1, noise=0.05, seed=1))
    assert not np.array_equal(a, augment(images, copies=3, degrees=10, shift=0.1, noise=0.05, seed=2))
    same = augment(images, copies=1, degrees=0, shift=0, noise=0, seed=0)
    assert np.allclose(same, images, atol=1e-5)  # no transformation: the images come back unchanged


def test_a_zip_member_too_large_unpacked_is_refused_before_it_is_inflated(tmp_path):
    import zipfile

    from blocks.vision.image_folder import MAX_IMAGE_BYTES, ImageFolder, ImageFolderParams

    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/huge.png", b"\0" * (MAX_IMAGE_BYTES + 1))
        z.writestr("b/small.png", png(np.zeros((8, 8))))
    assert tmp_path.joinpath("bomb.zip").stat().st_size < 100_000  # small on disk…
    problems = ImageFolder().check(ImageFolderParams(path="bomb.zip"), tmp_path)
    assert problems and "a/huge.png in bomb.zip is" in problems[0][1] and "unpacked; the limit is" in problems[0][1]
