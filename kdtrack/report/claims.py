"""The paper's claims as declared checks: a statistic per seed, a 95% interval over seeds, a verdict.

A claim (a dashboard's `claims:` list) selects runs, names a metric (or the paired difference of
a metric between two selections), and a test against a threshold. `evaluate` is a pure function
of the runs table (one row per run: the report's `collect.runs_table` with a `setting` column,
metrics as `m:<name>` columns), so it is tested on hand-built tables without MLflow.

The interval is Student's t over the per-seed values: mean +- t_{0.975, n-1} * sd / sqrt(n). It
assumes roughly normal per-seed values; with the 3-10 seeds a study has, a bootstrap's percentile
interval is too narrow (it cannot be wider than the values themselves), t is honest about n.
"""
from __future__ import annotations

import math
import operator
import re
from typing import Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import stats

from kdtrack.contract import known_metric
from kdtrack.errors import UserError

TESTS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
VERDICTS = ("holds", "fails", "inconclusive", "no runs")
Selection = dict[str, Union[str, int, float, None, list[Union[str, int, float, None]]]]


def comparison(text: str) -> tuple[str, float]:
    """'> 1' -> ('>', 1.0); anything else is a ValueError saying what is allowed."""
    match = re.fullmatch(r"\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*", text)
    try:
        return match.group(1), float(match.group(2))
    except (AttributeError, ValueError):
        raise ValueError(f"{text!r} must be a comparison (>, <, >=, <=) and a number, e.g. '> 1', '< 0'") from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Baseline(Strict):
    """What a paired statistic subtracts: `metric` of the runs `select` picks (the same runs when
    omitted), matched to the claim's runs on `pair_by`."""

    metric: str
    select: Selection | None = None
    pair_by: tuple[str, ...] = ("preset", "seed")


class Paired(Strict):
    metric: str
    minus: Baseline


class Claim(Strict):
    id: str
    text: str
    source: str
    select: Selection
    statistic: Union[str, Paired]
    test: str
    expect: Literal["holds", "fails"] | None = None
    min_seeds: int = Field(default=3, ge=1)  # 1: the statistic is exact (Theorem 4.1), its value is its interval

    @field_validator("test")
    @classmethod
    def _comparison(cls, value: str) -> str:
        comparison(value)
        return value

    @field_validator("select")
    @classmethod
    def _metric_conditions(cls, value: Selection) -> Selection:
        for column, wanted in value.items():
            if column.startswith("m:"):
                comparison(str(wanted))
        return value

    @model_validator(mode="after")
    def _known_metrics(self) -> "Claim":
        named = [("statistic", self.metric)]
        if isinstance(self.statistic, Paired):
            named.append(("statistic.minus", self.statistic.minus.metric))
        named += [(f"select.{c}", c.removeprefix("m:")) for c in self.select if c.startswith("m:")]
        for key, metric in named:
            if not known_metric(metric):
                raise ValueError(f"{key}: {metric!r} is not a metric kdtrack logs (the names are kdtrack/contract.py's "
                                 "METRIC_PATTERNS, e.g. test/acc, train/slope_bottom25, eigen/exaggerated_pair_frac)")
        return self

    @property
    def comparison(self) -> tuple[str, float]:
        return comparison(self.test)

    @property
    def metric(self) -> str:
        return self.statistic if isinstance(self.statistic, str) else self.statistic.metric


def parse(claims: object, source: str) -> tuple[Claim, ...]:
    """A dashboard's `claims:` list; an error is one line naming the claim, the key and the problem."""
    if not isinstance(claims, list):
        raise UserError(f"{source}: 'claims' must be a list of claims (id, text, source, select, statistic, test)")
    out = []
    for index, spec in enumerate(claims):
        try:
            out.append(Claim.model_validate(spec))
        except ValidationError as error:
            problem = error.errors()[0]
            where = "".join(f"{part}: " for part in problem["loc"])
            name = spec.get("id", index) if isinstance(spec, dict) else index
            message = problem["msg"].removeprefix("Value error, ")
            raise UserError(f"{source}: claim {name!r}: {where}{message}") from None
    ids = [claim.id for claim in out]
    if len(set(ids)) != len(ids):
        raise UserError(f"{source}: claim id {next(i for i in ids if ids.count(i) > 1)!r} is declared twice")
    return tuple(out)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean; NaN bounds with fewer than 2 values."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(low: float, high: float, comparison: tuple[str, float], n: int, min_seeds: int) -> str:
    """holds: the whole interval on the claimed side; fails: wholly on the other; else inconclusive."""
    if n == 0:
        return "no runs"
    if n < min_seeds or math.isnan(low):
        return "inconclusive"
    claimed = TESTS[comparison[0]]
    if claimed(low, comparison[1]) and claimed(high, comparison[1]):
        return "holds"
    if not claimed(low, comparison[1]) and not claimed(high, comparison[1]):
        return "fails"
    return "inconclusive"


def select(table: pl.DataFrame, selection: Selection) -> pl.DataFrame:
    """Rows whose columns equal the selection's values, compared as the strings MLflow stores
    (a list: any of them; null: the column is empty). A metric column (`m:<name>`) takes a
    comparison instead, e.g. `m:teacher/train_acc: ">= 0.999"` (an interpolating teacher). A
    column the table lacks matches nothing."""
    condition = pl.lit(True)
    for column, wanted in selection.items():
        if column not in table.columns:
            return table.clear()
        if column.startswith("m:"):
            operation, threshold = comparison(str(wanted))
            condition = condition & TESTS[operation](pl.col(column), threshold).fill_null(False)
            continue
        options = wanted if isinstance(wanted, list) else [wanted]
        as_text = pl.col(column).cast(pl.String)
        strings = [_stored(v) for v in options if v is not None]
        matches = as_text.is_in(strings) if strings else pl.lit(False)
        if None in options:
            matches = matches | pl.col(column).is_null() | (as_text == "")
        condition = condition & matches
    return table.filter(condition)


def _stored(value) -> str:
    """A YAML value as MLflow stores the param (`1.0` stays "1.0", `1` stays "1")."""
    return "true" if value is True else "false" if value is False else str(value)


NO_VALUES = pl.DataFrame(schema={"setting": pl.String, "seed": pl.String, "value": pl.Float64})


def per_seed(table: pl.DataFrame, claim: Claim) -> pl.DataFrame:
    """setting, seed, value: the claim's statistic for each seed of each setting (runs of one seed
    are averaged, which only matters where a filter let duplicates through)."""
    rows = select(table, claim.select)
    column = f"m:{claim.metric}"
    if column not in rows.columns:
        return NO_VALUES
    rows = rows.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())
    value = pl.col(column)
    if isinstance(claim.statistic, Paired):
        minus = claim.statistic.minus
        other = f"m:{minus.metric}"
        if minus.select is None:
            if other not in rows.columns:
                return NO_VALUES
            rows = rows.filter(pl.col(other).is_not_null())
            value = pl.col(column) - pl.col(other)
        else:
            base = select(table, minus.select)
            if other not in base.columns or any(k not in rows.columns for k in minus.pair_by):
                return NO_VALUES
            base = (base.filter(pl.col(other).is_not_null()).group_by(list(minus.pair_by))
                    .agg(pl.col(other).mean().alias("__baseline")))
            rows = rows.join(base, on=list(minus.pair_by), how="inner")
            value = pl.col(column) - pl.col("__baseline")
    return (rows.select(pl.col("setting").cast(pl.String), pl.col("seed").cast(pl.String), value.alias("value"))
            .group_by("setting", "seed").agg(pl.col("value").mean()).sort("setting", "seed"))


def evaluate(table: pl.DataFrame, claims: tuple[Claim, ...]) -> pl.DataFrame:
    """One row per claim and setting: n (seeds), estimate, ci_low, ci_high, verdict, expect."""
    out = []
    for claim in claims:
        values = per_seed(table, claim)
        settings = values["setting"].unique(maintain_order=True).to_list() or [_nothing(table, claim)]
        for setting in settings:
            seeds = values.filter(pl.col("setting") == setting)["value"].to_list()
            mean, low, high = t_interval(seeds)
            if claim.min_seeds == 1 and len(seeds) == 1:
                low = high = mean
            out.append({"id": claim.id, "setting": setting, "n": len(seeds), "estimate": mean, "ci_low": low,
                        "ci_high": high, "verdict": verdict(low, high, claim.comparison, len(seeds), claim.min_seeds),
                        "expect": claim.expect or "", "test": f"{claim.metric} {claim.test.strip()}",
                        "text": claim.text, "source": claim.source})
    schema = {"id": pl.String, "setting": pl.String, "n": pl.Int64, "estimate": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "verdict": pl.String, "expect": pl.String, "test": pl.String,
              "text": pl.String, "source": pl.String}
    return pl.DataFrame(out, schema=schema)


def _nothing(table: pl.DataFrame, claim: Claim) -> str:
    """What the setting column says when a claim has no values: why."""
    matched = select(table, claim.select).height
    return f"({matched} selected runs lack {claim.metric!r} or a pair)" if matched else "(no run matches)"


def contradictions(results: pl.DataFrame) -> pl.DataFrame:
    """Rows whose verdict is the opposite of what the paper reports (`claims --strict` fails on them)."""
    return results.filter((pl.col("expect") != "") & pl.col("verdict").is_in(["holds", "fails"])
                          & (pl.col("verdict") != pl.col("expect")))
