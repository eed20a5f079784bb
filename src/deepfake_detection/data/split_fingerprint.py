"""A split's fingerprint: which files were scored, in one hash.

Two results are only comparable when they scored the same files. The fingerprint hashes the
sorted relative paths of a split's files with their sizes and labels, so it is the same on
another machine or after the dataset moved, and changes when a file is added, removed,
relabelled or rewritten. A clip counts as one file (not its extracted frames).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deepfake_detection.data.layout import CLASS_NAMES


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def split_fingerprint(
    root: str | Path,
    samples: Iterable[tuple[Path, int]],
    clip_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """{"fingerprint": sha256 hex, "files": {"fake": n, "real": n}} of a split's samples,
    with `missing_files` when some could not be found.

    `clip_of` maps an extracted frame back to its clip, which is what is fingerprinted.
    """
    root = Path(root)
    clip_of = clip_of or {}
    files: dict[str, int] = {}
    for path, label in samples:
        source = Path(clip_of.get(str(path), path))
        files[_relative(source, root)] = int(label)
    digest = hashlib.sha256()
    missing = 0
    for relative in sorted(files):
        size = _size(root / relative)  # an absolute path (outside the root) stays itself
        missing += size < 0
        digest.update(f"{relative}\t{size}\t{files[relative]}\n".encode())
    counts = {CLASS_NAMES[label].lower(): 0 for label in sorted(CLASS_NAMES, reverse=True)}
    for label in files.values():
        counts[CLASS_NAMES[label].lower()] += 1
    record: dict[str, Any] = {"fingerprint": digest.hexdigest(), "files": counts}
    if missing:
        # Their sizes could not be read (the dataset moved): this fingerprint will not match
        # one taken where the files are.
        record["missing_files"] = missing
    return record
