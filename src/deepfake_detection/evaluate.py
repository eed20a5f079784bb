"""Test a trained detector on any Fake/Real dataset:
`deepfake-evaluate ckpt_path=<run dir or .ckpt> [data.root=<dataset>] [data.split=test]`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, checked_task, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.evaluation.settings import validate_evaluate_config

register_resolvers()


evaluate = checked_task(
    validate_evaluate_config, "deepfake_detection.evaluation.pipeline", "evaluate"
)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> Any:
    return run_task(evaluate, cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
