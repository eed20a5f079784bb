"""Check a Fake/Real dataset before training on it: `deepfake-audit data.root=<dataset>`.

Reports counts and class balance, image sizes and modes, unreadable, non-image and stray
files, and exact and near duplicates; above all those shared across splits, which leak test
images into training. `audit.fail_on=exact|near` makes such leakage fail the command (exit 1).
"""

from __future__ import annotations

import sys
from functools import partial

import hydra
from omegaconf import DictConfig

from deepfake_detection.auditing.settings import LEAKAGE_EXIT, AuditSettings
from deepfake_detection.cli import run_task
from deepfake_detection.config import config_dir, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="audit")
def main(cfg: DictConfig) -> None:
    # Checked before the dataset code loads: torch and Lightning take seconds to import, and a
    # mistyped data.root should not wait for them.
    settings = run_task(AuditSettings.from_config, cfg)
    from deepfake_detection.auditing.pipeline import audit

    report = run_task(partial(audit, settings=settings), cfg)
    if settings.fail_on is not None and report.leaks(settings.fail_on):
        where = settings.output_dir / "audit.md"
        print(
            f"error: leakage: {report.leakage_counts} "
            f"(audit.fail_on={settings.fail_on}; see {where})",
            file=sys.stderr,
        )
        sys.exit(LEAKAGE_EXIT)


def cli() -> None:
    main()


if __name__ == "__main__":
    cli()
