"""What image models share: their data as tensors, the parity check's inputs, and the ONNX export of the graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def image_tensors(data: Any, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y) on `device`; images gain their channel axis: (n, 1, h, w)."""
    return (
        torch.from_numpy(data.train_x).unsqueeze(1).to(device),
        torch.from_numpy(data.train_y).to(device),
        torch.from_numpy(data.test_x).unsqueeze(1).to(device),
        torch.from_numpy(data.test_y).to(device),
    )


class ImageGraphModel:
    """Mixin for a trained image model: `torch_module()` is the served graph, `eval_pixels` its test images."""

    eval_pixels: np.ndarray
    size: tuple[int, int]

    def torch_module(self) -> nn.Module:  # pragma: no cover - each model defines it
        raise NotImplementedError

    def parity_inputs(self) -> list[Any]:
        """Inputs on which the exported graph must agree with torch (the test images, already preprocessed)."""
        return [{"pixels": p} for p in self.eval_pixels]

    def reference_outputs(self, items: list[Any]) -> np.ndarray:
        x = torch.from_numpy(np.stack([i["pixels"] for i in items]).astype(np.float32)).unsqueeze(1)
        with torch.inference_mode():
            return self.torch_module()(x).numpy()

    def write_onnx(self, bundle_dir: Path, output_name: str) -> str:
        """Export the served graph (input `image`: (batch, 1, h, w) in [0, 1]) to model.onnx; its file name."""
        from runtime.export import write_onnx

        h, w = self.size
        return write_onnx(self.torch_module(), torch.zeros((1, 1, h, w)), "image", output_name, bundle_dir)


__all__ = ["ImageGraphModel", "image_tensors"]
