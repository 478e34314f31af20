"""`kdtrack runs` output: a table that fits a terminal (short ids, as the MLflow UI shows them),
or CSV and JSON with whole ids for pipes."""
from __future__ import annotations

import json
import math

import polars as pl

SHORT_ID = 8  # the characters of a run id the MLflow UI shows; any unique prefix is accepted as an id
WIDTH = 100
GAP = "  "
METRICS = {"m:train/acc": "train/acc", "m:test/acc": "test/acc", "m:test/slope_bottom25": "test/slope_bottom25"}
HEADINGS = {"run_id": "id", "train/acc": "train acc", "test/acc": "test acc", "test/slope_bottom25": "slope b25"}
FIXED = ("run_id", "status", "seed", *METRICS.values())  # never shortened in the table


def for_pipes(summary: pl.DataFrame) -> pl.DataFrame:
    """`tables.runs_summary` with metric columns named as logged."""
    return summary.rename({k: v for k, v in METRICS.items() if k in summary.columns})


def as_csv(summary: pl.DataFrame) -> str:
    return for_pipes(summary).write_csv()


def as_json(summary: pl.DataFrame) -> str:
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in for_pipes(summary).iter_rows(named=True)]
    return json.dumps(rows, indent=1)


def cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column == "run_id":
        return value[:SHORT_ID]
    if column.endswith("/acc"):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def as_table(summary: pl.DataFrame, width: int = WIDTH) -> str:
    """Aligned columns within `width` characters: the widest text column is shortened (ending in
    "~") until the line fits; ids, statuses, seeds and metrics never are."""
    frame = for_pipes(summary)
    columns = {name: [HEADINGS.get(name, name)] + [cell(name, v) for v in frame[name].to_list()]
               for name in frame.columns}
    widths = {name: max(map(len, texts)) for name, texts in columns.items()}
    shrinkable = [name for name in columns if name not in FIXED]
    while sum(widths.values()) + len(GAP) * (len(widths) - 1) > width and shrinkable:
        widest = max(shrinkable, key=widths.get)
        if widths[widest] <= 4:
            break
        widths[widest] -= 1

    def fit(text: str, size: int) -> str:
        return text if len(text) <= size else text[:size - 1] + "~"

    rows = zip(*[[fit(text, widths[name]).ljust(widths[name]) for text in texts] for name, texts in columns.items()])
    return "\n".join(GAP.join(row).rstrip() for row in rows)
