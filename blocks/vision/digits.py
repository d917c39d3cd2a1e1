"""vision.digits: the handwritten digits set shipped with scikit-learn (1,797 8×8 greyscale images, 10 classes)."""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from blocks import DATA_PROVIDER
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


@dataclass
class ImageSet:
    """Labelled greyscale images in [0, 1], shape (n, height, width), with a train/test split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: list[str]
    source: dict[str, Any] = field(default_factory=dict)
    bright_ink: bool = False  # bright strokes on a dark ground (digits): served images of dark ink are inverted

    @property
    def size(self) -> tuple[int, int]:
        return int(self.train_x.shape[1]), int(self.train_x.shape[2])


def png_data_uri(image: np.ndarray, scale: int = 4) -> str:
    """A greyscale image in [0, 1] as a PNG data URI (enlarged `scale` times so 8×8 digits can be seen)."""
    from PIL import Image

    pixels = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    img = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class DigitsParams(BlockParams):
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Share of each digit's images held out for testing")
    seed: int = Field(0, ge=0, description="Random seed of the split")
    limit: int = Field(0, ge=0, description="Use at most this many images (0: all 1,797); for quick trials")


@register_block
class Digits(Block):
    id = "vision.digits"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "vision"
    inputs = ()
    outputs = (Port("images", PortType.IMAGE_SET, "8×8 greyscale digits 0-9 with a stratified test split"),)
    Params = DigitsParams
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "CC-BY-4.0"
    description = "Handwritten digits 0-9 (UCI, shipped with scikit-learn): 1,797 8×8 greyscale images."

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        import sklearn

        return f"sklearn-digits-{sklearn.__version__}"

    def load(self, params: DigitsParams) -> ImageSet:
        """The digits scaled to [0, 1] and split per class (the same seed gives the same split)."""
        from sklearn.datasets import load_digits

        data = load_digits()
        images = (data.images / 16.0).astype(np.float32)
        targets = data.target.astype(np.int64)
        rng = random.Random(params.seed)
        order = list(range(len(targets)))
        rng.shuffle(order)
        if params.limit:
            order = order[: params.limit]
        train, test = [], []
        for digit in range(10):
            members = [i for i in order if targets[i] == digit]
            cut = max(1, round(len(members) * params.test_fraction)) if len(members) > 1 else 0
            test += members[:cut]
            train += members[cut:]
        train.sort()
        test.sort()
        return ImageSet(
            train_x=images[train],
            train_y=targets[train],
            test_x=images[test],
            test_y=targets[test],
            labels=[str(d) for d in range(10)],
            source={"dataset": "sklearn.datasets.load_digits", "images": len(order)},
            bright_ink=True,
        )

    def preview(self, params: DigitsParams, base_dir: Path, rows: int = 5, seed: int | None = None) -> list[dict]:
        """A random sample of images with their labels (the image column holds PNG data URIs)."""
        data = self.load(params)
        rng = random.Random(seed)
        picks = rng.sample(range(len(data.train_y)), min(rows, len(data.train_y)))
        return [{"image": png_data_uri(data.train_x[i]), "label": data.labels[data.train_y[i]]} for i in picks]

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, DigitsParams)
        data = self.load(params)
        ctx.log_metric("train_images", len(data.train_y))
        ctx.log_metric("test_images", len(data.test_y))
        return {"images": data}
