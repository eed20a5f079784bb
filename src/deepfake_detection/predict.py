"""Score unlabelled images with a trained detector:
`deepfake-predict ckpt_path=<run dir or .ckpt> input=<image file or folder>`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.console import setup_console
from deepfake_detection.validation import validate_predict_config

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
def main(cfg: DictConfig) -> dict | None:
    return run_task(predict, cfg)


def predict(cfg: DictConfig) -> dict:
    validate_predict_config(cfg)  # before torch loads: a mistyped key is answered at once
    setup_console()
    from deepfake_detection.prediction.pipeline import predict as run

    return run(cfg)


def cli() -> None:
    main()


if __name__ == "__main__":
    cli()
