"""Exact duplicates (same bytes) and near duplicates (close perceptual hashes).

A copy of a training image in the test split inflates test scores without anyone noticing;
near duplicates (re-encoded, resized, brightened) do the same and are the likelier kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepfake_detection.auditing.inventory import ImageFile

#: Bound on the XOR block compared at once, in 64-bit words: 4 Mi words = 32 MiB.
BLOCK_WORDS = 1 << 22
#: Bound on the near pairs kept: a folder of blank frames would otherwise make n² of them.
MAX_NEAR_PAIRS = 1_000_000

_POPCOUNT8 = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class ExactGroup:
    sha256: str
    files: tuple[ImageFile, ...]

    @property
    def splits(self) -> list[str]:
        return sorted({f.split for f in self.files})

    @property
    def cross_split(self) -> bool:
        return len(self.splits) > 1

    @property
    def label_conflict(self) -> bool:
        return len({f.label for f in self.files}) > 1

    def to_json(self) -> dict:
        return {
            "sha256": self.sha256,
            "files": [f.to_json() for f in self.files],
            "splits": self.splits,
            "cross_split": self.cross_split,
            "label_conflict": self.label_conflict,
        }


@dataclass(frozen=True)
class NearPair:
    a: ImageFile
    b: ImageFile
    distance: int

    @property
    def cross_split(self) -> bool:
        return self.a.split != self.b.split

    @property
    def label_conflict(self) -> bool:
        return self.a.label != self.b.label

    def to_json(self) -> dict:
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "distance": self.distance,
            "cross_split": self.cross_split,
            "label_conflict": self.label_conflict,
        }


def exact_groups(files: Sequence[ImageFile], sha256: Sequence[str]) -> list[ExactGroup]:
    """Groups of two or more files with the same bytes, ordered by their first path."""
    members: dict[str, list[ImageFile]] = {}
    for file, digest in zip(files, sha256, strict=True):
        members.setdefault(digest, []).append(file)
    groups = [
        ExactGroup(digest, tuple(sorted(group)))
        for digest, group in members.items()
        if len(group) > 1
    ]
    return sorted(groups, key=lambda group: group.files[0].path)


def hash_matrix(hashes: Sequence[bytes]) -> np.ndarray:
    """Packed hashes as rows of uint64 words, zero-padded: padding bits never differ."""
    width = max((len(h) for h in hashes), default=8)
    words = -(-width // 8)
    if not hashes:
        return np.zeros((0, words), dtype=np.uint64)
    padded = b"".join(h.ljust(words * 8, b"\0") for h in hashes)
    return np.frombuffer(padded, dtype=np.uint64).reshape(len(hashes), words)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element; numpy < 2.0 has no bitwise_count, so a byte table stands in."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _POPCOUNT8[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)


def hamming_pairs(
    hashes: np.ndarray,
    max_distance: int,
    *,
    block_words: int = BLOCK_WORDS,
    max_pairs: int = MAX_NEAR_PAIRS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(i, j, distance, truncated) for every row pair i < j at most `max_distance` apart.

    Rows are compared a block at a time against the rows after them, so memory stays near
    `block_words` words however many hashes there are; `truncated` says `max_pairs` was hit.
    """
    n, words = hashes.shape
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_d: list[np.ndarray] = []
    kept = 0
    rows = max(1, block_words // max(1, n * words))
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        # Row i of the block against rows start+1.. ; the lower triangle is masked out below.
        # One 2-D pass per word: summing over a short last axis is many times slower.
        distance = popcount(hashes[start:stop, None, 0] ^ hashes[None, start + 1 :, 0])
        if words > 1:
            distance = distance.astype(np.uint16)
            for word in range(1, words):
                distance += popcount(
                    hashes[start:stop, None, word] ^ hashes[None, start + 1 :, word]
                )
        i, j = np.nonzero(distance <= max_distance)
        i_abs, j_abs = i + start, j + start + 1
        upper = j_abs > i_abs
        i_abs, j_abs, d = i_abs[upper], j_abs[upper], distance[i[upper], j[upper]]
        take = min(len(i_abs), max_pairs - kept)
        found_i.append(i_abs[:take])
        found_j.append(j_abs[:take])
        found_d.append(d[:take].astype(np.int64))
        kept += take
        if take < len(i_abs):
            return _joined(found_i), _joined(found_j), _joined(found_d), True
    return _joined(found_i), _joined(found_j), _joined(found_d), False


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def near_pairs(
    files: Sequence[ImageFile],
    sha256: Sequence[str],
    phashes: Sequence[bytes],
    max_distance: int,
    *,
    max_pairs: int = MAX_NEAR_PAIRS,
) -> tuple[list[NearPair], bool]:
    """Pairs of files with different bytes whose pHashes are at most `max_distance` apart.

    Each distinct content is compared once: copies are exact duplicates, reported as such,
    and would otherwise fill the list with distance-0 pairs. A near pair of contents is then
    reported for every file holding one and every file holding the other.
    """
    holders: dict[str, list[int]] = {}
    for index, digest in enumerate(sha256):
        holders.setdefault(digest, []).append(index)
    contents = list(holders)
    matrix = hash_matrix([phashes[holders[digest][0]] for digest in contents])
    first, second, distance, truncated = hamming_pairs(matrix, max_distance, max_pairs=max_pairs)
    pairs = []
    for x, y, d in zip(first.tolist(), second.tolist(), distance.tolist(), strict=True):
        for a in holders[contents[x]]:
            for b in holders[contents[y]]:
                one, other = sorted((files[a], files[b]))
                pairs.append(NearPair(one, other, d))
    pairs.sort(key=lambda pair: (pair.a.path, pair.b.path))
    return pairs, truncated
