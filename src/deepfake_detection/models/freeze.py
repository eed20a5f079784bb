"""Freeze strategies: which feature blocks of a detector train."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig
from torch import nn

from deepfake_detection.errors import ConfigError
from deepfake_detection.rules import Rule, integer, one_of, rules_of, setting, value_at

FREEZE_NAMES = ("none", "backbone", "last_n")


def _last_n_needs_n(value: Any, cfg: DictConfig) -> str | None:
    if value == "last_n" and value_at(cfg, "freeze.n") is None:  # a bad n reports itself
        return "needs an integer freeze.n, the number of top feature blocks to train"
    return None


@dataclass(frozen=True)
class FreezeSettings:
    """The keys of the `freeze` group (conf/freeze/); `n` only for `freeze=last_n` (3)."""

    name: str = setting(replace(one_of(*FREEZE_NAMES), extra=_last_n_needs_n), "none")
    n: int | None = setting(integer(0), None)


#: Keys of the `freeze` group. Whether `freeze.n` fits the model is checked when it is built.
FREEZE_RULES: dict[str, Rule] = rules_of(FreezeSettings, "freeze")


@dataclass(frozen=True)
class FreezeSpec:
    """`none` fine-tunes everything, `backbone` trains only the head, and `last_n` also
    trains the top `n` feature blocks."""

    name: str = "none"
    n: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> FreezeSpec:
        cfg = dict(cfg or {})
        name = cfg.get("name", "none")
        if name not in FREEZE_NAMES:
            raise ConfigError(
                f"freeze.name={name}: unknown; choose one of: {', '.join(FREEZE_NAMES)}"
            )
        n = cfg.get("n")
        if name == "last_n" and (not isinstance(n, int) or isinstance(n, bool)):
            raise ConfigError(f"freeze.n={n}: must be an integer for freeze=last_n")
        return cls(name=name, n=n if name == "last_n" else None)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def apply_freeze(
    model: nn.Module, blocks: Sequence[nn.Module], spec: FreezeSpec, model_name: str
) -> None:
    """Set `requires_grad` so that only the parts `spec` names train.

    `blocks` are the feature blocks in input-to-output order; everything of `model`
    outside them (the head) always trains.
    """
    for param in model.parameters():
        param.requires_grad_(True)
    if spec.name == "none":
        return
    n_trainable = 0 if spec.name == "backbone" else spec.n
    if not 0 <= n_trainable <= len(blocks):
        raise ConfigError(
            f"freeze.n={n_trainable} is out of range for {model_name}: "
            f"choose 0..{len(blocks)} (it has {len(blocks)} feature blocks)"
        )
    for block in blocks[: len(blocks) - n_trainable]:
        for param in block.parameters():
            param.requires_grad_(False)


def nothing_frozen_warning(spec: FreezeSpec, n_blocks: int, model_name: str) -> str | None:
    """What to tell the user when `spec` asks to freeze but leaves every block trainable.

    A warning, not an error: a sweep over `freeze.n` may cover models with fewer blocks.
    """
    if spec.name != "last_n" or spec.n != n_blocks:
        return None
    return (
        f"freeze=last_n, freeze.n={spec.n}: {model_name} has {n_blocks} feature blocks, so "
        f"nothing is frozen and this run is the same as freeze=none; choose "
        f"freeze.n=0..{n_blocks - 1} to freeze some"
    )


def frozen_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers whose affine parameters are all frozen.

    These must stay in eval mode during training, otherwise their running statistics would
    drift on the new data while nothing else in the frozen block can adapt to it.
    """
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.affine
        and not any(p.requires_grad for p in m.parameters())
    ]
