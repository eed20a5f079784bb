"""Score unlabelled images with a trained detector:
`deepfake-predict ckpt_path=<run dir or .ckpt> input=<image file or folder>`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, checked_task, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.prediction.settings import validate_predict_config

register_resolvers()


predict = checked_task(validate_predict_config, "deepfake_detection.prediction.pipeline", "predict")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
def main(cfg: DictConfig) -> Any:
    return run_task(predict, cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
