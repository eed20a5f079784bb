"""One definition of how an image becomes a model input when scoring.

Decode (upright RGB, any mode), with the face stage crop the largest face (`face=crop`),
resize so the centre `crop_fraction` becomes `image_size`,
centre-crop, scale to [0, 1] and normalise with the ImageNet statistics. `evaluate`, `predict`,
export's parity check and the service all go through it, so the same file gets the same
score everywhere, and an exported model's metadata describes exactly this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from deepfake_detection.data.images import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    load_rgb,
    load_rgb_bytes,
)
from deepfake_detection.data.scoring_transform import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ScoringTransform,
)
from deepfake_detection.faces.settings import FaceSettings, scoring_face

if TYPE_CHECKING:
    from deepfake_detection.faces.stage import FaceStage


@cache
def _face_stage(settings: FaceSettings) -> FaceStage:
    from deepfake_detection.faces.stage import FaceStage

    return FaceStage(settings)


@cache
def _scoring_transform(image_size: int, crop_fraction: float) -> ScoringTransform:
    return ScoringTransform(image_size, crop_fraction)  # stateless: safe to share across threads


@dataclass(frozen=True)
class Preprocessing:
    """Scoring-time preprocessing of a trained model (its training run's data settings)."""

    image_size: int
    crop_fraction: float = 0.875
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: The face stage of the training run (`face=crop`), or None for whole images.
    face: FaceSettings | None = None

    @classmethod
    def of_data(cls, data: Mapping[str, Any]) -> Preprocessing:
        """From a training run's `data` arguments (`saved_data_arguments`)."""
        return cls(
            image_size=int(data["image_size"]),
            crop_fraction=float(data.get("eval_crop_fraction") or 0.875),
            max_pixels=int(data.get("max_image_pixels") or DEFAULT_MAX_PIXELS),
            face=FaceSettings.from_config(data.get("face")),
        )

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Preprocessing:
        """The inverse of `describe`, for an exported model's metadata."""
        face = dict(description.get("face") or {})
        face.pop("stage_version", None)
        return cls(
            image_size=int(description["image_size"]),
            crop_fraction=float(description["crop_fraction"]),
            max_pixels=int(description.get("max_pixels") or DEFAULT_MAX_PIXELS),
            face=FaceSettings.from_config(face or None),
        )

    def with_face(self, given: Mapping[str, Any] | None) -> Preprocessing:
        """With a scoring command's `face.*` applied to the training run's stage
        (`deepfake_detection.faces.settings.scoring_face`)."""
        trained = asdict(self.face) if self.face is not None else None
        return replace(self, face=scoring_face(trained, given))

    @property
    def face_stage(self) -> FaceStage | None:
        """The stage that finds and crops faces, or None without one."""
        return None if self.face is None else _face_stage(self.face)

    @property
    def resize_to(self) -> int:
        return round(self.image_size / self.crop_fraction)

    def transform(self) -> ScoringTransform:
        """Decoded RGB image → normalised float tensor (C, H, W), as `eval_transform` makes
        it but without importing torchvision (`scoring_transform.py`); built once per
        setting, since predict and the service call it for every image."""
        return _scoring_transform(self.image_size, self.crop_fraction)

    def cropped(self, image: Image.Image) -> torch.Tensor:
        """The resized and cropped uint8 image (C, H, W) the model sees, before scaling."""
        return self.transform().cropped(image)

    def check_shape(self, image: Image.Image, name: str | Path) -> None:
        """A very thin image (1 x 100,000, say) passes the pixel bound but would be resized
        to far more pixels than it has: refuse it by name before the resize allocates them."""
        short, long = sorted(image.size)
        resized = self.resize_to * max(1, round(long * self.resize_to / max(short, 1)))
        if resized > self.max_pixels:
            raise BadImageError(
                name,
                f"{image.size[0]}x{image.size[1]} is too thin: resizing it for the model would "
                f"make {resized} pixels, over data.max_image_pixels={self.max_pixels}",
            )

    def model_image(self, image: Image.Image, name: str | Path) -> Image.Image:
        """The image the model scores for a decoded one: its largest face's crop with the
        face stage, else itself."""
        stage = self.face_stage
        return image if stage is None else stage.model_image(image, name)

    def model_input(self, image: Image.Image, name: str | Path) -> torch.Tensor:
        """A decoded image as the model's input; `BadImageError` names it when unusable
        (and, with the face stage under `face.on_missing=skip`, when it has no face)."""
        image = self.model_image(image, name)
        self.check_shape(image, name)
        return self.transform()(image)

    def decode_file(self, path: str | Path) -> Image.Image:
        return load_rgb(path, self.max_pixels)

    def decode_bytes(self, data: bytes, name: str) -> Image.Image:
        return load_rgb_bytes(data, name, self.max_pixels)

    def file(self, path: str | Path) -> torch.Tensor:
        """A model input from an image file; `BadImageError` names it when unusable."""
        return self.model_input(self.decode_file(path), path)

    def describe(self) -> dict[str, Any]:
        """What a user of an exported model needs to reproduce this exactly."""
        stage = self.face_stage
        face_steps = []
        if stage is not None:
            f = stage.settings
            face_steps = [
                f"find faces ({f.detector}, score >= {f.score_threshold:g}, searched at most "
                f"{f.detect_size} px on the longer side, faces narrower than {f.min_size} px "
                "ignored)",
                f"crop each face: its box enlarged {f.margin:g}x"
                + (", squared" if f.square else "")
                + (", rotated so the eyes are level" if f.align else "")
                + f", border pixels repeated outside the image, to {f.crop_size} px",
            ]
        return {
            "image_size": self.image_size,
            "resize_to": self.resize_to,
            "crop_fraction": self.crop_fraction,
            "face": stage.describe() if stage is not None else None,
            "steps": [
                "decode to upright RGB (EXIF rotation applied; alpha composited on black)",
                *face_steps,
                f"resize the shorter side to {self.resize_to} px (bilinear, antialiased)",
                f"centre-crop {self.image_size}x{self.image_size}",
                "scale to [0, 1] (float32)",
                "normalise with mean and std per channel",
            ],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "layout": "NCHW, RGB, float32",
            "max_pixels": self.max_pixels,
        }
