"""vision.image-folder: a user's images, one sub-folder per class, as a folder or a .zip file."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from blocks import DATA_PROVIDER
from blocks.folders import LabelledFolderBlock, check_labels, labelled_files, refuse_bad_files, stratified_split
from blocks.vision.digits import ImageSet, png_data_uri
from builder.errors import BadItem, DataError
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_IMAGES = 50_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one image, unpacked


def read_images(root: Path, size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Every image as greyscale size×size in [0, 1], its class and its name; DataError naming unreadable files."""
    from PIL import Image, UnidentifiedImageError

    entries = labelled_files(root, IMAGE_SUFFIXES, MAX_IMAGE_BYTES)
    if not entries:
        raise DataError(f"{root.name} holds no PNG or JPEG images in class sub-folders (e.g. cats/1.png)")
    if len(entries) > MAX_IMAGES:
        raise DataError(f"{root.name} holds {len(entries)} images; the limit is {MAX_IMAGES}")
    pixels, classes, names, bad = [], [], [], []
    for label, name, read in entries:
        try:
            data = read()
        except BadItem as exc:
            bad.append((name, str(exc)))
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                grey = img.convert("L").resize((size, size), Image.BILINEAR)
            pixels.append(np.asarray(grey, dtype=np.float32) / 255.0)
            classes.append(label)
            names.append(name)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            bad.append((name, "not a PNG or JPEG image"))
    refuse_bad_files(bad, "images")
    check_labels(classes, root.name, "image")
    return np.stack(pixels), classes, names


class ImageFolderParams(BlockParams):
    path: str = Field(
        ..., min_length=1, description="A folder, or a .zip file, with one sub-folder of images per class"
    )
    size: int = Field(28, ge=8, le=128, description="Images are converted to greyscale and resized to size×size")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each class held out for testing")
    seed: int = Field(0, ge=0, description="Random seed of the split")


@register_block
class ImageFolder(LabelledFolderBlock):
    id = "vision.image-folder"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "vision"
    inputs = ()
    outputs = (Port("images", PortType.IMAGE_SET, "greyscale images by class with a stratified test split"),)
    Params = ImageFolderParams
    file_suffixes = frozenset(IMAGE_SUFFIXES)
    max_file_bytes = MAX_IMAGE_BYTES
    example = "image"
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "user data"
    description = "Your images (PNG/JPEG), one sub-folder per class, as a folder or a .zip; unreadable files are named."

    def _read(self, params: ImageFolderParams, base_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
        return read_images(self._root(params, base_dir), params.size)

    def load(self, params: ImageFolderParams, base_dir: Path) -> ImageSet:
        """Read the images and split each class (the same seed gives the same split)."""
        images, classes, names = self._read(params, base_dir)
        labels = sorted(set(classes))
        train, test = stratified_split(classes, params.test_fraction, params.seed)
        y = np.array([labels.index(c) for c in classes], dtype=np.int64)
        return ImageSet(
            train_x=images[train],
            train_y=y[train],
            test_x=images[test],
            test_y=y[test],
            labels=labels,
            # The held-out files by name, so that a mistake can be traced to the file and fixed (builder/ui/fix_data).
            source={
                "path": str(self._root(params, base_dir)),
                "images": len(names),
                "test_files": [names[i] for i in test],
            },
        )

    def preview(self, params: ImageFolderParams, base_dir: Path, rows: int = 5, seed: int | None = None) -> list[dict]:
        """A random sample of images with their class (the image column holds PNG data URIs)."""
        images, classes, _ = self._read(params, base_dir)
        picks = random.Random(seed).sample(range(len(classes)), min(rows, len(classes)))
        return [{"image": png_data_uri(images[i], scale=max(1, 64 // params.size)), "label": classes[i]} for i in picks]

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, ImageFolderParams)
        data = self.load(params, ctx.base_dir)
        ctx.log_metric("train_images", len(data.train_y))
        ctx.log_metric("test_images", len(data.test_y))
        return {"images": data}
