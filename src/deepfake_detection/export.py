"""Export a trained detector for use outside this package:
`deepfake-export ckpt_path=<run dir or .ckpt> format=onnx|torch_export`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, checked_task, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.exporting.settings import validate_export_config

register_resolvers()


export = checked_task(validate_export_config, "deepfake_detection.exporting.pipeline", "export")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
def main(cfg: DictConfig) -> Any:
    return run_task(export, cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
