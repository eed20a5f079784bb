"""The `data.*` keys: how a run reads its dataset, and what each key accepts.

Two variants: `DataSettings`, the `data` group of a training run (conf/data/default.yaml), and
`ScoringDataSettings`, the overrides of the commands that score images with a trained detector
(`evaluate`, `robustness`, `predict`, `export`, `serve`), where null means "as in the
training run". Kept free of torch, so that a command checks its config in a second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.data.images import BAD_IMAGE_POLICIES, DEFAULT_MAX_PIXELS
from deepfake_detection.data.layout import DEFAULT_CLASS_ALIASES, SPLIT_ALIASES
from deepfake_detection.data.splitting import DEFAULT_SPLIT_FRACTIONS
from deepfake_detection.rules import (
    Rule,
    boolean,
    cache_dir,
    existing_dir,
    integer,
    list_of,
    number,
    number_range,
    one_of,
    or_null,
    random_seed,
    rules_of,
    setting,
    text,
)

#: Storage types of `data.feature_cache_dtype` (`deepfake_detection.data.feature_store`).
FEATURE_CACHE_DTYPES = ("float32", "float16")

#: Split names a command may ask for (`data.split`, `parity.split`), any case: each split and
#: its folder aliases (`deepfake_detection.data.layout.SPLIT_ALIASES`).
SPLIT_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(name for split, names in SPLIT_ALIASES.items() for name in (split, *names))
)


def _fractions_add_up(value: Any, cfg: DictConfig) -> str | None:
    if abs(sum(value) - 1.0) > 1e-6:
        return f"adds up to {sum(value):g}, not 1"
    return None


def _is_alias_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"fake", "real"}
        and all(
            isinstance(names, list)
            and names
            and all(isinstance(n, str) and n.strip() for n in names)
            for names in value.values()
        )
    )


def _aliases_disjoint(value: Any, cfg: DictConfig) -> str | None:
    both = {n.strip().lower() for n in value["fake"]} & {n.strip().lower() for n in value["real"]}
    if both:
        return f"{', '.join(sorted(both))} would name both classes"
    return None


# --- rules shared by several commands ---------------------------------------------------------

#: A split to read, by any of its names.
SPLIT = one_of(*SPLIT_NAMES, ignore_case=True)
#: A dataset folder; null (or blank) for the generated demo set or the training run's own.
ROOT = existing_dir(nullable=True, blank_is_null=True)
#: How a flat root is split (`deepfake_detection.data.splitting`).
SPLIT_FRACTIONS = replace(
    list_of(
        number(0, 1, low_open=True),
        length=3,
        expected="[train, val, test], each in (0, 1], adding up to 1",
    ),
    extra=_fractions_add_up,
)
#: Class folder names (`deepfake_detection.data.layout.ClassAliases`).
CLASS_ALIASES = Rule(
    expected="{fake: [names], real: [names]}, non-empty lists of folder names",
    accepts=_is_alias_map,
    extra=_aliases_disjoint,
)
SPLIT_LISTS = existing_dir(nullable=True, blank_is_null=True)
SOURCE_DEPTH = integer(1)
IMAGE_SIZE = integer(16)
BATCH_SIZE = integer(1)
NUM_WORKERS = integer(0, nullable=True)  # null: one per spare core
ON_BAD_IMAGE = one_of(*BAD_IMAGE_POLICIES)
MAX_IMAGE_PIXELS = integer(1)

_ALIASES = {name: list(names) for name, names in DEFAULT_CLASS_ALIASES.items()}


def _roots_exist(value: Any, cfg: DictConfig) -> str | None:
    missing = [root for root in value if not Path(str(root)).expanduser().is_dir()]
    return f"{missing[0]} is not a directory" if missing else None


#: Several datasets, each scored on its own (`data.test_roots` of train and evaluate).
TEST_ROOTS = replace(
    list_of(text(), expected="a non-empty list of dataset folders"),
    nullable=True,
    extra=_roots_exist,
)


@dataclass(frozen=True)
class DataSettings:
    """`data.*` of a training run, as conf/data/default.yaml ships them."""

    root: str | None = setting(ROOT, None)  # null: the generated demo set
    image_size: int = setting(IMAGE_SIZE, 224)  # ${dd.default_image_size:...}: 64 for the demo
    batch_size: int = setting(BATCH_SIZE, 32)
    num_workers: int | None = setting(NUM_WORKERS, None)
    val_fraction: float = setting(number(0, 1, low_open=True, high_open=True), 0.1)
    split_fractions: list[float] = setting(SPLIT_FRACTIONS, list(DEFAULT_SPLIT_FRACTIONS))
    split_lists: str | None = setting(SPLIT_LISTS, None)
    class_aliases: dict[str, list[str]] = setting(CLASS_ALIASES, _ALIASES)
    source_depth: int = setting(SOURCE_DEPTH, 1)
    crop_scale: list[float] = setting(number_range(0, 1, open_low=True), [0.8, 1.0])
    eval_crop_fraction: float = setting(number(0, 1, low_open=True), 0.875)
    seed: int = setting(random_seed(), 42)  # ${seed}
    demo_cache_dir: str | None = setting(cache_dir(), None)
    on_bad_image: str = setting(ON_BAD_IMAGE, "skip")
    max_image_pixels: int = setting(MAX_IMAGE_PIXELS, DEFAULT_MAX_PIXELS)
    feature_cache: bool = setting(boolean(), False)
    feature_cache_dir: str | None = setting(cache_dir(), None)
    feature_cache_views: int = setting(integer(1), 1)
    feature_cache_dtype: str = setting(one_of(*FEATURE_CACHE_DTYPES), "float32")
    feature_cache_ram_mb: float = setting(number(0), 2048)
    test_roots: list[str] | None = setting(TEST_ROOTS, None)
    sampling: str = setting(one_of("shuffle", "balanced"), "shuffle")
    select_on: str | None = setting(ROOT, None)


@dataclass(frozen=True)
class ScoringDataSettings:
    """`data.*` of the commands that score images with a trained detector: each null means
    "as in the training run". A command takes the keys it reads: all of them (`evaluate`,
    `robustness`), `PREDICTION_KEYS` or `IMAGE_READING_KEYS`."""

    root: str | None = setting(ROOT, None)
    split_fractions: list[float] | None = setting(or_null(SPLIT_FRACTIONS), None)
    split_lists: str | None = setting(SPLIT_LISTS, None)
    class_aliases: dict[str, list[str]] | None = setting(or_null(CLASS_ALIASES), None)
    source_depth: int | None = setting(or_null(SOURCE_DEPTH), None)
    image_size: int | None = setting(or_null(IMAGE_SIZE), None)
    batch_size: int | None = setting(or_null(BATCH_SIZE), None)
    num_workers: int | None = setting(NUM_WORKERS, None)
    on_bad_image: str | None = setting(or_null(ON_BAD_IMAGE), None)
    max_image_pixels: int | None = setting(or_null(MAX_IMAGE_PIXELS), None)
    #: Every file under `root` is of this class, with or without class folders: a folder of
    #: real photos scored for its false-positive rate (null: class folders say).
    label: str | None = setting(one_of("real", "fake", nullable=True), None)


#: How images are read, for a command that may score a split again (`export`, `serve`).
IMAGE_READING_KEYS = ("num_workers", "on_bad_image", "max_image_pixels")
#: Batches of images scored at the model's size (`predict`).
PREDICTION_KEYS = ("image_size", "batch_size", *IMAGE_READING_KEYS)

#: Keys of the `data` group of a training run.
DATA_RULES: dict[str, Rule] = rules_of(DataSettings, "data")
