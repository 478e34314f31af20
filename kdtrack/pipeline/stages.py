"""train_teacher, distill and switch: build the finished `Job` each trains, with the runs it
needs (a teacher, a one-hot baseline, a starting checkpoint) found or trained first."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from kdtrack import tracking
from kdtrack.config import DistillConfig, SwitchConfig, TrainConfig, from_params, key_params, to_params
from kdtrack.contract import (
    FROM_RUN,
    INIT_DIGEST,
    NUM_CLASSES,
    ONEHOT_RUN,
    ROLE,
    SAME_INIT,
    SWITCH_STEP,
    SWITCH_TO,
    SWITCH_WINDOW,
    TEACHER_RUN,
)
from kdtrack.data import Splits
from kdtrack.errors import UserError
from kdtrack.markdown import inert
from kdtrack.metrics.confidence import phi_quantiles, student_table, teacher_table
from kdtrack.models import check_fits
from kdtrack.pipeline.jobs import Job, run_job
from kdtrack.pipeline.rebuild import (
    INIT,
    initial_state,
    load_data,
    new_model,
    rebuild_model,
    seeded_model,
    state_digest,
)
from kdtrack.say import say
from kdtrack.schedules import LossWeights, constant_weights, switch_weights
from kdtrack.tracking import RunContext
from kdtrack.training.loop import Teacher, predict_splits
from kdtrack.training.state import Plan, TrainState

NO_CONTEXT = RunContext()


def overrides(config: TrainConfig) -> dict[str, str]:
    """What `config` trains differently from its preset: the fields of its reuse key that differ
    from the preset's values, the seed aside."""
    preset = to_params(from_params(type(config), {"preset": config.preset}))
    return {k: v for k, v in key_params(config).items() if k != "seed" and preset[k] != v}


KD_FIELDS = ("kd_target", "confidence_power", "confidence_spread", "kd_loss")


def run_name(kind: str, config: TrainConfig) -> str:
    """Short and unique in the MLflow UI's runs table, the setting first: `mnist_mlp·s0·student`;
    a setting that overrides its preset adds a short digest of the overrides (`·3fa1`), which the
    run's description spells out; a confidence-aware KD target and a KD method are named in full."""
    changed = {k: v for k, v in overrides(config).items() if k not in KD_FIELDS}
    digest = hashlib.sha256(repr(sorted(changed.items())).encode()).hexdigest()[:4]
    # a confidence-aware KD target is spelled out: `mnist_mlp·s0·student·confidence_weighted0.5`
    target = getattr(config, "kd_target", "standard")
    named = f"·{target}={config.kd_strength}" if target != "standard" else ""
    method = getattr(config, "kd_loss", "kd")  # `mnist_mlp·s0·student·dkd`; its weights, where set, in the digest
    named += f"·{method}" if method != "kd" else ""
    return f"{config.preset}·s{config.seed}·{kind}{named}" + (f"·{digest}" if changed else "")


def summary(config: TrainConfig, *details: str) -> str:
    """A run's description beyond its role: setting, seed, and what overrides the preset."""
    lines = [f"Preset `{config.preset}`, seed {config.seed}: `{config.arch}` on `{config.dataset}`.", *details]
    changed = overrides(config)
    if changed:
        # a value is the user's text (a path, a tokenizer): made inert, not put in a code span it could close
        values = ", ".join(f"`{k}`={inert(str(v))}" for k, v in sorted(changed.items()))
        lines.append(f"Overrides of the preset: {values}.")
    return "\n\n".join(lines)


def split_labels(data: Splits, split: str):
    """Labels trained on and mislabeled flags of a split (the test set has no label noise)."""
    if split == "train":
        return data.y_train, data.is_noisy
    return data.y_test, torch.zeros_like(data.y_test, dtype=torch.bool)


def teacher_job(config: TrainConfig, data: Splits) -> Job:
    """A one-hot run. Its initial weights, which `same_init` students and `switch` start from, are
    `checkpoints/init.pt`; with keep_checkpoints=last only their digest, since the seed draws
    them again exactly (rebuild.initial_state checks that it did)."""
    def make_model():
        return seeded_model(to_params(config), data)

    init = copy.deepcopy(make_model().state_dict())
    tags = {NUM_CLASSES: str(data.num_classes)}
    records = {INIT: init}
    if config.keep_checkpoints == "last":
        tags, records = {**tags, INIT_DIGEST: state_digest(init)}, {}
    return Job("teacher", config, run_name("teacher", config), tags,
               constant_weights(Plan.of(config, len(data.y_train)).total_steps, 0.0), make_model,
               lambda logits: {s: teacher_table(logits[s], *split_labels(data, s)) for s in logits},
               first_records=records, summary=summary(config))


def train_teacher(config: TrainConfig, experiment: str = "", data: Splits | None = None,
                  context: RunContext = NO_CONTEXT) -> str:
    """Train a model on the one-hot loss (Eq. 1), or reuse a finished identical run; its id."""
    tracking.check_store()
    data = data or load_data(config)
    return run_job(tracking.resolve_experiment(experiment, context), teacher_job(config, data), data, context)


def load_teacher(run_id: str, data: Splits, expected_dataset: str):
    """Rebuild a finished teacher run's model from its params and final weights."""
    run = tracking.require_run(run_id, "teacher", "teacher_run_id",
                               "a teacher run (role 'teacher', from train_teacher) is required")
    params = run.data.params
    classes = run.data.tags.get(NUM_CLASSES)
    if params.get("dataset") != expected_dataset or classes != str(data.num_classes):
        raise UserError(f"teacher_run_id={run_id!r} was trained on dataset {params.get('dataset')!r} "
                        f"with {classes} classes; this student needs {expected_dataset!r} with "
                        f"{data.num_classes} classes")
    return run.info.run_id, rebuild_model(run, data), params


@dataclass(frozen=True)
class Lineage:
    """What a student inherits from the runs before it: its teacher, its one-hot baseline, its
    initialization."""

    teacher_id: str
    teacher_arch: str
    teacher: Teacher
    tags: Mapping[str, str]
    make_model: Callable[[], nn.Module]
    first_metrics: Mapping[str, float]


def lineage(config: DistillConfig, experiment: str, data: Splits, context: RunContext) -> Lineage:
    """The teacher `config` names, reused or trained first; where architectures differ, the
    one-hot student Table 2 compares against is trained (or reused) too."""
    check_sizes(config, data)  # before the teacher trains, not after
    teacher_id = config.teacher_run_id or train_teacher(config.teacher_config, experiment, data, context)
    teacher_id, teacher, teacher_params = load_teacher(teacher_id, data, config.dataset)
    # Self-distillation's baseline is the teacher, unless the teacher saw only part of the data:
    # Evidence 1 compares the student with one-hot training on the whole of it.
    if config.arch != teacher_params["arch"] or float(teacher_params.get("fit_fraction", 1)) != config.fit_fraction:
        onehot_id = train_teacher(config.onehot_config, experiment, data, context)
    else:
        onehot_id = teacher_id
    same_init = initialization(config, teacher_params)
    if same_init.startswith("skipped"):
        say("same_init skipped: the student's architecture differs from the teacher's")
    logits = predict_splits(teacher, data)
    quantiles = None
    if config.kd_target == "confidence_tempered":  # each training point ranked by the teacher's phi, once
        quantiles = phi_quantiles(logits["train"]).to(logits["train"].device, torch.float32)
    tags = {TEACHER_RUN: teacher_id, NUM_CLASSES: str(data.num_classes), ONEHOT_RUN: onehot_id, SAME_INIT: same_init}
    distiller = Teacher(logits, teacher, config.temperature, config.kd_target, config.kd_strength, quantiles,
                        config.kd_loss, config.kd_loss_weights)
    return Lineage(teacher_id, teacher_params["arch"], distiller, tags,
                   student_maker(config, data, teacher_id, teacher_params, same_init),
                   teacher_accuracy(logits, data))


def check_sizes(config: DistillConfig, data: Splits) -> None:
    """The student, and a teacher that is to be trained, fit in memory; a pretrained (text) model is
    its checkpoint's size."""
    check_fits(config.arch, config.depth, data.input_shape, "", config.width,
               0 if config.pretrained else data.num_classes, **data.extras)
    if not config.teacher_run_id:
        teacher = config.teacher_config
        own = teacher.arch != config.arch or config.teacher_depth or config.teacher_width  # else the student's
        check_fits(teacher.arch, teacher.depth, data.input_shape, "teacher_" * bool(own), teacher.width,
                   0 if teacher.pretrained else data.num_classes, **data.extras)


def initialization(config: DistillConfig, teacher_params: Mapping[str, str]) -> str:
    """The student's `kdtrack.same_init`: `teacher` (the teacher's initial weights), `no`, or
    skipped where the shapes differ."""
    same_shape = (config.arch, str(config.width), str(config.depth)) == (
        teacher_params["arch"], teacher_params["width"], teacher_params["depth"])
    if not config.same_init:
        return "no"
    return "teacher" if same_shape else "skipped (architectures differ)"


def student_maker(config: DistillConfig, data: Splits, teacher_id: str, teacher_params: Mapping[str, str],
                  same_init: str) -> Callable[[], nn.Module]:
    """A new student model, seeded; with `same_init=teacher`, from the teacher's initial weights."""
    def make_model():
        torch.manual_seed(config.seed)
        # The teacher's seed draws random features' fixed projection, which its init.pt does not store.
        seed = teacher_params["seed"] if same_init == "teacher" else str(config.seed)
        model = new_model({**to_params(config), "seed": seed}, data)
        if same_init == "teacher":
            model.load_state_dict(initial_state(tracking.get_run(teacher_id), data))
        return model

    return make_model


def teacher_accuracy(logits: dict[str, torch.Tensor], data: Splits) -> dict[str, float]:
    """The teacher's accuracy per split, logged at a student's step 0."""
    return {f"teacher/{split}_acc": (logits[split].argmax(1) == split_labels(data, split)[0]).float().mean().item()
            for split in logits}


def student_job(config: DistillConfig, data: Splits, parents: Lineage, weights: LossWeights, kind: str = "student",
                tags: Mapping[str, str] | None = None, snapshot_at: tuple[int, ...] = (),
                start: TrainState | None = None, switching: str = "") -> Job:
    """A student's job; `kind` names its runs (mnist_mlp·s0·student, ...·switch-to-onehot);
    `switching`: how its loss switches, for its description."""
    def tables(logits):
        return {s: student_table(logits[s], parents.teacher.logits[s], *split_labels(data, s)) for s in logits}

    distilled = (f"Distilled from a `{parents.teacher_arch}` teacher at temperature {config.temperature:g}, "
                 f"distill_weight {config.distill_weight:g}; same_init: {parents.tags[SAME_INIT]}.")
    return Job("student", config, run_name(kind, config), {**parents.tags, **(tags or {})}, weights,
               parents.make_model, tables, upstream=parents.teacher_id, teacher=parents.teacher, start=start,
               snapshot_at=snapshot_at, first_metrics=parents.first_metrics,
               summary=summary(config, *filter(None, [distilled, switching])))


def whole_ids(config: DistillConfig) -> DistillConfig:
    """`config` with the run ids it names given in full where a prefix was given: the params,
    and a switch run's reuse key, record whole ids."""
    named = {name: getattr(config, name) for name in ("teacher_run_id", "from_run_id") if getattr(config, name, "")}
    return dataclasses.replace(config, **{name: tracking.resolve_run_id(value) for name, value in named.items()})


def distill(config: DistillConfig, experiment: str = "", context: RunContext = NO_CONTEXT) -> str:
    """Train a student on `distill_weight * KD + (1 - distill_weight) * CE` against a teacher that
    is given, reused or trained first."""
    tracking.check_store()
    config = whole_ids(config)
    data = load_data(config)
    weights = constant_weights(Plan.of(config, len(data.y_train)).total_steps, config.distill_weight)
    job = student_job(config, data, lineage(config, experiment, data, context), weights)
    return run_job(tracking.resolve_experiment(experiment, context), job, data, context)


def switch_step(config: SwitchConfig, nominal_steps: int) -> int:
    return round(config.switch_at * nominal_steps) if config.switch_at <= 1 else int(config.switch_at)


# Config fields a `from_run_id` run must share with the switch run for its checkpoint to be the
# switch run's own state at the switch step (snapshots are records, not state).
def _must_match(config: SwitchConfig, role: str) -> tuple[str, ...]:
    shared = tuple(k for k in key_params(TrainConfig()) if k not in ("arch", "width", "depth", "snapshot_every"))
    distilled = ("temperature", "distill_weight", "same_init", "kd_target", "confidence_power", "confidence_spread",
                 "kd_loss", "dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma")
    return shared + (distilled if role == "student" else ())


def from_run(config: SwitchConfig):
    """The run `from_run_id` names: a distilled student (switch_to=onehot) or a one-hot run of
    the student's architecture (switch_to=distill)."""
    role = "student" if config.switch_to == "onehot" else "teacher"
    return tracking.require_run(config.from_run_id, role, "from_run_id",
                                f"switch_to={config.switch_to} starts from a {role} run", finished=False)


def starting_checkpoint(config: SwitchConfig, run, step: int, teacher_id: str) -> tuple[str, TrainState]:
    """The state `run` (`from_run`) had after `step` steps; a student must share the switch run's teacher."""
    role, run_id = run.data.tags.get(ROLE), run.info.run_id
    if role == "student" and run.data.tags.get(TEACHER_RUN) != teacher_id:
        raise UserError(f"from_run_id={config.from_run_id!r} distilled from teacher "
                        f"{run.data.tags.get(TEACHER_RUN)!r}, not from {teacher_id!r}")
    ours = to_params(config)
    before = to_params(SwitchConfig())  # a param the run lacks is a field added since: it trained with its default
    for name in ("arch", "width", "depth") + _must_match(config, role):
        if run.data.params.get(name, before[name]) != ours[name]:
            raise UserError(f"from_run_id={config.from_run_id!r} has {name}={run.data.params.get(name)!r}; "
                            f"this switch run needs {name}={ours[name]!r}")
    steps = sorted(int(path.split("_")[-1][:-3]) for path, _ in tracking.artifact_paths(run_id, "checkpoints")
                   if path.startswith("checkpoints/step_") and path.endswith(".pt"))
    if step not in steps:
        raise UserError(f"from_run_id={config.from_run_id!r} has no checkpoint at the switch step {step}; "
                        f"it has steps {steps or 'none'} (choose switch_at among them, or retrain it with "
                        "force=true and checkpoint_every, or keep_checkpoints=switch if it kept none)")
    return run_id, TrainState.from_dict(tracking.load_state(run_id, f"checkpoints/step_{step}.pt"))


def from_initialization(make_model: Callable[[], nn.Module], run_id: str, data: Splits) -> Callable[[], nn.Module]:
    """`make_model` with the weights run `run_id` started from (rebuild.initial_state). A switch
    run that starts from a one-hot run's checkpoint trains from that checkpoint's weights either way;
    its fresh model is only W_0 of its eigen displacement (jobs.eigen_probes), which should be where
    that lineage began. With same_init=teacher the student maker would give the teacher's
    initialization instead, a different one where the teacher was drawn with another seed. (A
    student from_run needs no such care: it shares the switch run's teacher, seed and same_init, so
    the student maker gives its initialization.)"""
    state = initial_state(tracking.get_run(run_id), data)
    if state is None:
        return make_model

    def make_from_its_init():
        model = make_model()
        model.load_state_dict(state)
        return model

    return make_from_its_init


def switch(config: SwitchConfig, experiment: str = "", context: RunContext = NO_CONTEXT) -> str:
    """A student whose loss switches between distillation and one-hot (see SwitchConfig)."""
    tracking.check_store()
    config = whole_ids(config)
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
    before, after = (config.distill_weight, 0.0) if config.switch_to == "onehot" else (0.0, config.distill_weight)
    source = from_run(config) if config.from_run_id else None  # a wrong id or role fails before a teacher trains
    parents = lineage(config, experiment, data, context)
    from_id, start = starting_checkpoint(config, source, at, parents.teacher_id) if source else ("", None)
    if source:
        say(f"starting from run {from_id} at step {at}")
    if source and source.data.tags.get(ROLE) == "teacher":
        parents = dataclasses.replace(parents, make_model=from_initialization(parents.make_model, from_id, data))
    tags = {SWITCH_TO: config.switch_to, SWITCH_STEP: str(at), SWITCH_WINDOW: str(config.switch_window),
            **({FROM_RUN: from_id} if source else {})}
    snapshot_at = tuple(sorted({at, at + config.switch_window, total, *(round(k * total / 4) for k in (1, 2, 3))}))
    switching = (f"The loss switches to {config.switch_to} after step {at} (over {config.switch_window} steps) "
                 f"and training ends at step {total}.")
    job = student_job(config, data, parents, switch_weights(total, before, after, at, config.switch_window),
                      f"switch-to-{config.switch_to}", tags, snapshot_at, start, switching)
    return run_job(tracking.resolve_experiment(experiment, context), job, data, context)
