"""The vocabulary of config checks: what one key accepts (`Rule`), and checking a config.

A bad value should cost the user one clear line naming the key, not a traceback from deep
inside a constructor after minutes of indexing images or downloading weights. So each command
checks its composed config against a table, `key -> Rule`, first thing, once.

Each config group declares its keys where the code that reads them lives, as a typed
dataclass whose fields carry their rule (`setting`); `rules_of` turns such a class into
table rows, and each command's settings module assembles its table from them.

Only keys present in the composed config are checked: which ones exist depends on the chosen
groups (`model.widths` only for custom_cnn, no `scheduler.*` when `scheduler` is null).
Values are checked as resolved, since interpolations and resolvers (`${trainer.max_epochs}`,
`${dd.default_image_size:...}`) are what the constructors will receive. `paths.*` and
`hydra.*` are never looked at: `${hydra:...}` only resolves inside a Hydra run.

A foundation module: it imports nothing of this package above errors, files and config.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from deepfake_detection.config import register_resolvers
from deepfake_detection.errors import ConfigError

#: Lightning's `seed_everything` only takes seeds that fit in 32 unsigned bits.
MAX_SEED = 2**32 - 1

#: Longest rendering of a bad value in a message, so one line stays readable.
MAX_SHOWN_CHARS = 80

Extra = Callable[[Any, DictConfig], str | None]


@dataclass(frozen=True)
class Rule:
    """What one config key accepts.

    `accepts` is the type-and-range test, described by `expected` (it completes "must be
    ..."). `extra` runs only on accepted values, for what needs the file system or other
    keys, and returns the whole reason when it objects.
    """

    expected: str
    accepts: Callable[[Any], bool]
    nullable: bool = False
    required: bool = False
    blank_is_null: bool = False
    extra: Extra | None = None

    def problem(self, key: str, value: Any, cfg: DictConfig) -> str | None:
        """The one-line message for `value` at `key`, or None when it is fine."""
        if self.blank_is_null and value == "":
            value = None
        if value is None and self.required:
            return f"{key} is required: must be {self.expected}"
        if value is None and self.nullable:
            return None
        if not self.accepts(value):
            null = "null or " if self.nullable else ""
            return f"{key}={show(value)}: must be {null}{self.expected}"
        reason = self.extra(value, cfg) if self.extra else None
        return f"{key}={show(value)}: {reason}" if reason else None


class Problem(NamedTuple):
    key: str
    message: str


# --- rendering -------------------------------------------------------------------------------


def show(value: Any) -> str:
    """`value` as the user would type it (`null`, `true`), kept to one short line."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value if value and value.isprintable() else repr(value)
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{show(k)}: {show(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = " ".join(str(value).split())
    if isinstance(value, str) and value.isprintable() and ("/" in value or os.sep in value):
        return text  # a path is shown whole: its end names the file
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_text(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return ""


def _in_range(
    value: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    # Written so that NaN fails every comparison, hence every range.
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


# --- value kinds ------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """An int, never a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, never a bool."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def integer(minimum: int | None = None, maximum: int | None = None, **options: Any) -> Rule:
    """An int (never a bool) in `[minimum, maximum]`."""
    limits = _range_text(minimum, maximum)
    return Rule(
        expected=f"an integer {limits}".rstrip(),
        accepts=lambda v: is_int(v) and _in_range(v, minimum, maximum, False, False),
        **options,
    )


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    **options: Any,
) -> Rule:
    """A finite int or float (never a bool, never a numeric string) in the given range."""
    limits = _range_text(low, high, low_open, high_open)
    return Rule(
        expected=f"a number {limits}".rstrip(),
        accepts=lambda v: is_number(v) and _in_range(v, low, high, low_open, high_open),
        **options,
    )


def boolean(**options: Any) -> Rule:
    return Rule(expected="true or false", accepts=lambda v: isinstance(v, bool), **options)


def text(**options: Any) -> Rule:
    """A non-empty string."""
    return Rule(
        expected="a non-empty string", accepts=lambda v: isinstance(v, str) and v != "", **options
    )


def one_of(*choices: str | int, ignore_case: bool = False, **options: Any) -> Rule:
    """One of `choices`, compared with their type so that `true` never passes for `1`."""

    def accepts(value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if ignore_case and isinstance(value, str):
            return value.lower() in {str(c).lower() for c in choices}
        return any(type(value) is type(c) and value == c for c in choices)

    names = ", ".join(dict.fromkeys(str(c) for c in choices))
    suffix = " (any case)" if ignore_case else ""
    return Rule(expected=f"one of: {names}{suffix}", accepts=accepts, **options)


def either(*rules: Rule, expected: str, **options: Any) -> Rule:
    """Accepted by any of `rules`; their `extra` checks run for the first that accepts."""

    def extra(value: Any, cfg: DictConfig) -> str | None:
        rule = next(r for r in rules if r.accepts(value))
        return rule.extra(value, cfg) if rule.extra else None

    return Rule(
        expected=expected,
        accepts=lambda v: any(r.accepts(v) for r in rules),
        extra=extra,
        **options,
    )


def list_of(item: Rule, *, length: int | None = None, expected: str, **options: Any) -> Rule:
    """A non-empty list (of exactly `length` items, if given) whose items `item` accepts."""

    def accepts(value: Any) -> bool:
        if not isinstance(value, list) or not value:
            return False
        if length is not None and len(value) != length:
            return False
        return all(item.accepts(v) for v in value)

    return Rule(expected=expected, accepts=accepts, **options)


def _path_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _check_dir(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    if not path.exists():
        return "no such directory"
    return None if path.is_dir() else "not a directory"


def _check_file(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    if not path.exists():
        return "no such file"
    return None if path.is_file() else "not a file"


def _check_exists(value: str, cfg: DictConfig) -> str | None:
    return None if _path(value).exists() else "no such file or directory"


def _check_cache_dir(value: str, cfg: DictConfig) -> str | None:
    path = _path(value)
    return "exists but is not a directory" if path.exists() and not path.is_dir() else None


def cache_dir() -> Rule:
    """A folder a command creates when missing (null: the user's cache folder)."""
    return Rule(
        expected="a directory path",
        accepts=_path_text,
        extra=_check_cache_dir,
        nullable=True,
        blank_is_null=True,
    )


def existing_dir(**options: Any) -> Rule:
    return Rule(expected="an existing directory", accepts=_path_text, extra=_check_dir, **options)


def existing_file(**options: Any) -> Rule:
    return Rule(expected="an existing file", accepts=_path_text, extra=_check_file, **options)


def existing_path(expected: str, **options: Any) -> Rule:
    """A file or a folder that exists; `expected` says which the key wants."""
    return Rule(expected=expected, accepts=_path_text, extra=_check_exists, **options)


def path_to(expected: str, check: Extra, **options: Any) -> Rule:
    """A path that `check` looks at (it returns the reason when it objects)."""
    return Rule(expected=expected, accepts=_path_text, extra=check, **options)


def number_range(
    low: float, high: float, *, integers: bool = False, open_low: bool = False
) -> Rule:
    """A list [a, b] with low <= a <= b <= high (low < a with `open_low`)."""
    kind = "integers" if integers else "numbers"
    bound = "<" if open_low else "<="

    def accepts(v: Any) -> bool:
        if not (isinstance(v, list) and len(v) == 2):
            return False
        if not all(is_int(x) if integers else is_number(x) for x in v):
            return False
        above = v[0] > low if open_low else v[0] >= low
        return above and v[0] <= v[1] <= high

    top = "" if math.isinf(high) else f" <= {_bound(high)}"
    return Rule(
        expected=f"a list [a, b] of {kind}, {_bound(low)} {bound} a <= b{top}", accepts=accepts
    )


def random_seed(**options: Any) -> Rule:
    """A random seed Lightning's `seed_everything` takes."""
    return integer(0, MAX_SEED, **options)


def or_null(rule: Rule) -> Rule:
    """`rule`, also accepting null (for a command's "as in the training run")."""
    return replace(rule, nullable=True)


# --- checks that look at other keys -----------------------------------------------------------


def value_at(cfg: DictConfig, key: str) -> Any:
    """The resolved value at `key`, or None when it is absent, null or does not resolve."""
    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # a resolver that raises: its own key reports it
        return None


def at_most(other_key: str) -> Extra:
    """An `extra` check: the value must not exceed the integer at `other_key`."""

    def check(value: Any, cfg: DictConfig) -> str | None:
        other = value_at(cfg, other_key)
        if is_int(other) and value > other:
            return f"must be <= {other_key} ({other})"
        return None

    return check


# --- typed settings ---------------------------------------------------------------------------

#: Key of a dataclass field's metadata that holds its `Rule`.
RULE = "rule"


def setting(rule: Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field of a settings class, carrying the `rule` its config key obeys.

    `default` mirrors the shipped YAML (a list or dict is copied for each instance); none
    for a key the user must give (`???`).
    """
    metadata = {RULE: rule}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rules_of(
    settings: type, prefix: str = "", *, only: Collection[str] | None = None
) -> dict[str, Rule]:
    """`{"<prefix>.<field>": Rule}` for the fields of the dataclass `settings` that carry a
    rule, in field order (`only`: just those fields); an empty prefix for root-level keys."""
    if only is not None and (unknown := set(only) - {f.name for f in dataclasses.fields(settings)}):
        raise ValueError(f"{settings.__name__} has no field {', '.join(sorted(unknown))}")
    return {
        f"{prefix}.{field.name}" if prefix else field.name: field.metadata[RULE]
        for field in dataclasses.fields(settings)
        if RULE in field.metadata and (only is None or field.name in only)
    }


def ordered(rules: Mapping[str, Rule], *first: str) -> dict[str, Rule]:
    """`rules` with the keys `first` moved to the front, in that order, the rest after them
    as they were: a command's table order is the order its config's problems are named in."""
    return {**{key: rules[key] for key in first}, **rules}


# --- running the checks -----------------------------------------------------------------------


def _raw(parent: DictConfig, leaf: str) -> Any:
    return OmegaConf.to_container(parent, resolve=False)[leaf]


def _has(parent: Any, leaf: str) -> bool:
    # `leaf in parent` is False for a `???` value, which must still be reported.
    return isinstance(parent, DictConfig) and leaf in list(parent.keys())


def _check_leaf(cfg: DictConfig, key: str, parent: DictConfig, leaf: str, rule: Rule) -> str | None:
    if OmegaConf.is_missing(parent, leaf):
        return f"{key} is required: must be {rule.expected}"
    try:
        value = parent[leaf]
    except Exception as err:  # an interpolation or resolver that fails
        reason = next(iter(str(err).strip().splitlines()), type(err).__name__)
        return f"{key}={show(_raw(parent, leaf))}: cannot be resolved ({reason})"
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return rule.problem(key, value, cfg)


def _copies_another(parent: DictConfig, leaf: str) -> bool:
    """Whether the value is, or a list of it holds, an interpolation of another key."""
    if OmegaConf.is_interpolation(parent, leaf):
        return True
    value = parent._get_node(leaf)
    if isinstance(value, ListConfig):
        return any(OmegaConf.is_interpolation(value, i) for i in range(len(value)))
    return False


def config_problems(cfg: DictConfig, rules: Mapping[str, Rule]) -> list[Problem]:
    """Every bad key of `cfg`, those set directly before those that copy another key.

    A value interpolated from another key (`scheduler.T_max: ${trainer.max_epochs}`) fails
    because of that key, so the key the user actually set is the one to name first. Keys
    absent from `cfg` are not part of the chosen groups and are skipped.
    """
    register_resolvers()  # `${dd.*}` values must resolve even when called outside a CLI
    parents: dict[str, Any] = {}
    found: list[tuple[bool, Problem]] = []
    for key, rule in rules.items():
        parent_key, _, leaf = key.rpartition(".")
        if parent_key not in parents:
            parents[parent_key] = value_at(cfg, parent_key) if parent_key else cfg
        parent = parents[parent_key]
        if not _has(parent, leaf):
            continue
        message = _check_leaf(cfg, key, parent, leaf, rule)
        if message:
            found.append((_copies_another(parent, leaf), Problem(key, message)))
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


def validate(cfg: DictConfig, rules: Mapping[str, Rule]) -> None:
    """Raise one ConfigError line: the first bad key's message, then the other bad keys."""
    problems = config_problems(cfg, rules)
    if not problems:
        return
    message = problems[0].message
    if len(problems) > 1:
        message += f" (also invalid: {', '.join(p.key for p in problems[1:])})"
    raise ConfigError(message)
