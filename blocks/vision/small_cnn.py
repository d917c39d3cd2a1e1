"""vision.small-cnn: a small convolutional image classifier; exports the whole classifier as one ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.vision.digits import ImageSet
from blocks.vision.graph import ImageGraphModel, image_tensors
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext
    from runtime.training import WithSoftmax


class SmallCnn(nn.Module):
    """Two 3×3 convolutions, a 2×2 max-pool, then a linear layer over a 4×4 grid: any input size ≥ 8×8."""

    def __init__(self, n_labels: int, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((4, 4)),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * channels * 16, n_labels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


@dataclass
class ImageClassifierModel(ImageGraphModel):
    """A trained image classifier: weights, labels, the input size it was trained on, and its metrics."""

    state: dict[str, np.ndarray]
    channels: int
    labels: list[str]
    size: tuple[int, int]
    metrics: dict[str, Any]
    eval_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 8, 8), np.float32))
    bright_ink: bool = False

    def torch_module(self) -> WithSoftmax:
        from runtime.training import WithSoftmax

        net = SmallCnn(len(self.labels), self.channels)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return WithSoftmax(net).eval()

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        """Write model.onnx; return this model's manifest fields."""
        return {
            "type": "image-classifier",
            "model_file": self.write_onnx(bundle_dir, "probabilities"),
            "labels": list(self.labels),
            "input_size": list(self.size),
            # Trained on bright strokes on a dark ground (the digits): a photo of dark ink on paper is inverted.
            "bright_ink": self.bright_ink,
        }


class SmallCnnParams(BlockParams):
    epochs: int = Field(30, ge=1, le=1000, description="Passes over the training images")
    lr: float = Field(0.003, gt=0.0, le=1.0, description="Learning rate of the Adam optimiser")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per optimisation step")
    channels: int = Field(16, ge=1, le=256, description="Filters of the first convolution (the second has twice)")
    seed: int = Field(0, ge=0, description="Random seed: the same seed and data give the same model")


@register_block
class SmallCnnClassifier(Block):
    id = "vision.small-cnn"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "vision"
    inputs = (Port("images", PortType.IMAGE_SET, "labelled greyscale images with a test split"),)
    outputs = (
        Port("model", PortType.MODEL, "trained image classifier"),
        Port("metrics", PortType.METRICS, "accuracy on the test split"),
    )
    Params = SmallCnnParams
    price = Price(3 * 10**15, PriceUnit.RUN)  # 0.003 AIC per run
    call_price = Price(3 * 10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Trains a small convolutional network to classify images (epochs, lr, channels, seed)."
    trains = True

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, SmallCnnParams)
        return 0.3 * params.epochs

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        from runtime.evaluation import png_base64
        from runtime.training import classifier_metrics, fit

        assert isinstance(params, SmallCnnParams)
        data: ImageSet = inputs["images"]
        x, y, tx, ty = image_tensors(data, ctx.device)
        torch.manual_seed(params.seed)
        net = SmallCnn(len(data.labels), params.channels).to(ctx.device)
        opt = torch.optim.Adam(net.parameters(), lr=params.lr)
        loss_value = fit(
            ctx, net, opt, (x, y, tx, ty), epochs=params.epochs, batch_size=params.batch_size, seed=params.seed
        )
        scale = max(1, 96 // max(data.size))  # small images (8×8 digits) are shown big enough to read

        files = data.source.get("test_files") or []

        def shown(i: int) -> dict[str, str]:
            return {"image_png": png_base64(data.test_x[i], scale), **({"file": files[i]} if i < len(files) else {})}

        metrics = classifier_metrics(
            net, (x, y, tx, ty), len(data.labels), loss_value, params.epochs, labels=list(data.labels), example=shown
        )
        model = ImageClassifierModel(
            state={k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
            channels=params.channels,
            labels=list(data.labels),
            size=data.size,
            metrics=metrics,
            eval_pixels=data.test_x,
            bright_ink=data.bright_ink,
        )
        return {"model": model, "metrics": metrics}
