"""The keys of `deepfake-evaluate` and `deepfake-robustness`, and the tables their configs are
checked against when the command starts. Kept free of torch: a mistyped key is answered at
once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.data.perturb import PERTURB_SEVERITIES, perturb_problem
from deepfake_detection.data.settings import SPLIT, TEST_ROOTS, ScoringDataSettings
from deepfake_detection.detector.settings import (
    DETECTOR_RULES,
    DEVICE_RULES,
    THRESHOLD,
    DetectorSettings,
)
from deepfake_detection.faces.settings import SCORING_FACE_RULES
from deepfake_detection.rules import (
    Rule,
    number,
    one_of,
    ordered,
    rules_of,
    setting,
    validate,
    value_at,
)
from deepfake_detection.video.settings import SCORING_VIDEO_RULES


def _severity_fits(value: Any, cfg: DictConfig) -> str | None:
    problem = perturb_problem(str(value_at(cfg, "perturb.name")), value)
    return problem.split(": ", 1)[1] if problem else None


@dataclass(frozen=True)
class SplitSettings:
    """`data.split`: the split of the dataset to score (`train`, `val` or `test`, any of
    their folder names, any case)."""

    split: str = setting(SPLIT, "test")


@dataclass(frozen=True)
class PerturbSettings:
    """The keys of the `perturb` group (conf/perturb/): what is done to every scored image
    (`deepfake_detection.data.perturb.Perturbation`)."""

    name: str = setting(one_of("none", *PERTURB_SEVERITIES), "none")
    severity: float | None = setting(replace(number(nullable=True), extra=_severity_fits), None)


@dataclass(frozen=True)
class RootsSettings:
    """`data.test_roots`: several datasets scored at once, one block each and their mean
    (e.g. the training source's test split and unseen sources side by side)."""

    test_roots: list[str] | None = setting(TEST_ROOTS, None)


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


@dataclass(frozen=True)
class RobustnessSettings(DetectorSettings):
    """The root keys of conf/robustness.yaml. `grid`: perturbation -> severities, mildest
    first; each severity is checked with its perturbation when the grid is read."""

    threshold: float | str = setting(THRESHOLD, "val")

    grid: dict[str, list[float]] = setting(
        Rule(
            expected="a mapping of perturbations to lists of severities, e.g. {jpeg: [50]}",
            accepts=_is_grid,
        ),
        {
            "jpeg": [90, 75, 50, 30],
            "blur": [1, 2, 3],
            "resize": [0.5, 0.25],
            "noise": [0.02, 0.05],
        },
    )


_DATASET_RULES: dict[str, Rule] = {
    **rules_of(SplitSettings, "data"),
    **rules_of(ScoringDataSettings, "data"),
    **SCORING_FACE_RULES,
    **SCORING_VIDEO_RULES,
}

#: Which split of which dataset, how it is laid out: named first, before how to decide.
_DATASET_FIRST = (
    "data.split",
    "data.root",
    "data.split_fractions",
    "data.split_lists",
    "data.class_aliases",
    "data.source_depth",
)

#: Keys of `deepfake-evaluate`.
EVALUATE_RULES: dict[str, Rule] = ordered(
    {
        **DETECTOR_RULES,
        **_DATASET_RULES,
        **rules_of(RootsSettings, "data"),
        **rules_of(PerturbSettings, "perturb"),
        **DEVICE_RULES,
    },
    "ckpt_path",
    *_DATASET_FIRST,
    "data.test_roots",
    "perturb.name",
    "perturb.severity",
)

#: Keys of `deepfake-robustness`.
ROBUSTNESS_RULES: dict[str, Rule] = ordered(
    {**rules_of(RobustnessSettings), **_DATASET_RULES, **DEVICE_RULES},
    "ckpt_path",
    *_DATASET_FIRST,
    "grid",
)


def validate_evaluate_config(cfg: DictConfig) -> None:
    validate(cfg, EVALUATE_RULES)


def validate_robustness_config(cfg: DictConfig) -> None:
    validate(cfg, ROBUSTNESS_RULES)
