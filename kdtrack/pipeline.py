"""train_teacher and distill: load data, find or train the runs a result needs, log them."""
from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from kdtrack.confidence import student_table, teacher_table
from kdtrack.config import DistillConfig, SwitchConfig, TrainConfig, to_params
from kdtrack.data import Splits, load_dataset
from kdtrack.errors import UserError
from kdtrack.interrupts import stop_requests
from kdtrack.models import build_model, check_fits
from kdtrack.schedules import constant_weights, switch_weights
from kdtrack import tracking
from kdtrack.training import NonFiniteLoss, Plan, fit, pick_device, place, predict_splits

# Fields that do not change what is trained, left out of reuse keys.
NOT_IN_KEY = ("preset", "download", "log_every", "eval_every", "snapshot_every", "checkpoint_every",
              "eigen", "eigen_k", "teacher_run_id", "force", "resume")
EIGEN_POINTS = 10_000  # training inputs the eigendirections are computed from, at most
# The final layer's weights are kept at every log step for §D.7 only up to this size: Table 7's
# heads (5,000 x 10 at most) fit, an ImageNet head (512 x 1000) would cost 2 MB per step.
LAST_LAYER_CAP = 100_000


def say(message: str) -> None:
    print(f"kdtrack: {message}", file=sys.stderr, flush=True)


def key_params(config) -> dict[str, str]:
    return {k: v for k, v in to_params(config).items() if k not in NOT_IN_KEY}


def load_data(config: TrainConfig) -> Splits:
    data = load_dataset(config.dataset, config.data_dir, config.download, config.train_size,
                        config.label_noise, config.seed, image_size=config.image_size, workers=config.workers,
                        tokenizer=config.tokenizer_folder, max_length=config.max_length)
    return data.to(pick_device())


def new_model(params: dict[str, str], data: Splits) -> nn.Module:
    """The architecture `params` (a run's or a config's, as strings) name, for `data`, on its device."""
    model = build_model(params["arch"], data.input_shape, data.num_classes, int(params["width"]),
                        int(params["depth"]), pretrained=params.get("pretrained", ""), **data.extras)
    return place(model, data.y_train.device)


def run_name(role: str, config: TrainConfig, arch: str) -> str:
    return f"{role}-{config.preset}-{config.dataset}-{arch}-seed{config.seed}"


def split_labels(data: Splits, split: str):
    """Labels trained on and mislabeled flags of a split (the test set has no label noise)."""
    if split == "train":
        return data.y_train, data.is_noisy
    return data.y_test, torch.zeros_like(data.y_test, dtype=torch.bool)


@dataclass
class Job:
    """One training run to find, resume or start: what `train_teacher`, `distill` and `switch`
    hand to `run_job`."""

    role: str
    config: TrainConfig
    name: str
    tags: dict[str, str]
    weights: list[float]  # distillation weight per step; its length is the training length
    make_model: Callable[[], nn.Module]
    tables: Callable[[dict], dict]
    upstream: str = ""  # the run this one depends on, part of the reuse key
    teacher_logits: dict | None = None
    teacher: nn.Module | None = None  # run on each batch when inputs are augmented
    temperature: float = 1.0
    start: dict | None = None  # a checkpoint to start from (switch's from_run_id)
    snapshot_at: tuple[int, ...] = ()  # confidence snapshots besides every `snapshot_every` steps
    first_records: dict[str, object] = field(default_factory=dict)  # artifact path -> state, at start
    first_metrics: dict[str, float] = field(default_factory=dict)  # logged at step 0
    first_tables: dict[str, object] = field(default_factory=dict)  # artifact path -> polars table
    probes: dict[str, Callable] = field(default_factory=dict)  # see TrackedRun.observe


def eigen_probe(job: Job, data: Splits) -> None:
    """Record ||W^T v_k|| of the first layer at every log step (paper §D.3) in
    `eigen/trajectory.parquet`, with the eigenvalues in `eigen/eigenvalues.parquet`; and the final
    linear layer's weights per log step (`eigen/last_layer_weights.pt`), for §D.7."""
    import polars as pl

    from kdtrack.eigen import components, eigendirections, last_layer, layer_inputs, weight_matrix

    model = job.make_model()
    values, vectors = eigendirections(layer_inputs(model, data.x_train[:EIGEN_POINTS], job.config.seed),
                                      job.config.eigen_k)
    names = [f"v{k}" for k in range(1, len(values) + 1)]
    vectors = vectors.to(data.y_train.device)
    job.first_tables["eigen/eigenvalues.parquet"] = pl.DataFrame({"direction": names, "eigenvalue": values.numpy()})
    job.probes["eigen/trajectory.parquet"] = lambda m: dict(zip(names, components(weight_matrix(m), vectors).tolist()))
    head = last_layer(model)
    if head and head[1].weight.numel() > LAST_LAYER_CAP:
        job.tags["kdtrack.eigen_last_layer"] = f"not recorded: {head[1].weight.numel()} weights > {LAST_LAYER_CAP}"
    elif head:  # §D.7: projected in the analysis, onto the teacher's final representation
        job.probes["eigen/last_layer_weights.pt"] = lambda m: last_layer(m)[1].weight.detach().T.cpu().clone()

def run_job(experiment_id: str, job: Job, data: Splits) -> str:
    """Reuse a FINISHED run with the same key and params, else resume an interrupted one from its
    last checkpoint, else start a new run; train, then log tables, weights and the model.
    Any failure marks the run FAILED (KILLED on Ctrl-C/SIGTERM) with its reason."""
    config = job.config
    params = key_params(config)
    job.tags[tracking.KEY] = key = tracking.run_key(job.role, params, job.upstream)
    if not config.force:
        found = tracking.find_finished(experiment_id, job.role, key, params)
        if found:
            say(f"reusing finished {job.role} run {found.info.run_id} ({found.info.run_name})")
            tracking.mark_launcher_result(found.info.run_id)
            return found.info.run_id
    if config.eigen and not job.probes:
        eigen_probe(job, data)
    paused = None if config.force or not config.resume else tracking.find_resumable(experiment_id, job.role, key, params)
    model = job.make_model()
    state = tracking.load_state(paused.info.run_id, paused.data.tags[tracking.RESUME]) if paused else job.start
    with stop_requests() as stop:  # no interrupt between creating the run and being able to mark it
        run = open_run(experiment_id, job, config, paused, state)
    try:
        if stop:
            raise KeyboardInterrupt(f"stopped by signal {stop[0]} before training")
        if not paused:
            for path, record in job.first_records.items():
                run.log_state(record, path)
            for path, table in job.first_tables.items():
                run.log_table(table, path)
            if job.first_metrics:
                run.metrics(job.first_metrics, 0)
            inputs = data.x_train.cpu().numpy() if isinstance(data.x_train, torch.Tensor) else np.array(data.x_train.paths)
            run.log_dataset(inputs, data.y_train.cpu().numpy(), data.source, f"{data.name}-train", "training")
        fit(model, data, config, job.weights, job.teacher_logits, job.temperature, log=run, resume=state,
            snapshot_at=job.snapshot_at, teacher=job.teacher)
        final = predict_splits(model, data)
        for split, table in run.tables(final).items():
            run.log_table(table, f"confidences/{split}.parquet")
        run.log_state(model.state_dict(), "checkpoints/final.pt")
        run.log_model(model.cpu(), data.x_train[:2])
    except NonFiniteLoss as error:
        run.set_tags({"kdtrack.failure": str(error)})
        run.finish("FAILED")
        raise UserError(f"run {run.run_id} stopped: {error}") from None
    except BaseException as error:
        run.set_tags({"kdtrack.failure": f"{type(error).__name__}: {error}"[:5000]})
        run.finish(getattr(error, "status", "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"))
        raise
    run.finish("FINISHED")  # outside the try: a signal it defers is raised once the run is FINISHED
    return run.run_id


def open_run(experiment_id: str, job: Job, config: TrainConfig, paused, state: dict) -> tracking.TrackedRun:
    """Reopen the interrupted run `paused` at its checkpoint `state`, or create a new run."""
    if not paused:
        run = tracking.TrackedRun(experiment_id, job.role, job.name, to_params(config), job.tags, job.tables,
                                  probes=job.probes)
        say(f"training {job.name} (run {run.run_id})")
        return run
    run = tracking.TrackedRun(experiment_id, job.role, job.name, {}, {}, job.tables, paused.info.run_id, job.probes)
    run.restore_probes(state)
    run.resume_path = paused.data.tags[tracking.RESUME]
    say(f"resuming {job.role} run {run.run_id} ({paused.info.status}) after step {state['step']}")
    return run


def teacher_job(config: TrainConfig, data: Splits) -> Job:
    def make_model():
        torch.manual_seed(config.seed)
        return new_model(to_params(config), data)

    init = copy.deepcopy(make_model().state_dict())
    return Job("teacher", config, run_name("teacher", config, config.arch),
               {"kdtrack.num_classes": str(data.num_classes)},
               constant_weights(Plan.of(config, len(data.y_train)).total_steps, 0.0), make_model,
               lambda logits: {s: teacher_table(logits[s], *split_labels(data, s)) for s in logits},
               first_records={"checkpoints/init.pt": init})


def train_teacher(config: TrainConfig, experiment: str = "", data: Splits | None = None) -> str:
    """Train a model on the one-hot loss (Eq. 1), or reuse a finished identical run; its id."""
    tracking.check_store()
    data = data or load_data(config)
    return run_job(tracking.resolve_experiment(experiment), teacher_job(config, data), data)


def load_teacher(run_id: str, data: Splits, expected_dataset: str):
    """Rebuild a finished teacher run's model from its params and final weights."""
    run_id = tracking.follow_launcher(run_id)
    run = tracking.get_run(run_id)
    role = run.data.tags.get(tracking.ROLE)
    if role != "teacher":
        raise UserError(f"teacher_run_id={run_id!r} is a {role or 'non-kdtrack'} run; a teacher run "
                        "(role 'teacher', from train_teacher) is required")
    if run.info.status != "FINISHED":
        raise UserError(f"teacher_run_id={run_id!r} has status {run.info.status}; a FINISHED run is required")
    params = run.data.params
    classes = run.data.tags.get("kdtrack.num_classes")
    if params.get("dataset") != expected_dataset or classes != str(data.num_classes):
        raise UserError(f"teacher_run_id={run_id!r} was trained on dataset {params.get('dataset')!r} "
                        f"with {classes} classes; this student needs {expected_dataset!r} with "
                        f"{data.num_classes} classes")
    return run_id, rebuild_model(run, data), params


def rebuild_model(run, data: Splits) -> nn.Module:
    """A finished run's model, from its params and `checkpoints/final.pt`."""
    model = new_model(run.data.params, data)
    model.load_state_dict(tracking.load_state(run.info.run_id, "checkpoints/final.pt"))
    return model.eval()


def data_of(run) -> Splits:
    """The data a run trained on, loaded again from its params."""
    from dataclasses import fields

    from kdtrack.config import from_params

    names = {f.name for f in fields(TrainConfig)}
    return load_data(from_params(TrainConfig, {k: v for k, v in run.data.params.items() if k in names}))


def student_job(config: DistillConfig, experiment: str, data: Splits, weights: list[float]) -> Job:
    """A student of the teacher `config` names, reused or trained first; where architectures
    differ, the one-hot student Table 2 compares against is trained (or reused) too."""
    check_fits(config.arch, config.depth, data.input_shape)  # before the teacher trains, not after
    if not config.teacher_run_id:
        own = config.teacher_config.arch != config.arch or config.teacher_depth  # else it is `depth`
        check_fits(config.teacher_config.arch, config.teacher_config.depth, data.input_shape, "teacher_" * bool(own))
    teacher_id = config.teacher_run_id or train_teacher(config.teacher_config, experiment, data)
    teacher_id, teacher, teacher_params = load_teacher(teacher_id, data, config.dataset)
    tags = {"kdtrack.teacher_run_id": teacher_id, "kdtrack.num_classes": str(data.num_classes)}
    if config.arch != teacher_params["arch"]:
        tags["kdtrack.onehot_run_id"] = train_teacher(config.onehot_config, experiment, data)
    else:
        tags["kdtrack.onehot_run_id"] = teacher_id  # self-distillation: the teacher is the baseline

    same_shape = (config.arch, str(config.width), str(config.depth)) == (
        teacher_params["arch"], teacher_params["width"], teacher_params["depth"])
    tags["kdtrack.same_init"] = ("teacher" if same_shape else "skipped (architectures differ)") \
        if config.same_init else "no"
    if config.same_init and not same_shape:
        say("same_init skipped: the student's architecture differs from the teacher's")

    def make_model():
        torch.manual_seed(config.seed)
        model = new_model(to_params(config), data)
        if config.same_init and same_shape:
            model.load_state_dict(tracking.load_state(teacher_id, "checkpoints/init.pt"))
        return model

    teacher_logits = predict_splits(teacher, data)
    accuracy = {f"teacher/{split}_acc": (teacher_logits[split].argmax(1) == split_labels(data, split)[0])
                .float().mean().item() for split in teacher_logits}
    return Job("student", config, run_name("student", config, f"{teacher_params['arch']}>{config.arch}"),
               tags, weights, make_model,
               lambda logits: {s: student_table(logits[s], teacher_logits[s], *split_labels(data, s)) for s in logits},
               upstream=teacher_id, teacher_logits=teacher_logits, teacher=teacher, temperature=config.temperature,
               first_metrics=accuracy)


def distill(config: DistillConfig, experiment: str = "") -> str:
    """Train a student on `distill_weight * KD + (1 - distill_weight) * CE` against a teacher that
    is given, reused or trained first."""
    tracking.check_store()
    data = load_data(config)
    weights = constant_weights(Plan.of(config, len(data.y_train)).total_steps, config.distill_weight)
    return run_job(tracking.resolve_experiment(experiment), student_job(config, experiment, data, weights), data)


def switch_step(config: SwitchConfig, nominal_steps: int) -> int:
    return round(config.switch_at * nominal_steps) if config.switch_at <= 1 else int(config.switch_at)


# Config fields a `from_run_id` run must share with the switch run for its checkpoint to be the
# switch run's own state at the switch step.
def _must_match(config: SwitchConfig, role: str) -> tuple[str, ...]:
    shared = tuple(k for k in key_params(TrainConfig()) if k not in ("arch", "width", "depth"))
    return shared + (("temperature", "distill_weight", "same_init") if role == "student" else ())


def starting_checkpoint(config: SwitchConfig, step: int, teacher_id: str) -> tuple[str, dict]:
    """The state `from_run_id` had after `step` steps: a distilled student of the same teacher
    (switch_to=onehot) or a one-hot run of the student's architecture (switch_to=distill)."""
    run_id = tracking.follow_launcher(config.from_run_id)
    run = tracking.get_run(run_id)
    role = "student" if config.switch_to == "onehot" else "teacher"
    if run.data.tags.get(tracking.ROLE) != role:
        raise UserError(f"from_run_id={config.from_run_id!r} is a {run.data.tags.get(tracking.ROLE) or 'non-kdtrack'} "
                        f"run; switch_to={config.switch_to} starts from a {role} run")
    if role == "student" and run.data.tags.get("kdtrack.teacher_run_id") != teacher_id:
        raise UserError(f"from_run_id={config.from_run_id!r} distilled from teacher "
                        f"{run.data.tags.get('kdtrack.teacher_run_id')!r}, not from {teacher_id!r}")
    ours = to_params(config)
    for name in ("arch", "width", "depth") + _must_match(config, role):
        if run.data.params.get(name) != ours[name]:
            raise UserError(f"from_run_id={config.from_run_id!r} has {name}={run.data.params.get(name)!r}; "
                            f"this switch run needs {name}={ours[name]!r}")
    steps = sorted(int(a.path.split("_")[-1][:-3]) for a in tracking.client().list_artifacts(run_id, "checkpoints")
                   if a.path.startswith("checkpoints/step_") and a.path.endswith(".pt"))
    if step not in steps:
        raise UserError(f"from_run_id={config.from_run_id!r} has no checkpoint at the switch step {step}; "
                        f"it has steps {steps or 'none'} (choose switch_at among them, or retrain with checkpoint_every)")
    return run_id, tracking.load_state(run_id, f"checkpoints/step_{step}.pt")


def switch(config: SwitchConfig, experiment: str = "") -> str:
    """A student whose loss switches between distillation and one-hot (see SwitchConfig)."""
    tracking.check_store()
    data = load_data(config)
    nominal = Plan.of(config, len(data.y_train)).total_steps
    at, total = switch_step(config, nominal), config.extend_to or nominal
    if total < nominal:
        raise UserError(f"extend_to={config.extend_to} is before the nominal end (step {nominal}); "
                        f"allowed: 0 or a step >= {nominal}")
    if at >= total:
        raise UserError(f"switch_at={config.switch_at!r} is step {at}, not before the last step {total}")
    if not config.eval_every:  # the accuracy trajectory is the point of a switch run (Fig. 24)
        config = dataclasses.replace(config, eval_every=max(1, total // 20))
    start, end = (config.distill_weight, 0.0) if config.switch_to == "onehot" else (0.0, config.distill_weight)
    job = student_job(config, experiment, data, switch_weights(total, start, end, at, config.switch_window))
    job.name = job.name.replace("student-", f"switch-to-{config.switch_to}-", 1)
    job.tags.update({"kdtrack.switch_to": config.switch_to, "kdtrack.switch_step": str(at),
                     "kdtrack.switch_window": str(config.switch_window)})
    job.snapshot_at = tuple(sorted({at, at + config.switch_window, total, *(round(k * total / 4) for k in (1, 2, 3))}))
    if config.from_run_id:
        job.tags["kdtrack.from_run_id"], job.start = starting_checkpoint(config, at, job.upstream)
        say(f"starting from run {job.tags['kdtrack.from_run_id']} at step {at}")
    return run_job(tracking.resolve_experiment(experiment), job, data)
