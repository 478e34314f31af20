"""tracking.runs_frame reads a database store with SQL and must read what search_runs reads: the
same runs, in the same order, with the same values, for any filter."""
import math

import polars as pl
import pytest
from mlflow.entities import Metric, Param, RunTag

from kdtrack import tracking
from kdtrack.tracking import bulk

PARAMS = ("preset", "lr", "seed")
TAGS = ("kdtrack.role", "kdtrack.student_run_id")


@pytest.fixture(scope="module")
def experiment(store):
    """Four runs by hand: a NaN metric, a metric named like a param, a missing param, a deleted run,
    a run with no metric at all, and one finished and one still running."""
    client = tracking.client()
    experiment = tracking.resolve_experiment("bulk-read")
    runs = [("teacher", {"preset": "mnist_mlp", "lr": "0.001", "seed": "0"}, {"test/acc": 0.5, "lr": 0.001}),
            ("student", {"preset": "mnist_mlp", "lr": "0.01", "seed": "1"}, {"test/acc": float("nan")}),
            ("analysis", {}, {"train/slope_bottom25": 1.25}),
            ("student", {"preset": "noisy_mnist_rf", "seed": "0"}, {})]
    ids = []
    for n, (role, params, metrics) in enumerate(runs):
        run = client.create_run(experiment, start_time=1000 + n, tags={"kdtrack.role": role})
        tags = [RunTag("kdtrack.student_run_id", ids[1])] if role == "analysis" else []
        client.log_batch(run.info.run_id, [Metric(k, v, 0, 0) for k, v in metrics.items()],
                         [Param(k, v) for k, v in params.items()], tags)
        ids.append(run.info.run_id)
    client.set_terminated(ids[0])
    deleted = client.create_run(experiment, tags={"kdtrack.role": "student"}).info.run_id
    client.delete_run(deleted)
    return experiment, ids


@pytest.mark.parametrize("filter_string", ["", "params.preset = 'mnist_mlp'", "tags.`kdtrack.role` = 'student'",
                                           "metrics.`test/acc` > 0.1", "attributes.status = 'FINISHED'"])
def test_the_database_read_equals_mlflows_search(experiment, filter_string):
    experiment_id, _ = experiment
    read = bulk._from_database(experiment_id, filter_string, PARAMS, TAGS)
    searched = bulk._from_search(experiment_id, filter_string, PARAMS, TAGS)
    assert read is not None, "the test store is sqlite: the database path must be taken"
    assert read.columns == searched.columns
    assert read.equals(searched, null_equal=True)  # NaN equals NaN here, as polars compares floats


def test_values_nan_and_names(experiment):
    experiment_id, ids = experiment
    frame = tracking.runs_frame(experiment_id, "", PARAMS, TAGS)
    assert frame["run_id"].to_list() == ids[::-1]  # newest first; the deleted run is not there
    by_id = {row["run_id"]: row for row in frame.iter_rows(named=True)}
    assert by_id[ids[0]]["lr"] == "0.001" and by_id[ids[0]]["m:lr"] == 0.001  # the param, then the metric
    assert math.isnan(by_id[ids[1]]["m:test/acc"])  # logged NaN stays NaN, not null
    assert by_id[ids[3]]["lr"] is None and by_id[ids[3]]["m:test/acc"] is None  # what a run lacks is null
    assert by_id[ids[2]]["kdtrack.student_run_id"] == ids[1] and by_id[ids[0]]["status"] == "FINISHED"
    assert frame.schema["start_time"] == pl.Int64 and frame.schema["seed"] == pl.String


def test_a_filter_without_a_match_gives_an_empty_frame_without_metric_columns(experiment):
    frame = tracking.runs_frame(experiment[0], "params.preset = 'none'", PARAMS, TAGS)
    assert frame.height == 0 and not [c for c in frame.columns if c.startswith("m:")]
