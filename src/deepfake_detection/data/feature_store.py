"""Frozen features stored on disk: what `data.feature_cache=true` trains from.

With a frozen base, the frozen blocks compute the same output for an image in every epoch.
The cache computes it once per image (and augmented view), stores it, and later epochs only
run the trainable layers.

A store is a folder named by a key: the SHA-256 of everything its content depends on (the
frozen weights and architecture, the depth, the transform, the seed and view count, the file
list with sizes and mtimes, the storage dtype). A changed input gives a new key, so a stale
store is never read. A store is built in a temporary folder and renamed into place only once
complete, with its data's SHA-256 in `meta.json`; one that fails that check on opening is
deleted and built again. A file lock lets concurrent sweep jobs with the same key build it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from deepfake_detection.data.loader import SeededSample
from deepfake_detection.data.settings import FEATURE_CACHE_DTYPES
from deepfake_detection.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DATA_FILE = "features.npy"
META_FILE = "meta.json"
DTYPES = {name: np.dtype(name) for name in FEATURE_CACHE_DTYPES}


@dataclass(frozen=True)
class FeatureCacheSettings:
    """The `data.feature_cache*` keys."""

    enabled: bool = False
    #: Where stores live; None: `<user cache>/deepfake-detection/features`.
    directory: str | None = None
    #: Augmented views stored per training image; epoch e trains on view e mod views.
    views: int = 1
    dtype: str = "float32"
    #: Stores up to this size are read into memory; larger ones are memory-mapped.
    ram_mb: float = 2048.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"data.feature_cache={self.enabled}: must be true or false")
        if not isinstance(self.views, int) or isinstance(self.views, bool) or self.views < 1:
            raise ConfigError(f"data.feature_cache_views={self.views}: must be an integer >= 1")
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"data.feature_cache_dtype={self.dtype}: choose one of: {', '.join(DTYPES)}"
            )
        if isinstance(self.ram_mb, bool) or not isinstance(self.ram_mb, int | float):
            raise ConfigError(f"data.feature_cache_ram_mb={self.ram_mb}: must be a number")
        if self.ram_mb < 0:
            raise ConfigError(f"data.feature_cache_ram_mb={self.ram_mb}: must be >= 0")

    def root(self) -> Path:
        if self.directory:
            return Path(self.directory).expanduser()
        from deepfake_detection.data.demo import default_cache_dir

        return default_cache_dir() / "features"


def files_fingerprint(samples: Sequence[tuple[Path, int]], root: Path) -> str:
    """SHA-256 over each file's path below `root`, size, mtime and label, in dataset order."""
    digest = hashlib.sha256()
    for path, label in samples:
        stat = os.stat(path)
        try:
            name = Path(path).relative_to(root).as_posix()
        except ValueError:
            name = str(path)
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\n".encode())
    return digest.hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over the architecture and every parameter and buffer of `module`."""
    digest = hashlib.sha256(repr(module).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(parts: Mapping[str, Any]) -> str:
    canonical = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (POSIX); elsewhere, builders may race, and the rename
    keeps whichever store finished first."""
    try:
        import fcntl

        handle = open(path, "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):  # not POSIX, or a read-only cache folder: no lock
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class FeatureStore:
    """A complete, checked store: `features[view, image]` and what it was built from."""

    path: Path
    features: np.ndarray
    meta: dict[str, Any]
    #: True when it was built in this call, False when an existing one was reused.
    built: bool

    @property
    def bytes_per_image(self) -> float:
        return self.features[0, 0].nbytes * self.features.shape[0]


def _open(folder: Path, ram_bytes: float) -> FeatureStore | str:
    """The store in `folder`, checked; or why it cannot be used."""
    meta_path, data_path = folder / META_FILE, folder / DATA_FILE
    if not meta_path.is_file() or not data_path.is_file():
        return "incomplete (no meta.json or features.npy)"
    try:
        meta = json.loads(meta_path.read_text())
        size = data_path.stat().st_size
        if size != meta["file_bytes"]:
            return f"features.npy has {size} bytes, meta.json says {meta['file_bytes']}"
        if _file_sha256(data_path) != meta["sha256"]:
            return "features.npy does not match its SHA-256 in meta.json"
        features = np.load(data_path, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable ({err})"
    if list(features.shape) != meta["shape"] or str(features.dtype) != meta["dtype"]:
        found = f"{features.dtype}{list(features.shape)}"
        return f"features.npy holds {found}, not {meta['dtype']}{meta['shape']}"
    if features.nbytes <= ram_bytes:
        features = np.array(features)  # fits the RAM budget: read it all once
    return FeatureStore(folder, features, meta, built=False)


def open_or_build(
    settings: FeatureCacheSettings,
    key_parts: Mapping[str, Any],
    views: int,
    count: int,
    compute: Callable[[np.ndarray], None],
    feature_shape: Sequence[int],
) -> FeatureStore:
    """The store for `key_parts`: reused when a complete, intact one exists, else built.

    `compute(features)` fills the writable `(views, count, *feature_shape)` array.
    """
    shape = (views, count, *feature_shape)
    key_parts = {**key_parts, "shape": list(shape), "dtype": settings.dtype}
    key = cache_key(key_parts)
    root = settings.root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    ram_bytes = settings.ram_mb * 2**20
    with _lock(root / f"{key}.lock"):
        if folder.exists():
            found = _open(folder, ram_bytes)
            if isinstance(found, FeatureStore):
                return found
            log.warning("feature cache %s is not usable: %s; building it again", folder, found)
            shutil.rmtree(folder, ignore_errors=True)
        # Left by a build that was killed: under the lock, no other builder is alive.
        for leftover in root.glob(f".{key}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        partial = root / f".{key}.partial-{os.getpid()}"
        partial.mkdir()
        try:
            features = np.lib.format.open_memmap(
                partial / DATA_FILE, mode="w+", dtype=DTYPES[settings.dtype], shape=shape
            )
            started = time.perf_counter()
            compute(features)
            features.flush()
            del features
            data_path = partial / DATA_FILE
            meta = {
                "key": key,
                **key_parts,
                "file_bytes": data_path.stat().st_size,
                "sha256": _file_sha256(data_path),
                "build_seconds": round(time.perf_counter() - started, 3),
            }
            (partial / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            # Should another builder's store be there first, it is the one checked below.
            with contextlib.suppress(OSError):
                os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        found = _open(folder, ram_bytes)
        if not isinstance(found, FeatureStore):
            raise RuntimeError(
                f"feature cache {folder} failed its check right after building: {found}"
            )
        found.built = True
        return found


class CachedFeatureDataset(Dataset):
    """Stored features in place of images: `(features, label, index)` like `ImageFileDataset`.

    Keys may be `SeededSample`s from the training sampler; their seeds are not needed, the
    augmentation was drawn when the store was built. Epoch e reads view e mod views.
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: Sequence[int],
        current_epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.features = features
        self.labels = torch.tensor(list(labels), dtype=torch.float32)
        self.current_epoch = current_epoch

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, key: int | SeededSample) -> tuple[torch.Tensor, torch.Tensor, int]:
        index = key[0] if isinstance(key, tuple) else key
        view = self.current_epoch() % self.features.shape[0]
        features = torch.from_numpy(np.array(self.features[view, index], dtype=np.float32))
        return features, self.labels[index], index

    def __getitems__(self, keys: Sequence[int | SeededSample]) -> FeatureBatch:
        """A whole batch in one read, already collated (`collate_batch` passes it on): the
        DataLoader's loader calls this in place of `__getitem__` per sample, which costs
        more than the step itself when a step is a linear head on stored vectors."""
        indices = [key[0] if isinstance(key, tuple) else key for key in keys]
        view = self.current_epoch() % self.features.shape[0]
        features = np.asarray(self.features[view, indices], dtype=np.float32)
        return FeatureBatch(
            (torch.from_numpy(features), self.labels[indices], torch.tensor(indices))
        )


class FeatureBatch(tuple):
    """(features, labels, indices) of a batch read by `CachedFeatureDataset.__getitems__`."""


def collate_batch(batch: FeatureBatch | list[Any]) -> Any:
    """The collate function of a loader over a `CachedFeatureDataset`: a batch read whole is
    collated already; samples read one by one are stacked as usual."""
    if isinstance(batch, FeatureBatch):
        return tuple(batch)
    return default_collate(batch)
