"""Experiments: found by name, named by id, and the one a command's runs go to
(`resolve_experiment`: the one named, created as a training experiment, else the one `mlflow run`
chose, else the default), and its tags. Both writes tolerate another process that made the same write first."""
from __future__ import annotations

import os
from typing import Mapping

import mlflow

from kdtrack.contract import EXPERIMENT_KIND, TRAINING_KIND
from kdtrack.errors import UserError
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


MAX_NAME = 256  # characters of an experiment name MLflow's stores hold


def resolve_experiment(name: str = "", context: RunContext = RunContext()) -> str:
    """Experiment id: `name` if given, else the one `mlflow run` chose, else the default."""
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME", "")
    if not name:
        return os.environ.get("MLFLOW_EXPERIMENT_ID") or context.experiment_id or "0"
    if len(name) > MAX_NAME:  # MLflow's column: a longer one was a database traceback
        raise UserError(f"experiment name {name[:40]!r}... has {len(name)} characters; allowed: at most {MAX_NAME}")
    found = experiment_id(name)
    if found:
        return found
    try:  # a training experiment from the start: the UI opens it on its runs, even before the first
        return client().create_experiment(name, tags={EXPERIMENT_KIND: TRAINING_KIND})
    except mlflow.exceptions.MlflowException as error:  # created by another worker meanwhile?
        found = experiment_id(name)
        if not found:
            raise UserError(f"experiment {name!r} cannot be created: {str(error).splitlines()[0]}") from None
        return found


def set_experiment_tags(experiment_id: str, tags: Mapping[str, str]) -> None:
    """The experiment's description and preset tags, which runs created at once (an ablation's
    workers) may both find missing: on PostgreSQL the second insert of a key fails ("duplicate key
    ... experiment_tag_pk"), although the first wrote the value this one would have."""
    for key, value in tags.items():
        try:
            client().set_experiment_tag(experiment_id, key, value)
        except mlflow.exceptions.MlflowException as error:
            if key not in client().get_experiment(experiment_id).tags:
                raise error
