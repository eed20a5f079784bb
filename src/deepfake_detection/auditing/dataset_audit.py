"""Dataset root → AuditReport → audit.json, audit.md and figures in the run dir."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from deepfake_detection.auditing.audit_report import AuditReport
from deepfake_detection.auditing.duplicates import exact_groups, near_pairs
from deepfake_detection.auditing.fingerprint import fingerprint_all
from deepfake_detection.auditing.inventory import take_inventory
from deepfake_detection.auditing.markdown import render
from deepfake_detection.auditing.settings import (
    DEFAULT_SHORTCUT_WARN_AUROC,
    LEAKAGE_EXIT,
    AuditSettings,
    dataset_root,
)
from deepfake_detection.auditing.shortcuts import check_shortcuts, not_checked
from deepfake_detection.auditing.stats import class_counts, histograms, imbalance
from deepfake_detection.data.datamodule import auto_num_workers
from deepfake_detection.data.images import DEFAULT_MAX_PIXELS
from deepfake_detection.data.layout import ClassAliases
from deepfake_detection.data.splitting import DEFAULT_SPLIT_FRACTIONS
from deepfake_detection.files import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

JSON_FILE = "audit.json"
MARKDOWN_FILE = "audit.md"


def run_audit(
    root: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    near_duplicates: bool = True,
    hash_size: int = 8,
    max_distance: int = 4,
    workers: int | None = None,
    seed: int = 42,
    split_fractions: tuple[float, ...] = DEFAULT_SPLIT_FRACTIONS,
    class_aliases: dict[str, list[str]] | None = None,
    shortcuts: bool = True,
    shortcut_warn_auroc: float = DEFAULT_SHORTCUT_WARN_AUROC,
) -> AuditReport:
    """Audit the dataset at `root`; `workers=None` uses one process per spare core.

    A flat root is audited as training would split it with `seed` and `split_fractions`.
    `shortcuts`: also check whether file metadata alone tells Fake from Real (see
    `auditing.shortcuts`), warning above `shortcut_warn_auroc`.
    """
    root = dataset_root(root)
    aliases = ClassAliases.from_config(class_aliases)
    inventory = take_inventory(root, aliases, seed, split_fractions)
    images = inventory.images
    workers = auto_num_workers() if workers is None else workers
    log.info("auditing %d images under %s", len(images), root)
    prints = fingerprint_all(
        [root / image.path for image in images],
        max_pixels=max_pixels,
        hash_size=hash_size if near_duplicates else None,
        workers=workers,
    )
    readable = [(image, fp) for image, fp in zip(images, prints, strict=True) if not fp.problem]
    files = [image for image, _ in readable]
    digests = [fp.sha256 for _, fp in readable]
    pairs, truncated = [], False
    if near_duplicates:
        hashes = [fp.phash for _, fp in readable]
        pairs, truncated = near_pairs(files, digests, hashes, max_distance)
    counts = class_counts(inventory.splits, images)
    shortcut_check = (
        check_shortcuts(root, files, inventory.splits, seed=seed, warn_auroc=shortcut_warn_auroc)
        if shortcuts
        else not_checked(shortcut_warn_auroc)
    )
    return AuditReport(
        root=root,
        layout=inventory.layout,
        splits=inventory.splits,
        counts=counts,
        imbalance=imbalance(counts),
        image_sizes=histograms(inventory.splits, images, [fp.size for fp in prints]),
        image_modes=histograms(inventory.splits, images, [fp.mode for fp in prints]),
        unreadable=[
            {"path": image.path, "reason": fp.problem}
            for image, fp in zip(images, prints, strict=True)
            if fp.problem
        ],
        non_image=inventory.non_image,
        stray=inventory.stray,
        ignored_system_files=inventory.ignored,
        missing_class_folders=inventory.missing_class_folders,
        exact_groups=exact_groups(files, digests),
        near_pairs=pairs,
        settings={
            "max_image_pixels": max_pixels,
            "near_duplicates": near_duplicates,
            "hash_size": hash_size,
            "max_distance": max_distance,
            "shortcuts": shortcuts,
            "shortcut_warn_auroc": shortcut_warn_auroc,
        },
        shortcuts=shortcut_check,
        near_checked=near_duplicates,
        near_truncated=truncated,
    )


def write_reports(report: AuditReport, output_dir: Path) -> list[Path]:
    """audit.json, audit.md and the figures, in `output_dir`."""
    # Imported here: matplotlib takes a second, which callers of run_audit alone need not pay.
    from deepfake_detection.auditing.plots import save_figures

    written = [
        write_json(output_dir / JSON_FILE, report.to_json()),
        atomic_write_bytes(output_dir / MARKDOWN_FILE, render(report).encode()),
    ]
    return written + save_figures(report, output_dir)


def audit(cfg: DictConfig, settings: AuditSettings | None = None) -> AuditReport:
    """The `deepfake-audit` task: audit `data.root`, write the reports, print the summary.

    `settings`: those the command already read from `cfg` (and so checked); read here when
    not given.
    """
    settings = settings or AuditSettings.from_config(cfg)
    report = run_audit(
        settings.root,
        max_pixels=settings.max_pixels,
        near_duplicates=settings.near_duplicates,
        hash_size=settings.hash_size,
        max_distance=settings.max_distance,
        workers=settings.workers,
        seed=settings.seed,
        split_fractions=settings.split_fractions,
        class_aliases=settings.class_aliases,
        shortcuts=settings.shortcuts,
        shortcut_warn_auroc=settings.shortcut_warn_auroc,
    )
    written = write_reports(report, settings.output_dir)
    print(render(report), end="")
    print(f"\nwrote {', '.join(p.name for p in written)} to {settings.output_dir}")
    return report


def audit_command(cfg: DictConfig) -> AuditReport:
    """`deepfake-audit` on a checked config: `audit`, then exit with status 1 when
    `audit.fail_on` finds leakage."""
    settings = AuditSettings.of_checked(cfg)
    report = audit(cfg, settings)
    if settings.fail_on is not None and report.leaks(settings.fail_on):
        where = settings.output_dir / "audit.md"
        print(
            f"error: leakage: {report.leakage_counts} "
            f"(audit.fail_on={settings.fail_on}; see {where})",
            file=sys.stderr,
        )
        sys.exit(LEAKAGE_EXIT)
    return report
