"""Which runs may be ranked against each other, from the protocol each run recorded.

A score means something only beside the data and settings that produced it: two runs tested
on different images, under a different perturbation, or with different preprocessing, have
AUROCs that do not measure the same thing. Runs are therefore grouped by what makes their
numbers comparable, and the best run is chosen within a group, never across groups, unless
the user asks for one ranking (`compare.mixed_protocols=allow`).

What splits groups: the test data, the perturbation and every preprocessing field. The
validation data is listed when it differs but does not split groups: a dataset without a
validation folder carves one from its training images with each run's seed, and the runs of
a seed sweep must still be ranked together.
Other recorded settings (threshold and checkpoint rules, calibration, bootstrap, versions,
code commit) are listed when they differ, but do not split groups: they change how a run was
made or reported, not what its test AUROC was measured on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deepfake_detection.comparison.runs import Run
from deepfake_detection.errors import UserInputError

MixedProtocols = Literal["refuse", "allow"]
MIXED_PROTOCOLS: tuple[MixedProtocols, ...] = ("refuse", "allow")
#: The key that ranks every run together, as it is written on the command line.
MIXED_KEY = "compare.mixed_protocols"
NO_RECORD = "no protocol record"

#: Protocol fields that split groups, as dotted paths into `metrics.json`'s `protocol`.
SPLITTING_FIELDS = ("data.fingerprint", "perturbation", "preprocessing")
#: Protocol fields listed when they differ, without splitting groups (a path covers its
#: sub-fields: `versions` is every `versions.*`). Per-run outcomes such as the chosen epoch,
#: threshold value or temperature are left out: they differ between any two runs. A split's
#: name is shown with its fingerprint, where it matters.
NOTE_FIELDS = (
    "validation.fingerprint",
    "data.root",
    "validation.root",
    "checkpoint.rule",
    "threshold.rule",
    "calibration.method",
    "bootstrap",
    "versions",
    "git.commit",
    "git.dirty",
)
#: How much of a fingerprint or commit is shown: enough to tell them apart by eye.
SHORT_HASH = 8
#: Longest value shown in a difference line; longer ones are cut with `…`.
MAX_VALUE_CHARS = 60
#: Runs named in a group's line before the rest are counted instead.
MAX_NAMES = 6


class MixedProtocolsError(UserInputError):
    """`compare.mixed_protocols` has a value other than refuse or allow."""


class _Absent:
    """A field one run recorded and another did not (an older record)."""

    def __repr__(self) -> str:
        return "not recorded"


ABSENT = _Absent()


def check_mixed_protocols(value: str, key: str = MIXED_KEY) -> MixedProtocols:
    """The value if allowed; raises one line naming `key` and its values otherwise, so a
    typo is caught before a sweep starts rather than silently ranking everything."""
    if value not in MIXED_PROTOCOLS:
        allowed = " or ".join(MIXED_PROTOCOLS)
        raise MixedProtocolsError(f"{key}={value}: must be {allowed}")
    return value  # type: ignore[return-value]


def get_path(record: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted `path` of a protocol record, or ABSENT where any level lacks it."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ABSENT
        value = value[part]
    return value


def canonical(value: Any) -> str:
    """One string per value, so that equal settings compare equal whatever their key order."""
    if value is ABSENT:
        return "<absent>"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def splitting_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields that decide whether two runs are comparable, nested as recorded."""
    subset: dict[str, Any] = {}
    for path in SPLITTING_FIELDS:
        value = get_path(record, path)
        if value is ABSENT:
            continue
        *parents, leaf = path.split(".")
        node = subset
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return subset


@dataclass(frozen=True)
class Group:
    """Finished runs whose test AUROCs measure the same thing; `record` is the first run's
    protocol (None: the runs recorded none, so nothing says they are comparable)."""

    label: str
    runs: tuple[Run, ...]
    record: Mapping[str, Any] | None

    @property
    def recorded(self) -> bool:
        return self.record is not None


@dataclass(frozen=True)
class Ranking:
    """Runs ranked against each other, with one best run: a group, or all groups on request."""

    labels: tuple[str, ...]
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Difference:
    """A protocol field that differs, and how it reads for each group or value."""

    path: str
    values: tuple[str, ...]

    def text(self) -> str:
        return f"{self.path}: {' vs '.join(self.values)}"


@dataclass(frozen=True)
class Grouping:
    """The groups of a comparison, how they are ranked, and what differs between them."""

    groups: tuple[Group, ...]
    mixed: MixedProtocols = "refuse"

    def group_of(self, run: Run) -> Group | None:
        """The group of `run`; None for a run that did not finish."""
        return next((g for g in self.groups if any(member is run for member in g.runs)), None)

    def label(self, run: Run) -> str:
        """The group label of `run`; empty for a run that did not finish."""
        group = self.group_of(run)
        return group.label if group is not None else ""

    @property
    def rankings(self) -> tuple[Ranking, ...]:
        if self.mixed == "allow" and len(self.groups) > 1:
            runs = tuple(run for group in self.groups for run in group.runs)
            return (Ranking(tuple(g.label for g in self.groups), runs),)
        return tuple(Ranking((group.label,), group.runs) for group in self.groups)

    @property
    def splits(self) -> tuple[Difference, ...]:
        """Fields that split the recorded groups, with each group's value."""
        recorded = [group for group in self.groups if group.recorded]
        if len(recorded) < 2:
            return ()
        subsets = [splitting_record(group.record or {}) for group in recorded]
        return tuple(
            Difference(path, tuple(f"{g.label} {_shown(path, v, g.record)}" for g, v in pairs))
            for path, pairs in _differing_paths("", list(zip(recorded, subsets, strict=True)))
        )

    @property
    def notes(self) -> tuple[Difference, ...]:
        """Fields that differ between recorded runs without splitting their groups."""
        recorded = [group for group in self.groups if group.recorded]
        runs = [run for group in recorded for run in group.runs]
        notes = []
        for path in _note_paths(runs):
            values = [get_path(run.protocol, path) for run in runs]
            if len({canonical(value) for value in values}) > 1:
                notes.append(_note(path, recorded))
        return tuple(notes)


def group_runs(runs: Sequence[Run], mixed: str = "refuse") -> Grouping:
    """Group the finished runs by comparable protocol, labelled A, B, ... in order of first
    appearance; runs without a record form a group of their own."""
    by_key: dict[str | None, list[Run]] = {}
    for run in runs:
        if run.status != "ok":
            continue  # no metrics, so no protocol and nothing to rank
        record = run.protocol
        key = canonical(splitting_record(record)) if record is not None else None
        by_key.setdefault(key, []).append(run)
    groups = tuple(
        Group(group_label(i), tuple(members), members[0].protocol)
        for i, members in enumerate(by_key.values())
    )
    return Grouping(groups, check_mixed_protocols(mixed))


def group_label(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: short enough for a table column."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def _differing_paths(
    path: str, pairs: list[tuple[Group, Any]]
) -> list[tuple[str, list[tuple[Group, Any]]]]:
    """Dotted paths whose values differ between groups, down to the deepest differing field:
    `preprocessing.image_size` rather than all of `preprocessing`."""
    values = [value for _, value in pairs]
    if any(isinstance(value, Mapping) for value in values) and all(
        isinstance(value, Mapping) or value is ABSENT for value in values
    ):
        # A block one record lacks reads field by field, as `not recorded` there.
        mappings = [(g, v if isinstance(v, Mapping) else {}) for g, v in pairs]
        keys = list(dict.fromkeys(key for _, value in mappings for key in value))
        found = []
        for key in keys:
            child = [(group, value.get(key, ABSENT)) for group, value in mappings]
            found += _differing_paths(f"{path}.{key}" if path else str(key), child)
        return found
    if len({canonical(value) for value in values}) > 1:
        return [(path, pairs)]
    return []


def _note_paths(runs: Sequence[Run]) -> list[str]:
    """Every recorded leaf under NOTE_FIELDS, in the order the note fields are listed; a run
    that lacks one reads as `not recorded` there."""
    paths: list[str] = []
    for field in NOTE_FIELDS:
        for run in runs:
            value = get_path(run.protocol, field)
            if value is not ABSENT:
                paths += [path for path in _leaves(field, value) if path not in paths]
    # `versions: null` in one record and `versions.torch` in another: the fields say it all.
    return [path for path in paths if not any(p.startswith(f"{path}.") for p in paths)]


def _leaves(path: str, value: Any) -> list[str]:
    if isinstance(value, Mapping) and value:
        return [leaf for key, child in value.items() for leaf in _leaves(f"{path}.{key}", child)]
    return [path]


def _note(path: str, groups: Sequence[Group]) -> Difference:
    """Per group when each group has one value (`A 2.5 vs B 2.6`), else per value with the
    runs that have it, since the difference is then inside a group."""
    per_group = []
    for group in groups:
        values = {canonical(get_path(run.protocol, path)) for run in group.runs}
        per_group.append(len(values) == 1)
    if all(per_group) and len(groups) > 1:
        shown = (
            f"{g.label} {_shown(path, get_path(g.runs[0].protocol, path), g.runs[0].protocol)}"
            for g in groups
        )
        return Difference(path, tuple(shown))
    holders: dict[str, tuple[Any, Mapping[str, Any] | None, list[str]]] = {}
    for group in groups:
        for run in group.runs:
            value = get_path(run.protocol, path)
            entry = holders.setdefault(canonical(value), (value, run.protocol, []))
            entry[2].append(run.name)
    shown = (f"{_shown(path, v, rec)} ({names_text(names)})" for v, rec, names in holders.values())
    return Difference(path, tuple(shown))


def names_text(names: Sequence[str], limit: int = MAX_NAMES) -> str:
    """`0, 1, 2` or `0, 1, 2, … (+7 more)`: a large sweep's group stays on one line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … (+{len(names) - limit} more)"


def _shown(path: str, value: Any, record: Mapping[str, Any] | None) -> str:
    """How a protocol value reads in a line of text; fingerprints say what data they are."""
    if path in ("data.fingerprint", "validation.fingerprint"):
        return data_text(get_path(record, path.split(".")[0]))
    if path == "git.commit" and isinstance(value, str):
        return value[:SHORT_HASH]
    return value_text(value)


def value_text(value: Any) -> str:
    if value is ABSENT:
        return "not recorded"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = f"{value:g}" if isinstance(value, float) else str(value)
    else:
        text = json.dumps(value, separators=(", ", ": "), default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def data_text(block: Any) -> str:
    """E.g. `9f2c01ab… (test, 150 fake/150 real)`: which images, in a few characters."""
    if not isinstance(block, Mapping):
        return "not recorded"
    fingerprint = block.get("fingerprint")
    short = (
        f"{fingerprint[:SHORT_HASH]}…"
        if isinstance(fingerprint, str) and len(fingerprint) > SHORT_HASH
        else value_text(fingerprint if fingerprint is not None else ABSENT)
    )
    details = [str(block["split"])] if block.get("split") is not None else []
    files = block.get("files")
    if isinstance(files, Mapping) and files:
        details.append("/".join(f"{count} {name}" for name, count in files.items()))
    return f"{short} ({', '.join(details)})" if details else short


def group_summary(group: Group) -> str:
    """One line: the group's runs and what they were tested on."""
    count = f"{len(group.runs)} run{'' if len(group.runs) == 1 else 's'}"
    head = f"{group.label} ({count}: {names_text([run.name for run in group.runs])})"
    if group.record is None:
        return f"{head}: {NO_RECORD} (metrics.json from before runs recorded data and settings)"
    record = group.record
    parts = (
        ("test data", data_text(get_path(record, "data"))),
        ("perturbation", value_text(get_path(record, "perturbation"))),
        ("image size", value_text(get_path(record, "preprocessing.image_size"))),
    )
    return f"{head}: " + "; ".join(f"{name} {text}" for name, text in parts)
