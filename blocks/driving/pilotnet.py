"""driving.pilotnet: a PilotNet-style steering regressor (camera frame in, steering angle out), exported to ONNX."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.driving.roads import DrivingFrames
from blocks.vision.graph import ImageGraphModel, image_tensors
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


def steering_evaluation(net: nn.Module, tx: torch.Tensor, data: DrivingFrames) -> dict[str, Any]:
    """The held-out scenes' errors (runtime/evaluation.py), the worst shown as their road frames with the true
    steering drawn in green and the model's in red."""
    import time

    from runtime.evaluation import regression_evaluation

    started = time.perf_counter()
    with torch.no_grad():
        predicted = torch.cat([net(tx[i : i + 256]).reshape(-1).cpu() for i in range(0, len(tx), 256)]).numpy()

    def shown(i: int) -> dict[str, str]:
        return {"image_png": frame_with_steering(data.test_x[i], float(data.test_y[i]), float(predicted[i]))}

    evaluation = regression_evaluation(data.test_y, predicted, shown)
    evaluation["seconds"] = round(time.perf_counter() - started, 4)  # what it added to the run (eval_overhead)
    return evaluation


def frame_with_steering(frame: np.ndarray, true: float, predicted: float, scale: int = 3) -> str:
    """A greyscale road frame enlarged, with two steering needles from the bottom centre (−1 full left … 1 full
    right, drawn as ±45°): the true angle in green, the predicted in red; base64 PNG."""
    import base64
    import io
    import math

    from PIL import Image, ImageDraw

    grey = (np.clip(frame, 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(grey).convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    x0, y0, length = img.width / 2, img.height - 1, img.height * 0.8
    for angle, colour in ((true, (40, 200, 60)), (predicted, (230, 40, 40))):
        a = max(-1.0, min(1.0, angle)) * math.pi / 4
        draw.line((x0, y0, x0 + length * math.sin(a), y0 - length * math.cos(a)), fill=colour, width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


class PilotNet(nn.Module):
    """Strided convolutions then fully connected layers down to one angle (after Bojarski et al., 2016)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=2),
            nn.ELU(),
            nn.Conv2d(width, width * 3 // 2, 5, stride=2, padding=2),
            nn.ELU(),
            nn.Conv2d(width * 3 // 2, width * 2, 3, padding=1),
            nn.ELU(),
            nn.AdaptiveAvgPool2d((4, 8)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * 2 * 32, 100),
            nn.ELU(),
            nn.Linear(100, 50),
            nn.ELU(),
            nn.Linear(50, 10),
            nn.ELU(),
            nn.Linear(10, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image)).squeeze(-1)


class AsColumn(nn.Module):
    """The served graph: frames (n, 1, h, w) in [0, 1] → steering angles (n, 1) clipped to [-1, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(image), -1.0, 1.0).unsqueeze(-1)


def mae(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean absolute error of the predicted angles (0 for no frames)."""
    with torch.no_grad():
        return float((module(x).clamp(-1, 1) - y).abs().mean()) if len(y) else 0.0


@dataclass
class SteeringModel(ImageGraphModel):
    """A trained steering regressor, the frame size it was trained on, and its metrics."""

    state: dict[str, np.ndarray]
    width: int
    size: tuple[int, int]
    metrics: dict[str, Any]
    eval_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 32, 64), np.float32))

    def torch_module(self) -> AsColumn:
        net = PilotNet(self.width)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state.items()})
        return AsColumn(net).eval()

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        """Write model.onnx; return this model's manifest fields."""
        return {
            "type": "steering-regressor",
            "model_file": self.write_onnx(bundle_dir, "steering_angle"),
            "input_size": list(self.size),
            "labels": [],
        }


class PilotNetParams(BlockParams):
    epochs: int = Field(25, ge=1, le=1000, description="Passes over the training frames")
    lr: float = Field(0.003, gt=0.0, le=1.0, description="Learning rate of the Adam optimiser")
    batch_size: int = Field(32, ge=1, le=4096, description="Frames per optimisation step")
    width: int = Field(24, ge=4, le=256, description="Filters of the first convolution (later ones scale with it)")
    seed: int = Field(0, ge=0, description="Random seed: the same seed and data give the same model")


@register_block
class PilotNetRegressor(Block):
    id = "driving.pilotnet"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "driving"
    inputs = (Port("frames", PortType.DRIVING_FRAMES, "camera frames with steering angles"),)
    outputs = (
        Port("model", PortType.MODEL, "trained steering regressor"),
        Port("metrics", PortType.METRICS, "mae and the mean-angle baseline's mae on held-out scenes"),
    )
    Params = PilotNetParams
    price = Price(3 * 10**15, PriceUnit.RUN)  # 0.003 AIC per run
    call_price = Price(3 * 10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Trains a PilotNet-style CNN that predicts the steering angle from a camera frame."
    trains = True

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, PilotNetParams)
        return 2.0 * params.epochs

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        from runtime.training import fit

        assert isinstance(params, PilotNetParams)
        data: DrivingFrames = inputs["frames"]
        x, y, tx, ty = image_tensors(data, ctx.device)
        torch.manual_seed(params.seed)
        net = PilotNet(params.width).to(ctx.device)
        opt = torch.optim.Adam(net.parameters(), lr=params.lr)
        loss_value = fit(
            ctx,
            net,
            opt,
            (x, y, tx, ty),
            epochs=params.epochs,
            batch_size=params.batch_size,
            seed=params.seed,
            loss_fn=nn.MSELoss(),
            score=("mae", mae),
        )
        baseline = float(np.abs(data.test_y - data.train_y.mean()).mean())  # always predicting the mean angle
        test_mae = mae(net, tx, ty)
        metrics = {
            "mae": round(test_mae, 6),
            "baseline_mae": round(baseline, 6),
            "mae_vs_baseline": round(test_mae / baseline, 4) if baseline else None,
            "train_mae": round(mae(net, x, y), 6),
            "loss": round(loss_value, 6) if loss_value == loss_value else None,
            "eval_examples": len(ty),
            "epochs": params.epochs,
            "evaluation": steering_evaluation(net, tx, data),
        }
        model = SteeringModel(
            state={k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
            width=params.width,
            size=data.size,
            metrics=metrics,
            eval_pixels=data.test_x,
        )
        return {"model": model, "metrics": metrics}
