"""Experiments: found by name, named by id, and the one a command's runs go to
(`resolve_experiment`: the one named, else the one `mlflow run` chose, else the default)."""
from __future__ import annotations

import os

import mlflow

from kdtrack.tracking.context import RunContext
from kdtrack.tracking.store import client


def experiment_id(name: str) -> str | None:
    """The id of the experiment called `name`, None where there is none."""
    found = client().get_experiment_by_name(name)
    return found.experiment_id if found else None


def experiment_name(experiment_id: str) -> str:
    return client().get_experiment(experiment_id).name


def experiment_names() -> list[str]:
    return [e.name for e in client().search_experiments()]


def resolve_experiment(name: str = "", context: RunContext = RunContext()) -> str:
    """Experiment id: `name` if given, else the one `mlflow run` chose, else the default."""
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME", "")
    if not name:
        return os.environ.get("MLFLOW_EXPERIMENT_ID") or context.experiment_id or "0"
    found = experiment_id(name)
    if found:
        return found
    try:
        return client().create_experiment(name)
    except mlflow.exceptions.MlflowException:  # created by another worker meanwhile?
        found = experiment_id(name)
        if not found:
            raise
        return found
