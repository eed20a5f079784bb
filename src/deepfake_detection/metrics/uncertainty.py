"""How sure a number is: bootstrap intervals for AUROC, AP and accuracy, Wilson intervals
for rates.

A test set of a few thousand images leaves AUROC uncertain in its third decimal: two runs
0.002 apart are usually not different. The bootstrap resamples the scored images with
replacement (seeded, so an interval reproduces) and reports the 2.5th and 97.5th percentiles.
Each resample is a vector of counts over the images, so all resamples are scored at once on
the images' distinct scores rather than by re-sorting each one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

#: Resamples, seed and level of the bootstrap; recorded in every metrics.json's protocol.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
#: Resamples scored at once: memory is about CHUNK x (images + 2 x distinct scores) x 8 bytes
#: for the counts, a few times over for the cumulative sums.
CHUNK = 100
#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054


def bootstrap_settings() -> dict[str, Any]:
    return {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": LEVEL}


def weighted_auroc_ap(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AUROC and AP of each resample from its counts per distinct score.

    `pos`/`neg`: (resamples, scores) counts of fakes/reals at each distinct score, ascending.
    Ties count half in AUROC and form one step in AP, as torchmetrics (and scikit-learn)
    treat them.
    """
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    neg_below = torch.cumsum(neg, 1) - neg
    auroc = (pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    # Precision at each threshold, from the highest score down.
    tp = torch.flip(torch.cumsum(torch.flip(pos, [1]), 1), [1])
    fp = torch.flip(torch.cumsum(torch.flip(neg, [1]), 1), [1])
    precision = tp / (tp + fp).clamp(min=1)
    return auroc, (pos * precision).sum(1) / n_pos


def bootstrap_intervals(
    probs: torch.Tensor,
    targets: torch.Tensor,
    thresholds: Mapping[str, float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, list[float] | None]:
    """95 % percentile intervals: `auroc`, `ap`, and `acc` at each named threshold
    (`{"acc": 0.5, "acc@val": 0.43}` → keys `acc` and `acc@val`).

    Images are resampled within each class (a stratified bootstrap): every resample keeps the
    split's class counts, so AUROC and AP are always defined. A split without both classes
    has no AUROC or AP interval (None); its accuracy is still resampled.
    """
    probs = probs.detach().double().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    n = probs.numel()
    if n == 0:
        return {"auroc": None, "ap": None, **dict.fromkeys(thresholds)}
    distinct, position = torch.unique(probs, return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    classes = [torch.nonzero(targets == label).flatten() for label in (0, 1)]
    both = all(len(members) for members in classes)
    decided = {name: ((probs > t).long() == targets).double() for name, t in thresholds.items()}
    values: dict[str, list[torch.Tensor]] = {k: [] for k in ("auroc", "ap", *thresholds)}
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        counts = torch.zeros(size, n, dtype=torch.float64)
        for members in classes:
            if len(members):
                draws = members[
                    torch.randint(len(members), (size, len(members)), generator=generator)
                ]
                counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
        if both:
            pos = torch.zeros(size, len(distinct), dtype=torch.float64)
            neg = torch.zeros_like(pos)
            index = position.expand(size, n)
            pos.scatter_add_(1, index, counts * (targets == 1))
            neg.scatter_add_(1, index, counts * (targets == 0))
            auroc, ap = weighted_auroc_ap(pos, neg)
            values["auroc"].append(auroc)
            values["ap"].append(ap)
        for name, right in decided.items():
            values[name].append((counts * right).sum(1) / n)
    intervals: dict[str, list[float] | None] = {}
    for name, chunks in values.items():
        intervals[name] = _percentiles(torch.cat(chunks)) if chunks else None
    return intervals


def _percentiles(samples: torch.Tensor) -> list[float]:
    tail = (1 - LEVEL) / 2
    low, high = torch.quantile(samples, torch.tensor([tail, 1 - tail], dtype=samples.dtype))
    return [float(low), float(high)]


def wilson_interval(successes: int, trials: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of a rate: unlike rate ± 1.96 se, it stays in [0, 1] and is
    not empty at 0 or n successes (0 false positives in 200 reals is not a 0 % rate)."""
    if trials <= 0:
        return None
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    spread = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    spread /= denominator
    low = 0.0 if successes == 0 else max(0.0, centre - spread)
    high = 1.0 if successes == trials else min(1.0, centre + spread)
    return [low, high]
