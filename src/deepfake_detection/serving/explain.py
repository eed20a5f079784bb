"""Grad-CAM heatmaps of where the detector looked, from the `grad-cam` package.

The target is the Fake logit of the last feature block, so warm regions are evidence for
Fake and cold ones for Real. Works for frozen models too: the input carries the gradient.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.models import registry
from deepfake_detection.models.base import BaseDetector


class _Logit(nn.Module):
    """The detector's network: images → (N, 1) Fake logits."""

    def __init__(self, detector: BaseDetector) -> None:
        super().__init__()
        self.net = detector.net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def grad_cam(detector: BaseDetector, model_input: torch.Tensor) -> np.ndarray:
    """(H, W) heatmap in [0, 1] for one preprocessed image (3, H, W)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    detector.eval()
    batch = model_input.unsqueeze(0).clone().requires_grad_(True)
    architecture = registry.of(detector)
    layer = architecture.gradcam_layer(detector)  # the architecture's choice
    reshape = architecture.gradcam_reshape(detector) if architecture.gradcam_reshape else None
    with (
        torch.enable_grad(),
        GradCAM(_Logit(detector), [layer], reshape_transform=reshape) as cam,
    ):
        heatmap = cam(input_tensor=batch, targets=[ClassifierOutputTarget(0)])
    detector.zero_grad(set_to_none=True)
    return heatmap[0]


def overlay_png(image: Image.Image, preprocessing: Preprocessing, heatmap: np.ndarray) -> bytes:
    """The image as the model saw it (resized and cropped), with the heatmap over it."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    seen = preprocessing.cropped(image).permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    blended = show_cam_on_image(seen, heatmap, use_rgb=True, image_weight=0.55)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, format="PNG")
    return buffer.getvalue()
