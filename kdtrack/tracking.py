"""The thin layer that knows MLflow's run lifecycle. Nothing else in kdtrack imports mlflow's
run APIs; the training loop sees only the `RunLog` methods implemented here.

Store: whatever MLFLOW_TRACKING_URI says, else MLflow's own default (sqlite `mlflow.db` and
`./mlruns` in the working directory). Artifacts are always read back through MLflow's APIs.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import mlflow
import polars as pl
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from kdtrack import code_version
from kdtrack.errors import UserError
from kdtrack.interrupts import shielded

# Progress bars per tiny artifact drown the log; kdtrack prints its own progress.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROLE, KEY = "kdtrack.role", "kdtrack.key"
LAUNCHER = "kdtrack.launcher"  # see `claim_launcher`
RESUME = "kdtrack.resume_checkpoint"  # artifact path of a run's newest checkpoint
# Called with (role, metrics, step) whenever a run logs metrics: how an Optuna trial sees
# intermediate values (kdtrack.ablate) without the training loop knowing about Optuna.
METRIC_HOOKS: list[Callable[[str, dict[str, float], int], None]] = []
# Tags every new run gets while set (a suite's kdtrack.suite).
EXTRA_TAGS: dict[str, str] = {}
# Written into logged models so they reload without pip's slow requirement inference.
MODEL_REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


def client() -> MlflowClient:
    return MlflowClient()


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


def resolve_experiment(name: str = "") -> str:
    """Experiment id: `name` if given, else the one `mlflow run` chose, else the default."""
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME", "")
    if name:
        found = client().get_experiment_by_name(name)
        if found:
            return found.experiment_id
        try:
            return client().create_experiment(name)
        except mlflow.exceptions.MlflowException:  # created by another worker meanwhile?
            found = client().get_experiment_by_name(name)
            if not found:
                raise
            return found.experiment_id
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    return "0"


def claim_launcher() -> str | None:
    """The run `mlflow run` created for this process, if any.

    `mlflow run` logs every -P value, defaults included, as params of that run before the entry
    point starts, and MLflow refuses to change a param once logged. kdtrack logs the *resolved*
    config (preset applied), so the `mlflow run` run becomes a launcher that records what was
    asked, and the runs that did the work are nested under it with what ran.
    """
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if run_id:
        client().set_tag(run_id, ROLE, "launcher")
        os.environ.setdefault("MLFLOW_EXPERIMENT_ID", client().get_run(run_id).info.experiment_id)
        os.environ[LAUNCHER] = run_id
    return run_id


def mark_launcher_result(run_id: str) -> None:
    launcher = os.environ.get(LAUNCHER)
    if launcher:
        client().set_tag(launcher, "kdtrack.result_run_id", run_id)


def follow_launcher(run_id: str) -> str:
    """Accept the id `mlflow run` printed where the id of the run it launched is meant."""
    run = get_run(run_id)
    return run.data.tags.get("kdtrack.result_run_id", run_id) if run.data.tags.get(ROLE) == "launcher" else run_id


def get_run(run_id: str):
    try:
        return client().get_run(run_id)
    except Exception:
        raise UserError(f"run id {run_id!r} does not exist in tracking store {mlflow.get_tracking_uri()!r}") from None


def run_key(role: str, params: dict[str, str], upstream: str = "") -> str:
    """Reuse key: role, the param strings that shape the result, upstream run and code version."""
    text = "\n".join([role, code_version(), upstream, *(f"{k}={v}" for k, v in sorted(params.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def find_finished(experiment_id: str, role: str, key: str, params: dict[str, str]):
    """The newest FINISHED run with this key whose params equal `params` as stored strings."""
    runs = search_all([experiment_id], f"tags.`{ROLE}` = '{role}' and tags.`{KEY}` = '{key}' "
                      "and attributes.status = 'FINISHED'", ["attributes.start_time DESC"])
    for run in runs:
        if all(run.data.params.get(k) == v for k, v in params.items()):
            return run
    return None


def find_resumable(experiment_id: str, role: str, key: str, params: dict[str, str]):
    """The newest unfinished run with this key and params that left a resume checkpoint: killed,
    preempted (still RUNNING after a SIGKILL) or failed for a reason other than a non-finite loss
    (which would only recur)."""
    runs = search_all([experiment_id], f"tags.`{ROLE}` = '{role}' and tags.`{KEY}` = '{key}' "
                      "and attributes.status != 'FINISHED'", ["attributes.start_time DESC"])
    for run in runs:
        if run.data.tags.get("kdtrack.failure", "").startswith("non-finite"):
            continue
        if RESUME in run.data.tags and all(run.data.params.get(k) == v for k, v in params.items()):
            return run
    return None


def now_ms() -> int:
    return int(time.time() * 1000)


def start_plain_run(experiment_id: str, name: str, params: dict[str, str], tags: dict[str, str]) -> str:
    """A run recorded through the client only, never the fluent active run, so that runs can be
    started inside it (a study's trial)."""
    run = client().create_run(experiment_id, run_name=name,
                              tags={"kdtrack.code_version": code_version(), **tags})
    client().log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def find_or_start_study_run(experiment_id: str, study: str, params: dict[str, str]) -> str:
    """The `study` run of this Optuna study (every worker and every rerun shares it), else a new
    one, nested under the `mlflow run` launcher when there is one."""
    def oldest() -> list:
        return search_all([experiment_id], f"tags.`{ROLE}` = 'study' and tags.`kdtrack.study` = '{study}'",
                          ["attributes.start_time ASC"])[:1]

    found = oldest()
    if found:
        client().update_run(found[0].info.run_id, status="RUNNING")
        mark_launcher_result(found[0].info.run_id)
        return found[0].info.run_id
    tags = {ROLE: "study", "kdtrack.study": study}
    if os.environ.get(LAUNCHER):
        tags["mlflow.parentRunId"] = os.environ[LAUNCHER]
    run_id = start_plain_run(experiment_id, f"study-{study}", params, tags)
    first = oldest()[0].info.run_id
    if first != run_id:  # another worker started one meanwhile: share the first
        client().delete_run(run_id)
        run_id = first
    mark_launcher_result(run_id)
    return run_id


class Uploader:
    """Ships metric batches and artifacts to the store on one background thread, in order, so
    that training never waits on the store; a failed call is retried with backoff (a tracking
    server that restarts mid-run loses nothing). `drain` waits and returns what still failed."""

    DELAYS = (0.5, 1, 2, 4, 8, 16, 32)

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="kdtrack-upload")
        self.pending: list[Future] = []

    def submit(self, what: str, call: Callable[[], None]) -> None:
        self.pending = [f for f in self.pending if not f.done() or f.exception()]
        self.pending.append(self.pool.submit(self._retrying, what, call))

    def _retrying(self, what: str, call: Callable[[], None]) -> None:
        for delay in (*self.DELAYS, None):
            try:
                return call()
            except Exception as error:
                if delay is None:
                    raise RuntimeError(f"{what}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
                time.sleep(delay)

    def drain(self) -> list[str]:
        failures = [str(f.exception()) for f in self.pending if f.exception()]
        self.pending = []
        self.pool.shutdown()
        return failures


class TrackedRun:
    """One MLflow run, active in the fluent API while open; implements training.RunLog.

    With `resume_run_id`, reopens that run instead of creating one: its params are already
    logged, and metrics of steps it already has are not logged twice.
    """

    FLUSH_SECONDS = 5.0

    def __init__(self, experiment_id: str, role: str, name: str, params: dict[str, str],
                 tags: dict[str, str], tables: Callable[[dict], dict[str, pl.DataFrame]] | None = None,
                 resume_run_id: str = "", probes: dict[str, Callable] | None = None):
        self.tables = tables
        self.role = role
        self.last_checkpoint: tuple[str, str] | None = None  # artifact path, local file until uploaded
        self.resume_path = ""
        self.probes = probes or {}  # artifact path -> model -> {column: value}, one row per log step
        self.rows: dict[str, list[dict]] = {path: [] for path in self.probes}
        self.uploader = Uploader()
        self.logged_through = 0
        self.buffer: list[Metric] = []
        self.flushed_at = time.monotonic()
        if resume_run_id:
            self.run_id = resume_run_id
            history = client().get_metric_history(resume_run_id, "lr")  # logged at every log step
            self.logged_through = max((m.step for m in history), default=0)
            mlflow.start_run(run_id=self.run_id)
            return
        all_tags = {ROLE: role, "kdtrack.code_version": code_version(), **EXTRA_TAGS, **tags}
        launcher = os.environ.get(LAUNCHER)
        if launcher:
            all_tags.setdefault("mlflow.parentRunId", launcher)
        run = client().create_run(experiment_id, run_name=name, tags=all_tags)
        self.run_id = run.info.run_id
        mlflow.start_run(run_id=self.run_id)
        mlflow.log_params(params)

    # training.RunLog
    def metrics(self, values: dict[str, float], step: int) -> None:
        """Buffered, and sent every FLUSH_SECONDS: one store transaction per flush, not per step."""
        if 0 < step <= self.logged_through:
            return
        for hook in METRIC_HOOKS:
            hook(self.role, values, step)
        now = int(time.time() * 1000)
        self.buffer += [Metric(k, float(v), now, step) for k, v in values.items()]
        if time.monotonic() - self.flushed_at > self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        batch, self.buffer, self.flushed_at = self.buffer, [], time.monotonic()
        for start in range(0, len(batch), 1000):  # MLflow's limit per log_batch
            chunk = batch[start:start + 1000]
            self.uploader.submit(f"metrics up to step {chunk[-1].step}",
                                 lambda chunk=chunk: client().log_batch(self.run_id, metrics=chunk))

    def observe(self, step: int, model) -> None:
        for path, probe in self.probes.items():
            value = probe(model)
            self.rows[path].append({"step": step, **value} if isinstance(value, dict) else {"step": step, "values": value})

    def write_probes(self) -> None:
        """Tables for `.parquet` probes; {"step", "values"} stacked tensors for `.pt` probes."""
        for path, rows in self.rows.items():
            if rows and path.endswith(".pt"):
                self.log_state({"step": torch.tensor([r["step"] for r in rows]),
                                "values": torch.stack([r["values"] for r in rows])}, path)
            elif rows:
                self.log_table(pl.DataFrame(rows), path)

    def restore_probes(self, state: dict) -> None:
        """After a resume: the rows the checkpoint carried (see `checkpoint`)."""
        self.rows.update({path: rows for path, rows in state.get("probes", {}).items() if path in self.rows})

    def snapshot(self, step: int, logits: dict) -> None:
        # The tables are computed here, on the training thread: torch ops on a second thread get
        # an OpenMP team of their own, and training ran ~30% slower after one (benchmarks/tracking_overhead.py).
        payloads = {split: _parquet(table) for split, table in self.tables(logits).items()}

        def upload():
            for split, payload in payloads.items():
                self._upload(payload, f"confidences/step_{step}/{split}.parquet")

        self.uploader.submit(f"confidence snapshot of step {step}", upload)

    def checkpoint(self, step: int, state: dict, keep: bool) -> None:
        """`checkpoints/step_<N>.pt` when kept (for `switch`), else `checkpoints/last_{a,b}.pt`; the
        tag RESUME names the newest, set once it and its checksum are completely written."""
        self.flush()
        self.write_probes()
        # Never overwrite the file the tag points to: a kill in mid-upload would leave it torn.
        # Unkept checkpoints alternate between two names; kept ones have names of their own.
        spare = "checkpoints/last_b.pt" if self.resume_path == "checkpoints/last_a.pt" else "checkpoints/last_a.pt"
        path = f"checkpoints/step_{step}.pt" if keep else spare
        self.resume_path = path
        state = {**state, "probes": self.rows}  # the probe rows so far resume with the weights
        # Serialized now (the tensors change with the next step), straight to a file: no second
        # in-memory copy of a large model's checkpoint while it waits for the uploader.
        handle, local = tempfile.mkstemp(prefix="kdtrack-checkpoint-", suffix=".pt")
        os.close(handle)
        torch.save(state, local)
        self.last_checkpoint = (path, local)

        def upload_then_point():
            self._upload_file(Path(local), path)
            Path(local).unlink()  # kept where the upload failed: `finish` saves it
            client().set_tag(self.run_id, RESUME, path)

        self.uploader.submit(f"artifact {path}", upload_then_point)

    # artifacts
    def log_bytes(self, payload: bytes, artifact_path: str) -> None:
        self.uploader.submit(f"artifact {artifact_path}", lambda: self._upload(payload, artifact_path))

    def _upload(self, payload: bytes, artifact_path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / os.path.basename(artifact_path)
            local.write_bytes(payload)
            self._upload_file(local, artifact_path)

    def _upload_file(self, local: Path, artifact_path: str) -> None:
        """The file, then `<path>.sha256` beside it: readers verify what they load."""
        folder, name = os.path.split(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            named = Path(tmp) / name
            shutil.copyfile(local, named)
            (Path(tmp) / f"{name}.sha256").write_text(hashlib.sha256(named.read_bytes()).hexdigest())
            for file in (name, f"{name}.sha256"):
                client().log_artifact(self.run_id, str(Path(tmp) / file), folder or None)

    def log_table(self, table: pl.DataFrame, artifact_path: str) -> None:
        self.log_bytes(_parquet(table), artifact_path)

    def log_state(self, state: dict, artifact_path: str) -> None:
        self.log_bytes(_torch_bytes(state), artifact_path)

    def log_figure(self, figure, artifact_path: str) -> None:
        import matplotlib.pyplot as plt

        client().log_figure(self.run_id, figure, artifact_path)
        plt.close(figure)

    def log_model(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        """The final model, loadable with `mlflow.pytorch.load_model` (MLflow 3's traced format,
        which needs an input example)."""
        mlflow.pytorch.log_model(model, name="model", input_example=example.cpu().numpy(),
                                 pip_requirements=MODEL_REQUIREMENTS)

    def log_dataset(self, array, targets, source: str, name: str, context: str) -> None:
        with warnings.catch_warnings():  # MLflow warns that a local path is ambiguous as a source
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(array, targets=targets, source=source, name=name)
        mlflow.log_input(dataset, context=context)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            client().set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with `status`; a Ctrl-C/SIGTERM meanwhile is raised only once it is ended."""
        with shielded(f"run {self.run_id} ended"):
            self._finish(status)

    def _finish(self, status: str) -> None:
        self.flush()
        self.write_probes()
        failures = self.uploader.drain()
        if failures:
            status = "FAILED"
            self.set_tags({"kdtrack.failure": f"not recorded: {failures[0]}"[:5000]})
        try:
            mlflow.end_run(status)
            mark_launcher_result(self.run_id)
        except Exception as error:
            failures.append(f"ending the run: {str(error).splitlines()[0]}")
        if failures:
            kept = ""
            if self.last_checkpoint and Path(self.last_checkpoint[1]).exists():
                local = Path("kdtrack-unsaved") / self.run_id / Path(self.last_checkpoint[0]).name
                local.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(self.last_checkpoint[1], local)
                kept = f"; the last checkpoint is kept at {local.resolve()}"
            raise UserError(f"run {self.run_id}: {len(failures)} record(s) could not be written to "
                            f"the tracking store, the first: {failures[0]}{kept}")


def _parquet(table: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    return buffer.getvalue()


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def download(run_id: str, artifact_path: str, dst: str) -> Path:
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst))
    except Exception as error:
        raise UserError(f"artifact {artifact_path!r} of run {run_id} cannot be read: "
                        f"{str(error).splitlines()[0]}") from None


def verified(run_id: str, artifact_path: str, path: Path, tmp: str) -> Path:
    """`path` if its bytes match the `.sha256` written beside it (artifacts from before checksums
    have none and pass); a mismatch is a one-line error naming the artifact."""
    try:
        expected = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{artifact_path}.sha256",
                                                            dst_path=str(Path(tmp) / "sha"))).read_text().strip()
    except Exception:
        return path
    if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise UserError(f"corrupt artifact {artifact_path!r} of run {run_id}: its SHA-256 does not match "
                        f"the one recorded when it was written; not loading it")
    return path


def load_table(run_id: str, artifact_path: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = verified(run_id, artifact_path, download(run_id, artifact_path, tmp), tmp)
        try:
            return pl.read_parquet(path)
        except Exception as error:
            raise UserError(f"corrupt Parquet artifact {artifact_path!r} of run {run_id}: {error}") from None


def load_state(run_id: str, artifact_path: str) -> dict:
    """A saved state dict, loaded with weights_only=True: never unpickle arbitrary objects."""
    with tempfile.TemporaryDirectory() as tmp:
        path = verified(run_id, artifact_path, download(run_id, artifact_path, tmp), tmp)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise UserError(f"corrupt checkpoint {artifact_path!r} of run {run_id}: {error}") from None
