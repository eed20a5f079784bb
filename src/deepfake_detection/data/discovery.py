"""Find the train/val/test splits and the Fake/Real class folders under a dataset root."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection.errors import DatasetError

#: Fake is the positive class, whatever order the folders sort in.
CLASS_LABELS: dict[str, int] = {"real": 0, "fake": 1}
CLASS_NAMES: dict[int, str] = {label: name.capitalize() for name, label in CLASS_LABELS.items()}
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("valid", "val", "validation"),
    "test": ("test",),
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

Sample = tuple[Path, int]


@dataclass
class DatasetIndex:
    """Image paths and labels per split; `val_carved` tells whether val came out of train."""

    root: Path
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    val_carved: bool = False

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {
                CLASS_NAMES[label]: sum(1 for _, y in samples if y == label)
                for label in sorted(CLASS_NAMES)
            }
            for split, samples in self.splits.items()
        }


def _match_child(parent: Path, aliases: Iterable[str], what: str) -> Path | None:
    wanted = set(aliases)
    hits = [p for p in parent.iterdir() if p.is_dir() and p.name.lower() in wanted]
    if len(hits) > 1:
        names = ", ".join(sorted(p.name for p in hits))
        raise DatasetError(f"{parent}: several folders could be the {what} ({names}); keep one")
    return hits[0] if hits else None


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted so that runs see the same order.

    Hidden files and folders (`.DS_Store`, `._*`, `.cache/`) are not data. Dangling links
    are kept, so the image check reports them instead of them vanishing silently.
    """
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (p.is_file() or (p.is_symlink() and not p.exists()))
    )


def _index_split(split_dir: Path) -> list[Sample]:
    samples: list[Sample] = []
    for class_name, label in CLASS_LABELS.items():
        class_dir = _match_child(split_dir, (class_name,), f"{class_name.capitalize()} class")
        if class_dir is None:
            found = sorted(p.name for p in split_dir.iterdir() if p.is_dir()) or ["nothing"]
            raise DatasetError(
                f"{split_dir}: missing the {class_name.capitalize()}/ class folder "
                f"(need Fake/ and Real/, found: {', '.join(found)})"
            )
        images = list_images(class_dir)
        if not images:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"{class_dir}: empty split, no images with extension {exts}")
        samples.extend((path, label) for path in images)
    return samples


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


def discover(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    required: Iterable[str] = ("train", "test"),
) -> DatasetIndex:
    """Index `<root>/<split>/{Fake,Real}/`, carving a validation split from train if needed.

    `required` names the splits that must exist; training needs train and test, while
    evaluating one split of another dataset needs only that one. When exactly one split is
    required and `root` holds `Fake/` and `Real/` directly, `root` itself is that split.
    """
    root = Path(root).expanduser()
    required = tuple(required)
    if not root.is_dir():
        raise DatasetError(f"data.root={root}: no such directory")
    index = DatasetIndex(root=root)
    for split, aliases in SPLIT_ALIASES.items():
        split_dir = _match_child(root, aliases, f"{split} split")
        if split_dir is not None:
            index.splits[split] = _index_split(split_dir)
    if not index.splits and len(required) == 1 and _has_class_folders(root):
        index.splits[required[0]] = _index_split(root)
    if "val" not in index.splits and "train" in index.splits:
        if not 0.0 < val_fraction < 1.0:
            raise DatasetError(
                f"data.root={root} has no validation split and data.val_fraction={val_fraction} "
                "is not in (0, 1)"
            )
        try:
            index.splits["train"], index.splits["val"] = stratified_split(
                index.splits["train"], val_fraction, seed
            )
        except DatasetError as err:
            raise DatasetError(f"data.root={root}: {err}") from None
        index.val_carved = True
    for split in required:
        if split not in index.splits:
            names = "|".join(SPLIT_ALIASES[split])
            raise DatasetError(
                f"data.root={root}: missing the {split} split (a folder named {names}, any case)"
            )
    index.splits = {split: index.splits[split] for split in SPLIT_ALIASES if split in index.splits}
    return index


def _has_class_folders(folder: Path) -> bool:
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    return set(CLASS_LABELS) <= names
