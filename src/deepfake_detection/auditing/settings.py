"""The audit's options, checked from the Hydra config without importing torch.

Kept light on purpose: the entry point checks the config before the dataset code (and with it
torch and Lightning) loads, so a mistyped `data.root` is answered in a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detection.data.splitting import DEFAULT_SPLIT_FRACTIONS
from deepfake_detection.errors import ConfigError, DatasetError
from deepfake_detection.validation import validate_audit_config

#: Exit status when `audit.fail_on` leakage is found; 2 stays reserved for mistakes in the
#: command line, as in every other command.
LEAKAGE_EXIT = 1


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

    @classmethod
    def from_config(cls, cfg: DictConfig) -> AuditSettings:
        validate_audit_config(cfg)  # types and ranges of every key, one line per mistake
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
        )
