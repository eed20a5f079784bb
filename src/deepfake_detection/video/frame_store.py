"""A dataset's clips as the frames a detector trains and is evaluated on: sampled, decoded
and written once as lossless PNGs, kept on disk for later epochs, runs and commands.

A clip's frames are keyed on the file (its absolute path, size and modification time) and on
the sampling settings, so an edited clip, or other `video.*` settings, extracts again, and
nothing else does. Each clip's folder is written under a temporary name and renamed when
complete: an interrupted extraction never leaves half a clip where a later run would read
it (its temporary folder, named with a leading dot, is removed unless the process is
killed). The frames then go through the rest of the data pipeline (the image check, the
face stage and its crop cache, augmentation) as images, each remembering the clip it came
from for video-level metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection.data.images import BadImageError
from deepfake_detection.files import atomic_write_bytes
from deepfake_detection.video.reading import read_clip
from deepfake_detection.video.settings import VideoSettings

log = logging.getLogger(__name__)

#: Changes whenever what a stored frame holds changes, so old stores are not reused.
STORE_VERSION = 1
INDEX_FILE = "frames.json"


def default_frames_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepfake-detection" / "frames"


@dataclass
class PreparedFrames:
    """What a dataset's clips became: each clip's frame files (with their times), and the
    clips that could not be read, with the reason."""

    frames: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)
    extracted: int = 0
    reused: int = 0

    def clip_of(self) -> dict[str, str]:
        """Frame file -> the clip it was taken from."""
        return {frame: clip for clip, frames in self.frames.items() for frame, _ in frames}


class FrameStore:
    """Where the sampled frames of clips live on disk (see the module's docstring)."""

    def __init__(self, settings: VideoSettings) -> None:
        self.settings = settings
        ignored = ("aggregate", "topk", "faces", "cache_dir")  # not what a frame holds
        sampling = {k: v for k, v in settings.describe().items() if k not in ignored}
        digest = hashlib.sha256(
            json.dumps({"version": STORE_VERSION, **sampling}, sort_keys=True).encode()
        ).hexdigest()[:16]
        self.root = Path(settings.cache_dir or default_frames_dir()) / digest

    def folder_of(self, clip: Path) -> Path:
        """The clip's folder, keyed on its path as given (a link and its target are two
        clips, each with its own frames) and on its size and modification time."""
        stat = clip.stat()
        key = f"{clip.absolute()}\n{stat.st_size}\n{stat.st_mtime_ns}"
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:24]

    def prepare(self, clips: list[Path], workers: int = 1) -> PreparedFrames:
        """Every clip's frames, extracted now or read from the store; unreadable clips are
        listed in `bad` with their reason, never raised."""
        prepared = PreparedFrames()
        clips = list(dict.fromkeys(clips))  # the same clip listed twice is read once
        workers = max(1, min(workers, len(clips)))
        # Each decoder gets its share of the cores, not all of them each.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(lambda clip: self._one(clip, threads), clips)
            for clip, result in zip(clips, results, strict=True):
                if isinstance(result, str):
                    prepared.bad.append((str(clip), result))
                    continue
                frames, reused = result
                prepared.frames[str(clip)] = frames
                prepared.reused += reused
                prepared.extracted += not reused
        return prepared

    def _one(self, clip: Path, threads: int = 0) -> tuple[list[tuple[str, float]], bool] | str:
        try:
            folder = self.folder_of(clip)
        except OSError as err:
            return f"cannot read video: {err.strerror or err}"
        index = folder / INDEX_FILE
        if index.is_file():
            stored = json.loads(index.read_text())
            return [(str(folder / f["file"]), f["time"]) for f in stored["frames"]], True
        try:
            read = read_clip(clip, self.settings, threads=threads)
        except BadImageError as err:  # BadVideoError
            return err.reason
        self.root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=self.root))
        try:
            listed = []
            for number, frame in enumerate(read.frames):
                name = f"{number:04d}.png"
                frame.image.save(partial / name, compress_level=1)
                listed.append({"file": name, "time": frame.time})
            description = {"clip": str(clip), **read.describe(), "frames": listed}
            atomic_write_bytes(partial / INDEX_FILE, json.dumps(description, indent=1).encode())
            with contextlib.suppress(OSError):  # another process stored it first: keep theirs
                partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # gone once renamed, or on a failure
        return [(str(folder / f["file"]), f["time"]) for f in listed], False
