"""The `RunContext` a command hands down to the runs it creates: their parent, the run told of
them, their experiment, extra tags, metric hooks and the processes that train them; and the
launcher run `mlflow run` made for this process, whose context that is."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import mlflow
from mlflow.entities import RunTag

from kdtrack.contract import NOTE, RESULT, ROLE
from kdtrack.tracking import ui
from kdtrack.tracking.store import client, get_run
from kdtrack.tracking.tags import tag_and_link, where
from kdtrack.training.distributed import ONE_PROCESS, World

# Called with (role, metrics, step) whenever a run logs metrics: how an Optuna trial sees
# intermediate values (kdtrack.ablate) without the training loop knowing about Optuna.
MetricHook = Callable[[str, dict[str, float], int], None]


@dataclass(frozen=True)
class RunContext:
    """What the runs a command creates inherit, handed down from the command to the job."""

    parent: str = ""  # the run new runs nest under (mlflow.parentRunId)
    report_to: str = ""  # a run told the id of each run that did its work (kdtrack.result_run_id)
    experiment_id: str = ""  # where runs go when no experiment is named (the launcher's)
    tags: Mapping[str, str] = field(default_factory=dict)  # every new run's (a suite's kdtrack.suite)
    hooks: tuple[MetricHook, ...] = ()
    world: World = ONE_PROCESS  # the processes that train each run together (rank 0 alone runs this code)

    def within(self, run_id: str) -> "RunContext":
        """Runs nested under `run_id`, which learns their ids (a study's trial)."""
        return replace(self, parent=run_id, report_to=run_id)

    def tagged(self, tags: Mapping[str, str]) -> "RunContext":
        return replace(self, tags={**self.tags, **tags})

    def hooked(self, hook: MetricHook) -> "RunContext":
        return replace(self, hooks=(*self.hooks, hook))

    def report(self, run_id: str) -> None:
        if self.report_to:
            tag_and_link(self.report_to, {RESULT: run_id})


def claim_launcher(world: World = ONE_PROCESS) -> RunContext:
    """The context of the run `mlflow run` created for this process, if any.

    `mlflow run` logs every -P value, defaults included, as params of that run before the entry
    point starts, and MLflow refuses to change a param once logged. kdtrack logs the *resolved*
    config (preset applied), so the `mlflow run` run becomes a launcher that records what was
    asked, and the runs that did the work are nested under it with what ran.
    """
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)  # else MLflow's fluent API would resume it
    if not run_id:
        return RunContext(world=world)
    client().log_batch(run_id, tags=[RunTag(ROLE, "launcher"), RunTag(NOTE, ui.describe("launcher", "", {}, where))])
    return RunContext(run_id, run_id, get_run(run_id).info.experiment_id, world=world)


def active_context() -> RunContext:
    """The context of MLflow's active run in this process, if any (one a user's script or a
    Trainer's MLflowCallback opened): runs kdtrack records nest under it, in its experiment."""
    active = mlflow.active_run()
    if active is None:
        return RunContext()
    return RunContext(active.info.run_id, experiment_id=active.info.experiment_id)
