"""Counts, class balance and histograms: the shape of the dataset before its problems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from deepfake_detection.auditing.inventory import LABELS, ImageFile

#: Majority/minority ratio above which a split is flagged as imbalanced.
IMBALANCE_THRESHOLD = 1.5


def class_counts(splits: Sequence[str], images: Iterable[ImageFile]) -> dict[str, dict[str, int]]:
    """Images per split and class; every class of every split appears, a missing one as 0."""
    counts = {split: dict.fromkeys(LABELS, 0) for split in splits}
    for image in images:
        counts[image.split][image.label] += 1
    for per_class in counts.values():
        per_class["total"] = sum(per_class[label] for label in LABELS)
    return counts


def imbalance(counts: dict[str, dict[str, int]]) -> dict[str, dict]:
    """Majority/minority ratio per split; None when the minority class is empty."""
    result = {}
    for split, per_class in counts.items():
        ordered = sorted(LABELS, key=lambda label: per_class[label], reverse=True)
        majority, minority = per_class[ordered[0]], per_class[ordered[-1]]
        ratio = round(majority / minority, 3) if minority else None
        result[split] = {
            "majority": ordered[0] if majority > minority else None,
            "ratio": ratio,
            # A class with no images at all is the worst imbalance there is.
            "imbalanced": bool(majority) and (ratio is None or ratio > IMBALANCE_THRESHOLD),
        }
    return result


def histograms(
    splits: Sequence[str], images: Sequence[ImageFile], values: Sequence[str | None]
) -> dict:
    """`{"overall": {value: n}, "by_split": {split: {label: {value: n}}}}`, None values skipped."""
    by_split = {split: {label: Counter() for label in LABELS} for split in splits}
    for image, value in zip(images, values, strict=True):
        if value is not None:
            by_split[image.split][image.label][value] += 1
    overall = Counter()
    for per_class in by_split.values():
        for counter in per_class.values():
            overall.update(counter)
    return {
        "overall": _most_common_first(overall),
        "by_split": {
            split: {label: _most_common_first(c) for label, c in per_class.items()}
            for split, per_class in by_split.items()
        },
    }


def _most_common_first(counter: Counter) -> dict[str, int]:
    # Ties broken by value, so two runs on one dataset write identical reports.
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
