"""Sort every file under a dataset root into images, non-images, strays and ignored junk.

Training only ever sees what `discovery` finds, so the audit applies the same rules (split and
class folders matched case-insensitively, nested folders, hidden entries skipped) and then
also lists everything those rules leave out, which is where a misplaced folder shows up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection.data.discovery import (
    CLASS_LABELS,
    CLASS_NAMES,
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
)
from deepfake_detection.errors import DatasetError

#: The split of a root that holds Fake/ and Real/ directly, as `evaluate` accepts.
SINGLE_SPLIT = "all"
#: Files and folders operating systems leave behind; lower case, matched case-insensitively.
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"})
#: The class names as reports show them, Fake first as the positive class.
LABELS: tuple[str, ...] = tuple(CLASS_NAMES[label] for label in sorted(CLASS_NAMES, reverse=True))


@dataclass(frozen=True, order=True)
class ImageFile:
    """An image where training would find it; `path` is relative to the root, with `/`."""

    path: str
    split: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "split": self.split, "label": self.label}


@dataclass
class Inventory:
    root: Path
    splits: list[str]
    images: list[ImageFile] = field(default_factory=list)
    non_image: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    ignored: int = 0
    missing_class_folders: list[str] = field(default_factory=list)


def is_system_entry(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def _matching_folders(parent: Path, names: tuple[str, ...], what: str) -> Path | None:
    wanted = {name.lower() for name in names}
    hits = [p for p in parent.iterdir() if p.name.lower() in wanted and p.is_dir()]
    if len(hits) > 1:
        found = ", ".join(sorted(p.name for p in hits))
        raise DatasetError(f"{parent}: several folders could be the {what} ({found}); keep one")
    return hits[0] if hits else None


def find_splits(root: Path) -> dict[str, Path]:
    """Split name → folder; a root holding Fake/ and Real/ itself is the one split `all`."""
    splits = {}
    for split, aliases in SPLIT_ALIASES.items():
        folder = _matching_folders(root, aliases, f"{split} split")
        if folder is not None:
            splits[split] = folder
    if splits:
        return splits
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    if set(CLASS_LABELS) <= names:
        return {SINGLE_SPLIT: root}
    folders = "|".join(alias for aliases in SPLIT_ALIASES.values() for alias in aliases)
    raise DatasetError(
        f"data.root={root}: no split folders ({folders}, any case) and no Fake/ and Real/ "
        "folders; expected <root>/<split>/{Fake,Real}/"
    )


def _walk(top: Path, skip: set[Path]) -> Iterator[tuple[Path, bool]]:
    """(file, ignored) below `top`, not entering hidden, system or `skip` folders.

    A hidden or system folder is yielded once as ignored rather than entered: a `.git` or
    `__MACOSX` folder would otherwise swamp the count with files nobody will train on.
    """
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        kept = []
        for name in dirnames:
            if is_system_entry(name):
                yield here / name, True
            elif here / name not in skip:
                kept.append(name)
        dirnames[:] = sorted(kept)
        for name in sorted(filenames):
            yield here / name, is_system_entry(name)


def take_inventory(root: Path) -> Inventory:
    """Every file under `root`, sorted into the lists an audit reports."""
    splits = find_splits(root)
    inventory = Inventory(root=root, splits=list(splits))
    class_folders: dict[Path, tuple[str, str]] = {}
    for split, split_dir in splits.items():
        for label in LABELS:
            folder = _matching_folders(split_dir, (label,), f"{label} class")
            if folder is None:
                inventory.missing_class_folders.append(f"{split}/{label}")
            else:
                class_folders[folder] = (split, label)
    for folder, (split, label) in class_folders.items():
        for path, ignored in _walk(folder, skip=set()):
            relative = path.relative_to(root).as_posix()
            if ignored:
                inventory.ignored += 1
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                inventory.images.append(ImageFile(relative, split, label))
            else:
                inventory.non_image.append(relative)
    # Split folders may be symlinks, which os.walk does not enter from the root: walk each.
    outside = set(class_folders) | set(splits.values())
    for top in dict.fromkeys([root, *splits.values()]):
        for path, ignored in _walk(top, skip=outside):
            if ignored:
                inventory.ignored += 1
            else:
                inventory.stray.append(path.relative_to(root).as_posix())
    inventory.images.sort()
    inventory.non_image.sort()
    inventory.stray.sort()
    return inventory
