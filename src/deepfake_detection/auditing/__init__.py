"""Audit a Fake/Real dataset: counts, balance, bad and stray files, duplicates and leakage.

Exports load on first use: `settings` must stay importable without torch, which the dataset
code (and so the rest of this package) imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepfake_detection.auditing.audit_report import AuditReport
    from deepfake_detection.auditing.dataset_audit import audit, run_audit, write_reports
    from deepfake_detection.auditing.settings import AuditSettings

_EXPORTS = {
    "AuditReport": "audit_report",
    "AuditSettings": "settings",
    "audit": "dataset_audit",
    "run_audit": "dataset_audit",
    "write_reports": "dataset_audit",
}

__all__ = ["AuditReport", "AuditSettings", "audit", "run_audit", "write_reports"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
