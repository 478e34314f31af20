"""Reading the tracking store: runs, searches, reuse keys and verified artifacts. Everything
here goes through MLflow's client and artifact APIs, so a remote tracking server works too."""
from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import polars as pl
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.local_artifact_repo import _TEMP_ARTIFACT_PREFIX
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.search_utils import SearchUtils

from kdtrack import code_version
from kdtrack.contract import KEY, RESULT, ROLE
from kdtrack.errors import UserError
from kdtrack.tracking.ui import link

# Progress bars per tiny artifact drown the log; kdtrack prints its own progress.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints "View run ... at: <url>" on stdout as a server's run ends; stdout carries only
# kdtrack's results, and each training run's summary line on stderr gives the address.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# While the database is locked, full or read-only, MLflow's system metrics monitor warns at every
# sample (10 s): kdtrack retries its own writes quietly and says in one line what it lost.
logging.getLogger("mlflow.system_metrics.system_metrics_monitor").addFilter(
    lambda record: not record.getMessage().startswith("Failed to log system metrics"))


def client() -> MlflowClient:
    return MlflowClient()


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def use_tracking_uri(uri: str) -> None:
    """Read and write runs at `uri` from now on (the CLI's --tracking-uri)."""
    mlflow.set_tracking_uri(uri)


def run_address(experiment_id: str, run_id: str, uri: str = "") -> str:
    """The run's page in the MLflow UI when the store (`uri`, default the current one) is a server
    (http or https), else ""."""
    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return ""
    return f"{uri.rstrip('/')}/{link(experiment_id, run_id)}"


def now_ms() -> int:
    return int(time.time() * 1000)


def check_store() -> None:
    """Fail before any training when the tracking store cannot be reached: within seconds, not
    after MLflow's own HTTP retries (minutes), which stay in force for the run itself."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        client().search_experiments(max_results=1)
    except Exception as error:  # the store's own exception types vary by backend
        raise UserError(f"tracking store {mlflow.get_tracking_uri()!r} is unreachable: "
                        f"{str(error).splitlines()[0][:300]}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Errors that mean the disk or the store takes no more writes (full, read-only, no permission):
# as OSError numbers, and as the first line of what a database store says (SQLite's words).
REFUSING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
REFUSING_STORE = ("database or disk is full", "readonly database", "read-only file system", "disk i/o error")


def refused_write(error: BaseException) -> str:
    """The path and reason of a write the disk or the store refused, in one line; "" for any
    other error."""
    if isinstance(error, OSError) and error.errno in REFUSING_ERRNOS:
        return f"{error.filename}: {error.strerror}" if error.filename else str(error.strerror)
    first = str(error).splitlines()[0] if str(error) else ""
    if any(words in first.lower() for words in REFUSING_STORE):
        return f"tracking store {tracking_uri()}: {first[:300]}"
    return ""


RUN_ID_LENGTH = 32  # MLflow's run ids: 32 lowercase hex digits (a UUID4)
MATCHES_SHOWN = 5


def resolve_run_id(run_id: str) -> str:
    """The whole id of the run `run_id` names: a unique prefix of it, such as the 8 characters
    the MLflow UI shows, is completed; anything else is returned as it is. An ambiguous or
    unmatched prefix is refused in one line."""
    text = run_id.strip().lower()
    if not text or len(text) >= RUN_ID_LENGTH or text.strip("0123456789abcdef"):
        return run_id
    experiments = [e.experiment_id for e in client().search_experiments()]
    found = [r.info.run_id for r in client().search_runs(experiments, f"attributes.run_id LIKE '{text}%'",
                                                         max_results=MATCHES_SHOWN + 1)] if experiments else []
    if not found:
        raise UserError(f"run id {run_id!r} does not exist in tracking store {tracking_uri()!r}, "
                        "nor does a run whose id starts with it")
    if len(found) > 1:
        more = ", ..." if len(found) > MATCHES_SHOWN else ""
        raise UserError(f"run id prefix {run_id!r} is ambiguous: it starts {', '.join(found[:MATCHES_SHOWN])}{more}; "
                        "give more of the id")
    return found[0]


def get_run(run_id: str):
    """The run `run_id` (or a unique prefix of it, `resolve_run_id`); one that was deleted
    (`mlflow runs delete`) is refused like a missing one, since MLflow still returns it by id
    while every search leaves it out."""
    run_id = resolve_run_id(run_id)
    try:
        run = client().get_run(run_id)
    except Exception:
        raise UserError(f"run id {run_id!r} does not exist in tracking store {mlflow.get_tracking_uri()!r}") from None
    if run.info.lifecycle_stage == "deleted":
        raise UserError(f"run id {run_id!r} was deleted from tracking store {mlflow.get_tracking_uri()!r}; "
                        f"pass a live run, or restore it first (mlflow runs restore --run-id {run_id})")
    return run


def follow_launcher(run_id: str) -> str:
    """Accept the id `mlflow run` printed where the id of the run it launched is meant."""
    run = get_run(run_id)
    return run.data.tags.get(RESULT, run.info.run_id) if run.data.tags.get(ROLE) == "launcher" else run.info.run_id


def require_run(run_id: str, role: str, param: str, needs: str, finished: bool = True):
    """The run `param` names (through its launcher), checked before anything trains: it has
    `role` (else the error says `needs`) and, when `finished`, status FINISHED."""
    run = get_run(follow_launcher(run_id))
    actual = run.data.tags.get(ROLE)
    if actual != role:
        kind = actual or "non-kdtrack"
        raise UserError(f"{param}={run_id!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} run; {needs}")
    if finished and run.info.status != "FINISHED":
        raise UserError(f"{param}={run_id!r} has status {run.info.status}; a FINISHED run is required")
    return run


def run_key(role: str, params: dict[str, str], upstream: str = "") -> str:
    """Reuse key: role, the param strings that shape the result, upstream run and code version."""
    text = "\n".join([role, code_version(), upstream, *(f"{k}={v}" for k, v in sorted(params.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def quoted(value: str) -> str:
    """`value` as a string literal of an MLflow search filter. MLflow's filter grammar has no
    escapes: it takes whatever lies between a pair of single or double quotes verbatim (`'bob\\'s'`
    matches the text `bob\\'s`), so the literal uses a quote the value lacks, and is checked by
    parsing it back the way the store will. A value with both quotes cannot be searched for."""
    for quote in ("'", '"'):
        literal = f"{quote}{value}{quote}"
        try:
            parsed = SearchUtils.parse_search_filter(f"tags.`kdtrack` = {literal}")
        except MlflowException:
            continue
        if [clause["value"] for clause in parsed] == [value]:
            return literal
    raise UserError(f"{value!r} cannot be searched for in MLflow (it holds both ' and \"); "
                    "allowed: names without one of the two quote characters")


def search_all(experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None):
    """Every matching run, following page tokens (MLflow returns at most one page per call)."""
    runs, token = [], None
    while True:
        page = client().search_runs(experiment_ids, filter_string, max_results=1000,
                                    order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def same_params(run, params: dict[str, str]) -> bool:
    return all(run.data.params.get(k) == v for k, v in params.items())


def find_finished(experiment_id: str, role: str, key: str, params: dict[str, str]):
    """The newest FINISHED run with this key whose params equal `params` as stored strings."""
    runs = search_all([experiment_id], f"tags.`{ROLE}` = {quoted(role)} and tags.`{KEY}` = {quoted(key)} "
                      "and attributes.status = 'FINISHED'", ["attributes.start_time DESC"])
    return next((run for run in runs if same_params(run, params)), None)


def artifact_paths(run_id: str, folder: str) -> list[tuple[str, bool]]:
    """(path, is_dir) of the artifacts directly inside `folder` of a run."""
    return [(entry.path, entry.is_dir) for entry in client().list_artifacts(run_id, folder)]


def artifact_bytes(artifact_uri: str) -> int:
    """The size of the artifacts under a run's `artifact_uri`. Given the URI that a search
    returned, not a run id, so that a report over many runs makes no tracking-store call per run;
    a local folder is walked directly (MLflow's listing of 30,000 runs took a minute here), any
    other artifact store is listed through MLflow, one call per folder."""
    if urlsplit(artifact_uri).scheme in ("", "file"):
        return _folder_bytes(local_file_uri_to_path(artifact_uri))
    repository = get_artifact_repository(artifact_uri)
    total, folders = 0, [None]
    while folders:
        for entry in repository.list_artifacts(folders.pop()):
            if entry.is_dir:
                folders.append(entry.path)
            else:
                total += entry.file_size or 0
    return total


def _folder_bytes(folder: str) -> int:
    total, folders = 0, [folder]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except FileNotFoundError:  # a run that never wrote an artifact has no folder
            continue
        for entry in entries:
            if entry.is_dir():
                folders.append(entry.path)
            elif not entry.name.startswith(_TEMP_ARTIFACT_PREFIX):  # half-uploaded: MLflow's listing skips it
                total += entry.stat().st_size
    return total


def delete_artifacts(run_id: str, paths: list[str]) -> list[str]:
    """Delete artifacts of a run, each with its `.sha256`; returns those the store refused.
    MLflow's client has no call for it; its artifact repositories can, for local folders, a
    server's proxied artifacts, S3, GCS and Azure, but not every backend."""
    repository = get_artifact_repository(get_run(run_id).info.artifact_uri)
    refused = []
    for path in paths:
        for name in (path, f"{path}.sha256"):
            try:
                repository.delete_artifacts(name)
            except Exception:  # NotImplementedError, or the backend's own error type
                refused.append(name)
    return refused


def has_artifact(run_id: str, path: str) -> bool:
    return (path, False) in artifact_paths(run_id, path.rsplit("/", 1)[0])


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of metric `key`, in logging order."""
    return [(m.step, m.value) for m in client().get_metric_history(run_id, key)]


def parquet_bytes(table: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    return buffer.getvalue()


def png_bytes(figure) -> bytes:
    """`figure` as a PNG of one 256-colour palette: a third of the size of matplotlib's RGBA file
    at the same dpi (issue 31's store), and looking the same, since a plot's colours are a few
    lines' and one colormap's, which matplotlib itself draws from a 256-entry table."""
    from PIL import Image  # matplotlib's own dependency

    rendered, buffer = io.BytesIO(), io.BytesIO()
    figure.savefig(rendered, format="png")
    Image.open(rendered).convert("RGB").quantize(256).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def torch_bytes(state: dict) -> bytes:
    import torch  # here, not above: commands that only read the store do without it

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _fetch(run_id: str, artifact_path: str, dst: str, artifact_uri: str) -> str:
    """Download one artifact; from the run's `artifact_uri` when known, which spares a tracking-store
    call per artifact (a report reads hundreds)."""
    if artifact_uri:
        return mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/{artifact_path}",
                                                   dst_path=dst)
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst)


def download(run_id: str, artifact_path: str, dst: str, artifact_uri: str = "") -> Path:
    try:
        return Path(_fetch(run_id, artifact_path, dst, artifact_uri))
    except Exception as error:
        raise UserError(f"artifact {artifact_path!r} of run {run_id} cannot be read: "
                        f"{str(error).splitlines()[0]}") from None


def verified(run_id: str, artifact_path: str, path: Path, tmp: str, artifact_uri: str = "") -> Path:
    """`path` if its bytes match the `.sha256` written beside it (artifacts from before checksums
    have none and pass); a mismatch is a one-line error naming the artifact."""
    try:
        expected = Path(_fetch(run_id, f"{artifact_path}.sha256", str(Path(tmp) / "sha"),
                               artifact_uri)).read_text().strip()
    except Exception:
        return path
    if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise UserError(f"corrupt artifact {artifact_path!r} of run {run_id}: its SHA-256 does not match "
                        f"the one recorded when it was written; not loading it")
    return path


def load_table(run_id: str, artifact_path: str, artifact_uri: str = "") -> pl.DataFrame:
    """A Parquet artifact, checked against its checksum; `artifact_uri`: the run's, where the
    caller has it from a search."""
    with tempfile.TemporaryDirectory() as tmp:
        path = verified(run_id, artifact_path, download(run_id, artifact_path, tmp, artifact_uri), tmp, artifact_uri)
        try:
            return pl.read_parquet(path)
        except Exception as error:
            raise UserError(f"corrupt Parquet artifact {artifact_path!r} of run {run_id}: {error}") from None


def load_state(run_id: str, artifact_path: str) -> dict:
    """A saved state dict, loaded with weights_only=True: never unpickle arbitrary objects."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = verified(run_id, artifact_path, download(run_id, artifact_path, tmp), tmp)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise UserError(f"corrupt checkpoint {artifact_path!r} of run {run_id}: {error}") from None
