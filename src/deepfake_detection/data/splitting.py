"""Splits a dataset does not have as folders: hashed from file paths, carved, or read from lists.

A flat root is split by hashing each file's relative path (without its class folder, see
`split_key`) with the seed, so a file's split depends on nothing else: adding images later
never moves an existing one to another split, and the same seed gives the same split on any
machine. Each class is cut by the same fractions, so the splits are stratified by class up to
sampling noise (about one percentage point at 10,000 images per class).

The splits a run derived are written to its run dir as file lists (`splits/<split>.txt`), and
reading them back (`data.split_lists`) scores exactly those files again.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepfake_detection.data.layout import CLASS_NAMES, ClassAliases
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.files import atomic_write_bytes

Sample = tuple[Path, int]
#: `data.split_fractions` when not given: train, val, test.
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: Splits in the order `data.split_fractions` gives their fractions.
SPLIT_ORDER = ("train", "val", "test")
DEFAULT_ALIASES = ClassAliases()
#: Folder of a run dir with the file lists of the splits the run derived.
SPLIT_LISTS_DIR = "splits"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """`data.split_fractions`: three numbers > 0 (train, val, test) that add up to 1."""
    if (
        isinstance(fractions, (str, bytes))
        or len(fractions) != 3
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions)
        or not all(f > 0 for f in fractions)
        or abs(sum(fractions) - 1.0) > 1e-6
    ):
        raise ConfigError(
            f"data.split_fractions={list(fractions)}: need [train, val, test], each > 0, "
            "adding up to 1, e.g. [0.8, 0.1, 0.1]"
        )
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def split_key(relative: str, aliases: ClassAliases = DEFAULT_ALIASES) -> str:
    """What a file's split is hashed from: its relative path without the class folder.

    So `Fake/0001.jpg` and `Real/0001.jpg` (in many datasets, a fake and the real image it
    was made from) always share a split, and renaming `Fake/` to `1_fake/` moves nothing.
    Unicode-normalised (macOS stores decomposed names) and lower-cased.
    """
    parts = relative.split("/")
    for i, part in enumerate(parts[:-1]):
        if aliases.label_of(part) is not None:  # the first one: class folders are not nested
            parts = parts[:i] + parts[i + 1 :]
            break
    return unicodedata.normalize("NFC", "/".join(parts)).lower()


def hash_position(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by the key and the seed alone (SHA-256, any machine)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(
    relative: str,
    seed: int,
    fractions: Sequence[float],
    aliases: ClassAliases = DEFAULT_ALIASES,
) -> str:
    """The split of the file at `relative` (a path below the root, with `/`)."""
    position = hash_position(split_key(relative, aliases), seed)
    if position < fractions[0]:
        return "train"
    return "val" if position < fractions[0] + fractions[1] else "test"


def hash_split(
    samples: Sequence[Sample],
    root: Path,
    fractions: Sequence[float],
    seed: int,
    aliases: ClassAliases = DEFAULT_ALIASES,
) -> dict[str, list[Sample]]:
    """Each sample's split from the hash of its path relative to `root` (`split_key`)."""
    fractions = check_fractions(fractions)
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_ORDER}
    for sample in samples:
        relative = sample[0].relative_to(root).as_posix()
        splits[split_of(relative, seed, fractions, aliases)].append(sample)
    for name, members in splits.items():
        for label in sorted(CLASS_NAMES):
            if not any(y == label for _, y in members):
                total = sum(1 for _, y in samples if y == label)
                raise DatasetError(
                    f"data.root={root}: data.split_fractions={list(fractions)} left the {name} "
                    f"split with no {CLASS_NAMES[label]} image ({total} in all); add images or "
                    "give that split a larger fraction"
                )
    return splits


def stratified_split(
    samples: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Move a seeded `fraction` of each class out of `samples`; returns (kept, carved)."""
    rng = random.Random(seed)
    kept: list[Sample] = []
    carved: list[Sample] = []
    for label in sorted(CLASS_NAMES):
        members = [s for s in samples if s[1] == label]
        if len(members) < 2:
            raise DatasetError(
                f"cannot carve a validation split: the train {CLASS_NAMES[label]}/ folder has "
                f"{len(members)} image(s); add a valid/ split or more training images"
            )
        rng.shuffle(members)
        n_carved = min(len(members) - 1, max(1, round(fraction * len(members))))
        carved.extend(members[:n_carved])
        kept.extend(members[n_carved:])
    return sorted(kept), sorted(carved)


def write_split_lists(
    output_dir: str | Path, root: Path, derived: Mapping[str, Sequence[Sample]], how: str
) -> list[Path]:
    """`splits/<split>.txt` in a run dir: one path relative to `root` per line, sorted."""
    written = []
    for split, samples in derived.items():
        lines = [f"# {split} split of {root}: {len(samples)} files, {how}"]
        lines += sorted(path.relative_to(root).as_posix() for path, _ in samples)
        target = Path(output_dir) / SPLIT_LISTS_DIR / f"{split}.txt"
        written.append(atomic_write_bytes(target, ("\n".join(lines) + "\n").encode()))
    return written


def read_split_lists(folder: str | Path) -> dict[str, list[str]]:
    """Split -> relative paths, from the `<split>.txt` files `write_split_lists` wrote."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"data.split_lists={folder}: no such directory")
    lists = {}
    for split in SPLIT_ORDER:
        path = folder / f"{split}.txt"
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            lists[split] = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    if not lists:
        raise ConfigError(
            f"data.split_lists={folder}: holds none of {', '.join(f'{s}.txt' for s in SPLIT_ORDER)}"
        )
    return lists


def select_listed(
    pool: Mapping[str, Sample], listed: Sequence[str], split: str, lists_dir: str | Path
) -> list[Sample]:
    """The samples a split list names; a listed file that is not in the dataset is an error."""
    missing = [p for p in listed if p not in pool]
    if missing:
        raise DatasetError(
            f"data.split_lists={lists_dir}: {len(missing)} file(s) of {split}.txt are not in "
            f"the dataset any more, e.g. {missing[0]}; restore them, or set "
            "data.split_lists=null to split the folders as they are now"
        )
    return sorted(pool[p] for p in dict.fromkeys(listed))
