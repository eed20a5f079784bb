"""Test-time perturbations: what platforms do to images, applied before the eval transform.

`deepfake-evaluate perturb=<name> perturb.severity=<s>` scores a split as it would look after
JPEG re-compression, blur, downscaling or sensor noise. Each perturbation is deterministic:
the same image always gets the same result (noise draws from a seed fixed per image), so a
score under a perturbation is as repeatable as a clean one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepfake_detection.errors import ConfigError
from deepfake_detection.rules import is_number

if TYPE_CHECKING:
    from torchvision.transforms import v2

#: perturbation -> (what `perturb.severity` means, its check, the check in words).
PERTURB_SEVERITIES: dict[str, tuple[str, Callable[[float], bool], str]] = {
    "jpeg": ("JPEG quality", lambda s: float(s).is_integer() and 1 <= s <= 100, "1..100"),
    "blur": ("Gaussian blur sigma (px)", lambda s: 0 < s <= 50, "in (0, 50]"),
    "resize": ("downscale factor", lambda s: 0 < s <= 1, "in (0, 1]"),
    "noise": ("noise sigma on [0, 1] pixels", lambda s: 0 < s <= 1, "in (0, 1]"),
}


def perturb_problem(name: str, severity: Any) -> str | None:
    """What is wrong with `perturb=<name>` at `severity`, or None."""
    if name == "none":
        return None
    if name not in PERTURB_SEVERITIES:
        choices = ", ".join(["none", *PERTURB_SEVERITIES])
        return f"perturb={name}: unknown perturb option; choose one of: {choices}"
    meaning, accepts, expected = PERTURB_SEVERITIES[name]
    if not is_number(severity) or not accepts(severity):
        return f"perturb.severity={severity}: for perturb={name} it is the {meaning}, {expected}"
    return None


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one severity; `none` leaves images as they are."""

    name: str = "none"
    severity: float | None = None

    def __post_init__(self) -> None:
        problem = perturb_problem(self.name, self.severity)
        if problem:
            raise ConfigError(problem)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Perturbation:
        values = dict(cfg or {})
        return cls(str(values.get("name", "none")), values.get("severity"))

    @property
    def label(self) -> str:
        """`jpeg 50`, `blur 2`, or `clean`."""
        return "clean" if self.name == "none" else f"{self.name} {self.severity:g}"

    def steps(self) -> tuple[list[v2.Transform], list[v2.Transform]]:
        """(steps on the uint8 image at its own resolution, steps on the [0, 1] float image
        after the eval crop). Noise goes on the cropped image, as in training, so that its
        sigma means the same whatever the stored resolution."""
        # Here, not at the top: the config checks use this module without loading torch.
        from torchvision.transforms import v2

        from deepfake_detection.data.augment import (
            FittedGaussianBlur,
            RandomGaussianNoise,
            RandomRescale,
        )

        s = self.severity
        if self.name == "jpeg":
            return [v2.JPEG(quality=int(s))], []
        if self.name == "blur":
            return [FittedGaussianBlur((float(s), float(s)))], []
        if self.name == "resize":
            return [RandomRescale((s, s))], []
        if self.name == "noise":
            return [], [RandomGaussianNoise((s, s))]
        return [], []
