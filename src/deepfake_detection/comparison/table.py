"""The comparison table (Markdown and CSV) and the choice of the best run.

Every number in the table is read from that run's `metrics.json`; nothing is recomputed, so
the table can always be checked against the run folders. The best run is chosen on
validation AUROC only: picking it on a test metric would make the reported test scores an
optimistic, selected-on-test estimate.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepfake_detection.comparison.runs import STATUSES, Run
from deepfake_detection.files import atomic_write_bytes

SELECTION_METRIC = "val/auroc_best"
BEST_MARKER = "★"
MISSING = "—"
MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
#: Longest error message shown in the Markdown table; the CSV keeps the whole line.
MAX_ERROR_CHARS = 80

Kind = Literal["text", "metric", "int", "seconds", "lr"]


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Run], Any]
    kind: Kind = "metric"


def _from_metrics(key: str) -> Callable[[Run], Any]:
    return lambda run: run.metric(key)


def _other_roots(key: str) -> Callable[[Run], Any]:
    """A metric averaged over the run's `data.test_roots` (other sources), when it had any."""
    return lambda run: (run.metric("test_roots/mean") or {}).get(key)


COLUMNS: tuple[Column, ...] = (
    Column("run", lambda run: run.name, "text"),
    Column("status", lambda run: run.status, "text"),
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
    Column("test acc", _from_metrics("test/acc")),
    Column("test acc@val", _from_metrics("test/acc@val")),
    Column("test precision", _from_metrics("test/precision")),
    Column("test recall", _from_metrics("test/recall")),
    Column("test F1", _from_metrics("test/f1")),
    Column("test F1@val", _from_metrics("test/f1@val")),
    Column("test AUROC", _from_metrics("test/auroc")),
    # Beside the in-source score, always: the mean over the other datasets it was tested on.
    Column("other roots AUROC", _other_roots("auroc")),
    Column("other roots real acc@val", _other_roots("real_acc@val")),
)
HEADERS: tuple[str, ...] = (*(c.header for c in COLUMNS), "best", "error")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def best_run(runs: Sequence[Run]) -> Run | None:
    """The finished run with the highest validation AUROC (the first one on a tie)."""
    candidates = [
        run
        for run in runs
        if run.status == "ok"
        and _is_number(run.metric(SELECTION_METRIC))
        and math.isfinite(run.metric(SELECTION_METRIC))
    ]
    return max(candidates, key=lambda run: run.metric(SELECTION_METRIC), default=None)


def format_value(value: Any, kind: Kind) -> str:
    """How a value reads in Markdown: 4 decimals for metrics, `1e-04` for learning rates."""
    if value is None:
        return ""
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


def _markdown_cells(run: Run, best: Run | None, with_error: bool) -> list[str]:
    missing = MISSING if run.status == "ok" else ""  # failed runs have no numbers at all
    cells = [format_value(c.value(run), c.kind) or missing for c in COLUMNS]
    cells.append(BEST_MARKER if run is best else "")
    if with_error:
        error = run.error or ""
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        cells.append(error)
    return [cell.replace("|", r"\|") for cell in cells]


def markdown_table(runs: Sequence[Run], best: Run | None) -> str:
    """A Markdown table padded to line up in a terminal too; numbers right-aligned.

    The error column is there only when some run has an error to show.
    """
    with_error = any(run.error for run in runs)
    headers = HEADERS if with_error else HEADERS[:-1]
    rows = [_markdown_cells(run, best, with_error) for run in runs]
    right = [c.kind != "text" for c in COLUMNS] + [False] * (len(headers) - len(COLUMNS))
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


def csv_text(runs: Sequence[Run], best: Run | None) -> str:
    """The Markdown table's columns at full precision, and always the error column, so that
    the file has the same columns whatever happened to the runs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADERS)
    for run in runs:
        values = [c.value(run) for c in COLUMNS]
        values += [BEST_MARKER if run is best else "", run.error or ""]
        writer.writerow("" if value is None else value for value in values)
    return buffer.getvalue()


def count_line(runs: Sequence[Run]) -> str:
    """E.g. `6 runs: 5 ok, 1 failed, 0 unfinished`."""
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in STATUSES)
    return f"{len(runs)} run{'' if len(runs) == 1 else 's'}: {counts}"


def setup_label(run: Run) -> str:
    """E.g. `mobilenet_v2, last_n(3)`: what tells runs of a model/freeze sweep apart."""
    return ", ".join(str(v) for v in (run.model, run.freeze) if v is not None)


def best_line(best: Run | None) -> str:
    if best is None:
        return f"No best model: no finished run has {SELECTION_METRIC}."

    def metric(key: str) -> str:
        return format_value(best.metric(key), "metric") or MISSING

    setup = setup_label(best)
    return (
        f"Best performing model (chosen on {SELECTION_METRIC}): "
        f"{best.name}{f' — {setup}' if setup else ''}: "
        f"val AUROC {metric(SELECTION_METRIC)}; test acc {metric('test/acc')}, "
        f"precision {metric('test/precision')}, recall {metric('test/recall')}, "
        f"F1 {metric('test/f1')} at 0.5 (acc {metric('test/acc@val')}, "
        f"F1 {metric('test/f1@val')} at the validation threshold), AUROC {metric('test/auroc')}"
    )


def report_text(runs: Sequence[Run], best: Run | None) -> str:
    """The table, then the run counts and the best run: what is printed and saved as .md."""
    return f"{markdown_table(runs, best)}\n\n{count_line(runs)}\n\n{best_line(best)}\n"


def write_tables(output_dir: Path, runs: Sequence[Run], best: Run | None) -> list[Path]:
    return [
        atomic_write_bytes(output_dir / MARKDOWN_FILE, report_text(runs, best).encode("utf-8")),
        atomic_write_bytes(output_dir / CSV_FILE, csv_text(runs, best).encode("utf-8")),
    ]
