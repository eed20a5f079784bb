"""Atomic file writes: a crash or a kill never leaves a truncated output behind.

Kept free of torch so that light commands (`compare`) start in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Names of files every run dir may hold, shared by the commands that write and read them.
METRICS_FILE = "metrics.json"
#: A training run's shipped weights (the network's `state_dict`) and its per-image scores.
WEIGHTS_FILE = "model.pth"
PREDICTIONS_DIR = "predictions"
ERROR_FILE = "error.txt"
SKIPPED_FILE = "skipped_files.txt"
#: The fully resolved config a training run used; it also marks a folder as a run `resume`
#: can continue.
RESOLVED_CONFIG_FILE = ".hydra/config.yaml"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _strict(value: Any) -> Any:
    # NaN (e.g. AUROC of a one-class split) is not JSON; write null so any parser reads it.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(path: str | Path, payload: Mapping) -> Path:
    text = json.dumps(_strict(payload), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when it is missing or not valid JSON."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_dir_problem(value: str) -> str | None:
    """Why `value` is not a run dir `resume` can continue, or None when it is one."""
    path = Path(value).expanduser()
    if not path.is_dir():
        return "no such run directory" if not path.exists() else "not a directory"
    if not (path / RESOLVED_CONFIG_FILE).is_file():
        return f"not a training run directory (no {RESOLVED_CONFIG_FILE})"
    return None
