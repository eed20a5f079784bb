"""Read each image once and keep what the audit compares: content hash, size, mode, pHash.

Decoding dominates the audit's time, so it runs in forked worker processes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import imagehash
import numpy as np
from PIL import Image

from deepfake_detection.data.images import BadImageError, load_rgb

log = logging.getLogger(__name__)


class Fingerprint(NamedTuple):
    """What one file looks like; `problem` is set, and the rest None, when it does not decode."""

    sha256: str | None = None
    size: str | None = None  # "WxH" as stored, before EXIF rotation
    mode: str | None = None  # as stored, before conversion to RGB
    phash: bytes | None = None  # the hash's bits, packed; None when not asked for
    problem: str | None = None


def fingerprint(path: str | Path, max_pixels: int, hash_size: int | None) -> Fingerprint:
    """The fingerprint of one file; pass `hash_size=None` to skip the perceptual hash."""
    try:
        # Decoded the way training decodes, so "unreadable" means what training would skip.
        rgb = load_rgb(path, max_pixels)
        data = Path(path).read_bytes()
    except BadImageError as err:
        return Fingerprint(problem=err.reason)
    except OSError as err:  # removed or made unreadable between the two reads
        return Fingerprint(problem=f"cannot read ({err.strerror or err})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            mode = image.mode
    except Exception as err:  # rewritten between the two reads
        return Fingerprint(problem=f"changed while being read ({type(err).__name__})")
    phash = None
    if hash_size is not None:
        bits = imagehash.phash(rgb, hash_size=hash_size).hash
        phash = np.packbits(bits.ravel()).tobytes()
    return Fingerprint(hashlib.sha256(data).hexdigest(), f"{width}x{height}", mode, phash)


def fingerprint_all(
    paths: Sequence[Path], *, max_pixels: int, hash_size: int | None, workers: int
) -> list[Fingerprint]:
    """Fingerprints in the order of `paths`; `workers=0` stays in this process, for debugging."""
    task = partial(fingerprint, max_pixels=max_pixels, hash_size=hash_size)
    started = time.perf_counter()
    if workers <= 0 or len(paths) < 2:
        results = [task(path) for path in paths]
    else:
        # Forked workers start at once; spawned ones would import torch again first.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        # Several chunks per worker keep them all busy to the end; small ones cost in IPC.
        chunksize = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(task, paths, chunksize=chunksize))
    log.info(
        "read %d files in %.1f s (%d worker(s))",
        len(paths),
        time.perf_counter() - started,
        max(workers, 0),
    )
    return results
