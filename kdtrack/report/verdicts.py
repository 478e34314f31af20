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
