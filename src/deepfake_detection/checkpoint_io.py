"""Reading and writing `.ckpt`/`.pth` files: atomically, and never running code from them."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from deepfake_detection.errors import UserInputError
from deepfake_detection.files import atomic_write_bytes


class CheckpointError(UserInputError):
    """A checkpoint or weights file is missing, unreadable, unsafe, or not one of ours."""


def safe_torch_load(path: str | Path, key: str | None = None) -> Any:
    """`torch.load` restricted to tensors and plain containers (`weights_only=True`).

    A file that would need arbitrary unpickling is refused before any of its code runs.
    Errors name the file, and the config key it came from when given.
    """
    name = f"{key}={path}" if key else str(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise CheckpointError(f"{name}: not a readable checkpoint ({err})") from None
        reason = next((line for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise CheckpointError(
            f"{name}: refused to load, it holds objects that would need arbitrary code to "
            f"unpickle; nothing in it was run. {reason.strip()}"
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"{name}: not a readable checkpoint (corrupt, truncated or another format: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None


class SafeAtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes through a temporary file and loads safely.

    A crash or kill while saving leaves the previous checkpoint intact, and resuming never
    unpickles arbitrary objects.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_torch_load(path)


class BackgroundCheckpointIO(AsyncCheckpointIO):
    """Lightning's `AsyncCheckpointIO`: each checkpoint is copied at its save point and written
    in a thread while training goes on. Removals queue behind the writes submitted before
    them, so that a checkpoint replaced before its own write finished cannot reappear."""

    def remove_checkpoint(self, path) -> None:
        self._ensure_setup()
        assert self._executor is not None and self.checkpoint_io is not None
        base = self.checkpoint_io

        def remove() -> None:
            try:
                base.remove_checkpoint(path)
            except BaseException as err:  # raised by the next save or by `teardown`
                self._error = err

        self._executor.submit(remove)
