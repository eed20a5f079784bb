"""The folder layouts a dataset root may have, and where its class folders are.

Three layouts, told apart by what sits directly under the root:

- split folders (`train/`, `valid/`, `test/`, any case): each split holds its class folders,
  directly or below source folders (`test/progan/car/1_fake/`);
- class folders (`Fake/`, `Real/`, or any alias): a flat root, split automatically;
- neither, but class folders further down (`progan/car/0_real/`): a flat root of sources.

A source is the first `source_depth` folder levels below the split (or below a flat root),
which is how CNNDetection-style benchmarks name their generators. Every command that reads a
labelled dataset (train, evaluate, robustness, audit, export) finds its images through here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake_detection.errors import ConfigError, DatasetError

#: Fake is the positive class, whatever order the folders sort in.
CLASS_LABELS: dict[str, int] = {"real": 0, "fake": 1}
CLASS_NAMES: dict[int, str] = {label: name.capitalize() for name, label in CLASS_LABELS.items()}
#: Folder names of each class (`data.class_aliases`), matched case-insensitively.
DEFAULT_CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "fake": ("fake", "1_fake", "training_fake"),
    "real": ("real", "0_real", "training_real"),
}
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("valid", "val", "validation"),
    "test": ("test",),
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
#: Suffixes read as video clips (FFmpeg opens more; these are the ones looked for).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".m4v", ".webm", ".avi", ".mkv"})
#: Files and folders operating systems leave behind; lower case, matched case-insensitively.
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"})
#: The layout of a root without split folders.
FLAT = "flat"
#: The layout of a root with split folders.
SPLITS = "splits"

LAYOUT_HELP = (
    "expected <root>/{Fake,Real}/ (split automatically by data.split_fractions), "
    "<root>/<split>/{Fake,Real}/, or sources with their own class folders "
    "(<root>/<split>/<source>/.../{0_real,1_fake}/)"
)


def is_system_entry(name: str) -> bool:
    """Hidden and operating-system entries, which are never data."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


@dataclass(frozen=True)
class ClassAliases:
    """The folder names of each class; a name may belong to one class only."""

    fake: tuple[str, ...] = DEFAULT_CLASS_ALIASES["fake"]
    real: tuple[str, ...] = DEFAULT_CLASS_ALIASES["real"]

    @classmethod
    def from_config(cls, value: Mapping[str, Sequence[str]] | None) -> ClassAliases:
        """`data.class_aliases` ({fake: [...], real: [...]}); None gives the defaults."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping) or set(value) != {"fake", "real"}:
            raise ConfigError(
                f"data.class_aliases={_show(value)}: need exactly the keys fake and real, "
                "e.g. {fake: [fake, 1_fake], real: [real, 0_real]}"
            )
        names: dict[str, tuple[str, ...]] = {}
        for key in ("fake", "real"):
            aliases = value[key]
            if (
                isinstance(aliases, str)
                or not isinstance(aliases, Sequence)
                or not aliases
                or not all(isinstance(a, str) and a.strip() for a in aliases)
            ):
                raise ConfigError(
                    f"data.class_aliases.{key}={_show(aliases)}: must be a non-empty list of "
                    "folder names"
                )
            names[key] = tuple(dict.fromkeys(a.strip().lower() for a in aliases))
        if both := sorted(set(names["fake"]) & set(names["real"])):
            raise ConfigError(
                f"data.class_aliases: {', '.join(both)} would name both classes; "
                "a folder name must belong to Fake or to Real, not both"
            )
        return cls(names["fake"], names["real"])

    def label_of(self, name: str) -> int | None:
        lowered = name.lower()
        if lowered in self.fake:
            return CLASS_LABELS["fake"]
        if lowered in self.real:
            return CLASS_LABELS["real"]
        return None

    def describe(self) -> str:
        return "Fake: " + "|".join(self.fake) + "; Real: " + "|".join(self.real)


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class ClassFolder:
    """A folder whose images all have `label`; `source` is "" when it sits in the split itself."""

    path: Path
    label: int
    source: str


def _subfolders(parent: Path) -> list[Path]:
    try:
        entries = sorted(parent.iterdir())
    except OSError as err:
        raise DatasetError(f"{parent}: cannot list the folder ({err.strerror or err})") from None
    return [p for p in entries if not is_system_entry(p.name) and p.is_dir()]


def class_children(parent: Path, aliases: ClassAliases) -> dict[int, Path]:
    """Label -> class folder directly in `parent`; two folders of one class are an error."""
    found: dict[int, list[Path]] = {}
    for folder in _subfolders(parent):
        label = aliases.label_of(folder.name)
        if label is not None:
            found.setdefault(label, []).append(folder)
    for label, folders in found.items():
        if len(folders) > 1:
            names = ", ".join(p.name for p in folders)
            raise DatasetError(
                f"{parent}: {len(folders)} folders name the {CLASS_NAMES[label]} class "
                f"({names}); merge them into one"
            )
    return {label: folders[0] for label, folders in found.items()}


def split_children(root: Path) -> dict[str, Path]:
    """Split name -> its folder directly in `root`, matched case-insensitively."""
    splits: dict[str, Path] = {}
    for split, names in SPLIT_ALIASES.items():
        hits = [p for p in _subfolders(root) if p.name.lower() in names]
        if len(hits) > 1:
            found = ", ".join(p.name for p in hits)
            raise DatasetError(
                f"{root}: several folders could be the {split} split ({found}); keep one"
            )
        if hits:
            splits[split] = hits[0]
    return splits


def find_class_folders(
    top: Path, aliases: ClassAliases, source_depth: int = 1
) -> list[ClassFolder]:
    """Every class folder at or below `top`, with the source it belongs to.

    Class folders are not entered (their subfolders are just more images of that class).
    `top` holding class folders itself and also source folders with class folders of their
    own is ambiguous (are the top-level images a source?), so it is an error.
    """
    found: list[ClassFolder] = []

    def unreadable(err: OSError) -> None:
        raise DatasetError(f"{err.filename}: cannot list the folder ({err.strerror or err})")

    for dirpath, dirnames, _ in os.walk(top, followlinks=True, onerror=unreadable):
        here = Path(dirpath)
        real = os.path.realpath(here)
        if any(os.path.realpath(p) == real for p in here.parents if p.is_relative_to(top)):
            dirnames[:] = []  # a link back up the tree
            continue
        classes = class_children(here, aliases)
        parts = here.relative_to(top).parts
        source = "/".join(parts[:source_depth])
        found += [ClassFolder(path, label, source) for label, path in sorted(classes.items())]
        class_paths = set(classes.values())
        dirnames[:] = sorted(
            name
            for name in dirnames
            if not is_system_entry(name) and here / name not in class_paths
        )
    at_top = [f for f in found if f.source == ""]
    below = sorted({f.source.split("/")[0] for f in found if f.source})
    if at_top and below:
        raise DatasetError(
            f"{top}: mixed layout: class folders ({', '.join(f.path.name for f in at_top)}) sit "
            f"directly here and also below source folders ({', '.join(below[:5])}); move the "
            "top-level class folders into a source folder of their own, or the sources out"
        )
    return found


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted so that runs see the same order.

    Hidden files and folders (`.DS_Store`, `._*`, `.cache/`) are not data. Dangling links
    are kept, so the image check reports them instead of them vanishing silently.
    """
    return list_files(folder, IMAGE_EXTENSIONS)


def list_videos(folder: Path) -> list[Path]:
    """Video clips under `folder`, as `list_images` finds images."""
    return list_files(folder, VIDEO_EXTENSIONS)


def list_media(folder: Path) -> list[Path]:
    """Images and video clips under `folder`: what a class folder of a dataset holds."""
    return list_files(folder, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)


def list_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Files with one of `extensions` under `folder` (see `list_images`)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and not any(is_system_entry(part) for part in p.relative_to(folder).parts)
        and (p.is_file() or (p.is_symlink() and not p.exists()))
    )


@dataclass(frozen=True)
class Layout:
    """What a dataset root holds: split folders (`SPLITS`) or one pool of images (`FLAT`)."""

    root: Path
    kind: str
    #: Split name -> folder (`SPLITS`); a flat root is the single entry "" -> root.
    folders: dict[str, Path]

    def describe(self) -> str:
        if self.kind == SPLITS:
            return "split folders (" + ", ".join(p.name for p in self.folders.values()) + ")"
        return "a flat root (class folders, no split folders)"


def detect_layout(root: Path, aliases: ClassAliases) -> Layout:
    """Split folders, or a flat root; a root with both split and class folders is an error."""
    splits = split_children(root)
    if not splits:
        return Layout(root, FLAT, {"": root})
    if classes := class_children(root, aliases):
        names = ", ".join(p.name for p in classes.values())
        split_names = ", ".join(p.name for p in splits.values())
        raise DatasetError(
            f"data.root={root}: mixed layout: split folders ({split_names}) and class folders "
            f"({names}) side by side; move {names} into a split folder, or point data.root "
            "at one of them"
        )
    return Layout(root, SPLITS, splits)


def no_class_folders(where: Path, aliases: ClassAliases, what: str) -> DatasetError:
    """The error for a folder without any class folder, naming what it holds instead."""
    folders = [p.name for p in _subfolders(where)] if where.is_dir() else []
    shown = ", ".join(folders[:8]) + (", ..." if len(folders) > 8 else "") or "no folders"
    hint = ""
    near = [n for n in folders if ("fake" in n.lower() or "real" in n.lower())]
    if aliases.label_of(where.name) is not None:
        hint = f"; {where.name} is itself a class folder: point {what} at the folder above it"
    elif near:
        hint = (
            f"; {', '.join(near)} look like class folders: add them to "
            "data.class_aliases.fake / data.class_aliases.real"
        )
    return DatasetError(
        f"{what}={where}: no class folders ({aliases.describe()}, any case) at any depth; "
        f"found: {shown}{hint}. {LAYOUT_HELP[0].upper()}{LAYOUT_HELP[1:]}"
    )


def root_names(roots: Sequence[str | Path]) -> list[str]:
    """A short name per dataset root (its folder name), numbered where two share one: how
    several roots scored at once (`data.test_roots`) are told apart."""
    names = [Path(root).expanduser().resolve().name or "root" for root in roots]
    return [f"{name}-{i + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]
