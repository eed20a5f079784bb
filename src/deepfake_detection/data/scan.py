"""Decode every image once before training, so bad files are known before the first batch.

This is the cheap audit `train` and `evaluate` run: a bad file found here is either left out
and listed (`data.on_bad_image=skip`) or stops the run before training (`error`), instead of
crashing a DataLoader worker in the middle of an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

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


def apply_bad_image_policy(
    paths: Iterable[str | Path], policy: str, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0
) -> list[BadFile]:
    """The files to leave out under `data.on_bad_image=skip`; with `error`, stop at the first.

    Every command that reads images (train, evaluate, predict) calls this before its first
    batch, so a bad file either never reaches a DataLoader or stops the command up front.
    """
    bad = find_bad_images(paths, max_pixels, workers)
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
