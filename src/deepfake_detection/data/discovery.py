"""Index a dataset root into train/val/test samples, whatever layout it has (see `layout`).

The one place that decides which files are in which split and class: training, `evaluate`,
`robustness`, `export`'s parity check and `audit` all call `discover` (or its parts), so a
folder is read the same way by every command.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detection.data.layout import (
    CLASS_LABELS,
    CLASS_NAMES,
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    SPLITS,
    VIDEO_EXTENSIONS,
    ClassAliases,
    find_class_folders,
    list_images,
    list_media,
    no_class_folders,
)
from deepfake_detection.data.layout import detect_layout as _detect_layout
from deepfake_detection.data.splitting import (
    DEFAULT_SPLIT_FRACTIONS,
    Sample,
    check_fractions,
    hash_split,
    read_split_lists,
    select_listed,
    stratified_split,
)
from deepfake_detection.errors import ConfigError, DatasetError

__all__ = [
    "CLASS_LABELS",
    "CLASS_NAMES",
    "IMAGE_EXTENSIONS",
    "SPLIT_ALIASES",
    "DatasetIndex",
    "Sample",
    "discover",
    "discover_as_configured",
    "index_folder",
    "list_images",
    "split_name",
]

log = logging.getLogger(__name__)


def split_name(value: str) -> str:
    """`train`, `val` or `test` for any of their folder names (`Validation`, `valid`, ...)."""
    for split, aliases in SPLIT_ALIASES.items():
        if str(value).lower() in (split, *aliases):
            return split
    raise ConfigError(f"data.split={value}: choose one of: {', '.join(SPLIT_ALIASES)}")


@dataclass
class DatasetIndex:
    """Image paths and labels per split, with where each split came from."""

    root: Path
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    #: Whether val was carved out of a train folder.
    val_carved: bool = False
    #: `layout.SPLITS` (split folders) or `layout.FLAT` (class folders, split here).
    layout: str = SPLITS
    #: str(path) -> its source ("" when class folders sit directly in the split).
    sources: dict[str, str] = field(default_factory=dict)
    #: `data.source_depth`: folder levels below the split that name a source.
    source_depth: int = 1
    #: Splits that were derived, not read from a folder, as first derived (before any image
    #: was checked): what a run dir records so that later commands score the same files.
    derived: dict[str, list[Sample]] = field(default_factory=dict)
    #: How `derived` was made, in words (for the header of the recorded lists).
    derived_how: str = ""

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split: {
                CLASS_NAMES[label]: sum(1 for _, y in samples if y == label)
                for label in sorted(CLASS_NAMES)
            }
            for split, samples in self.splits.items()
        }

    def source_of(self, path: str | Path) -> str:
        return self.sources.get(str(path), "")

    def split_sources(self, split: str) -> list[str]:
        """The sources of a split, sorted; empty when it has no source folders."""
        names = {self.source_of(path) for path, _ in self.splits.get(split, [])}
        return sorted(names - {""})


def index_folder(
    top: Path,
    aliases: ClassAliases,
    source_depth: int = 1,
    sources: dict[str, str] | None = None,
    what: str = "data.root",
    one_class: bool = False,
) -> list[Sample]:
    """Every image of every class folder at or below `top`; both classes must have images,
    unless `one_class` (a scoring command's folder of only reals, say).

    `sources`, when given, receives each image's source (`layout.find_class_folders`).
    """
    folders = find_class_folders(top, aliases, source_depth)
    if not folders:
        raise no_class_folders(top, aliases, what)
    samples: list[Sample] = []
    for label in sorted(CLASS_NAMES):
        own = [f for f in folders if f.label == label]
        if not own and one_class and not _unrecognised_siblings(folders, aliases):
            continue
        if not own:
            found = ", ".join(sorted({f.path.name for f in folders}))
            names = "|".join(aliases.fake if label else aliases.real)
            raise DatasetError(
                f"{top}: missing the {CLASS_NAMES[label]}/ class folder (need Fake and Real "
                f"class folders, found: {found}; {CLASS_NAMES[label]} may be named {names}, "
                "any case)"
            )
        count = 0
        for folder in own:
            images = list_media(folder.path)  # clips become frames in the DataModule
            count += len(images)
            samples += [(path, label) for path in images]
            if sources is not None:
                sources.update((str(path), folder.source) for path in images)
        if not count:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            raise DatasetError(
                f"{own[0].path}: empty split, no images or videos with extension {exts}"
            )
    return sorted(samples)


def _unrecognised_siblings(folders: list, aliases: ClassAliases) -> list[str]:
    """Folders beside the class folders that name no class: a misspelt class folder is
    more likely than a one-class set, so scoring one class alone needs none of them."""
    parents = {folder.path.parent for folder in folders}
    return sorted(
        child.name
        for parent in parents
        for child in parent.iterdir()
        if child.is_dir()
        and not child.name.startswith(".")
        and aliases.label_of(child.name) is None
    )


def _check_depth(source_depth: object) -> int:
    if not isinstance(source_depth, int) or isinstance(source_depth, bool) or source_depth < 1:
        raise ConfigError(f"data.source_depth={source_depth}: must be an integer >= 1")
    return source_depth


def discover(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    required: Iterable[str] = ("train", "test"),
    *,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    class_aliases: ClassAliases | Mapping[str, Sequence[str]] | None = None,
    source_depth: int = 1,
    split_lists: str | Path | None = None,
    one_class: bool = False,
    label: str | None = None,
) -> DatasetIndex:
    """Index `root` (any layout of `layout`) into the splits `required` needs.

    - Split folders are read as they are; a missing val split is carved from train
      (`val_fraction`, seeded, stratified).
    - A flat root is split by `split_fractions` with a hash of each path (`splitting`),
      unless exactly one split is required (scoring a folder): then it is that split.
    - `split_lists` (a run's `splits/` folder) replaces each split it lists with exactly
      those files.
    - `one_class`: a split may hold one class only (scoring: a false-positive audit).
    - `label` (`real` or `fake`): every image and clip under `root` is of that class, class
      folders or not; the root is the one split `required` names.
    """
    root = Path(root).expanduser()
    required = tuple(required)
    if not root.is_dir():
        raise DatasetError(f"data.root={root}: no such directory")
    aliases = (
        class_aliases
        if isinstance(class_aliases, ClassAliases)
        else ClassAliases.from_config(class_aliases)
    )
    source_depth = _check_depth(source_depth)
    if label is not None:
        return _index_as_one_class(root, label, required, source_depth, aliases)
    layout = _detect_layout(root, aliases)
    index = DatasetIndex(root=root, layout=layout.kind, source_depth=source_depth)
    lists = read_split_lists(split_lists) if split_lists not in (None, "") else {}
    if layout.kind == SPLITS:
        for split, folder in layout.folders.items():
            index.splits[split] = index_folder(
                folder, aliases, source_depth, index.sources, f"the {split} split", one_class
            )
        pool = [sample for samples in index.splits.values() for sample in samples]
    else:
        pool = index_folder(root, aliases, source_depth, index.sources, one_class=one_class)
        if lists:
            pass  # the splits are the listed files
        elif len(required) == 1:
            index.splits[required[0]] = pool
        else:
            _hash_split(index, pool, split_fractions, seed, aliases)
    if lists:
        _apply_split_lists(index, lists, pool, split_lists)
    if "val" not in index.splits and "train" in index.splits:
        _carve_validation(index, val_fraction, seed)
    for split in required:
        if split not in index.splits and lists:
            raise DatasetError(
                f"data.split_lists={split_lists}: has no {split}.txt, which this command needs"
            )
        if split not in index.splits:
            names = "|".join(SPLIT_ALIASES[split])
            raise DatasetError(
                f"data.root={root}: {layout.describe()}, but missing the {split} split (a folder "
                f"named {names}, any case); add <root>/{split}/ with its class folders"
            )
    index.splits = {split: index.splits[split] for split in SPLIT_ALIASES if split in index.splits}
    return index


def _index_as_one_class(
    root: Path, label: str, required: tuple[str, ...], source_depth: int, aliases: ClassAliases
) -> DatasetIndex:
    """`data.label`: everything under `root` is of class `label`, scored as one split. A
    folder below it named like the other class is warned about: its files are counted as
    `label` too."""
    if len(required) != 1:
        raise ConfigError(
            f"data.label={label}: a folder of one class can only be scored as one split, not "
            f"split into {', '.join(required)}"
        )
    target = CLASS_LABELS.get(str(label).lower())
    if target is None:
        raise ConfigError(f"data.label={label}: choose real or fake")
    files = list_media(root)
    if not files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
        raise DatasetError(f"data.root={root}: no images or videos with extension {exts}")
    other = [
        folder.path.relative_to(root).as_posix()
        for folder in find_class_folders(root, aliases, source_depth)
        if folder.label != target
    ]
    if other:
        log.warning(
            "data.label=%s: %s under data.root=%s name(s) the other class; their files are "
            "scored as %s too",
            label,
            ", ".join(other[:3]) + (", ..." if len(other) > 3 else ""),
            root,
            label,
        )
    index = DatasetIndex(root=root, layout=f"one class ({label})", source_depth=source_depth)
    index.splits[required[0]] = [(path, target) for path in files]
    return index


#: `DeepfakeDataModule` arguments that say how `discover` reads a root.
LAYOUT_ARGUMENTS = (
    "val_fraction",
    "seed",
    "split_fractions",
    "class_aliases",
    "source_depth",
    "split_lists",
)


def discover_as_configured(
    root: str | Path, data: Mapping[str, object], required: Iterable[str]
) -> DatasetIndex:
    """`discover` with the layout settings of a run's `data` arguments (defaults if absent)."""
    options = {key: data[key] for key in LAYOUT_ARGUMENTS if data.get(key) is not None}
    return discover(root, required=required, **options)  # type: ignore[arg-type]


def _carve_validation(index: DatasetIndex, val_fraction: float, seed: int) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(
            f"data.root={index.root} has no validation split and data.val_fraction="
            f"{val_fraction} is not in (0, 1)"
        )
    try:
        index.splits["train"], index.splits["val"] = stratified_split(
            index.splits["train"], val_fraction, seed
        )
    except DatasetError as err:
        raise DatasetError(f"data.root={index.root}: {err}") from None
    index.val_carved = True
    index.derived.update(train=list(index.splits["train"]), val=list(index.splits["val"]))
    index.derived_how = (
        index.derived_how or f"val carved from the train folder ({val_fraction:.0%}, seed {seed})"
    )


def _apply_split_lists(
    index: DatasetIndex, lists: dict[str, list[str]], pool: list[Sample], folder: object
) -> None:
    """Each listed split becomes exactly its listed files, found in `pool` by relative path."""
    by_path = {
        unicodedata.normalize("NFC", path.relative_to(index.root).as_posix()): (path, label)
        for path, label in pool
    }
    lists = {
        split: [unicodedata.normalize("NFC", p) for p in listed] for split, listed in lists.items()
    }
    seen: dict[str, str] = {}
    for split, listed in lists.items():
        for path in listed:
            if seen.setdefault(path, split) != split:
                raise DatasetError(
                    f"data.split_lists={folder}: {path} is listed in both {seen[path]}.txt and "
                    f"{split}.txt; a file must belong to one split"
                )
    for split, listed in lists.items():
        index.splits[split] = select_listed(by_path, listed, split, str(folder))
        if {label for _, label in index.splits[split]} != set(CLASS_NAMES):
            raise DatasetError(
                f"data.split_lists={folder}: {split}.txt does not list images of both classes"
            )
    index.derived = {split: list(index.splits[split]) for split in lists}
    index.derived_how = f"read from data.split_lists={folder}"


def _hash_split(
    index: DatasetIndex,
    samples: list[Sample],
    split_fractions: Sequence[float],
    seed: int,
    aliases: ClassAliases,
) -> None:
    root = index.root
    if any(root.name.lower() in names for names in SPLIT_ALIASES.values()):
        log.warning(
            "data.root=%s is named like one split of a dataset: it is split into "
            "train/val/test by data.split_fractions; to use the dataset's own splits, "
            "point data.root at the folder above it",
            root,
        )
    fractions = check_fractions(split_fractions)
    index.splits = hash_split(samples, root, fractions, seed, aliases)
    index.derived = {split: list(s) for split, s in index.splits.items()}
    index.derived_how = (
        f"hashed from each path without its class folder, seed {seed}, "
        f"data.split_fractions={list(fractions)}"
    )
