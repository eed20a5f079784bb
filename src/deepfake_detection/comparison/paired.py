"""Paired bootstrap of the test AUROC difference between the best run and the others.

Two runs scored on the same test images are not independent samples: their separate
intervals overlap far more often than their difference is uncertain. Resampling the images
once and scoring both runs on each resample gives an interval for the difference itself,
the number that says whether the best run is better on test.

Only runs of the best run's protocol group are paired, and only when both saved
`predictions/test.csv` for the same images with the same labels; images are matched by
path, so row order does not matter. Resampling is stratified by class, so every resample
has both classes (as an AUROC needs) and the same class balance as the test split. numpy
is imported only here, and only when there is something to pair.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detection.comparison.protocols import Grouping, get_path
from deepfake_detection.comparison.runs import Run

log = logging.getLogger(__name__)

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class PairedDelta:
    """Test AUROC of a run minus the best run's, on the same images, with its interval."""

    delta: float
    low: float
    high: float
    images: int


def _relative_to_root(run: Run) -> Callable[[str], str]:
    """A scored path as it is relative to the run's recorded data root, so runs whose roots
    were given as relative and absolute paths (or live on other machines) still pair up."""
    root = get_path(run.protocol, "data.root")
    if not isinstance(root, str) or not root:
        return lambda path: path
    prefix = Path(root)

    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(prefix).as_posix()
        except ValueError:
            pass
        try:  # a relative root, recorded as the command was run
            return Path(path).resolve().relative_to(prefix.resolve()).as_posix()
        except (ValueError, OSError):
            return path

    return relative


def read_scored_images(run: Run) -> dict[str, tuple[int, float]] | None:
    """`{path: (label, prob_fake)}` from `predictions/test.csv`, paths relative to the run's
    data root; None when the run has none, or when images cannot be matched by path (no
    path column, or a path twice)."""
    path = run.predictions_file
    if not path.is_file():
        return None
    relative = _relative_to_root(run)
    scored: dict[str, tuple[int, float]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"path", "label", "prob_fake"} <= set(reader.fieldnames or ()):
                return None
            for row in reader:
                key = relative(row["path"])
                if key in scored:
                    return None
                scored[key] = (int(float(row["label"])), float(row["prob_fake"]))
    except (OSError, ValueError, TypeError) as err:
        log.warning("run %s: not paired: %s: %s", run.name, path, err)
        return None
    return scored


def paired_deltas(grouping: Grouping, bests: Sequence[Run]) -> dict[str, PairedDelta]:
    """`{run name: ΔAUROC vs its group's best}` for every run that can be paired."""
    deltas: dict[str, PairedDelta] = {}
    for best in bests:
        group = grouping.group_of(best)
        if group is None or not group.recorded or len(group.runs) < 2:
            continue  # no record: nothing says the images are the same data
        reference = read_scored_images(best)
        if reference is None:
            continue
        for run in group.runs:
            if run is best or not _same_data(run, best):
                continue
            scored = read_scored_images(run)
            delta = paired_delta(reference, scored) if scored is not None else None
            if delta is not None:
                deltas[run.name] = delta
    return deltas


def _same_data(run: Run, best: Run) -> bool:
    fingerprint = get_path(best.protocol, "data.fingerprint")
    theirs = get_path(run.protocol, "data.fingerprint")
    return isinstance(fingerprint, str) and fingerprint == theirs


def paired_delta(
    best: Mapping[str, tuple[int, float]],
    other: Mapping[str, tuple[int, float]],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> PairedDelta | None:
    """AUROC(other) − AUROC(best) and its percentile interval; None unless both scored the
    same images with the same labels, of both classes."""
    if best.keys() != other.keys() or any(best[k][0] != other[k][0] for k in best):
        return None
    import numpy as np

    paths = sorted(best)
    labels = np.array([best[p][0] for p in paths])
    if labels.min() == labels.max():
        return None
    auroc_best = _auroc_of(np.array([best[p][1] for p in paths]), labels)
    auroc_other = _auroc_of(np.array([other[p][1] for p in paths]), labels)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    ones = np.ones(len(labels))
    differences = np.empty(resamples)
    for i in range(resamples):
        weights = _stratified_weights(rng, positives, negatives, len(labels))
        differences[i] = auroc_other(weights) - auroc_best(weights)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    point = auroc_other(ones) - auroc_best(ones)
    return PairedDelta(float(point), float(low), float(high), len(labels))


def _stratified_weights(rng: Any, positives: Any, negatives: Any, size: int) -> Any:
    """How many times each image is drawn, drawing each class apart."""
    import numpy as np

    weights = np.zeros(size)
    for members in (positives, negatives):
        drawn = rng.integers(0, len(members), len(members))
        weights[members] = np.bincount(drawn, minlength=len(members))
    return weights


def _auroc_of(scores: Any, labels: Any) -> Callable[[Any], float]:
    """AUROC with each image counted `weights` times: the chance that a fake scores above a
    real (ties count half). The scores are sorted once, not once per resample."""
    import numpy as np

    values, index = np.unique(scores, return_inverse=True)
    real = labels == 0
    real_index, fake_index = index[real], index[~real]

    def auroc(weights: Any) -> float:
        real_at = np.bincount(real_index, weights=weights[real], minlength=len(values))
        real_below = np.cumsum(real_at) - real_at
        fake_weights = weights[~real]
        wins = np.sum(fake_weights * (real_below[fake_index] + 0.5 * real_at[fake_index]))
        return float(wins / (fake_weights.sum() * real_at.sum()))

    return auroc
