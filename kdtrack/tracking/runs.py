"""A kdtrack run's lifecycle: created, reopened or shared (a study's), and ended in one `with`
block that owns its status; or, in place of a new one, a finished run reused. `TrackedRun` is the
open run, which the training loop logs to."""
from __future__ import annotations

import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import mlflow
import polars as pl
from mlflow.entities import Metric, Param
from mlflow.tracking.fluent import run_id_to_system_metrics_monitor

from kdtrack import code_version
from kdtrack.contract import CODE_VERSION, FAILURE, NOTE, PARENT, RESULT, RESUME, ROLE, STUDY
from kdtrack.errors import RunFailure, UserError
from kdtrack.interrupts import leaving, shielded, stop_requests
from kdtrack.say import say
from kdtrack.tracking import ui
from kdtrack.tracking.artifacts import upload_bytes, upload_file
from kdtrack.tracking.checkpoints import keep_unsaved, next_path, stage
from kdtrack.tracking.context import RunContext
from kdtrack.tracking.experiments import set_experiment_tags
from kdtrack.tracking.lease import EXPIRY_SECONDS, hold, lease_tags
from kdtrack.tracking.store import (
    client,
    find_finished,
    now_ms,
    parquet_bytes,
    png_bytes,
    quoted,
    refused_write,
    search_all,
    torch_bytes,
    tracking_uri,
)
from kdtrack.tracking.tags import tag_and_link, where
from kdtrack.tracking.uploader import Uploader

if TYPE_CHECKING:
    import torch


def failure_of(error: BaseException) -> str:
    """The `kdtrack.failure` tag of a run that `error` ended."""
    text = str(error) if isinstance(error, RunFailure) else f"{type(error).__name__}: {error}"
    return text[:5000]


def status_of(error: BaseException) -> str:
    """Ctrl-C and SIGTERM (made a KeyboardInterrupt by kdtrack.entry) end a run KILLED, a
    StopRun with its own status, anything else FAILED."""
    return getattr(error, "status", "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


@contextmanager
def _lifetime(open_run: Callable[[], "TrackedRun"]) -> Iterator["TrackedRun"]:
    """The one place a run's end is decided: FINISHED when the block completes, else KILLED or
    FAILED with `kdtrack.failure` (`status_of`, `failure_of`)."""
    with stop_requests() as stop:  # no interrupt between creating the run and owning its end
        tracked = open_run()
    try:
        if stop:
            raise KeyboardInterrupt(f"stopped by signal {stop[0]} as run {tracked.run_id} began")
        yield tracked
    except BaseException as error:
        tracked.end(status_of(error), failure_of(error), stopped=isinstance(error, KeyboardInterrupt))
        refused = refused_write(error)
        if refused:  # a full disk or a read-only store: one line, not the traceback of the write
            raise UserError(f"{tracked.role} run {tracked.run_id} stopped: {refused}; {tracked.again()}") from None
        raise
    tracked.end("FINISHED")  # outside the try: a signal it defers is raised once the run is FINISHED


def run(experiment_id: str, name: str, role: str, params: Mapping[str, str] | None = None,
        context: RunContext = RunContext(), tags: Mapping[str, str] | None = None, *,
        confidence_tables: Callable[[dict], dict[str, pl.DataFrame]] | None = None,
        probes: Mapping[str, Callable] | None = None, fluent: bool = True, summary: str = "",
        system_metrics: bool = False):
    """A new run as a `with` block: `with tracking.run(experiment_id, name, role) as run:`.

    `fluent` runs are MLflow's active run while open (models and datasets are logged through the
    fluent API); plain ones are written through the client only, so runs can start inside them.
    `summary`: Markdown on what this run is, in its description after its role's line.
    `system_metrics`: MLflow samples CPU, memory, disk, network (and GPU) as `system/*` metrics
    while the run is open (fluent runs only)."""
    return _lifetime(lambda: TrackedRun.create(experiment_id, name, role, dict(params or {}), context,
                                               dict(tags or {}), confidence_tables, dict(probes or {}), fluent,
                                               summary, system_metrics))


def reopen(run_id: str, role: str, context: RunContext = RunContext(), *,
           confidence_tables: Callable[[dict], dict[str, pl.DataFrame]] | None = None,
           probes: Mapping[str, Callable] | None = None, logged_steps: frozenset[int] = frozenset(),
           fluent: bool = True, system_metrics: bool = False):
    """An existing run as a `with` block (a resumed training run): its params are logged already,
    and metrics of the `logged_steps` (those in the store) are not logged twice; those of other
    steps are, so a gap that a lost batch left after the resume checkpoint is filled."""
    return _lifetime(lambda: TrackedRun.reopen(run_id, role, context, confidence_tables, dict(probes or {}),
                                               logged_steps, fluent, system_metrics))


def study_run(experiment_id: str, study: str, params: Mapping[str, str], context: RunContext):
    """The `study` run of an Optuna study as a `with` block: every worker and every rerun shares
    the oldest one, else it is created."""
    def oldest() -> list:
        return search_all([experiment_id], f"tags.`{ROLE}` = 'study' and tags.`{STUDY}` = {quoted(study)}",
                          ["attributes.start_time ASC"])[:1]

    def find_or_create() -> TrackedRun:
        found = oldest()
        if found:
            client().update_run(found[0].info.run_id, status="RUNNING")
            shared = TrackedRun.reopen(found[0].info.run_id, "study", context, fluent=False)
        else:
            shared = TrackedRun.create(experiment_id, f"study-{study}", "study", dict(params), context,
                                       {STUDY: study}, fluent=False)
            first = oldest()[0].info.run_id
            if first != shared.run_id:  # another worker started one meanwhile: share the first
                shared.heartbeat.stop()
                client().delete_run(shared.run_id)
                shared.uploader.drain()
                shared = TrackedRun.reopen(first, "study", context, fluent=False)
        context.report(shared.run_id)
        return shared

    return _lifetime(find_or_create)



def reuse_finished(experiment_id: str, role: str, key: str, params: Mapping[str, str],
                   context: RunContext = RunContext()):
    """The run to reuse in place of a new one: the newest FINISHED run with this reuse key and
    these params (`store.find_finished`), reported to `context` as the run that did its work; None
    where there is none."""
    found = find_finished(experiment_id, role, key, dict(params))
    if found:
        context.report(found.info.run_id)
    return found


def _paths(key: str | tuple[str, ...]) -> tuple[str, ...]:
    """The artifact paths a probe's key names: one, or a tuple of them."""
    return key if isinstance(key, tuple) else (key,)


RESUMABLE = ("teacher", "student")  # roles whose runs a second start resumes


class TrackedRun:
    """One open MLflow run; implements training.RunLog. Made by `run`, `reopen` or `study_run`,
    whose `with` block ends it."""

    FLUSH_SECONDS = 5.0

    def __init__(self, run_id: str, role: str, context: RunContext,
                 confidence_tables: Callable[[dict], dict[str, pl.DataFrame]] | None,
                 probes: dict[str, Callable], logged_steps: frozenset[int], fluent: bool,
                 system_metrics: bool = False):
        self.run_id, self.role, self.context, self.fluent = run_id, role, context, fluent
        self.confidence_tables = confidence_tables
        # artifact path -> model -> {column: value}, one row per probe step (Plan.observes); a tuple of
        # paths -> model -> one value per path: one computation serving several tables
        self.probes = probes
        self.rows: dict[str, list[dict]] = {path: [] for key in probes for path in _paths(key)}
        self.logged_steps = logged_steps
        self.last_step = 0  # of the metrics logged; the logged model carries those of this step
        self.last_checkpoint: tuple[str, Path] | None = None  # artifact path, local file until uploaded
        self.resume_path = ""
        self.stale_failure = False  # the run carries a failure tag from an attempt before this one
        self.uploader = Uploader()
        self.buffer: list[Metric] = []
        self.flushed_at = time.monotonic()
        self.heartbeat = hold(run_id)  # this process works on the run until `end` (tracking/lease.py)
        if fluent:  # the monitor system_metrics starts is stopped by mlflow.end_run in `_end`
            mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)

    @classmethod
    def create(cls, experiment_id: str, name: str, role: str, params: dict[str, str], context: RunContext,
               tags: dict[str, str], confidence_tables=None, probes: dict | None = None,
               fluent: bool = True, summary: str = "", system_metrics: bool = False) -> "TrackedRun":
        # The lease is there from the start: a run without one looks abandoned to other processes.
        parent = {PARENT: context.parent} if context.parent else {}  # unless `tags` name another
        own = {ROLE: role, CODE_VERSION: code_version(), **parent, **context.tags, **tags, **lease_tags(now_ms())}
        all_tags = ui.provenance({**own, NOTE: ui.describe(role, summary, own, where)})
        try:
            run_id = client().create_run(experiment_id, run_name=name, tags=all_tags).info.run_id
        except Exception as error:
            refused = refused_write(error)
            if not refused:
                raise
            raise UserError(f"no {role} run can be created: {refused}") from None  # nothing was written
        client().log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        set_experiment_tags(experiment_id, ui.experiment_tags(client().get_experiment(experiment_id).tags,
                                                              params, all_tags))
        return cls(run_id, role, context, confidence_tables, probes or {}, frozenset(), fluent, system_metrics)

    @classmethod
    def reopen(cls, run_id: str, role: str, context: RunContext, confidence_tables=None,
               probes: dict | None = None, logged_steps: frozenset[int] = frozenset(), fluent: bool = True,
               system_metrics: bool = False) -> "TrackedRun":
        failed_before = FAILURE in client().get_run(run_id).data.tags
        tracked = cls(run_id, role, context, confidence_tables, probes or {}, logged_steps, fluent, system_metrics)
        tracked.stale_failure = failed_before  # cleared if this time it finishes
        return tracked

    # training.RunLog
    def metrics(self, values: dict[str, float], step: int) -> None:
        """Buffered, and sent every FLUSH_SECONDS: one store transaction per flush, not per step."""
        if step in self.logged_steps:
            return
        for hook in self.context.hooks:
            hook(self.role, values, step)
        self.last_step = max(self.last_step, step)
        now = now_ms()
        self.buffer += [Metric(k, float(v), now, step) for k, v in values.items()]
        if time.monotonic() - self.flushed_at > self.FLUSH_SECONDS:
            self.flush()
            self._fail_if_lost()

    def flush(self) -> None:
        batch, self.buffer, self.flushed_at = self.buffer, [], time.monotonic()
        for start in range(0, len(batch), 1000):  # MLflow's limit per log_batch
            chunk = batch[start:start + 1000]
            self.uploader.submit(f"metrics up to step {chunk[-1].step}",
                                 lambda chunk=chunk: client().log_batch(self.run_id, metrics=chunk), "metrics")

    def observe(self, step: int, model) -> None:
        for key, probe in self.probes.items():
            values = probe(model)
            for path, value in zip(_paths(key), values if isinstance(key, tuple) else (values,)):
                row = {"step": step, **value} if isinstance(value, dict) else {"step": step, "values": value}
                self.rows[path].append(row)

    def write_probes(self) -> None:
        """Tables for `.parquet` probes; {"step", "values"} stacked tensors for `.pt` probes."""
        for path, rows in self.rows.items():
            if rows and path.endswith(".pt"):
                import torch  # here, not above: commands that only read the store do without it

                self.log_state({"step": torch.tensor([r["step"] for r in rows]),
                                "values": torch.stack([r["values"] for r in rows])}, path)
            elif rows:
                self.log_table(pl.DataFrame(rows), path)

    def restore_probes(self, state: dict, resume_path: str) -> None:
        """After a resume from the checkpoint `resume_path`: the probe rows it carried (see `checkpoint`)."""
        self.rows.update({path: rows for path, rows in state.get("probes", {}).items() if path in self.rows})
        self.resume_path = resume_path

    def snapshot(self, step: int, logits: dict) -> None:
        # The tables are computed here, on the training thread: torch ops on a second thread get
        # an OpenMP team of their own, and training ran ~30% slower after one (benchmarks/tracking_overhead.py).
        payloads = {split: parquet_bytes(table) for split, table in self.confidence_tables(logits).items()}

        def upload():
            for split, payload in payloads.items():
                self._upload(payload, f"confidences/step_{step}/{split}.parquet")

        self.uploader.submit(f"confidence snapshot of step {step}", upload)

    def checkpoint(self, step: int, state: dict, keep: bool) -> None:
        """`checkpoints/step_<N>.pt` when kept (for `switch`), else `checkpoints/last_{a,b}.pt`; the
        tag RESUME names the newest, set once it and its checksum are completely written and every
        metric logged before it is in the store (`_point`)."""
        self.flush()
        self.write_probes()
        try:  # the probe rows so far resume with the weights
            local = stage({**state, "probes": self.rows}, self.uploader.scratch())
        except (OSError, RuntimeError) as error:  # a full disk, which torch reports as a RuntimeError
            reason = refused_write(error) or str(error).splitlines()[0]
            raise UserError(f"{self.role} run {self.run_id}: the checkpoint of step {step} could not be written "
                            f"in {self.uploader.scratch()}: {reason}; {self.again()}") from None
        self.last_checkpoint = (next_path(step, keep, self.resume_path), local)
        self._fail_if_lost()  # after the save: `end` keeps this newest state on local disk

        def upload_then_point():
            # Chosen here, on the lane, from the path the tag names now: a spare is never written
            # over while the tag names it, even where tags could not be written for a while (a
            # read-only database with a writable artifact store rewrote the tagged spare, and a
            # resume from it skipped thousands of steps of metrics).
            path = next_path(step, keep, self.resume_path)
            if local.exists():  # not on a retry after the tag failed
                upload_file(self.run_id, local, path, self.uploader.scratch())
                local.unlink()  # kept where the upload failed: `end` saves the newest
            self._point(path)

        self.uploader.submit(f"artifact checkpoint of step {step}", upload_then_point)

    def _point(self, path: str) -> None:
        """Tag RESUME = `path`, once the metrics flushed before its checkpoint are in the store, and
        only if none was lost: a resume from it never skips a metric that did not reach the store."""
        in_store = threading.Event()
        self.uploader.submit("metrics before the checkpoint", in_store.set, "metrics")
        while not in_store.wait(1.0):
            if self.uploader.closed:
                return
        if self.uploader.lost:
            return
        client().set_tag(self.run_id, RESUME, path)
        self.resume_path = path

    # artifacts
    def log_bytes(self, payload: bytes, artifact_path: str) -> None:
        self.uploader.submit(f"artifact {artifact_path}", lambda: self._upload(payload, artifact_path))

    def _fail_if_lost(self) -> None:
        """Stop training once a record is lost for good: the run can only end FAILED, and `end`
        says what was lost."""
        if self.uploader.lost:
            raise RunFailure(f"the tracking store refused records for the whole retry budget "
                             f"({self.uploader.budget:g} s)")

    def _upload(self, payload: bytes, artifact_path: str) -> None:
        upload_bytes(self.run_id, payload, artifact_path, self.uploader.scratch())

    def log_table(self, table: pl.DataFrame, artifact_path: str) -> None:
        self.log_bytes(parquet_bytes(table), artifact_path)

    def log_state(self, state: dict, artifact_path: str) -> None:
        self.log_bytes(torch_bytes(state), artifact_path)

    def log_figure(self, figure, artifact_path: str) -> None:
        import matplotlib.pyplot as plt

        try:
            payload = png_bytes(figure)  # rendered here: matplotlib is not for the uploader's thread
        finally:
            plt.close(figure)
        self.log_bytes(payload, artifact_path)

    def log_model(self, model: torch.nn.Module, example: torch.Tensor, register_as: str = "") -> None:
        """The final model under the run's role (`runs:/<id>/teacher`, `.../student`), loadable
        with `mlflow.pytorch.load_model` (MLflow 3's traced format, which needs an input example);
        registered as `register_as` when given.

        MLflow links the run's metrics of the step a model is logged at to the model. That step is
        the last one, once its metrics are in the store: step 0 would give a student's model the
        teacher's accuracies (`teacher/*`, logged at step 0)."""
        self.flush()
        in_store = threading.Event()
        self.uploader.submit("metrics before the model", in_store.set, "metrics")
        in_store.wait()
        mlflow.pytorch.log_model(model, name=self.role, input_example=example.cpu().numpy(),
                                 pip_requirements=model_requirements(), step=self.last_step,
                                 registered_model_name=register_as or None)

    def log_dataset(self, array, targets, source: str, name: str, context: str) -> None:
        with warnings.catch_warnings():  # MLflow warns that a local path is ambiguous as a source
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(array, targets=targets, source=source, name=name)
        try:
            mlflow.log_input(dataset, context=context)
        except Exception as error:
            # Two runs logging the same data set at one moment (suite workers) both insert it into a
            # SQLite store, and the later insert breaks its unique constraint. The data set is there
            # now: once more only links it to this run.
            if "UNIQUE constraint failed: datasets" not in str(error):
                raise
            mlflow.log_input(dataset, context=context)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        tag_and_link(self.run_id, tags)

    def end(self, status: str, failure: str = "", stopped: bool = False) -> None:
        """End the run with `status` (called by the `with` block only); a Ctrl-C/SIGTERM
        meanwhile is raised only once it is ended. `stopped`: a signal ends it, so uploads get
        only Uploader.STOP_SECONDS, and another signal makes the process leave at once."""
        with shielded(f"run {self.run_id} ended", patience=1 if stopped else 2) as requested:
            try:
                self._end(status, failure, lambda: stopped or bool(requested))
            finally:
                self.heartbeat.stop()
                self.uploader.remove_scratch()  # on every way out; a killed process's goes at the next start
        if stopped and self.role in RESUMABLE:  # more than click's bare "Aborted!"
            say(f"{self.role} run {self.run_id} stopped ({status}); the same command resumes it from its last "
                "checkpoint (-P resume=false starts afresh)")

    def _end(self, status: str, failure: str, stopping: Callable[[], bool]) -> None:
        if not leaving():
            self.flush()
            self.write_probes()
        lost = self.uploader.drain(stopping, leaving)
        kept = keep_unsaved(self.run_id, *self.last_checkpoint) if self.last_checkpoint else ""
        if lost and status == "FINISHED":
            status = "KILLED" if stopping() else "FAILED"
        if lost:
            failure = "; ".join(filter(None, [failure, f"not recorded: {lost[0]}"]))[:5000]
        try:  # apart from the status: a store that refuses the tag must not leave the run RUNNING
            if failure:
                self.set_tags({FAILURE: failure})
            elif status == "FINISHED" and self.stale_failure:  # an earlier attempt's reason, no longer true
                client().delete_tag(self.run_id, FAILURE)
        except Exception as error:
            lost.append(f"tag {FAILURE}: {_first_line(error)}")
        refused = self._terminate(status)
        if refused:
            lost.append(f"status {status}: {refused} (the run shows RUNNING until its lease lapses, "
                        f"{EXPIRY_SECONDS:g} s later; the next kdtrack command then marks it KILLED)")
        else:
            try:
                self.context.report(self.run_id)  # a launcher's result tag
            except Exception as error:
                lost.append(f"tag {RESULT} of the launcher: {_first_line(error)}")
        if lost:
            raise UserError(f"{self.role} run {self.run_id}: {len(lost)} record(s) could not be written to "
                            f"the tracking store {self._where()}, the first: "
                            f"{lost[0]}{kept}; {self.again()}")

    def _terminate(self, status: str) -> str:
        """Write the run's status, tried three times (a database that other writers lock frees
        within seconds); what refused it, or "". A fluent run leaves MLflow's stack, and its
        system metrics monitor stops, even where the store refuses."""
        for attempt in range(3):
            try:
                if self.fluent and attempt == 0:
                    mlflow.end_run(status)  # pops the run before it writes the status
                else:
                    client().set_terminated(self.run_id, status)
                break
            except Exception as error:
                reason = _first_line(error)
                monitor = run_id_to_system_metrics_monitor.pop(self.run_id, None)
                if monitor is not None:  # else it samples on, into a store that refuses
                    monitor.finish()
            if attempt == 2 or leaving():
                return reason
            time.sleep(1 + attempt)
        return ""

    def _where(self) -> str:
        """The store, and the run's artifact location where the store still answers reads."""
        try:
            return f"{tracking_uri()} (artifacts: {client().get_run(self.run_id).info.artifact_uri})"
        except Exception:
            return tracking_uri()

    def again(self) -> str:
        """What brings the run back once the disk or the store takes writes again."""
        if self.role in RESUMABLE:
            return ("once the disk and the store take writes again, the same command resumes it from its last "
                    "recorded checkpoint")
        return "once the disk and the store take writes again, run the same command again"


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def model_requirements() -> list[str]:
    """Written into logged models, so that they reload without pip's slow requirement inference."""
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
