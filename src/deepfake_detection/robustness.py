"""Score a trained detector clean and under JPEG, blur, downscaling and noise:
`deepfake-robustness ckpt_path=<run dir or .ckpt> [data.split=test] [threshold=val]`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, checked_task, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.evaluation.settings import validate_robustness_config

register_resolvers()


robustness = checked_task(
    validate_robustness_config, "deepfake_detection.evaluation.robustness", "robustness"
)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="robustness")
def main(cfg: DictConfig) -> Any:
    return run_task(robustness, cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
