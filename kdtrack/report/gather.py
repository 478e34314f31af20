"""What a report reads from the store, all of it before anything renders: the runs (`fetch`), then
the artifacts of the sections its dashboard chose (`gather`), and nothing for a section it did not
choose. The builders in report.sections draw from the value this returns and read nothing."""
from __future__ import annotations

import click
import polars as pl

from kdtrack import code_version, tracking
from kdtrack.errors import UserError
from kdtrack.report.collect import counted, runs_table, setting_of
from kdtrack.report.sections import SPLITS, Fetched, confidence_runs, trial_runs
from kdtrack.report.switching import curve_runs


def fetch(experiments: list[str], filter_string: str) -> pl.DataFrame:
    """The runs a report covers, one row each, with the size of their artifacts; bad experiment
    names or filters fail here."""
    table = setting_of(runs_table(experiments, filter_string))
    click.echo(f"kdtrack: fetched {table.height} runs of {', '.join(experiments)}", err=True)
    sizes = [tracking.artifact_bytes(uri) for uri in table["artifact_uri"]]
    return table.with_columns(pl.Series("artifact_bytes", sizes, dtype=pl.Int64))


def confidences(runs: pl.DataFrame) -> tuple[dict[str, dict[str, pl.DataFrame]], tuple[str, ...]]:
    """Fig. 5's per-sample tables by student run id and split, and why those not read were not
    (a figure without them, not a failed report)."""
    chosen = confidence_runs(runs)
    loaded, unread = {}, []
    rows = chosen.select("run_id", "artifact_uri").rows()
    with click.progressbar(rows, label="confidence tables", file=click.get_text_stream("stderr")) as runs:
        for run_id, uri in runs:
            try:
                loaded[run_id] = {split: tracking.load_table(run_id, f"confidences/{split}.parquet", uri)
                                  for split in SPLITS}
            except UserError as error:
                unread.append(str(error))
    return loaded, tuple(unread)


def accuracy(runs: pl.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """Fig. 24's test accuracy over steps of each run the switch section draws: the switch runs, the
    other students of their teachers and those students' one-hot baselines (report.switching)."""
    from kdtrack.analysis.evidence import test_accuracy

    return {run_id: test_accuracy(run_id) for run_id in curve_runs(runs)["run_id"].unique(maintain_order=True)}


def trial_params(runs: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Each trial's params, which name its knob (the runs table holds only the PARAMS it knows)."""
    return {run_id: dict(tracking.get_run(run_id).data.params) for run_id in trial_runs(runs)["run_id"]}


def gather(experiments: list[str], filter_string: str, sections: tuple[str, ...], version: str = "") -> Fetched:
    """The runs a report covers (`fetch`), those that `collect.counted` keeps for code `version`
    (default: this code's), and the artifacts that `sections` draw of them."""
    version = version or code_version()
    table = fetch(experiments, filter_string)
    kept, left_out = counted(table, version)
    loaded, unread = confidences(kept) if "confidence_grid" in sections else ({}, ())
    return Fetched(tuple(experiments), filter_string, version, table, kept, tuple(left_out), loaded, unread,
                   accuracy(kept) if "switch" in sections else {},
                   trial_params(kept) if "ablation" in sections else {})
