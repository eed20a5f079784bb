"""Randomness that depends only on (seed, epoch).

An epoch's shuffling, augmentation and dropout then do not depend on anything that ran before
it, which is what lets a run resumed from an epoch-end checkpoint finish with exactly the
numbers of an uninterrupted one.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """Distinct, reproducible seeds per epoch; kept below 2**32 for NumPy."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % 2**32


def seed_global_rngs(seed: int) -> None:
    """Python, NumPy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
