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

from deepfake_detection.data.layout import (
    CLASS_NAMES,
    FLAT,
    IMAGE_EXTENSIONS,
    ClassAliases,
    detect_layout,
    find_class_folders,
    is_system_entry,
    no_class_folders,
)
from deepfake_detection.data.splitting import (
    DEFAULT_SPLIT_FRACTIONS,
    SPLIT_ORDER,
    check_fractions,
    split_of,
)

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
    #: How the splits were found, in words.
    layout: str = "split folders"


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


def take_inventory(
    root: Path,
    aliases: ClassAliases | None = None,
    seed: int = 42,
    split_fractions: tuple[float, ...] = DEFAULT_SPLIT_FRACTIONS,
) -> Inventory:
    """Every file under `root`, sorted into the lists an audit reports.

    A flat root is split as training would split it (`seed`, `split_fractions`), so the
    leakage check sees the same train/val/test as the run.
    """
    aliases = aliases or ClassAliases()
    layout = detect_layout(root, aliases)
    flat = layout.kind == FLAT
    fractions = check_fractions(split_fractions)
    inventory = Inventory(root=root, splits=list(SPLIT_ORDER if flat else layout.folders))
    if flat:
        inventory.layout = (
            f"flat root, split by data.split_fractions={list(fractions)} with seed {seed}, "
            "as training splits it"
        )
    class_folders: dict[Path, tuple[str, str]] = {}
    for split, split_dir in layout.folders.items():
        folders = find_class_folders(split_dir, aliases)
        if flat and not folders:
            raise no_class_folders(root, aliases, "data.root")
        for label in LABELS:
            own = [f for f in folders if CLASS_NAMES[f.label] == label]
            if not own:
                inventory.missing_class_folders.append(f"{split}/{label}" if split else label)
            class_folders.update((f.path, (split, label)) for f in own)
    for folder, (split, label) in class_folders.items():
        for path, ignored in _walk(folder, skip=set()):
            relative = path.relative_to(root).as_posix()
            if ignored:
                inventory.ignored += 1
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                where = split_of(relative, seed, fractions, aliases) if flat else split
                inventory.images.append(ImageFile(relative, where, label))
            else:
                inventory.non_image.append(relative)
    # Split folders may be symlinks, which os.walk does not enter from the root: walk each.
    outside = set(class_folders) | set(layout.folders.values())
    for top in dict.fromkeys([root, *layout.folders.values()]):
        for path, ignored in _walk(top, skip=outside):
            if ignored:
                inventory.ignored += 1
            else:
                inventory.stray.append(path.relative_to(root).as_posix())
    inventory.images.sort()
    inventory.non_image.sort()
    inventory.stray.sort()
    return inventory
