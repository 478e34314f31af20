"""The runs of an experiment as one polars frame, read in bulk: what reports and claims read.

`MlflowClient.search_runs` builds an ORM object for every param, tag and metric of every run, and
kdtrack's runs carry about 60 params each: 30,000 runs took minutes on 2 cores (benchmarks/
report_speed.py). On a database store, this reads the same rows with four column queries (runs,
then the tags, params and latest metrics named) under MLflow's own filter and order clauses, so a
filter means what it means to `search_runs`. Elsewhere (a tracking server, or an MLflow whose
internals moved) it pages through `search_runs`, with the same result.
"""
from __future__ import annotations

import polars as pl

from kdtrack.tracking.store import client, search_all

RUN = ("run_id", "run_name", "status", "start_time", "artifact_uri")  # a frame's first columns, then
# params and tags by their names and every metric as "m:<key>"


def runs_frame(experiment_id: str, filter_string: str, params: tuple[str, ...], tags: tuple[str, ...]) -> pl.DataFrame:
    """One row per active run of the experiment that `filter_string` matches, newest first (MLflow's
    order): its RUN columns, the `params` and `tags` asked for (null where a run lacks one, every
    one a column), and all its metrics, the latest value of each."""
    found = _from_database(experiment_id, filter_string, params, tags)
    return found if found is not None else _from_search(experiment_id, filter_string, params, tags)


def _from_search(experiment_id: str, filter_string: str, params: tuple[str, ...], tags: tuple[str, ...]):
    rows = []
    for run in search_all([experiment_id], filter_string):
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
               "start_time": run.info.start_time, "artifact_uri": run.info.artifact_uri}
        row.update({p: run.data.params.get(p) for p in params})
        row.update({t: run.data.tags.get(t) for t in tags})
        row.update({f"m:{k}": v for k, v in run.data.metrics.items()})
        rows.append(row)
    metrics = sorted({key for row in rows for key in row if key.startswith("m:")})
    schema = {**{c: pl.String for c in (*RUN, *params, *tags)}, "start_time": pl.Int64,
              **{m: pl.Float64 for m in metrics}}
    return pl.DataFrame(rows, schema=schema)


def _from_database(experiment_id: str, filter_string: str, params: tuple[str, ...], tags: tuple[str, ...]):
    """runs_frame read with SQL on a SqlAlchemyStore; None on any other store."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
        from mlflow.store.tracking.sqlalchemy_store import (
            SqlAlchemyStore,
            _get_orderby_clauses,
            _get_sqlalchemy_filter_clauses,
        )
        from mlflow.utils.search_utils import SearchUtils
        from sqlalchemy import case, select  # here: a command that reads no runs does without it
    except ImportError:  # MLflow's internals moved: the public API still works
        return None
    store = client()._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return None
    with store.ManagedSessionMaker() as session:
        parsed = SearchUtils.parse_search_filter(filter_string)
        attributes, joins, datasets = _get_sqlalchemy_filter_clauses(parsed, session, store._get_dialect())
        if datasets:  # dataset filters: leave them to search_runs
            return None
        _, order, _ = _get_orderby_clauses(None, session)
        matching = select(SqlRun.run_uuid, SqlRun.name, SqlRun.status, SqlRun.start_time, SqlRun.artifact_uri)
        for join in joins:
            matching = matching.join(join)
        matching = matching.where(SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active",
                                  *attributes).distinct().order_by(*order)
        connection = session.connection()  # Core rows: no ORM object per value
        runs = pl.DataFrame(connection.execute(matching).all(), schema=dict.fromkeys(RUN, pl.String) | {
            "start_time": pl.Int64}, orient="row")
        ids = select(SqlRun.run_uuid).where(SqlRun.experiment_id == int(experiment_id))
        metrics = _keys(connection, ids, SqlLatestMetric)
        # NaN is stored as is_nan (its value column is not NaN), and MLflow reads it back as NaN
        nan = _keys(connection, ids, SqlLatestMetric, SqlLatestMetric.is_nan)
        columns = [_columns(connection, ids, SqlParam, SqlParam.value, params, pl.String),
                   _columns(connection, ids, SqlTag, SqlTag.value, tags, pl.String),
                   _columns(connection, ids, SqlLatestMetric, SqlLatestMetric.value, metrics, pl.Float64, "m:"),
                   _columns(connection, ids, SqlLatestMetric, case((SqlLatestMetric.is_nan, 1)), nan, pl.Int64,
                            "nan:")]
    for wide in columns:
        runs = runs.join(wide, on="run_id", how="left", maintain_order="left")
    # a metric column only where a run of the filter's has the metric, as in search_runs' result
    present = [f"m:{key}" for key in metrics if runs.height and runs[f"m:{key}"].null_count() < runs.height]
    return runs.with_columns(pl.when(pl.col(f"nan:{key}") == 1).then(float("nan")).otherwise(pl.col(f"m:{key}"))
                             .alias(f"m:{key}") for key in nan).select(*RUN, *params, *tags, *present)


def _keys(connection, ids, model, *where) -> list[str]:
    from sqlalchemy import select

    found = connection.execute(select(model.key).where(model.run_uuid.in_(ids), *where).distinct())
    return sorted(key for (key,) in found)


def _columns(connection, ids, model, value, keys, kind, prefix: str = "") -> pl.DataFrame:
    """run_id and a column per key (named prefix + key): the `value` of model's row with that key
    (params, tags and latest metrics have one row per run and key), one row per run, gathered by
    the database: a row per run crosses into Python, not one per value."""
    from sqlalchemy import case, func, select

    query = select(model.run_uuid, *[func.max(case((model.key == key, value))) for key in keys]).where(
        model.run_uuid.in_(ids), model.key.in_(keys)).group_by(model.run_uuid)
    schema = {"run_id": pl.String} | {f"{prefix}{key}": kind for key in keys}
    return pl.DataFrame(connection.execute(query).all(), schema=schema, orient="row")
