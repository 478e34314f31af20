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

import difflib
import math
import operator
import re
from typing import Annotated, Literal, Union

import polars as pl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import stats

from kdtrack.contract import known_metric
from kdtrack.errors import UserError
from kdtrack.presets import PRESETS, TABLE1
from kdtrack.presets import TEXT as TEXT_PRESETS
from kdtrack.report.collect import DERIVED, TEXT
from kdtrack.report.inference import decided, holm, mean_sd, one_sided, seed_slopes, seeds_needed

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
    pair_by: tuple[str, ...] = Field(("preset", "seed"), min_length=1)  # [] would pair every run with every run


class Paired(Strict):
    metric: str
    minus: Baseline


Expectation = Literal["holds", "fails"]
EXTENSION = "kdtrack's extension"  # the paper column of a claim the paper never made
NOT_REPORTED = "-"  # the paper column of a setting none of a claim's rules covers


def _metric_conditions(selection: Selection) -> Selection:
    """A selection names columns of the runs table (a misspelt one would silently select nothing)
    and takes comparisons for `m:<metric>` ones."""
    known = (*TEXT, *DERIVED)
    for column, wanted in selection.items():
        if column.startswith("m:"):
            comparison(str(wanted))
        elif column not in known:
            near = difflib.get_close_matches(column, known, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ValueError(f"{column!r} is not a column of the runs table; {hint}allowed: a run param or tag "
                             "(preset, arch, seed, role, ...), setting, distillation, or m:<metric>")
    return selection


Selecting = Annotated[Selection, AfterValidator(_metric_conditions)]  # `m:<metric>` values are comparisons


class Rule(Strict):
    """One entry of a per-setting `expect` list: the settings `select` matches (any of a setting's
    runs that the claim selects matches it), what the paper expects there (null: it reports the
    setting but claims no direction), and what it reports for them."""

    select: Selecting
    expect: Expectation | None = None
    paper: str
    # The paper states it of any setting (§5.2's hypothesis), not of its own runs alone: the rule
    # then matches a preset with overrides too (as_the_paper_states).
    general: bool = False


class Claim(Strict):
    id: str
    text: str
    source: str
    select: Selecting
    statistic: Union[str, Paired]
    test: str
    # holds/fails: the same expectation for every setting; a list of rules: per setting, first match wins
    expect: Expectation | tuple[Rule, ...] | None = None
    paper: str | None = None  # what the paper reports, with a scalar expect (default: source)
    extension: bool = False  # kdtrack's own extrapolation: no expectation anywhere
    family: str | None = None  # Holm-corrected together with the other rows of this family
    trend: str | None = None  # a numeric run param: one row, the per-seed slope of the statistic on it
    min_seeds: int = Field(default=3, ge=1)  # 1: the statistic is exact (Theorem 4.1), its value is its interval

    @field_validator("test")
    @classmethod
    def _comparison(cls, value: str) -> str:
        comparison(value)
        return value

    @model_validator(mode="after")
    def _known_metrics(self) -> "Claim":
        named = [("statistic", self.metric)]
        if isinstance(self.statistic, Paired):
            named.append(("statistic.minus", self.statistic.minus.metric))
        rules = self.expect if isinstance(self.expect, tuple) else ()
        selections = [("select", self.select), *((f"expect.{i}.select", r.select) for i, r in enumerate(rules))]
        for key, selection in selections:
            named += [(f"{key}.{c}", c.removeprefix("m:")) for c in selection if c.startswith("m:")]
        for key, metric in named:
            if not known_metric(metric):
                raise ValueError(f"{key}: {metric!r} is not a metric kdtrack logs (the names are kdtrack/contract.py's "
                                 "METRIC_PATTERNS, e.g. test/acc, train/slope_bottom25, eigen/exaggerated_pair_frac)")
        return self

    @model_validator(mode="after")
    def _one_source_of_paper_text(self) -> "Claim":
        if self.extension and (self.expect is not None or self.paper is not None):
            key = "expect" if self.expect is not None else "paper"
            raise ValueError(f"{key}: an extension claim is kdtrack's own, the paper expects and reports nothing "
                             "for it; drop the key or `extension`")
        if isinstance(self.expect, tuple) and self.paper is not None:
            raise ValueError("paper: with a list of rules, each rule says what the paper reports for its settings")
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
            problem = _most_specific(error.errors())
            where = "".join(f"{part}: " for part in problem["loc"] if "[" not in str(part))
            name = spec.get("id", index) if isinstance(spec, dict) else index
            message = problem["msg"].removeprefix("Value error, ")
            raise UserError(f"{source}: claim {name!r}: {where}{message}") from None
    ids = [claim.id for claim in out]
    if len(set(ids)) != len(ids):
        raise UserError(f"{source}: claim id {next(i for i in ids if ids.count(i) > 1)!r} is declared twice")
    return tuple(out)


def _most_specific(errors: list) -> dict:
    """The error to report: the deepest, so that a bad rule of an `expect` list is named rather than
    the scalar the list is not (pydantic reports both members of the union, tagged `literal[...]`
    and `tuple[...]`, which `parse` leaves out of the key)."""
    return max(errors, key=lambda e: len(e["loc"]) if len(e["loc"]) > 2 else 0)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean; NaN bounds with fewer than 2 values."""
    n = len(values)
    if n < 2:
        return (values[0] if n else math.nan), math.nan, math.nan
    mean, sd = mean_sd(values)
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


def per_seed(table: pl.DataFrame, claim: Claim, by: str = "setting") -> pl.DataFrame:
    """setting, seed, value: the claim's statistic for each seed of each setting (runs of one seed
    are averaged, which only matters where a filter let duplicates through). With `by`, the
    "setting" column holds that column's value instead (a trend's strength, as text)."""
    rows = select(table, claim.select)
    column = f"m:{claim.metric}"
    if column not in rows.columns or by not in rows.columns:
        return NO_VALUES
    rows = rows.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan() & pl.col(by).is_not_null())
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
    return (rows.select(pl.col(by).cast(pl.String).alias("setting"), pl.col("seed").cast(pl.String),
                        value.alias("value"))
            .group_by("setting", "seed").agg(pl.col("value").mean()).sort("setting", "seed"))


RESULT = {"id": pl.String, "family": pl.String, "setting": pl.String, "n": pl.Int64, "estimate": pl.Float64,
          "ci_low": pl.Float64, "ci_high": pl.Float64, "p": pl.Float64, "p_opposite": pl.Float64,
          "verdict": pl.String, "p_holm": pl.Float64, "p_opposite_holm": pl.Float64, "verdict_holm": pl.String,
          "expect": pl.String, "paper": pl.String, "seeds_needed": pl.Int64, "test": pl.String, "text": pl.String,
          "source": pl.String}


def evaluate(table: pl.DataFrame, claims: tuple[Claim, ...]) -> pl.DataFrame:
    """The claims on the runs of one experiment: one row per claim and setting (a trend claim: one
    row), with n (seeds), estimate, ci_low, ci_high, the one-sided p of each side, verdict, the
    Holm-corrected p and verdict over the row's family (`verdict_holm`; outside a family the
    verdict itself), expect and paper (the expectation and what the paper reports for that
    setting), and seeds_needed (an estimate, for inconclusive rows)."""
    rows = []
    table = table.with_columns(as_the_paper_states(table).alias(STATED))
    for claim in claims:
        made = _trend_rows(table, claim) if claim.trend else _setting_rows(table, claim)
        rows += [(row, claim) for row in made]
    return pl.DataFrame(_holm_verdicts(rows), schema=RESULT)


def _setting_rows(table: pl.DataFrame, claim: Claim) -> list[dict]:
    values = per_seed(table, claim)
    chosen = select(table, claim.select)
    if values.is_empty():
        return [_row(claim, _nothing(table, claim), [], expectation(claim, chosen))]
    # One pass over the table per claim, not one filter per setting: at 1,000 settings the
    # filters cost 15 s of a report.
    seeds = {key: part["value"].to_list() for (key,), part in values.partition_by("setting", as_dict=True).items()}
    expected, otherwise = expectations(claim, chosen), expectation(claim, chosen.clear())
    return [_row(claim, setting, seeds[setting], expected.get(setting, otherwise))
            for setting in values["setting"].unique(maintain_order=True).to_list()]


def _trend_rows(table: pl.DataFrame, claim: Claim) -> list[dict]:
    """One row: the t interval over seeds of each seed's least-squares slope of the statistic on
    the `trend` column (inference.seed_slopes says why per seed), tested as the claim's test."""
    column = claim.trend
    whole = expectation(claim, select(table, claim.select))  # a trend row speaks for all its runs
    if column not in table.columns:
        return [_row(claim, f"(trend: the runs have no column {column!r})", [], whole)]
    values = per_seed(table, claim, by=column)
    strengths = {text: _number(text) for text in values["setting"].unique().to_list()}
    odd = sorted(text for text, number in strengths.items() if number is None)
    if odd:
        return [_row(claim, f"(trend over {column}: not numbers: {', '.join(odd)})", [], whole, "inconclusive")]
    levels = len(strengths)
    if levels == 0:
        return [_row(claim, _nothing(table, claim), [], whole)]
    if levels == 1:
        return [_row(claim, f"(trend over {column}: 1 level; a slope needs 2 or more)", [], whole, "inconclusive")]
    points = {}
    for setting, seed, value in values.iter_rows():
        points.setdefault(seed, []).append((strengths[setting], value))
    return [_row(claim, f"trend over {column} ({levels} levels)", seed_slopes(points), whole)]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _row(claim: Claim, setting: str, values: list[float], expected: tuple[str, str], nothing: str = "no runs") -> dict:
    """One result row from the per-seed values of a setting (or seeds' slopes of a trend) and the
    (expect, paper) of the runs they come from."""
    operation, threshold = claim.comparison
    n = len(values)
    mean, low, high = t_interval(values)
    p, p_opposite = one_sided(values, threshold, upward=operation in (">", ">="))
    exact = claim.min_seeds == 1 and n == 1
    if exact:
        low = high = mean
    outcome = verdict(low, high, claim.comparison, n, claim.min_seeds) if n else nothing
    if exact:  # an exact statistic has no sampling error: its side is certain
        p, p_opposite = {"holds": (0.0, 1.0), "fails": (1.0, 0.0)}.get(outcome, (math.nan, math.nan))
    needed = seeds_needed(values, threshold) if outcome == "inconclusive" else None
    expect, paper = expected
    return {"id": claim.id, "family": claim.family, "setting": setting, "n": n, "estimate": mean, "ci_low": low,
            "ci_high": high, "p": p, "p_opposite": p_opposite, "verdict": outcome, "expect": expect, "paper": paper,
            "seeds_needed": None if needed is None else max(needed, claim.min_seeds),
            "test": f"{claim.metric} {claim.test.strip()}", "text": claim.text, "source": claim.source}


def expectation(claim: Claim, runs: pl.DataFrame) -> tuple[str, str]:
    """(expect, paper) for the setting whose runs (those the claim selects) are `runs`: an
    extension's is ("", "kdtrack's extension"); a scalar's the same everywhere, with the claim's
    `paper` text or its source; a list's the first rule that any of the runs match, and ("", "-")
    when none does: the paper reports nothing there."""
    if claim.extension:
        return "", EXTENSION
    if not isinstance(claim.expect, tuple):
        return claim.expect or "", claim.paper or claim.source
    for rule in claim.expect:
        if _attributed(rule, runs).height:
            return rule.expect or "", rule.paper
    return "", NOT_REPORTED


def expectations(claim: Claim, runs: pl.DataFrame) -> dict[str, tuple[str, str]]:
    """`expectation` of each setting of `runs` that an `expect` rule matches, in one pass per rule;
    a setting missing here gets what `expectation` gives no run."""
    if claim.extension or not isinstance(claim.expect, tuple) or "setting" not in runs.columns:
        return {}
    found = {}
    for rule in claim.expect:
        for setting in _attributed(rule, runs)["setting"].cast(pl.String).unique().to_list():
            found.setdefault(setting, (rule.expect or "", rule.paper))
    return found


def _attributed(rule: Rule, runs: pl.DataFrame) -> pl.DataFrame:
    """The runs `rule` speaks for: those it selects, and of a setting the paper states unless the
    rule quotes a statement of any setting (`general`)."""
    return select(runs if rule.general else runs.filter(pl.col(STATED)), rule.select)


# Table 2 lists several architectures under one Table 1 or text setting; Table 7's architecture is
# part of its setting.
ROWS_VARY = {name: ("arch",) for name in (*TABLE1, *TEXT_PRESETS)}
PAPER_METHOD = {"kd_loss": "kd", "kd_target": "standard"}  # Hinton's KD, the one loss the paper studies


STATED = "stated_by_paper"  # evaluate's column: the run is of a setting the paper states


def as_the_paper_states(runs: pl.DataFrame) -> pl.Expr:
    """Whether a run is of a setting the paper states: at its preset's value on every field the
    preset sets and the table holds (but Table 2's architectures), trained with Hinton's KD. A rule
    attributes the paper's result to these alone: a preset with overrides (a sensitivity row, the
    switching study's interpolating teacher) or another KD method is kdtrack's own setting, where
    the paper reports nothing. Computed once per table: per rule and setting it cost minutes over
    30,000 runs."""
    if "preset" not in runs.columns:
        return pl.lit(False)
    stated = pl.lit(False)
    for name, values in PRESETS.items():
        same = [_equals(field, value) for field, value in values.items()
                if field in runs.columns and field not in ROWS_VARY.get(name, ())]
        stated = stated | pl.all_horizontal(pl.col("preset") == name, *same)
    for field, value in PAPER_METHOD.items():
        if field in runs.columns:
            stated = stated & (pl.col(field).is_null() | pl.col(field).is_in(["", value]))
    return stated.fill_null(False)


def _equals(field: str, value) -> pl.Expr:
    """A param column (text, as MLflow stores it) equal to a preset's value: numbers as numbers
    (epochs 20 is stored "20.0"). A run that does not record the field (a run of code before it
    existed) is not said to differ."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (pl.col(field).cast(pl.Float64, strict=False) == float(value)).fill_null(True)
    return (pl.col(field) == _stored(value)).fill_null(True)


def _holm_verdicts(rows: list[tuple[dict, Claim]]) -> list[dict]:
    """The rows, in order, with p_holm, p_opposite_holm and verdict_holm: Holm's correction of each
    side's p over all rows of a family (rows without a p, fewer than 2 seeds, do not count),
    decided at 2.5% a side like the interval. A row outside a family, or with fewer seeds than its
    claim's min_seeds, keeps its verdict."""
    adjusted = {}
    for family in {claim.family for _, claim in rows} - {None}:
        members = [i for i, (_, claim) in enumerate(rows) if claim.family == family]
        sides = [holm([rows[i][0][key] for i in members]) for key in ("p", "p_opposite")]
        adjusted.update(zip(members, zip(*sides)))
    out = []
    for index, (row, claim) in enumerate(rows):
        p, q = adjusted.get(index, (None, None))
        tested = p is not None and not math.isnan(p) and row["n"] >= claim.min_seeds
        holm_verdict = decided(p, q) if tested else row["verdict"]
        out.append({**row, "p_holm": p, "p_opposite_holm": q, "verdict_holm": holm_verdict})
    return out


def _nothing(table: pl.DataFrame, claim: Claim) -> str:
    """What the setting column says when a claim has no values: why."""
    matched = select(table, claim.select).height
    return f"({matched} selected runs lack {claim.metric!r} or a pair)" if matched else "(no run matches)"


def contradictions(results: pl.DataFrame) -> pl.DataFrame:
    """Rows whose verdict contradicts what the paper expects for that setting (`claims --strict`
    fails on them, and only on them). The verdict is `verdict_holm`: within a declared family the
    Holm-corrected one, so that one setting of many falling on the wrong side by chance (at 2.5% a
    side per row, expected somewhere among many rows) is not a contradiction, while the family as a
    whole keeps a 2.5% error rate a side; outside a family it is the verdict. A row without an
    expectation (a setting the paper makes no claim on, an extension) never contradicts."""
    return results.filter((pl.col("expect") != "") & pl.col("verdict_holm").is_in(["holds", "fails"])
                          & (pl.col("verdict_holm") != pl.col("expect")))
