"""The claims table, built one way for every caller (`kdtrack claims`, the demo's summary, the
report's first section): runs fetched, those that count kept (`collect.counted`), each
experiment's claims evaluated on them (`claims.evaluate`). How it is shown is the caller's."""
from __future__ import annotations

import polars as pl

from kdtrack.report.claims import Claim, evaluate
from kdtrack.report.collect import counted, runs_table, setting_of, with_analyses
from kdtrack.report.settings import legend, short_names


def claim_table(kept: pl.DataFrame, experiments: list[str], claims: tuple[Claim, ...]) -> pl.DataFrame:
    """Each claim's verdict per experiment and setting, from the runs `counted` keeps, with the
    setting's short name (`setting_name`; a row whose setting is no run's, a trend's, keeps it)."""
    students = with_analyses(kept)
    frames = [evaluate(students.filter(pl.col("experiment") == e), claims).insert_column(0, pl.lit(e).alias(
        "experiment")) for e in experiments]
    names = short_names(kept)
    return pl.concat(frames).with_columns(pl.col("setting").replace(names).alias("setting_name"))


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


def _missing(column: str) -> pl.Expr:
    return pl.col(column).is_null() | pl.col(column).is_nan()


def _significant(column: str) -> pl.Expr:
    return pl.col(column).round_sig_figs(3).cast(pl.String)


def estimate_cell() -> pl.Expr:
    """"0.905 [0.886, 0.924]": the estimate at 3 significant figures and its 95% interval; "0.905 [-]"
    where one seed gives no interval, "-" where there is no estimate."""
    interval = pl.when(_missing("ci_low") | _missing("ci_high")).then(pl.lit("[-]")).otherwise(
        pl.format("[{}, {}]", _significant("ci_low"), _significant("ci_high")))
    return pl.when(_missing("estimate")).then(pl.lit("-")).otherwise(pl.format("{} {}", _significant("estimate"),
                                                                              interval))


def shown(results: pl.DataFrame, several_experiments: bool) -> pl.DataFrame:
    """`claim_table` as people read it, in the same columns in HTML, Markdown and the terminal: the
    verdict first (the Holm verdict beside it where a family is declared), the claim's id and text
    (on its first row only: a claim has a row per setting), the setting's short name
    (`settings_legend` gives the whole one), seeds, the estimate and its interval as one cell, the
    test, what the paper expects and reports, and the seeds an inconclusive row would need. The
    p-values stay in the JSON."""
    holm = [pl.col("verdict_holm").alias("verdict (Holm)")] if results["family"].is_not_null().any() else []
    text = pl.when(pl.col("id") == pl.col("id").shift(1)).then(pl.lit("")).otherwise(pl.col("text"))
    return results.select("verdict", *holm, *(["experiment"] if several_experiments else []), "id",
                          text.alias("claim"), pl.col("setting_name").alias("setting"), "n",
                          estimate_cell().alias("estimate [95% CI]"), "test", "expect", "paper",
                          pl.col("seeds_needed").cast(pl.String).fill_null("").alias("seeds needed (est.)"))


def settings_legend(results: pl.DataFrame) -> dict[str, str]:
    """short name -> setting, for the rows of `claim_table` whose setting `shown` abbreviates."""
    return legend(dict(results.select("setting", "setting_name").unique().iter_rows()))


def legend_lines(settings: dict[str, str]) -> list[str]:
    """The settings' legend as lines below a table: "settings:", then "  name: full setting"."""
    return ["settings:", *(f"  {name}: {setting}" for name, setting in settings.items())] if settings else []
