"""Writing onto runs that exist: tags, with the links of a run's description kept current, and the
step-0 metrics a run is given after it ended (a student, its analysis's numbers)."""
from __future__ import annotations

from typing import Mapping

import mlflow
from mlflow.entities import Metric, RunTag

from kdtrack.contract import NOTE
from kdtrack.tracking import ui
from kdtrack.tracking.store import client, now_ms


def where(run_id: str) -> tuple[str, str] | None:
    """The experiment id and name of a run, for a link to it; None if the store has no such run."""
    try:
        found = client().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    return found.info.experiment_id, found.info.run_name


def tag_and_link(run_id: str, tags: Mapping[str, str]) -> None:
    """Set `tags` on a run; those naming a run made after it (its analysis, the run that did a
    launcher's work) become links in its description too."""
    note = client().get_run(run_id).data.tags.get(NOTE, "") if set(tags) & set(ui.LINKS) else ""
    relinked = ui.linked(note, tags, where) if note else ""
    extra = {NOTE: relinked} if relinked != note else {}
    client().log_batch(run_id, tags=[RunTag(k, v) for k, v in {**tags, **extra}.items()])


def annotate(run_id: str, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
    """Add step-0 metrics and tags to a run that has ended (a student, its analysis's numbers)."""
    client().log_batch(run_id, metrics=[Metric(k, float(v), now_ms(), 0) for k, v in metrics.items()])
    tag_and_link(run_id, tags)
