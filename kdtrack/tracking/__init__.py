"""The thin layer that knows MLflow. Nothing else in kdtrack calls MLflow's run APIs: runs are
created, reopened, reused and ended here (`runs`: one lifecycle, a `with` block that owns the run's
status), inherit what a command hands down (`context`), go to an experiment (`experiments`), keep
rotating checkpoints (`checkpoints`) and checksummed artifacts (`artifacts`), are written on
background threads (`uploader`), tagged after the fact (`tags`), held by a lease while a process
works on them (`lease`), and read back through `store`, or many at once as a frame (`bulk`). The
training loop sees only the `RunLog` methods of `TrackedRun`.

Importing it does not import torch: commands that only read the store do without it.

Store: whatever MLFLOW_TRACKING_URI says, else MLflow's own default (sqlite `mlflow.db` and
`./mlruns` in the working directory). Artifacts are always read back through MLflow's APIs.
"""
from kdtrack.tracking.bulk import runs_frame
from kdtrack.tracking.context import RunContext, active_context, claim_launcher
from kdtrack.tracking.experiments import experiment_id, experiment_name, experiment_names, resolve_experiment
from kdtrack.tracking.lease import elect, find_live, find_resumable, holder, reap_experiments, take_over, wait, withdraw
from kdtrack.tracking.models import load_logged_model
from kdtrack.tracking.runs import TrackedRun, reopen, reuse_finished, run, study_run
from kdtrack.tracking.store import (
                                   artifact_bytes,
                                   artifact_paths,
                                   check_store,
                                   client,
                                   delete_artifacts,
                                   download,
                                   find_finished,
                                   follow_launcher,
                                   get_run,
                                   has_artifact,
                                   load_state,
                                   load_table,
                                   metric_history,
                                   now_ms,
                                   quoted,
                                   require_run,
                                   resolve_run_id,
                                   run_address,
                                   run_key,
                                   search_all,
                                   tracking_uri,
                                   use_tracking_uri,
)
from kdtrack.tracking.tags import annotate
from kdtrack.tracking.ui import experiment_link
from kdtrack.tracking.uploader import Uploader

__all__ = [
    "RunContext", "TrackedRun", "Uploader", "active_context", "annotate", "artifact_bytes", "artifact_paths",
    "check_store",
    "claim_launcher", "client", "delete_artifacts", "download", "elect", "experiment_id", "experiment_link",
    "experiment_name",
    "experiment_names", "find_finished", "find_live", "find_resumable", "follow_launcher", "get_run",
    "has_artifact", "holder", "load_logged_model", "load_state", "load_table", "metric_history", "now_ms", "quoted",
    "reap_experiments",
    "reopen", "require_run", "resolve_experiment", "reuse_finished", "run", "run_key", "runs_frame", "search_all",
    "study_run",
    "take_over", "tracking_uri", "use_tracking_uri", "wait", "withdraw",
    "resolve_run_id", "run_address",
]
