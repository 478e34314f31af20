"""`run_job`: find, resume or start the run a `Job` describes, train it, and record it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import polars as pl
import torch
from torch import nn

from kdtrack import tracking
from kdtrack.config import TrainConfig, key_params, to_params
from kdtrack.contract import EIGEN_LAST_LAYER, INCOMPLETE, KEY, RESUME
from kdtrack.data import Splits
from kdtrack.errors import StopRun, UserError
from kdtrack.models import portable
from kdtrack.pipeline import replicas
from kdtrack.progress import duration
from kdtrack.say import say
from kdtrack.schedules import LossWeights
from kdtrack.training.distributed import World
from kdtrack.training.loop import NonFiniteLoss, Teacher, evaluate, fit, predict_splits
from kdtrack.training.state import Plan, TrainState

# The final layer's weights are kept at every log step for §D.7 only up to this size: Table 7's
# heads (5,000 x 10 at most) fit, an ImageNet head (512 x 1000) would cost 2 MB per step.
LAST_LAYER_CAP = 100_000


@dataclass(frozen=True)
class Job:
    """One training run to find, resume or start, complete when built: what `train_teacher`,
    `distill` and `switch` hand to `run_job`."""

    role: str
    config: TrainConfig
    name: str
    tags: Mapping[str, str]
    weights: LossWeights  # distillation weight per step; its total_steps is the training length
    make_model: Callable[[], nn.Module]
    confidence_tables: Callable[[dict], dict[str, pl.DataFrame]]  # logits by split -> tables by split
    upstream: str = ""  # the run this one depends on, part of the reuse key
    teacher: Teacher | None = None
    start: TrainState | None = None  # a checkpoint to start from (switch's from_run_id)
    snapshot_at: tuple[int, ...] = ()  # confidence snapshots besides every `snapshot_every` steps
    first_records: Mapping[str, dict] = field(default_factory=dict)  # artifact path -> state, at start
    first_metrics: Mapping[str, float] = field(default_factory=dict)  # logged at step 0
    summary: str = ""  # Markdown: what the run is, for its description in the MLflow UI


@dataclass(frozen=True)
class Probes:
    """What a run records besides the loop's metrics: tables logged once at its start, probes
    run every `eigen_every` steps (Plan.observes, TrackedRun.observe), and tags."""

    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    # artifact path (or a tuple of them, one value each) -> model -> row
    probes: Mapping[str | tuple[str, ...], Callable[[nn.Module], object]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


def eigen_probes(model: nn.Module, data: Splits, config: TrainConfig) -> Probes:
    """For the first layer, every `eigen_every` steps (paper §D.3): ||W^T v_k|| in
    `eigen/trajectory.parquet` and the displacement ||(W - W_0)^T v_k|| in `eigen/displacement.parquet`
    (the pair statistic's input, kdtrack.metrics.eigenspace), with the eigenvalues in
    `eigen/eigenvalues.parquet`; and the final linear layer's weights (`eigen/last_layer_weights.pt`),
    for §D.7.

    `model` must be the job's freshly made model, before any checkpoint is loaded: its weights are
    W_0, the run's initialization (Theorem 4.1's beta(0)). A resumed run's model is made the same
    way (seeded; a student's from its teacher's init.pt), and so is a switch run's that starts
    from another run's checkpoint (`stages.switch` makes it from that run's initialization), so W_0
    is the lineage's original initialization, not the weights the run resumed or started from."""
    from kdtrack.metrics.eigen import EIGEN_POINTS, first_layer_probe, last_layer

    eigenvalues, first_layer = first_layer_probe(model, data.x_train[:EIGEN_POINTS], config.seed, config.eigen_k)
    tables = {"eigen/eigenvalues.parquet": eigenvalues}
    trajectory = {("eigen/trajectory.parquet", "eigen/displacement.parquet"): first_layer}
    head = last_layer(model)
    if head and head[1].weight.numel() > LAST_LAYER_CAP:
        return Probes(tables, trajectory, {EIGEN_LAST_LAYER: f"not recorded: {head[1].weight.numel()} weights > "
                                                               f"{LAST_LAYER_CAP}"})
    # §D.7: projected in the analysis, onto the teacher's final representation
    weights = {"eigen/last_layer_weights.pt": lambda m: last_layer(m)[1].weight.detach().T.cpu().clone()}
    return Probes(tables, {**trajectory, **weights} if head else trajectory)


class Outrun(StopRun):
    """Ends a new run that lost the election to an identical run another process started at the
    same moment (`tracking.elect`): before it trained or recorded anything (a training run here,
    an analysis run in analysis.analyze)."""


def run_job(experiment_id: str, job: Job, data: Splits, context: tracking.RunContext = tracking.RunContext()) -> str:
    """Reuse a FINISHED run with the same key and params; wait for one that another process is
    training (or refuse, with if_running=refuse) and reuse it once FINISHED; else resume an
    interrupted one from its last checkpoint, else start a new run; train, then log tables, weights
    and the model. The run's `with` block records how it ended."""
    config = job.config
    params = key_params(config)
    key = tracking.run_key(job.role, params, job.upstream)
    while True:
        if not config.force:
            found = tracking.reuse_finished(experiment_id, job.role, key, params, context)
            if found:
                say(f"reusing finished {job.role} run {found.info.run_id} ({found.info.run_name})")
                return found.info.run_id
            live = tracking.find_live(experiment_id, job.role, key, params)
            if live:
                wait_for(live, job.role, config.if_running)
                continue  # it finished (reuse it), or ended otherwise or died (resume it)
        run_id = train(experiment_id, job, data, context, key, params)
        if run_id:
            return run_id


def wait_for(run, role: str, if_running: str) -> None:
    """Wait until `run`, which another process holds, is no longer held; or refuse to."""
    what = f"{role} run {run.info.run_id} with these parameters is being trained by {tracking.holder(run.data.tags)}"
    if if_running == "refuse":
        raise UserError(f"{what}; if_running=refuse: not waiting for it (if_running=wait reuses it once finished)")
    say(f"{what}; waiting for it")
    tracking.wait(run.info.run_id)


def train(experiment_id: str, job: Job, data: Splits, context: tracking.RunContext, key: str,
          params: dict[str, str]) -> str:
    """Resume or start the job's run and train it; its id, or "" where another process took the
    paused run, or started an identical one, first."""
    config = job.config
    resumable = config.resume and not config.force
    paused = tracking.find_resumable(experiment_id, job.role, key, params) if resumable else None
    if paused and not tracking.take_over(paused, "resumed"):
        return ""
    model = job.make_model()
    probes = eigen_probes(model, data, config) if config.eigen else Probes()
    if paused:
        saved = tracking.load_state(paused.info.run_id, paused.data.tags[RESUME])
        logged = frozenset(step for step, _ in tracking.metric_history(paused.info.run_id, "lr"))
        opened = reopen_paused(paused, job, context, probes, logged)
    else:
        saved, opened = None, open_new(experiment_id, job, context, key, probes)
    run_id, started, lost = "", time.monotonic(), []
    try:
        with opened as run:
            run_id = run.run_id
            if paused:
                start = continue_paused(run, paused, saved, job.role)
                lost = lost_steps(job, data, logged, start.step)
                mark_if_incomplete(run, lost)
            else:
                start = begin_new(run, experiment_id, job, key, params, probes, data)
            final = train_and_record(run, job, model, data, start, context.world)
    except Outrun:
        tracking.withdraw(run_id)
        return ""
    except NonFiniteLoss as error:
        raise UserError(f"run {run_id} stopped: {error}") from None
    if config.keep_checkpoints != "all":
        drop_resume_checkpoints(run_id)
    say(summary(job, run_id, final, time.monotonic() - started, tracking.run_address(experiment_id, run_id), len(lost)))
    return run_id


def reopen_paused(paused, job: Job, context: tracking.RunContext, probes: Probes, logged: frozenset[int]):
    """The `with` block of a paused run this process took over: its params are logged, and so are
    the metrics of the `logged` steps (those that logged `lr`)."""
    return tracking.reopen(paused.info.run_id, job.role, context, confidence_tables=job.confidence_tables,
                           probes=probes.probes, logged_steps=logged, system_metrics=job.config.system_metrics)


def lost_steps(job: Job, data: Splits, logged: frozenset[int], resumed_at: int) -> list[int]:
    """The log steps up to `resumed_at`, the checkpoint a run resumes from, whose metrics are not in
    the store: training starts again after that checkpoint, so they can never be logged again."""
    plan = Plan.of(job.config, len(data.y_train), len(data.y_train) + len(data.y_test), job.weights.total_steps)
    first = job.start.step if job.start is not None else 0  # a switch run logs from its starting step on
    return [step for step in range(first + 1, resumed_at + 1) if plan.logs(step) and step not in logged]


def mark_if_incomplete(run: tracking.TrackedRun, lost: list[int]) -> None:
    """Tag a run whose metrics have a gap that no resume can fill, and say so: it never ends
    FINISHED as if whole, and reports and claims leave it out (report.collect.counted)."""
    if lost:
        steps = ", ".join(map(str, lost[:10])) + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
        run.set_tags({INCOMPLETE: f"metrics of {len(lost)} log step(s) lost before a resume: {steps}"})
        say(f"run {run.run_id} is incomplete: the metrics of log step(s) {steps} never reached the store and "
            f"cannot be logged again (tag {INCOMPLETE}; reports and claims leave it out)")


def open_new(experiment_id: str, job: Job, context: tracking.RunContext, key: str, probes: Probes):
    """The `with` block of the job's new run: the resolved config and the world as params, its
    reuse key and the probes' tags among its tags."""
    params = {**to_params(job.config), **context.world.params()}
    return tracking.run(experiment_id, job.name, job.role, params, context, {**job.tags, KEY: key, **probes.tags},
                        summary=job.summary, system_metrics=job.config.system_metrics,
                        confidence_tables=job.confidence_tables, probes=probes.probes)


def continue_paused(run: tracking.TrackedRun, paused, saved: dict, role: str) -> TrainState:
    """The state a reopened run continues from, its probe rows restored."""
    run.restore_probes(saved, paused.data.tags[RESUME])
    say(f"resuming {role} run {run.run_id} ({paused.info.status}) after step {saved['step']}")
    return TrainState.from_dict(saved)


def begin_new(run: tracking.TrackedRun, experiment_id: str, job: Job, key: str, params: dict[str, str],
              probes: Probes, data: Splits) -> TrainState | None:
    """A new run wins the election among identical runs started at the same moment (else `Outrun`)
    and records what comes before its first step; the job's own starting state, if any."""
    winner = run.run_id if job.config.force else tracking.elect(run.run_id, experiment_id, job.role, key, params)
    if winner != run.run_id:
        raise Outrun(f"run {winner}, started at the same moment with the same parameters, trains it")
    say(f"training {job.name} (run {run.run_id})")
    record_start(run, job, probes, data)
    return job.start


def train_and_record(run: tracking.TrackedRun, job: Job, model: nn.Module, data: Splits, start: TrainState | None,
                     world: World) -> dict[str, float]:
    """Train the open run from `start` (the other ranks of `world` are ordered to train along) and
    record its end; its final accuracies."""
    if world.size > 1:
        world.send(replicas.order(job, model, start))
    fit(model, data, job.config, job.weights, job.teacher, log=run, resume=start, snapshot_at=job.snapshot_at,
        progress=f"training {job.name}", world=world)
    register_as = f"kdtrack-{job.config.preset}-{job.role}" if job.config.register else ""
    return record_end(run, model, data, job.teacher, job.config.log_model, register_as)


def summary(job: Job, run_id: str, final: dict[str, float], seconds: float, address: str, lost: int = 0) -> str:
    """The one line a finished training run ends with; `lost`: log steps whose metrics are missing."""
    parts = [f"train acc {final['train/acc']:.1%}", f"test acc {final['test/acc']:.1%}"]
    if "test/agreement" in final:
        parts.append(f"agreement with the teacher {final['train/agreement']:.1%} train, "
                     f"{final['test/agreement']:.1%} test")
    parts.append(f"wall time {duration(seconds)}")
    if lost:
        parts.append(f"incomplete: the metrics of {lost} log step(s) were lost (tag {INCOMPLETE})")
    return f"{job.role} run {run_id} ({job.name}) finished: {', '.join(parts)}" + (f"; {address}" if address else "")


def drop_resume_checkpoints(run_id: str) -> None:
    """A finished run resumes no more: its `last_a`/`last_b` checkpoints go (`step_<N>` ones,
    which `switch` starts from, stay), where the artifact store can delete."""
    paths = [path for path, is_dir in tracking.artifact_paths(run_id, "checkpoints")
             if not is_dir and path.rsplit("/", 1)[-1] in ("last_a.pt", "last_b.pt")]
    refused = tracking.delete_artifacts(run_id, paths)
    if refused:
        say(f"run {run_id}: the artifact store cannot delete {', '.join(refused)}; they stay "
            "(keep_checkpoints=all keeps them on purpose)")


def record_start(run: tracking.TrackedRun, job: Job, probes: Probes, data: Splits) -> None:
    """What a new run records before its first step."""
    for path, record in job.first_records.items():
        run.log_state(record, path)
    for path, table in probes.tables.items():
        run.log_table(table, path)
    if job.first_metrics:
        run.metrics(dict(job.first_metrics), 0)
    for split, inputs, labels, context in (("train", data.x_train, data.y_train, "training"),
                                           ("test", data.x_test, data.y_test, "evaluation")):
        array = inputs.cpu().numpy() if isinstance(inputs, torch.Tensor) else np.array(inputs.paths)
        run.log_dataset(array, labels.cpu().numpy(), data.source, f"{data.name}-{split}", context)


def record_end(run: tracking.TrackedRun, model: nn.Module, data: Splits, teacher: Teacher | None,
               log_model: bool, register_as: str) -> dict[str, float]:
    """A trained run's final confidences, weights and, with `log_model`, model (registered as
    `register_as`, if any); its final accuracies (and agreement). The weights are
    `checkpoints/final.pt` either way: what students, `analyze` and `switch` load."""
    logits = predict_splits(model, data)
    for split, table in run.confidence_tables(logits).items():
        run.log_table(table, f"confidences/{split}.parquet")
    run.log_state(model.state_dict(), "checkpoints/final.pt")
    if log_model:
        run.log_model(portable(model).cpu(), data.x_train[:2], register_as)
    return evaluate(logits, data, teacher.logits if teacher is not None else None)
