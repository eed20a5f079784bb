"""Face crops of a dataset, computed once and kept on disk.

Finding a face costs more than decoding a small image, and a run reads every image once per
epoch; so the crops of a run's images are made once, written as lossless PNG files, and read
in place of the images by every later epoch, run and sweep job with the same face settings.
The store is keyed like the feature cache: a folder per crop-geometry key (the face settings,
the stage's version, OpenCV's version), one file per image named by a hash of its path, size
and modification time, so an edited or replaced image is cropped again and a stale crop is
never read. Each file is written atomically, so an interrupted pass loses nothing made.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection.data.images import DEFAULT_MAX_PIXELS, BadImageError, load_rgb
from deepfake_detection.errors import DatasetError
from deepfake_detection.faces.detectors import opencv
from deepfake_detection.faces.settings import FaceSettings
from deepfake_detection.faces.stage import STAGE_VERSION, FaceStage, NoFaceError
from deepfake_detection.files import atomic_write_bytes

log = logging.getLogger(__name__)

CROP_SUFFIX, MISS_SUFFIX = ".png", ".miss"


def default_root() -> Path:
    from deepfake_detection.data.demo import default_cache_dir

    return default_cache_dir() / "faces"


def store_key(settings: FaceSettings) -> str:
    parts = {
        "stage": STAGE_VERSION,
        "opencv": opencv().__version__,
        **settings.geometry_key(),
    }
    if settings.model_path:
        stat = os.stat(settings.model_path)
        parts["model_file"] = [os.path.abspath(settings.model_path), stat.st_size, stat.st_mtime_ns]
    canonical = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _entry_name(path: Path) -> str:
    stat = os.stat(path)
    text = f"{os.path.abspath(path)}\t{stat.st_size}\t{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass
class PreparedFaces:
    """What the store holds for a list of images."""

    #: Image path -> the file to read for it: its crop, or itself when scored whole.
    read_from: dict[str, Path] = field(default_factory=dict)
    #: Images in which no face was found.
    missing: list[str] = field(default_factory=list)
    #: Crops made in this pass (the rest were on disk already).
    made: int = 0


class FaceCropStore:
    """The crops of images under one face setting, in `root/<key>/`."""

    def __init__(self, settings: FaceSettings, root: Path | None = None) -> None:
        self.settings = settings
        self.stage = FaceStage(settings)
        self._temporary: tempfile.TemporaryDirectory | None = None
        if root is None and not settings.cache:
            # face.cache=false: crops still made once for this run, then deleted.
            self._temporary = tempfile.TemporaryDirectory(prefix="deepfake-faces-")
            root = Path(self._temporary.name)
        elif root is None:
            root = Path(settings.cache_dir).expanduser() if settings.cache_dir else default_root()
        self.folder = root / store_key(settings)

    def _paths(self, image: Path) -> tuple[Path, Path]:
        name = _entry_name(image)
        folder = self.folder / name[:2]
        return folder / (name + CROP_SUFFIX), folder / (name + MISS_SUFFIX)

    def _make(self, image: Path, max_pixels: int) -> tuple[Path | None, bool]:
        """(the crop file, or None without a face; whether it was made now)."""
        crop_file, miss_file = self._paths(image)
        if crop_file.is_file():
            return crop_file, False
        if miss_file.is_file():
            return None, False
        decoded = load_rgb(image, max_pixels)
        found = self.stage.crops(decoded, "largest")
        if not found:
            atomic_write_bytes(miss_file, b"")
            return None, True
        buffer = io.BytesIO()
        found[0].image.save(buffer, format="PNG", compress_level=1)
        atomic_write_bytes(crop_file, buffer.getvalue())
        return crop_file, True

    def prepare(
        self,
        images: Sequence[Path],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 0,
    ) -> PreparedFaces:
        """Crop every image of `images` not cropped yet; say what to read for each."""
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = json.dumps(self.stage.describe(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(self.folder / "settings.json", settings.encode())
        started = time.perf_counter()
        prepared = PreparedFaces()

        def one(image: Path) -> tuple[Path | None, bool]:
            try:
                return self._make(Path(image), max_pixels)
            except BadImageError as err:
                raise DatasetError(f"{err}; it changed after the image check") from None

        if workers > 0 and len(images) > 64:
            # Threads: decoding, OpenCV's detector and PNG encoding all release the GIL. One
            # OpenCV thread each: the pool already keeps the cores busy.
            cv2 = opencv()
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                with ThreadPoolExecutor(max(workers, 2)) as pool:
                    results = list(pool.map(one, images))
            finally:
                cv2.setNumThreads(threads)
        else:
            results = [one(image) for image in images]
        for image, (crop_file, made) in zip(images, results, strict=True):
            prepared.made += made
            if crop_file is None:
                prepared.missing.append(str(image))
                if self.settings.on_missing == "whole":
                    prepared.read_from[str(image)] = Path(image)
            else:
                prepared.read_from[str(image)] = crop_file
        if prepared.made:
            log.info(
                "face crops: %d made in %.1f s, %d reused, %d image(s) without a face (%s)",
                prepared.made,
                time.perf_counter() - started,
                len(images) - prepared.made,
                len(prepared.missing),
                self.folder,
            )
        return prepared

    def no_face_reason(self) -> str:
        return NoFaceError("", self.settings).reason
