"""Decode every image once before training, so bad files are known before the first batch.

This is the cheap audit `train` and `evaluate` run: a bad file found here is either left out
and listed (`data.on_bad_image=skip`) or stops the run before training (`error`), instead of
crashing a DataLoader worker in the middle of an epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import PIL

from deepfake_detection.data.images import DEFAULT_MAX_PIXELS, BadImageError, load_rgb
from deepfake_detection.errors import DatasetError
from deepfake_detection.files import SKIPPED_FILE, atomic_write_bytes

log = logging.getLogger(__name__)

BadFile = tuple[str, str]  # (path, reason)


def _problem(path: str, max_pixels: int) -> str | None:
    try:
        load_rgb(path, max_pixels)
    except BadImageError as err:
        return err.reason
    return None


def find_bad_images(
    paths: Iterable[str | Path], max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0
) -> list[BadFile]:
    """(path, reason) for every file that does not decode, in the order given."""
    paths = [str(p) for p in paths]
    check = partial(_problem, max_pixels=max_pixels)
    if workers > 0 and len(paths) > 256:
        # Threads, not processes: Pillow decodes without holding the GIL, and forking a
        # process that already runs torch's thread pools is not safe.
        with ThreadPoolExecutor(max(workers, 2)) as pool:
            reasons = list(pool.map(check, paths))
    else:
        reasons = [check(p) for p in paths]
    return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def stop_on_bad_image(path: str | Path, reason: str, others: int = 0) -> DatasetError:
    """The error `data.on_bad_image=error` stops with, naming the first bad file."""
    more = f" (and {others} more)" if others else ""
    return DatasetError(
        f"{path}: {reason}{more}; data.on_bad_image=error stops here, "
        "data.on_bad_image=skip leaves such files out"
    )


def _fingerprint(paths: Sequence[str], max_pixels: int) -> str:
    digest = hashlib.sha256(f"v1 {max_pixels} {PIL.__version__}\n".encode())
    for path in paths:
        try:
            stat = os.stat(path)
            # ctime and inode too: tools can set a file's mtime back, never its ctime.
            state = f"{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}"
        except OSError as err:  # a dangling link, say: the check reports it
            state = type(err).__name__
        digest.update(f"{path}\t{state}\n".encode())
    return digest.hexdigest()


def find_bad_images_once(
    paths: Iterable[str | Path],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 0,
    remember_in: Path | None = None,
) -> list[BadFile]:
    """`find_bad_images`, remembered in `remember_in` for exactly these files.

    The record is keyed on every path with its size and modification time (and the pixel
    limit), so a run over unchanged files, such as the next job of a sweep, skips decoding
    them all again, and any added, removed or rewritten file makes a new check.
    """
    paths = [str(p) for p in paths]
    if remember_in is None:
        return find_bad_images(paths, max_pixels, workers)
    record = remember_in / f"{_fingerprint(paths, max_pixels)}.json"
    try:
        return [(str(p), str(r)) for p, r in json.loads(record.read_text())]
    except (OSError, ValueError, TypeError):
        pass
    bad = find_bad_images(paths, max_pixels, workers)
    try:
        atomic_write_bytes(record, json.dumps(bad).encode())
    except OSError as err:
        log.debug("could not remember the image check in %s: %s", record, err)
    return bad


def apply_bad_image_policy(
    paths: Iterable[str | Path],
    policy: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 0,
    remember_in: Path | None = None,
) -> list[BadFile]:
    """The files to leave out under `data.on_bad_image=skip`; with `error`, stop at the first.

    Every command that reads images (train, evaluate, predict) calls this before its first
    batch, so a bad file either never reaches a DataLoader or stops the command up front.
    `remember_in` keeps the result for the same unchanged files (`find_bad_images_once`).
    """
    bad = find_bad_images_once(paths, max_pixels, workers, remember_in)
    if bad and policy == "error":
        raise stop_on_bad_image(*bad[0], others=len(bad) - 1)
    if bad:
        log.warning("skipping %d unreadable file(s), e.g. %s: %s", len(bad), *bad[0])
    return bad


def write_skipped_files(output_dir: str | Path, bad: Sequence[BadFile]) -> Path:
    """`skipped_files.txt` in a run dir: a count, then one `path<TAB>reason` line per file.

    Written even when nothing was skipped, so its absence never has to be interpreted.
    """
    lines = [f"# {len(bad)} file(s) skipped: path<TAB>reason"]
    lines += [f"{path}\t{reason}" for path, reason in bad]
    return atomic_write_bytes(Path(output_dir) / SKIPPED_FILE, ("\n".join(lines) + "\n").encode())
