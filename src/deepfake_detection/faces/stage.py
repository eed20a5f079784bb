"""The face stage: an image in, the crops of its faces out, with the no-face policy.

Every path goes through `FaceStage`: the dataset store (training and evaluation crops),
`Preprocessing` (predict, export's parity check, the service), so a face is found and
framed the same way wherever an image comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from deepfake_detection.data.images import BadImageError
from deepfake_detection.errors import DatasetError
from deepfake_detection.faces.detectors import Face, load_detector, opencv
from deepfake_detection.faces.geometry import Region, cut, output_size, region
from deepfake_detection.faces.settings import FaceSettings

#: The stage's version: part of the store's key, so a change to how crops are made never
#: reuses crops made the old way.
STAGE_VERSION = 1


class NoFaceError(BadImageError):
    """An image without a face under `face.on_missing=skip`: counted like a bad image."""

    def __init__(self, path: Any, settings: FaceSettings) -> None:
        super().__init__(
            path,
            f"no face found (face.detector={settings.detector}, score >= "
            f"{settings.score_threshold:g}, at least {settings.min_size} px)",
        )
        # `BadImageError`'s message says "cannot read image"; this one reads the image fine.
        self.args = (f"{path}: {self.reason}",)


class FaceMissingError(DatasetError):
    """An image without a face under `face.on_missing=error`: the command stops on it."""


@dataclass(frozen=True)
class FaceCrop:
    """One face of an image: where it is, and its crop as the model's input image."""

    face: Face
    region: Region
    image: Image.Image

    def describe(self, image_size: tuple[int, int]) -> dict[str, Any]:
        """Its box (x, y, width, height in pixels), confidence and share of the image."""
        x, y, w, h = self.face.box
        return {
            "box": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
            "score": round(self.face.score, 4),
            "area": round(self.face.area / (image_size[0] * image_size[1]), 4),
            "corners": [[round(px, 1), round(py, 1)] for px, py in self.region.corners()],
        }


class FaceStage:
    """Finds and crops faces as `settings` say."""

    def __init__(self, settings: FaceSettings) -> None:
        self.settings = settings

    def find(self, image: Image.Image) -> list[Face]:
        """Every face at least `min_size` px wide, the largest first."""
        rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        factor = min(1.0, self.settings.detect_size / max(height, width))
        searched = rgb
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            searched = opencv().resize(rgb, size, interpolation=opencv().INTER_AREA)
        faces = [face.scaled(1 / factor) for face in load_detector(self.settings).detect(searched)]
        faces = [f for f in faces if min(f.box[2], f.box[3]) >= self.settings.min_size]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def crop(self, image: Image.Image, face: Face) -> FaceCrop:
        area = region(face, self.settings)
        pixels = cut(np.asarray(image.convert("RGB")), area, output_size(area, self.settings))
        return FaceCrop(face, area, Image.fromarray(pixels))

    def crops(self, image: Image.Image, select: str | None = None) -> list[FaceCrop]:
        """The crops of the faces `select` (default: `face.select`) asks for."""
        faces = self.find(image)
        if (select or self.settings.select) == "largest":
            faces = faces[:1]
        return [self.crop(image, face) for face in faces]

    def model_image(self, image: Image.Image, name: Any) -> Image.Image:
        """The one image a model scores for `image`: its largest face's crop; without a face,
        the whole image (`on_missing=whole`), else `NoFaceError` naming `name`."""
        found = self.crops(image, "largest")
        if found:
            return found[0].image
        self.check_missing(name)
        return image

    def check_missing(self, name: Any) -> None:
        """`face.on_missing` for an image without a face: nothing for `whole` (it is scored
        whole), `NoFaceError` (counted, like a bad image) for `skip`, a stop for `error`."""
        if self.settings.on_missing == "error":
            raise FaceMissingError(f"{NoFaceError(name, self.settings)} (face.on_missing=error)")
        if self.settings.on_missing == "skip":
            raise NoFaceError(name, self.settings)

    def describe(self) -> dict[str, Any]:
        return {**self.settings.describe(), "stage_version": STAGE_VERSION}
