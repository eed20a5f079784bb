"""Find run folders on disk and read what each run left behind.

A run folder is any folder holding `.hydra/config.yaml`. Only finished runs have
`metrics.json`; a failed one leaves its error in `error.txt` or in its Hydra log, and a run
with neither (killed, or still going) is reported as unfinished rather than silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from deepfake_detection.config import config_dir
from deepfake_detection.errors import UserInputError
from deepfake_detection.files import ERROR_FILE, METRICS_FILE
from deepfake_detection.models import registry

RUN_MARKER = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
PREDICTIONS_FILE = Path("predictions") / "test.csv"
#: How many folder levels below a given path are searched: `.` reaches `multirun/<date>/<job>`.
MAX_DEPTH = 4

Status = Literal["ok", "failed", "unfinished"]
STATUSES: tuple[Status, ...] = ("ok", "failed", "unfinished")

_HPARAM_KEYS = ("model", "freeze", "freeze_n", "augment", "optimizer", "lr")
_TRACEBACK = "Traceback (most recent call last)"
_LOG_RECORD = re.compile(r"^\[\d{4}-\d{2}-\d{2}")  # Hydra's `[date time][logger][LEVEL] - `


class RunsNotFoundError(UserInputError):
    """A path given to compare does not exist or holds no run folder."""


@dataclass(frozen=True)
class Run:
    """One training run as found on disk; `metrics` is empty unless `status` is ok."""

    name: str
    path: Path
    status: Status
    metrics: Mapping[str, Any] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    overrides: tuple[str, ...] = ()

    @property
    def model(self) -> str | None:
        return self.hparams.get("model")

    @property
    def freeze(self) -> str | None:
        """`last_n(3)`, `backbone` or `none`: the depth matters only for last_n."""
        name, n = self.hparams.get("freeze"), self.hparams.get("freeze_n")
        if name == "last_n" and n is not None:
            return f"last_n({n})"
        return name

    @property
    def augment(self) -> str | None:
        return self.hparams.get("augment")

    @property
    def optimizer(self) -> str | None:
        return self.hparams.get("optimizer")

    @property
    def lr(self) -> Any:
        return self.hparams.get("lr")

    @property
    def predictions_file(self) -> Path:
        return self.path / PREDICTIONS_FILE

    def metric(self, key: str) -> Any:
        return self.metrics.get(key)

    @property
    def protocol(self) -> Mapping[str, Any] | None:
        """The data and settings that produced the metrics, as the run recorded them.

        None for a run from before runs recorded it (or with a damaged record): such runs
        can still be compared, but nothing says they were tested alike.
        """
        record = self.metrics.get("protocol")
        return record if isinstance(record, Mapping) else None

    def interval(self, key: str) -> tuple[float, float] | None:
        """The bootstrap interval stored beside `key` (`<key>_ci`), if it is a usable one.

        A malformed interval reads as missing rather than failing the whole comparison.
        """
        value = self.metrics.get(f"{key}_ci")
        if not isinstance(value, list | tuple) or len(value) != 2:
            return None
        low, high = value
        if not all(_is_finite(bound) for bound in (low, high)) or low > high:
            return None
        return float(low), float(high)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_run_dir(path: Path) -> bool:
    """A training run's folder; `evaluate` output folders (they have `ckpt_path`) are not."""
    marker = path / RUN_MARKER
    if not marker.is_file():
        return False
    try:
        text = marker.read_text(errors="replace")
    except OSError:
        return True  # unreadable config: still a run, reported as such
    return not any(line.startswith("ckpt_path:") for line in text.splitlines())


def _natural_key(relative: Path) -> tuple:
    """Sort job folders 0, 1, 2, 10 rather than 0, 1, 10, 2."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in relative.parts)


def find_run_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Run folders at or below `root`, without looking inside a run folder's own subfolders."""
    if is_run_dir(root):
        return [root]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError:
            return  # unreadable folder: nothing we can compare there
        for child in children:
            if is_run_dir(child):
                found.append(child)
            elif depth < max_depth:
                walk(child, depth + 1)

    walk(root, 1)
    return sorted(found, key=lambda path: _natural_key(path.relative_to(root)))


def _names(found: Sequence[tuple[Path, Path]]) -> list[str]:
    """Job folder names, relative to the path given; prefixed by it only when they clash."""

    def relative(root: Path, run_dir: Path, prefixed: bool) -> str:
        name = run_dir.relative_to(root).as_posix()
        base = root.resolve().name
        if name == ".":
            return base
        return f"{base}/{name}" if prefixed else name

    names = [relative(root, run_dir, prefixed=False) for root, run_dir in found]
    if len(set(names)) < len(names):
        names = [relative(root, run_dir, prefixed=True) for root, run_dir in found]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under `paths`, in the order given and by job number within each path."""
    roots = [Path(p) for p in paths]
    missing = [str(root) for root in roots if not root.exists()]
    files = [str(root) for root in roots if root.exists() and not root.is_dir()]
    if missing or files:
        problems = [f"no such directory: {', '.join(missing)}"] if missing else []
        problems += [f"not a directory: {', '.join(files)}"] if files else []
        raise RunsNotFoundError("; ".join(problems))
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for root in roots:
        for run_dir in find_run_dirs(root):
            if run_dir.resolve() not in seen:  # the same run reached through two paths
                seen.add(run_dir.resolve())
                found.append((root, run_dir))
    if not found:
        where = ", ".join(str(root) for root in roots)
        raise RunsNotFoundError(f"no runs (folders with {RUN_MARKER.as_posix()}) found in {where}")
    names = _names(found)
    return [read_run(run_dir, name) for (_, run_dir), name in zip(found, names, strict=True)]


def read_run(path: Path, name: str | None = None) -> Run:
    """Read one run folder; never raises for a damaged run, which is reported as failed."""
    config = _read_yaml(path / RUN_MARKER)
    overrides = _read_yaml(path / OVERRIDES_FILE)
    overrides = tuple(str(o) for o in overrides) if isinstance(overrides, list) else ()
    metrics, metrics_error = _read_metrics(path / METRICS_FILE)
    hparams = _hparams(metrics or {}, config if isinstance(config, dict) else {})
    name = name or path.resolve().name
    common = {"name": name, "path": path, "hparams": hparams, "overrides": overrides}
    if metrics is not None:
        return Run(status="ok", metrics=metrics, **common)
    error = metrics_error or _error_message(path)
    return Run(status="failed" if error else "unfinished", error=error, **common)


def _read_yaml(path: Path) -> Any:
    # Keep interpolations as text: an old run's config may use resolvers not registered here.
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:
        return None


def _read_metrics(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"cannot read {METRICS_FILE}: {_summarise(str(err))}"
    if not isinstance(metrics, dict):
        return None, f"{METRICS_FILE} is not a JSON object"
    return metrics, None


def _hparams(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """What `metrics.json` says the run used, else what its config says (failed runs)."""
    from_config = _hparams_from_config(config)
    logged = metrics.get("hparams")
    if not isinstance(logged, dict):
        return from_config
    return {**from_config, **{k: v for k, v in logged.items() if k in _HPARAM_KEYS}}


def _hparams_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    def section(key: str) -> Mapping[str, Any]:
        value = config.get(key)
        return value if isinstance(value, dict) else {}

    model, freeze, optimizer = section("model"), section("freeze"), section("optimizer")
    hparams: dict[str, Any] = {}
    if "name" in section("augment"):
        hparams["augment"] = section("augment")["name"]
    elif model:  # a run from before the augment group trained with what is now `basic`
        hparams["augment"] = "basic"
    if isinstance(model.get("_target_"), str):
        hparams["model"] = registry.name_for_target(model["_target_"], config_dir())
        # A family of models is named by which one, as the run logged it.
        which = {"timm": "name", "clip": "arch"}.get(hparams["model"])
        if which is not None and isinstance(model.get(which), str):
            hparams["model"] = f"{hparams['model']}:{model[which]}"
    if "name" in freeze:
        hparams["freeze"] = freeze["name"]
        hparams["freeze_n"] = freeze.get("n")
    if isinstance(optimizer.get("_target_"), str):
        hparams["optimizer"] = optimizer["_target_"].rsplit(".", 1)[-1]
    if "lr" in optimizer:
        hparams["lr"] = optimizer["lr"]
    return hparams


def _error_message(run_dir: Path) -> str | None:
    """One line saying why the run failed: `error.txt` first, else its Hydra log(s)."""
    error_file = run_dir / ERROR_FILE
    if error_file.is_file():
        text = _read_text(error_file)
        return _summarise(text) if text.strip() else f"failed ({ERROR_FILE} is empty)"
    for log_file in sorted(run_dir.glob("*.log")):
        message = _log_error(_read_text(log_file).splitlines())
        if message:
            return message
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _log_error(lines: list[str]) -> str | None:
    """The last `error: ...` line of a log, else the exception line of its last traceback."""
    for line in reversed(lines):
        if "error:" in line:
            return _summarise(line.split("error:", 1)[1]) or "error (see log)"
    if any(_TRACEBACK in line for line in lines):
        return _traceback_message(lines) or "Traceback (see log)"
    return None


def _traceback_message(lines: list[str]) -> str | None:
    """The `SomeError: message` line that ends the last traceback in `lines`."""
    start = max(i for i, line in enumerate(lines) if _TRACEBACK in line)
    message = None
    for line in lines[start + 1 :]:
        if _LOG_RECORD.match(line):
            break  # the next log record: the traceback is over
        if not line.strip() or line[0].isspace():
            continue  # `  File ...` frames and source lines
        if line.startswith(("Traceback", "During handling", "The above exception")):
            continue
        message = line
    return _summarise(message) if message else None


def _summarise(text: str) -> str:
    """A multi-line error on one line: the exception line of a traceback, else the first line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if any(_TRACEBACK in line for line in lines):
        message = _traceback_message(lines)
        if message:
            return message
    first = lines[0].strip() if lines else ""
    first = first.removeprefix("error:").strip()
    return " ".join(first.split())


def read_predictions(run: Run) -> tuple[list[int], list[float]] | None:
    """Labels (1 = Fake) and fake probabilities from `predictions/test.csv`, if it exists.

    Raises ValueError when the file is there but unusable, so the caller can say which run.
    """
    path = run.predictions_file
    if not path.is_file():
        return None
    labels: list[int] = []
    probs: list[float] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"label", "prob_fake"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: needs the columns label and prob_fake")
        for row in reader:
            try:
                label, prob = int(float(row["label"])), float(row["prob_fake"])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {reader.line_num}: {err}") from None
            if label not in (0, 1) or not math.isfinite(prob):
                raise ValueError(f"{path}, line {reader.line_num}: label must be 0/1, prob finite")
            labels.append(label)
            probs.append(prob)
    return labels, probs
