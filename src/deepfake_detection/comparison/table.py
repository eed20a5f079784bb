"""The comparison table (Markdown and CSV) and the choice of the best run.

Every number in the table is read from that run's `metrics.json`; nothing is recomputed, so
the table can always be checked against the run folders. The best run is chosen on
validation AUROC only: picking it on a test metric would make the reported test scores an
optimistic, selected-on-test estimate. And it is chosen within a protocol group only
(`protocols.py`): runs tested on other data or with other settings are not ranked against
each other unless asked, and every group's differences are listed under the table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepfake_detection.comparison.paired import PairedDelta
from deepfake_detection.comparison.protocols import (
    MIXED_KEY,
    Grouping,
    Ranking,
    get_path,
    group_summary,
)
from deepfake_detection.comparison.runs import STATUSES, Run
from deepfake_detection.files import atomic_write_bytes

SELECTION_METRIC = "val/auroc_best"
BEST_MARKER = "★"
MISSING = "—"
MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
#: Longest error message shown in the Markdown table; the CSV keeps the whole line.
MAX_ERROR_CHARS = 80

Kind = Literal["text", "metric", "int", "seconds", "lr", "interval", "delta"]
Where = Literal["both", "markdown", "csv"]


@dataclass(frozen=True)
class Outcome:
    """What a row shows beside the run's own numbers: its protocol group, whether it is a
    best run (★), and its paired test AUROC difference to its group's best."""

    grouping: Grouping
    bests: tuple[Run, ...] = ()
    deltas: Mapping[str, PairedDelta] = field(default_factory=dict)

    def is_best(self, run: Run) -> bool:
        return any(run is best for best in self.bests)


@dataclass(frozen=True)
class Column:
    """A table column; `where` puts it in one table only (an interval is one Markdown cell
    but two CSV numbers), and an `optional` one is left out of the Markdown table when no
    run has a value for it (older runs), while the CSV keeps a fixed set of columns.
    `in_context` reads what the run alone does not say (its group, its paired difference)."""

    header: str
    value: Callable[[Run], Any]
    kind: Kind = "metric"
    where: Where = "both"
    optional: bool = False
    in_context: Callable[[Run, Outcome], Any] | None = None


def _from_metrics(key: str) -> Callable[[Run], Any]:
    return lambda run: run.metric(key)


def _other_roots(key: str) -> Callable[[Run], Any]:
    """A metric averaged over the run's `data.test_roots` (other sources), when it had any."""
    return lambda run: (run.metric("test_roots/mean") or {}).get(key)


def _interval_bound(key: str, bound: int) -> Callable[[Run], Any]:
    return lambda run: (run.interval(key) or (None, None))[bound]


def _interval_columns(name: str, key: str) -> tuple[Column, ...]:
    """`<name> 95% CI` (`0.9810–0.9920`) in Markdown; `<name> CI low`/`high` in the CSV."""
    return (
        Column(f"{name} {{level}}CI", lambda run: run.interval(key), "interval", "markdown", True),
        Column(f"{name} CI low", _interval_bound(key, 0), where="csv"),
        Column(f"{name} CI high", _interval_bound(key, 1), where="csv"),
    )


def _nothing(run: Run) -> None:
    return None


def _delta_cell(run: Run, outcome: Outcome) -> PairedDelta | str | None:
    """The paired difference; `reference` on a best run that others were paired with."""
    if run.name in outcome.deltas:
        return outcome.deltas[run.name]
    group = outcome.grouping.group_of(run)
    if (
        outcome.is_best(run)
        and group is not None
        and any(member.name in outcome.deltas for member in group.runs)
    ):
        return "reference"
    return None


def _delta_bound(attribute: str) -> Callable[[Run, Outcome], Any]:
    def bound(run: Run, outcome: Outcome) -> Any:
        delta = outcome.deltas.get(run.name)
        return getattr(delta, attribute) if delta is not None else None

    return bound


def _delta_columns() -> tuple[Column, ...]:
    """`ΔAUROC vs best (95% CI)` in Markdown (`-0.0030 [-0.0110, 0.0050]`); the difference
    and its bounds as three CSV columns."""
    name = "ΔAUROC vs best"
    return (
        Column(f"{name} (95% CI)", _nothing, "delta", "markdown", True, _delta_cell),
        Column(name, _nothing, where="csv", in_context=_delta_bound("delta")),
        Column(f"{name} CI low", _nothing, where="csv", in_context=_delta_bound("low")),
        Column(f"{name} CI high", _nothing, where="csv", in_context=_delta_bound("high")),
    )


def _protocol_label(run: Run, outcome: Outcome) -> str | None:
    return outcome.grouping.label(run) or None


PROTOCOL_COLUMN = Column("protocol", _nothing, "text", in_context=_protocol_label)

COLUMNS: tuple[Column, ...] = (
    Column("run", lambda run: run.name, "text"),
    Column("status", lambda run: run.status, "text"),
    PROTOCOL_COLUMN,
    Column("model", lambda run: run.model, "text"),
    Column("freeze", lambda run: run.freeze, "text"),
    Column("augment", lambda run: run.augment, "text"),
    Column("optimizer", lambda run: run.optimizer, "text"),
    Column("lr", lambda run: run.lr, "lr"),
    Column("epochs", _from_metrics("epochs"), "int"),
    Column("train time (s)", _from_metrics("train_seconds"), "seconds"),
    Column("params total", _from_metrics("params/total"), "int"),
    Column("params trainable", _from_metrics("params/trainable"), "int"),
    Column("best val AUROC", _from_metrics(SELECTION_METRIC)),
    *_interval_columns("val AUROC", "val/auroc"),
    Column("test acc", _from_metrics("test/acc")),
    Column("test acc@val", _from_metrics("test/acc@val")),
    Column("test precision", _from_metrics("test/precision")),
    Column("test recall", _from_metrics("test/recall")),
    Column("test F1", _from_metrics("test/f1")),
    Column("test F1@val", _from_metrics("test/f1@val")),
    Column("test AUROC", _from_metrics("test/auroc")),
    *_interval_columns("test AUROC", "test/auroc"),
    *_delta_columns(),
    Column("test TPR@1%FPR", _from_metrics("test/tpr@fpr0.01"), optional=True),
    Column("test TPR@0.1%FPR", _from_metrics("test/tpr@fpr0.001"), where="csv"),
    # Beside the in-source score, always: the mean over the other datasets it was tested on.
    Column("other roots AUROC", _other_roots("auroc")),
    Column("other roots real acc@val", _other_roots("real_acc@val")),
)
CSV_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.where != "markdown")
#: The CSV's columns, always all of them.
HEADERS: tuple[str, ...] = (*(c.header for c in CSV_COLUMNS), "best", "error")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _val_auroc(run: Run) -> float | None:
    value = run.metric(SELECTION_METRIC)
    ok = run.status == "ok" and _is_number(value) and math.isfinite(value)
    return float(value) if ok else None


def ranked(runs: Sequence[Run]) -> list[Run]:
    """Finished runs with a validation AUROC, highest first (the first one first on a tie)."""
    candidates = [run for run in runs if _val_auroc(run) is not None]
    return sorted(candidates, key=lambda run: -(_val_auroc(run) or 0.0))


def best_run(runs: Sequence[Run]) -> Run | None:
    """The finished run with the highest validation AUROC (the first one on a tie)."""
    order = ranked(runs)
    return order[0] if order else None


def best_runs(grouping: Grouping) -> tuple[Run, ...]:
    """One best run per ranking: per protocol group, or one overall when asked to mix."""
    bests = (best_run(ranking.runs) for ranking in grouping.rankings)
    return tuple(best for best in bests if best is not None)


def overlapping(best: Run, runs: Sequence[Run]) -> list[Run]:
    """Runs ranked below `best` whose validation AUROC interval overlaps the best's, closest
    first: the data cannot tell them apart, however the point estimates are ordered."""
    mine = best.interval("val/auroc")
    if mine is None:
        return []
    found = []
    for run in ranked(runs):
        other = run.interval("val/auroc")
        if run is not best and other is not None and other[0] <= mine[1] and mine[0] <= other[1]:
            found.append(run)
    return found


def interval_level(runs: Sequence[Run]) -> str:
    """`95% ` when every run that recorded its bootstrap used that level (95 % when none
    says), else empty: a header must not claim a level some intervals do not have."""
    levels = set()
    for run in runs:
        level = get_path(run.protocol, "bootstrap.level")
        if run.status == "ok" and _is_number(level):
            levels.add(float(level))
    if len(levels) > 1:
        return ""
    level = levels.pop() if levels else 0.95
    return f"{level * 100:g}% "


def format_value(value: Any, kind: Kind) -> str:
    """How a value reads in Markdown: 4 decimals for metrics, `1e-04` for learning rates."""
    if value is None:
        return ""
    if kind == "interval":
        low, high = value
        return f"{low:.4f}–{high:.4f}"
    if kind == "delta" and isinstance(value, PairedDelta):
        return f"{value.delta:+.4f} [{value.low:+.4f}, {value.high:+.4f}]"
    if not _is_number(value) or kind == "text":
        return str(value)
    if kind == "metric":
        return f"{value:.4f}"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "int":
        return str(int(value)) if float(value).is_integer() else str(value)
    mantissa, exponent = f"{value:.3e}".split("e")  # 0.00025 -> 2.5e-04, 0.0001 -> 1e-04
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def _value(column: Column, run: Run, outcome: Outcome) -> Any:
    if column.in_context is not None:
        return column.in_context(run, outcome)
    return column.value(run)


def ordered(runs: Sequence[Run], grouping: Grouping) -> list[Run]:
    """Rows as found, except that several groups are listed group by group (A, then B...),
    unfinished and failed runs last, so each group's ★ sits among the runs it beat."""
    if len(grouping.groups) < 2:
        return list(runs)
    grouped = [run for group in grouping.groups for run in group.runs]
    return grouped + [run for run in runs if not grouping.label(run)]


def _markdown_columns(runs: Sequence[Run], outcome: Outcome) -> list[Column]:
    columns = [c for c in COLUMNS if c.where != "csv"]
    return [
        c
        for c in columns
        if not c.optional or any(_value(c, run, outcome) is not None for run in runs)
    ]


def _markdown_cells(
    run: Run, columns: Sequence[Column], outcome: Outcome, with_error: bool
) -> list[str]:
    missing = MISSING if run.status == "ok" else ""  # failed runs have no numbers at all
    cells = [format_value(_value(c, run, outcome), c.kind) or missing for c in columns]
    cells.append(BEST_MARKER if outcome.is_best(run) else "")
    if with_error:
        error = run.error or ""
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        cells.append(error)
    return [cell.replace("|", r"\|") for cell in cells]


def markdown_table(runs: Sequence[Run], outcome: Outcome) -> str:
    """A Markdown table padded to line up in a terminal too; numbers right-aligned.

    The error column is there only when some run has an error to show, and interval and
    TPR columns only when some run recorded them.
    """
    with_error = any(run.error for run in runs)
    columns = _markdown_columns(runs, outcome)
    level = interval_level(runs)
    headers = [c.header.replace("{level}", level) for c in columns] + ["best"]
    headers += ["error"] if with_error else []
    rows = [_markdown_cells(run, columns, outcome, with_error) for run in runs]
    right = [c.kind != "text" for c in columns] + [False] * (len(headers) - len(columns))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, widths, right, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    dashes = (("-" * (w + 1)) + (":" if r else "-") for w, r in zip(widths, right, strict=True))
    rule = "|" + "|".join(dashes) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def csv_text(runs: Sequence[Run], outcome: Outcome) -> str:
    """The Markdown table's columns at full precision, intervals as low and high columns,
    and always every column, so that the file has the same columns whatever the runs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADERS)
    for run in runs:
        values = [_value(c, run, outcome) for c in CSV_COLUMNS]
        values += [BEST_MARKER if outcome.is_best(run) else "", run.error or ""]
        writer.writerow("" if value is None else value for value in values)
    return buffer.getvalue()


def count_line(runs: Sequence[Run]) -> str:
    """E.g. `6 runs: 5 ok, 1 failed, 0 unfinished`."""
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in STATUSES)
    return f"{len(runs)} run{'' if len(runs) == 1 else 's'}: {counts}"


def setup_label(run: Run) -> str:
    """E.g. `mobilenet_v2, last_n(3)`: what tells runs of a model/freeze sweep apart."""
    return ", ".join(str(v) for v in (run.model, run.freeze) if v is not None)


def protocol_lines(grouping: Grouping) -> list[str]:
    """What each group was tested on, and which protocol fields differ: a reader must see
    that two AUROCs were not measured alike before comparing them."""
    groups = grouping.groups
    if not groups:
        return []
    if len(groups) == 1:
        lines = [f"Protocol {group_summary(groups[0])}."]
        if not groups[0].recorded:
            lines[0] = lines[0][:-1] + ": compared as before, without checking that they share "
            lines[0] += "test data and settings."
    else:
        head = (
            f"Protocols: {len(groups)} groups of comparable runs (same test and validation "
            "data, perturbation and preprocessing). "
        )
        if grouping.mixed == "allow":
            head += (
                f"Ranked together on request ({MIXED_KEY}=allow): one best run (★) across "
                "all groups, although their scores were not measured alike."
            )
        else:
            head += (
                "Each group has its own best run (★); runs of different groups are not ranked "
                f"against each other ({MIXED_KEY}=allow ranks them together)."
            )
        lines = [head, "", *(f"- {group_summary(group)}" for group in groups)]
    if grouping.splits:
        lines += ["", "Differ between groups:", *(f"- {d.text()}" for d in grouping.splits)]
    if grouping.notes:
        lines += ["", "Also differ (without splitting groups):"]
        lines += [f"- {d.text()}" for d in grouping.notes]
    return lines


def _with_interval(run: Run, key: str) -> str:
    """`0.9700 [0.9610–0.9790]`: a point estimate with its interval, when there is one."""
    text = format_value(run.metric(key), "metric") or MISSING
    interval = run.interval(key.removesuffix("_best"))
    return f"{text} [{format_value(interval, 'interval')}]" if interval else text


def best_line(
    best: Run | None, ranking: Ranking | None = None, scope: str = "", how: str = ""
) -> str:
    """The best run of a ranking with its test numbers, and whether it is clearly better."""
    if best is None:
        return f"No best model{scope}: no finished run has {SELECTION_METRIC}."

    def metric(key: str) -> str:
        return format_value(best.metric(key), "metric") or MISSING

    setup = setup_label(best)
    tpr = best.metric("test/tpr@fpr0.01")
    tpr_text = f", TPR {format_value(tpr, 'metric')} at 1% FPR" if _is_number(tpr) else ""
    line = (
        f"Best performing model{scope} (chosen on {SELECTION_METRIC}{how}): "
        f"{best.name}{f' — {setup}' if setup else ''}: "
        f"val AUROC {_with_interval(best, SELECTION_METRIC)}; test acc {metric('test/acc')}, "
        f"precision {metric('test/precision')}, recall {metric('test/recall')}, "
        f"F1 {metric('test/f1')} at 0.5 (acc {metric('test/acc@val')}, "
        f"F1 {metric('test/f1@val')} at the validation threshold), "
        f"AUROC {_with_interval(best, 'test/auroc')}{tpr_text}"
    )
    close = overlapping(best, ranking.runs) if ranking is not None else []
    if close:
        names = ", ".join(run.name for run in close)
        line += f". Not clearly better than {names}: validation AUROC intervals overlap."
    return line


def best_lines(outcome: Outcome) -> list[str]:
    """One line per ranking; named after its protocol group when there are several."""
    rankings = outcome.grouping.rankings
    if not rankings:
        return [best_line(None)]
    lines = []
    for ranking in rankings:
        best = next((run for run in outcome.bests if any(run is r for r in ranking.runs)), None)
        if len(ranking.labels) > 1:
            scope = f" across protocols {', '.join(ranking.labels)}"
            how = ", ranked together on request"
        else:
            scope = f" in protocol {ranking.labels[0]}" if len(rankings) > 1 else ""
            how = ""
        lines.append(best_line(best, ranking, scope, how))
    return lines


def report_text(runs: Sequence[Run], outcome: Outcome) -> str:
    """The table, the run counts, the protocol groups and the best run(s): what is printed
    and saved as .md."""
    rows = ordered(runs, outcome.grouping)
    parts = [markdown_table(rows, outcome), count_line(runs)]
    protocols = protocol_lines(outcome.grouping)
    if protocols:
        parts.append("\n".join(protocols))
    parts += best_lines(outcome)
    return "\n\n".join(parts) + "\n"


def write_tables(output_dir: Path, runs: Sequence[Run], outcome: Outcome) -> list[Path]:
    report = report_text(runs, outcome)
    table = csv_text(ordered(runs, outcome.grouping), outcome)
    return [
        atomic_write_bytes(output_dir / MARKDOWN_FILE, report.encode("utf-8")),
        atomic_write_bytes(output_dir / CSV_FILE, table.encode("utf-8")),
    ]
