"""Test a trained detector on any Fake/Real dataset:
`deepfake-evaluate ckpt_path=<run dir or .ckpt> [data.root=<dataset>] [data.split=test]`."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.console import setup_console
from deepfake_detection.validation import validate_evaluate_config

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> dict | None:
    return run_task(evaluate, cfg)


def evaluate(cfg: DictConfig) -> dict:
    validate_evaluate_config(cfg)  # before torch loads: a mistyped key is answered at once
    setup_console()
    from deepfake_detection.evaluation.pipeline import evaluate as run

    return run(cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
