"""Serve a trained detector over HTTP, with a web page:
`deepfake-serve ckpt_path=<run dir | .ckpt | model.onnx> [backend=torch|onnx] [port=8000]`."""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, checked_task, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.serving.settings import validate_serve_config

register_resolvers()


serve = checked_task(validate_serve_config, "deepfake_detection.serving.server", "serve")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="serve")
def main(cfg: DictConfig) -> Any:
    return run_task(serve, cfg)


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
