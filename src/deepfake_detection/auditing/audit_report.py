"""The audit's findings in one object: what `audit.json` holds and the reports are drawn from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detection.auditing.duplicates import ExactGroup, NearPair


@dataclass
class AuditReport:
    """Paths inside are relative to `root`, so a report stays valid when the dataset moves."""

    root: Path
    splits: list[str]
    counts: dict[str, dict[str, int]]
    imbalance: dict[str, dict[str, Any]]
    image_sizes: dict[str, Any]
    image_modes: dict[str, Any]
    unreadable: list[dict[str, str]]
    non_image: list[str]
    stray: list[str]
    ignored_system_files: int
    missing_class_folders: list[str]
    exact_groups: list[ExactGroup]
    near_pairs: list[NearPair]
    settings: dict[str, Any] = field(default_factory=dict)
    near_checked: bool = True
    near_truncated: bool = False
    #: How the splits were found, in words (split folders, or a flat root's hashed split).
    layout: str = "split folders"
    #: The shortcut check: whether file metadata alone tells Fake from Real, per split (see
    #: `auditing.shortcuts`); empty when the report was made without it.
    shortcuts: dict[str, Any] = field(default_factory=dict)

    @property
    def shortcut_splits(self) -> list[str]:
        """Splits whose metadata alone separates the classes above the warning level."""
        return list(self.shortcuts.get("warned_splits", []))

    @property
    def exact_cross_split(self) -> list[ExactGroup]:
        return [group for group in self.exact_groups if group.cross_split]

    @property
    def near_cross_split(self) -> list[NearPair]:
        return [pair for pair in self.near_pairs if pair.cross_split]

    @property
    def leakage(self) -> bool:
        """Whether any image, or a near copy of it, sits in two splits."""
        return bool(self.exact_cross_split or self.near_cross_split)

    def leaks(self, kind: str) -> bool:
        """Leakage of one kind: `exact` copies only, or `near` (exact or near copies)."""
        return bool(self.exact_cross_split) if kind == "exact" else self.leakage

    @property
    def leakage_counts(self) -> str:
        """What spans splits, in words, e.g. for the `error: leakage:` line."""
        return (
            f"{len(self.exact_cross_split)} exact-duplicate group(s) and "
            f"{len(self.near_cross_split)} near-duplicate pair(s) span splits"
        )

    @property
    def verdict(self) -> str:
        """The one line that answers "can I trust the test split?"."""
        if self.leakage:
            return f"LEAKAGE: {self.leakage_counts}"
        if len(self.splits) < 2:
            return "No leakage found across splits (the dataset has a single split)"
        if not self.near_checked:
            return "No leakage found across splits (exact duplicates only: near ones not checked)"
        return "No leakage found across splits"

    @property
    def summary(self) -> dict[str, Any]:
        images = sum(per_class["total"] for per_class in self.counts.values())
        return {
            "images": images,
            "readable": images - len(self.unreadable),
            "unreadable": len(self.unreadable),
            "non_image": len(self.non_image),
            "stray": len(self.stray),
            "ignored_system_files": self.ignored_system_files,
            "missing_class_folders": len(self.missing_class_folders),
            "exact_groups": len(self.exact_groups),
            "exact_duplicate_files": sum(len(group.files) for group in self.exact_groups),
            "exact_cross_split_groups": len(self.exact_cross_split),
            "exact_label_conflict_groups": sum(g.label_conflict for g in self.exact_groups),
            "near_duplicates_checked": self.near_checked,
            "near_pairs": len(self.near_pairs),
            "near_pairs_truncated": self.near_truncated,
            "near_cross_split_pairs": len(self.near_cross_split),
            "near_label_conflict_pairs": sum(pair.label_conflict for pair in self.near_pairs),
            "imbalanced_splits": [s for s, v in self.imbalance.items() if v["imbalanced"]],
            "leakage": self.leakage,
            "verdict": self.verdict,
            "shortcuts_checked": bool(self.shortcuts.get("checked")),
            "shortcut_warned_splits": self.shortcut_splits,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "settings": self.settings,
            "splits": self.splits,
            "counts": self.counts,
            "imbalance": self.imbalance,
            "image_sizes": self.image_sizes,
            "image_modes": self.image_modes,
            "unreadable": self.unreadable,
            "non_image": self.non_image,
            "stray": self.stray,
            "ignored_system_files": self.ignored_system_files,
            "missing_class_folders": self.missing_class_folders,
            "exact_duplicate_groups": [group.to_json() for group in self.exact_groups],
            "near_duplicate_pairs": [pair.to_json() for pair in self.near_pairs],
            "shortcuts": self.shortcuts,
            "summary": self.summary,
        }
