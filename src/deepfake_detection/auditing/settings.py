"""The audit's keys and options, checked from the Hydra config without importing torch.

Kept light on purpose: the entry point checks the config before the dataset code (and with it
torch and Lightning) loads, so a mistyped `data.root` is answered in a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.data.images import DEFAULT_MAX_PIXELS
from deepfake_detection.data.layout import DEFAULT_CLASS_ALIASES
from deepfake_detection.data.settings import CLASS_ALIASES, MAX_IMAGE_PIXELS, SPLIT_FRACTIONS
from deepfake_detection.data.splitting import DEFAULT_SPLIT_FRACTIONS
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.rules import (
    Rule,
    boolean,
    existing_dir,
    integer,
    number,
    one_of,
    ordered,
    random_seed,
    rules_of,
    setting,
    validate,
)

#: Exit status when `audit.fail_on` leakage is found; 2 stays reserved for mistakes in the
#: command line, as in every other command.
LEAKAGE_EXIT = 1

#: Default of `audit.shortcut_warn_auroc`: metadata that tells the classes apart better than
#: this is warned about (0.5 is chance; a real dataset's encoders differ a little anyway).
DEFAULT_SHORTCUT_WARN_AUROC = 0.75


@dataclass(frozen=True)
class AuditDataSettings:
    """`data.*` of conf/audit.yaml: the dataset, and how training would read it."""

    root: str = setting(existing_dir(required=True, blank_is_null=True))
    max_image_pixels: int = setting(MAX_IMAGE_PIXELS, DEFAULT_MAX_PIXELS)
    split_fractions: list[float] = setting(SPLIT_FRACTIONS, list(DEFAULT_SPLIT_FRACTIONS))
    class_aliases: dict[str, list[str]] = setting(
        CLASS_ALIASES, {name: list(names) for name, names in DEFAULT_CLASS_ALIASES.items()}
    )


@dataclass(frozen=True)
class AuditRootSettings:
    """The root keys of conf/audit.yaml: the seed a flat root is split with, as in training."""

    seed: int = setting(random_seed(), 42)


@dataclass(frozen=True)
class AuditOptions:
    """`audit.*` of conf/audit.yaml."""

    fail_on: str | None = setting(one_of("exact", "near", nullable=True), None)
    fail_on_leakage: bool = setting(boolean(), False)  # true: short for fail_on=near
    near_duplicates: bool = setting(boolean(), True)
    hash_size: int = setting(integer(4), 8)
    max_distance: int = setting(integer(0), 4)
    num_workers: int | None = setting(integer(0, nullable=True), None)  # null: spare cores
    shortcuts: bool = setting(boolean(), True)  # metadata-only classifier per split
    shortcut_warn_auroc: float = setting(number(0.5, 1, low_open=True), DEFAULT_SHORTCUT_WARN_AUROC)


#: Keys of `deepfake-audit`, which checks a dataset folder and so needs one.
AUDIT_RULES: dict[str, Rule] = ordered(
    {
        **rules_of(AuditDataSettings, "data"),
        **rules_of(AuditRootSettings),
        **rules_of(AuditOptions, "audit"),
    },
    "data.root",
    "data.max_image_pixels",
    "seed",
    "data.split_fractions",
    "data.class_aliases",
    "audit.fail_on_leakage",
)


def validate_audit_config(cfg: DictConfig) -> None:
    validate(cfg, AUDIT_RULES)


def dataset_root(value: Any) -> Path:
    """`data.root` as a folder that exists, or a one-line error saying what is wrong."""
    if value in (None, ""):
        raise ConfigError("data.root is required: deepfake-audit data.root=<dataset folder>")
    root = Path(str(value)).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data.root={root}: no such directory")
    return root


def fail_on(audit: DictConfig) -> str | None:
    """`audit.fail_on`; `audit.fail_on_leakage=true` is short for `audit.fail_on=near`."""
    if audit.get("fail_on") is not None:
        if audit.fail_on == "near" and not audit.near_duplicates:
            raise ConfigError(
                "audit.fail_on=near: near duplicates are not checked with "
                "audit.near_duplicates=false; set it to true, or use audit.fail_on=exact"
            )
        return str(audit.fail_on)
    return "near" if audit.get("fail_on_leakage") else None


@dataclass(frozen=True)
class AuditSettings:
    root: Path
    output_dir: Path
    max_pixels: int
    near_duplicates: bool
    hash_size: int
    max_distance: int
    workers: int | None  # None: one per spare core
    fail_on: str | None  # None: report leakage, never fail on it
    #: How a flat root is split (as training splits it) and the class folder names.
    seed: int = 42
    split_fractions: tuple[float, ...] = DEFAULT_SPLIT_FRACTIONS
    class_aliases: dict[str, list[str]] | None = None
    #: Whether to run the shortcut check, and the metadata-only AUROC it warns above.
    shortcuts: bool = True
    shortcut_warn_auroc: float = DEFAULT_SHORTCUT_WARN_AUROC

    @classmethod
    def from_config(cls, cfg: DictConfig) -> AuditSettings:
        """The `deepfake-audit` command's check of its config (every key's type and range,
        one line per mistake), then its options."""
        validate_audit_config(cfg)
        return cls.of_checked(cfg)

    @classmethod
    def of_checked(cls, cfg: DictConfig) -> AuditSettings:
        """The options of a config already checked (by the command, when it started)."""
        workers = cfg.audit.num_workers
        return cls(
            root=dataset_root(cfg.data.root),
            output_dir=Path(str(cfg.paths.output_dir)),
            max_pixels=cfg.data.max_image_pixels,
            near_duplicates=cfg.audit.near_duplicates,
            hash_size=cfg.audit.hash_size,
            max_distance=cfg.audit.max_distance,
            workers=None if workers is None else int(workers),
            fail_on=fail_on(cfg.audit),
            seed=int(cfg.get("seed", 42)),
            split_fractions=tuple(cfg.data.get("split_fractions") or DEFAULT_SPLIT_FRACTIONS),
            class_aliases=OmegaConf.to_container(cfg.data.class_aliases)
            if cfg.data.get("class_aliases") is not None
            else None,
            shortcuts=bool(cfg.audit.get("shortcuts", True)),
            shortcut_warn_auroc=float(
                cfg.audit.get("shortcut_warn_auroc", DEFAULT_SHORTCUT_WARN_AUROC)
            ),
        )
