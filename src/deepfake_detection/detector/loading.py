"""Finding, safely loading and rebuilding a trained detector from its checkpoint.

A checkpoint is untrusted input: it is unpickled with `weights_only=True`, and only a
registered architecture is built from its saved config, from plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfake_detection.checkpoint_io import CheckpointError, safe_torch_load
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.splitting import SPLIT_LISTS_DIR
from deepfake_detection.errors import UserInputError
from deepfake_detection.files import METRICS_FILE, read_json
from deepfake_detection.models import registry
from deepfake_detection.models.base import BaseDetector


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, its run dir or None) for a run dir or a `.ckpt` path.

    A run dir stands for its best checkpoint, as recorded in its `metrics.json`.
    """
    path = Path(path).expanduser()
    if path.is_file():
        run_dir = path.parent.parent
        return path, run_dir if (run_dir / ".hydra").is_dir() else None
    if not path.is_dir():
        raise CheckpointError(f"ckpt_path={path}: no such file or directory")
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():
        best = read_json(metrics_file).get("best/checkpoint")
        if best and (path / best).is_file():
            return path / best, path
    candidates = sorted(p for p in (path / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    if len(candidates) == 1:
        return candidates[0], path
    if not candidates and (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt", path
    found = ", ".join(p.name for p in candidates) or "none"
    raise CheckpointError(
        f"ckpt_path={path}: cannot tell which checkpoint to use (found: {found}); "
        "pass the .ckpt file itself"
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True`: tensors and plain containers only, so no code runs."""
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= checkpoint.keys():
        raise CheckpointError(
            f"{path}: not a deepfake-detection checkpoint (no saved run config); "
            "use a .ckpt written by `python -m train`"
        )
    return checkpoint


def _plain_arguments(node: Any, key: str, path: Path) -> dict[str, Any]:
    """Constructor arguments from a saved config node, refusing anything Hydra would call.

    `weights_only` keeps unpickling safe, but instantiating a config runs whatever its
    `_target_`s name; a checkpoint is untrusted input, so only our own classes are built,
    from plain values.
    """
    if not isinstance(node, dict):
        raise CheckpointError(f"{path}: its saved config has no `{key}` section")

    def check(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for name, child in value.items():
                if str(name).startswith("_"):
                    raise CheckpointError(
                        f"{path}: refused, its saved config sets {where}.{name}; "
                        "only plain values are accepted there"
                    )
                check(child, f"{where}.{name}")
        elif isinstance(value, list):
            for i, child in enumerate(value):
                check(child, f"{where}[{i}]")

    arguments = {k: v for k, v in node.items() if not str(k).startswith("_")}
    check(arguments, key)
    return arguments


def _allowed_class(target: Any, allowed: dict[str, type], key: str, path: Path) -> type:
    name = str(target).rsplit(".", 1)[-1]
    if not str(target).startswith("deepfake_detection.") or name not in allowed:
        raise CheckpointError(
            f"{path}: refused, its saved {key}._target_={target} is not one of: "
            + ", ".join(sorted(allowed))
        )
    return allowed[name]


def _registered_detector(target: Any, path: Path) -> type[BaseDetector]:
    """The registered architecture `model._target_` names; nothing else is ever built."""
    architecture = registry.for_target(target)
    if architecture is None:
        known = sorted(a.targets[-1] for a in registry.architectures().values())
        raise CheckpointError(
            f"{path}: refused, its saved model._target_={target} is not a registered "
            f"architecture: {', '.join(known)}"
        )
    return architecture.detector


def rebuild_detector(checkpoint: dict[str, Any], path: Path) -> BaseDetector:
    """The detector described by the checkpoint's config, with the checkpoint's weights."""
    node = checkpoint["config"].get("model") if isinstance(checkpoint["config"], dict) else None
    cls = _registered_detector((node or {}).get("_target_"), path)
    # The optimizer and scheduler only matter for training; the weights come from the file.
    arguments = {**dict(node), "optimizer": None, "scheduler": None}
    arguments = _plain_arguments(arguments, "model", path)
    if "pretrained" in arguments:
        arguments["pretrained"] = False  # nothing to download: the checkpoint has the weights
        arguments.pop("weights_path", None)
    try:
        model = cls(**arguments)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except UserInputError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0][:300]
        raise CheckpointError(
            f"{path}: its weights do not fit its saved config ({reason})"
        ) from None
    return model


def saved_data_arguments(
    checkpoint: dict[str, Any], path: Path, run_dir: Path | None = None
) -> dict[str, Any]:
    """The training run's DeepfakeDataModule arguments, as plain values.

    When the run recorded the splits it derived (`splits/` in `run_dir`), they are used:
    the same files as in training, even if the dataset's folders have changed since.
    """
    node = checkpoint["config"].get("data") if isinstance(checkpoint["config"], dict) else None
    _allowed_class(
        (node or {}).get("_target_"), {"DeepfakeDataModule": DeepfakeDataModule}, "data", path
    )
    arguments = _plain_arguments(node, "data", path)
    recorded = run_dir / SPLIT_LISTS_DIR if run_dir is not None else None
    if recorded is not None and recorded.is_dir():
        # The run's own record, wherever the run dir is now (a saved path may be stale).
        arguments["split_lists"] = str(recorded)
    return arguments
