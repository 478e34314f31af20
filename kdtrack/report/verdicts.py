"""The claims table, built one way for every caller (`kdtrack claims`, the demo's summary, the
report's first section): runs fetched, those that count kept (`collect.counted`), each
experiment's claims evaluated on them (`claims.evaluate`). How it is shown is the caller's."""
from __future__ import annotations

import polars as pl

from kdtrack.report.claims import Claim, evaluate
from kdtrack.report.collect import counted, runs_table, setting_of, with_analyses


def claim_table(kept: pl.DataFrame, experiments: list[str], claims: tuple[Claim, ...]) -> pl.DataFrame:
    """Each claim's verdict per experiment and setting, from the runs `counted` keeps."""
    students = with_analyses(kept)
    frames = [evaluate(students.filter(pl.col("experiment") == e), claims).insert_column(0, pl.lit(e).alias(
        "experiment")) for e in experiments]
    return pl.concat(frames)


def verdicts(experiments: list[str], claims: tuple[Claim, ...], filter_string: str,
             version: str) -> tuple[pl.DataFrame, list[str]]:
    """`claim_table` of the runs of `experiments` that `filter_string` picks and that count for code
    `version`, and what was left out, one phrase per reason."""
    kept, left_out = counted(setting_of(runs_table(experiments, filter_string)), version)
    return claim_table(kept, experiments, claims), left_out


# What every shown claims table states beneath it (`kdtrack claims` as a table or Markdown, the report).
SIDEDNESS = "verdict: two-sided 95% t interval over seeds clears the threshold; equivalently a one-sided t test at 2.5%"
STRICT = ("--strict reads the Holm verdict where a claim declares a family (each side's p corrected over the family's "
          "rows: one setting of many on the wrong side by chance is no contradiction), the verdict elsewhere; a row "
          "with no expectation (paper '-', kdtrack's extension) never fails it")
SEEDS = "seeds needed: an estimate, for 80% power at the observed sd and distance to the threshold"
LEGEND = (SIDEDNESS, STRICT, SEEDS)


def _significant(column: str) -> pl.Expr:
    """A number at 3 significant figures as text, empty where there is none (NaN, null)."""
    value = pl.col(column)
    return pl.when(value.is_nan() | value.is_null()).then(pl.lit("")).otherwise(
        value.round_sig_figs(3).cast(pl.String))


def shown(results: pl.DataFrame, several_experiments: bool) -> pl.DataFrame:
    """`claim_table` as people read it: the interval as one "[low, high]" cell, the Holm verdict
    only where a family is declared, what the paper expects and reports, and the seeds an
    inconclusive row would need; the p-values and the claim's text stay in the JSON."""
    interval = pl.when(pl.col("ci_low").is_nan()).then(pl.lit("")).otherwise(
        pl.format("[{}, {}]", pl.col("ci_low").round_sig_figs(3), pl.col("ci_high").round_sig_figs(3)))
    holm = [pl.col("verdict_holm").alias("verdict (Holm)")] if results["family"].is_not_null().any() else []
    return results.select(*(["experiment"] if several_experiments else []), "id", "setting", "n",
                          _significant("estimate").alias("estimate"), interval.alias("95% CI"), "test", "verdict",
                          *holm, "expect", "paper",
                          pl.col("seeds_needed").cast(pl.String).fill_null("").alias("seeds needed (est.)"))
