"""train_teacher and distill: load data, find or train the runs a result needs, log them."""
from __future__ import annotations

import copy
import sys

import torch

from kdtrack.confidence import student_table, teacher_table
from kdtrack.config import DistillConfig, TrainConfig, to_params
from kdtrack.data import Splits, load_dataset
from kdtrack.errors import UserError
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights
from kdtrack import tracking
from kdtrack.training import NonFiniteLoss, Plan, fit, pick_device, predict_splits

# Fields that do not change what is trained, left out of reuse keys.
NOT_IN_KEY = ("preset", "download", "log_every", "snapshot_every", "checkpoint_every", "teacher_run_id",
              "force")


def say(message: str) -> None:
    print(f"kdtrack: {message}", file=sys.stderr, flush=True)


def key_params(config) -> dict[str, str]:
    return {k: v for k, v in to_params(config).items() if k not in NOT_IN_KEY}


def load_data(config: TrainConfig) -> Splits:
    data = load_dataset(config.dataset, config.data_dir, config.download, config.train_size,
                        config.label_noise, config.seed)
    return data.to(pick_device())


def run_name(role: str, config: TrainConfig, arch: str) -> str:
    return f"{role}-{config.preset}-{config.dataset}-{arch}-seed{config.seed}"


def _train_and_log(run: tracking.TrackedRun, model, data: Splits, config: TrainConfig,
                   weights: list[float], teacher_logits=None, temperature: float = 1.0) -> None:
    """The part shared by teachers and students: train, then log tables, weights and model.
    Any failure marks the run FAILED (KILLED on Ctrl-C) with its reason before propagating."""
    try:
        run.log_dataset(data.x_train.cpu().numpy(), data.y_train.cpu().numpy(), data.source,
                        f"{data.name}-train", "training")
        fit(model, data, config, weights, teacher_logits, temperature, log=run)
        final = predict_splits(model, data)
        for split, table in run.tables(final).items():
            run.log_table(table, f"confidences/{split}.parquet")
        run.log_state(model.state_dict(), "checkpoints/final.pt")
        run.log_model(model.cpu(), data.x_train[:2])
        run.finish("FINISHED")
    except NonFiniteLoss as error:
        run.set_tags({"kdtrack.failure": str(error)})
        run.finish("FAILED")
        raise UserError(f"run {run.run_id} stopped: {error}") from None
    except BaseException as error:
        run.set_tags({"kdtrack.failure": f"{type(error).__name__}: {error}"[:5000]})
        run.finish("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise


def train_teacher(config: TrainConfig, experiment: str = "", data: Splits | None = None) -> str:
    """Train a model on the one-hot loss (Eq. 1), or reuse a finished identical run; its id."""
    tracking.check_store()
    experiment_id = tracking.resolve_experiment(experiment)
    params = key_params(config)
    key = tracking.run_key("teacher", params)
    found = None if config.force else tracking.find_finished(experiment_id, "teacher", key, params)
    if found:
        say(f"reusing finished teacher run {found.info.run_id} ({found.info.run_name})")
        tracking.mark_launcher_result(found.info.run_id)
        return found.info.run_id
    data = data or load_data(config)
    device = data.x_train.device
    torch.manual_seed(config.seed)
    model = build_model(config.arch, data.input_shape, data.num_classes, config.width, config.depth).to(device)
    tables = lambda logits: {s: teacher_table(logits[s], *split_labels(data, s)) for s in logits}
    run = tracking.TrackedRun(experiment_id, "teacher", run_name("teacher", config, config.arch),
                              to_params(config),
                              {tracking.KEY: key, "kdtrack.num_classes": str(data.num_classes)}, tables)
    say(f"training teacher {config.arch} on {config.dataset} (run {run.run_id})")
    run.log_state(copy.deepcopy(model.state_dict()), "checkpoints/init.pt")
    plan = Plan.of(config, len(data.y_train))
    _train_and_log(run, model, data, config, constant_weights(plan.total_steps, 0.0))
    return run.run_id


def split_labels(data: Splits, split: str):
    """Labels trained on and mislabeled flags of a split (the test set has no label noise)."""
    if split == "train":
        return data.y_train, data.is_noisy
    return data.y_test, torch.zeros_like(data.y_test, dtype=torch.bool)


def load_teacher(run_id: str, data: Splits, expected_dataset: str):
    """Rebuild a finished teacher run's model from its params and final weights."""
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
    model = build_model(params["arch"], data.input_shape, data.num_classes, int(params["width"]),
                        int(params["depth"]))
    model.load_state_dict(tracking.load_state(run_id, "checkpoints/final.pt"))
    return model.to(data.x_train.device).eval(), params


def distill(config: DistillConfig, experiment: str = "") -> str:
    """Train a student on `distill_weight * KD + (1 - distill_weight) * CE` against a teacher that
    is given, reused or trained first; where architectures differ, also the one-hot student."""
    tracking.check_store()
    experiment_id = tracking.resolve_experiment(experiment)
    data = load_data(config)
    teacher_id = config.teacher_run_id or train_teacher(config.teacher_config, experiment, data)
    teacher, teacher_params = load_teacher(teacher_id, data, config.dataset)
    tags = {"kdtrack.teacher_run_id": teacher_id, "kdtrack.num_classes": str(data.num_classes)}
    if config.arch != teacher_params["arch"]:
        tags["kdtrack.onehot_run_id"] = train_teacher(config.onehot_config, experiment, data)
    else:
        tags["kdtrack.onehot_run_id"] = teacher_id  # self-distillation: the teacher is the baseline

    params = key_params(config)
    tags[tracking.KEY] = tracking.run_key("student", params, upstream=teacher_id)
    found = None if config.force else tracking.find_finished(experiment_id, "student", tags[tracking.KEY], params)
    if found:
        say(f"reusing finished student run {found.info.run_id} ({found.info.run_name})")
        tracking.mark_launcher_result(found.info.run_id)
        return found.info.run_id

    teacher_logits = predict_splits(teacher, data)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, data.input_shape, data.num_classes, config.width, config.depth)
    if config.same_init:
        if config.arch == teacher_params["arch"] and (config.width, config.depth) == (
                int(teacher_params["width"]), int(teacher_params["depth"])):
            model.load_state_dict(tracking.load_state(teacher_id, "checkpoints/init.pt"))
            tags["kdtrack.same_init"] = "teacher"
        else:
            say("same_init skipped: the student's architecture differs from the teacher's")
            tags["kdtrack.same_init"] = "skipped (architectures differ)"
    model = model.to(data.x_train.device)
    tables = lambda logits: {s: student_table(logits[s], teacher_logits[s], *split_labels(data, s)) for s in logits}
    name = run_name("student", config, f"{teacher_params['arch']}>{config.arch}")
    run = tracking.TrackedRun(experiment_id, "student", name, to_params(config), tags, tables)
    say(f"distilling {teacher_params['arch']} -> {config.arch} on {config.dataset} (run {run.run_id})")
    teacher_train_acc = (teacher_logits["train"].argmax(1) == data.y_train).float().mean().item()
    run.metrics({"teacher/train_acc": teacher_train_acc,
                 "teacher/test_acc": (teacher_logits["test"].argmax(1) == data.y_test).float().mean().item()}, 0)
    plan = Plan.of(config, len(data.y_train))
    _train_and_log(run, model, data, config, constant_weights(plan.total_steps, config.distill_weight),
                   teacher_logits, config.temperature)
    return run.run_id
