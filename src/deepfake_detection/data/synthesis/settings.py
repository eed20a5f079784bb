"""The `synth.*` keys: which synthetic fakes, and how many. Free of torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from deepfake_detection.errors import ConfigError
from deepfake_detection.rules import Rule, boolean, number, one_of, rules_of, setting

#: `synth.name`: the families of synthetic fakes, alone or together.
SYNTH_NAMES = ("none", "sbi", "upsample", "sbi+upsample")


@dataclass(frozen=True)
class SynthSettings:
    """The keys of `synth.*`; the defaults are `synth=sbi` (conf/synth/sbi.yaml)."""

    name: str = setting(one_of(*SYNTH_NAMES), "sbi")
    #: The share of the training fakes that are synthetic, drawn afresh for each epoch.
    ratio: float = setting(number(0, 1), 0.5)
    #: Train from the real images alone: each real image also serves as a synthetic fake.
    only: bool = setting(boolean(), False)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> SynthSettings | None:
        """From `synth.*`; None when no synthetic fakes are made."""
        values = dict(cfg or {})
        if values.get("name", "none") == "none":
            return None
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"synth.{unknown[0]}: not a synth key")
        return cls(**values)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.name.split("+"))

    def describe(self) -> str:
        share = "every fake (synth.only)" if self.only else f"{self.ratio:.0%} of the fakes"
        return f"{self.name}: {share}"


#: Keys of the `synth` group.
SYNTH_RULES: dict[str, Rule] = rules_of(SynthSettings, "synth")
