"""The one training loop. Teacher, student and loss switching differ only in the distillation
weight handed in per step. Tracking is an optional `RunLog`; tests pass none."""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable, Collection, Protocol

import torch
from torch import nn

from kdtrack.config import TrainConfig
from kdtrack.data import FolderImages, Splits
from kdtrack.data.augment import augment
from kdtrack.data.splits import stratified_subset
from kdtrack.errors import RunFailure, UserError
from kdtrack.interrupts import leaving, stop_requests
from kdtrack.losses import STANDARD, KDTarget, WholeBatch, combined_loss
from kdtrack.progress import Progress
from kdtrack.schedules import LossWeights
from kdtrack.training.distributed import ONE_PROCESS, World
from kdtrack.training.state import Plan, TrainState, fit_size

EVAL_PROGRESS_DELAY = 2.0  # seconds: an evaluation pass shows progress only when it takes longer


class NonFiniteLoss(RunFailure):
    """Recorded as the run's failure verbatim: a resume skips runs whose failure starts "non-finite"."""

    def __init__(self, step: int, terms: dict[str, float]):
        self.step = step
        super().__init__(f"non-finite loss at step {step}: " + ", ".join(f"{k}={v}" for k, v in terms.items()))


class RunLog(Protocol):
    """What the loop reports; kdtrack.tracking implements it on MLflow."""

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def snapshot(self, step: int, logits: dict[str, torch.Tensor]) -> None: ...
    def checkpoint(self, step: int, state: dict, keep: bool) -> None: ...
    def observe(self, step: int, model: nn.Module) -> None: ...  # e.g. eigen-trajectories


@dataclass(frozen=True)
class Teacher:
    """What a student distills from (paper Eq. 2, at `temperature`). `logits` are the teacher's
    logits on the fixed, unaugmented train and test sets, computed once: the teacher is frozen, so
    recomputing them per batch would be wasted work. With `config.augment` the inputs differ per
    batch, and `module`, when given, is run on each augmented batch instead. `kd_target` and
    `strength` choose the KD term (config.KD_TARGETS); `quantiles`, the teacher's confidence
    quantile per training point (confidence.phi_quantiles), is what confidence_tempered needs.
    `kd_loss` and its two `loss_weights` replace plain KD by another method (config.KD_LOSSES)."""

    logits: dict[str, torch.Tensor]
    module: nn.Module | None = None
    temperature: float = 1.0
    kd_target: str = "standard"
    strength: float = 0.0
    quantiles: torch.Tensor | None = None
    kd_loss: str = "kd"
    loss_weights: tuple[float, float] = (0.0, 0.0)

    def target(self, batch: torch.Tensor, whole: WholeBatch | None = None) -> KDTarget:
        """The KD target of a training batch (`batch` indexes the train set; with data parallelism
        it is this rank's part of the batch, and `whole` gathers the rest)."""
        quantiles = self.quantiles[batch] if self.quantiles is not None else None
        return KDTarget(self.kd_target, self.strength, quantiles, whole, self.kd_loss, self.loss_weights)

    def targets(self, batch: torch.Tensor, inputs: torch.Tensor, augmented: bool,
                device: torch.device) -> torch.Tensor:
        """The teacher's logits on a training batch (`batch` indexes the train set, `inputs` are
        what the student sees): the precomputed ones, which are the teacher's on these very
        inputs when they are not augmented; else the module run on them."""
        if self.module is None or not augmented:
            return self.logits["train"][batch]
        with torch.inference_mode(), autocast(device):
            targets = self.module(inputs)
        return targets.float().clone()  # a normal tensor, usable by autograd



def fit_indices(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """The training points the loop draws batches from: all, or a seeded stratified fraction
    (a teacher that sees only part of the set cannot interpolate the rest, paper §5.2)."""
    if fraction >= 1:
        return torch.arange(len(labels), device=labels.device)
    chosen, _ = stratified_subset(labels.cpu().numpy(), fit_size(len(labels), fraction), seed)
    return torch.as_tensor(chosen, device=labels.device)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """On `device`; on CUDA in channels_last, the layout its convolutions are fastest in."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def on_device(x: torch.Tensor) -> torch.Tensor:
    """Image batches in channels_last on CUDA, to match `place`d models."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.dim() == 4 else x


def autocast(device: torch.device):
    """bf16 autocast for training forward passes on CUDA; float32 elsewhere. Predictions that
    become confidences stay float32: bf16 logits would blur phi by ~0.05."""
    return torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def predict(model: nn.Module, inputs, batch: int = 1024, description: str = "predicting") -> torch.Tensor:
    """Logits of `inputs` (a tensor, or FolderImages read by the DataLoader), in batches, with
    progress named `description` when the pass takes over EVAL_PROGRESS_DELAY."""
    was_training = model.training
    model.eval()
    if isinstance(inputs, FolderImages):
        order = list(range(len(inputs)))
        chunks = inputs.batches([order[i:i + batch] for i in range(0, len(order), batch)], train=False)
    else:
        chunks = (inputs[i:i + batch] for i in range(0, len(inputs), batch))
    outputs = []
    with Progress(math.ceil(len(inputs) / batch), description, "batches", delay=EVAL_PROGRESS_DELAY) as progress:
        for x in chunks:
            outputs.append(model(on_device(x)).float())
            progress.update(len(outputs))
    model.train(was_training)
    return torch.cat(outputs)


def train_inputs(data: Splits, order: torch.Tensor, first: int, per_epoch: int, config: TrainConfig,
                 generator: torch.Generator, epoch: int, world: World = ONE_PROCESS):
    """(indices, inputs, global batch size) of this rank's part of an epoch's batches from position
    `first` on (the whole batch for one process), augmented when `config.augment`: on the device
    for tensors, by DataLoader workers for files on disk."""
    size = config.batch_size
    batches = [order[p * size:(p + 1) * size] for p in range(first, per_epoch)]
    if isinstance(data.x_train, FolderImages):
        # Each image's crop is drawn from (this seed, its index): a resumed epoch, or another
        # rank count, repeats it. Each rank loads its part only, as a distributed sampler would.
        parts = [world.part(b) for b in batches]
        loaded = data.x_train.batches([p.tolist() for p in parts], config.augment, config.seed * 100_003 + epoch)
        yield from zip(parts, map(on_device, loaded), map(len, batches))
        return
    for batch in batches:
        part = world.part(batch)
        x = data.x_train[part]
        if config.augment:  # the whole batch's draws, so that every rank's generator stays in step
            x = augment(x, generator, len(batch), world.bounds(len(batch))[0])
        yield part, on_device(x), len(batch)


def predict_splits(model: nn.Module, data: Splits) -> dict[str, torch.Tensor]:
    """Logits on the whole train and test sets, keyed by split."""
    return {split: predict(model, inputs, description=f"evaluating on the {split} set")
            for split, inputs in (("train", data.x_train), ("test", data.x_test))}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0,
                           weight_decay=config.weight_decay)


def agreement_and_kl(logits: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 agreement with the teacher and mean KL(teacher || student) at temperature 1."""
    log_t, log_s = teacher.log_softmax(1), logits.log_softmax(1)
    return (logits.argmax(1) == teacher.argmax(1)).float().mean(), (log_t.exp() * (log_t - log_s)).sum(1).mean()


def evaluate(logits: dict[str, torch.Tensor], data: Splits,
             teacher_logits: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """Full-set accuracy per split (train against the labels trained on), and for students top-1
    agreement with the teacher and mean KL(teacher || student)."""
    labels = {"train": data.y_train, "test": data.y_test}
    out = {}
    for split, split_logits in logits.items():
        out[f"{split}/acc"] = (split_logits.argmax(1) == labels[split]).float().mean().item()
        if teacher_logits is not None:
            agreement, kl = agreement_and_kl(split_logits, teacher_logits[split])
            out[f"{split}/agreement"], out[f"{split}/kl"] = agreement.item(), kl.item()
    if data.is_noisy.any():
        out["train/acc_clean_labels"] = (logits["train"].argmax(1) == data.y_train_clean).float().mean().item()
    return out


def batches(data: Splits, pool: torch.Tensor, plan: Plan, config: TrainConfig, order_rng: torch.Generator,
            augment_rng: torch.Generator, start: int, order: torch.Tensor | None, world: World = ONE_PROCESS):
    """(this epoch's order, indices, inputs, global batch size) of every step from `start` on, this
    rank's part of each batch. Each epoch's order is drawn from `order_rng` as the epoch begins;
    a run resumed mid-epoch continues `order`."""
    epoch, position = divmod(start, plan.steps_per_epoch)
    while True:
        if position == 0:
            order = pool[torch.randperm(len(pool), generator=order_rng).to(pool.device)]
        for batch, inputs, whole in train_inputs(data, order, position, plan.steps_per_epoch, config, augment_rng,
                                                 epoch, world):
            yield order, batch, inputs, whole
        epoch, position = epoch + 1, 0


def train_step(forward: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               labels: torch.Tensor, targets: torch.Tensor | None, distill_weight: float,
               temperature: float, step: int, share: float = 1.0, world: World = ONE_PROCESS,
               target: KDTarget = STANDARD) -> dict[str, torch.Tensor]:
    """One optimizer step on a batch (this rank's `share` of the global one); the global batch's
    loss terms, accuracy and (for students) agreement and KL. Stops on a non-finite loss."""
    with autocast(labels.device):
        logits = forward(inputs).float()
    terms = combined_loss(logits, labels, targets, distill_weight, temperature, target)
    measured = world.batch_mean(batch_measures(terms, logits, labels, targets), share)
    if not torch.isfinite(measured["loss"]):
        raise NonFiniteLoss(step + 1, {k: measured[k].item() for k in terms})
    optimizer.zero_grad(set_to_none=True)
    world.scaled(terms["loss"], share).backward()
    optimizer.step()
    return measured


@torch.no_grad()
def batch_measures(terms: dict[str, torch.Tensor], logits: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A batch's loss terms, accuracy and (for students) agreement and KL: running means of
    these since the last log step are free, unlike a full pass."""
    measured = {**terms, "batch_acc": (logits.argmax(1) == labels).float().mean()}
    if targets is not None:
        measured["batch_agreement"], measured["batch_kl"] = agreement_and_kl(logits, targets)
    return {name: value.detach() for name, value in measured.items()}


def accumulate(running: dict[str, torch.Tensor], measured: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`running` plus this batch's measures."""
    return {**running, **{name: running.get(name, 0.0) + value for name, value in measured.items()}}


def log_values(running: dict[str, torch.Tensor], seen: int, evaluation: dict[str, float], rate: float,
               distill_weight: float, epoch: float) -> dict[str, float]:
    """A log step's metrics: the running means, the full-set evaluation when there is one, and
    where the schedules stand."""
    means = {f"train/{name}": (total / seen).item() for name, total in running.items()}
    return {**means, **evaluation, "lr": rate, "distill_weight": float(distill_weight), "epoch": epoch}


def running_status(running: dict[str, torch.Tensor], seen: int) -> dict[str, float]:
    """What a progress bar shows besides the rate: loss and batch accuracy since the last log step."""
    return {name: round((running[name] / seen).item(), 4) for name in ("loss", "batch_acc")}


def fit(model: nn.Module, data: Splits, config: TrainConfig, distill_weights: LossWeights,
        teacher: Teacher | None = None, log: RunLog | None = None, resume: TrainState | None = None,
        snapshot_at: Collection[int] = (), progress: str = "", world: World = ONE_PROCESS) -> nn.Module:
    """Train `model` in place for `distill_weights.total_steps` steps and return it.

    The learning-rate schedule spans the config's nominal length; steps past it (a `switch`
    run's `extend_to`) keep its last rate. `resume` is a state this loop checkpointed: training
    continues after its step with the same batch order, optimizer state and running sums.
    Without a `teacher` the distillation term is absent (a teacher's own training). With `log`,
    each step adds to running means; at the steps `Plan` names the loop evaluates on both full sets,
    takes confidence snapshots (every `config.snapshot_every` steps and at `snapshot_at`) and
    checkpoints; Ctrl-C and SIGTERM stop it after a checkpoint. With `progress` (and `log`), a
    progress bar of that name shows the running loss and batch accuracy (kdtrack.progress).

    With a `world` of N processes, each trains on its part of every batch (kdtrack.training.distributed);
    only rank 0 is handed a `log`, and it evaluates, snapshots and checkpoints on its own.
    """
    check_last_batch(data, config, world)
    total = distill_weights.total_steps
    plan = Plan.of(config, len(data.y_train), len(data.y_train) + len(data.y_test), total, snapshot_at)
    rates = plan.rates(config)
    optimizer = make_optimizer(model, config)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + 1)
    device = data.y_train.device
    temperature = teacher.temperature if teacher is not None else 1.0
    start, order, running, seen = resume_from(resume, model, optimizer, order_rng, augment_rng, device)
    if log is not None:
        record_start(log, model, data, plan, start, resume is not None)
    model.train()
    steps = batches(data, fit_indices(data.y_train, config.fit_fraction, config.seed), plan, config,
                    order_rng, augment_rng, start, order, world)
    shown = Progress(total, progress, initial=start) if progress and log is not None else nullcontext()
    with (world.replicated(model) as replica, stop_requests() if log is not None else nullcontext([]) as stop,
          shown as bar):
        forward = torch.compile(replica) if config.compile else replica
        for step, (order, batch, inputs, whole) in zip(range(start, total), steps):
            for group in optimizer.param_groups:
                group["lr"] = rates(step)
            labels = data.y_train[batch]
            targets = teacher.targets(batch, inputs, config.augment, device) if teacher is not None else None
            # confidence_weighted normalizes its weights over the global batch, which a rank sees part of
            whole_batch = partial(world.gather, size=whole) if world.size > 1 else None
            target = teacher.target(batch, whole_batch) if teacher is not None else STANDARD
            measured = train_step(forward, optimizer, inputs, labels, targets, distill_weights(step),
                                  temperature, step, len(batch) / whole, world, target)
            done = step + 1
            if log is None:
                continue

            running, seen = accumulate(running, measured), seen + 1
            if bar is not None:
                bar.update(done, partial(running_status, running, seen))
            running, seen = record_step(log, plan, done, model, data, teacher, running, seen, rates(step),
                                        distill_weights(step))
            state = partial(TrainState.capture, done, model, optimizer, order_rng, augment_rng, order, running, seen)
            checkpoint_or_stop(log, plan, config, done, stop, state)
    return model


def resume_from(resume: TrainState | None, model: nn.Module, optimizer: torch.optim.Optimizer,
                order_rng: torch.Generator, augment_rng: torch.Generator, device: torch.device):
    """(step, this epoch's batch order, running sums, steps they sum) to start from: nothing done
    yet, or the state `resume` holds, whose weights, optimizer and generators are loaded too."""
    if resume is None:
        return 0, None, {}, 0
    resume.restore(model, optimizer, order_rng, augment_rng)
    return resume.step, resume.order.to(device), resume.running, resume.seen


def record_start(log: RunLog, model: nn.Module, data: Splits, plan: Plan, start: int, resumed: bool) -> None:
    """What a run records before its first step: the model's probes at step 0; for a run resumed
    at a step `plan` snapshots (the state a switch starts from), that snapshot."""
    if resumed and start in plan.snapshot_at:
        log.snapshot(start, predict_splits(model, data))
    if start == 0:
        log.observe(0, model)


def check_last_batch(data: Splits, config: TrainConfig, world: World) -> None:
    """Every process needs a point of each batch, the epoch's last one included."""
    last_batch = fit_size(len(data.y_train), config.fit_fraction) % config.batch_size
    if 0 < last_batch < world.size:
        raise UserError(f"an epoch's last batch has {last_batch} points, fewer than the {world.size} processes "
                        "(nproc_per_node) that would share it; allowed: a train_size or fit_fraction whose "
                        "last batch has at least one point per process")


def record_step(log: RunLog, plan: Plan, done: int, model: nn.Module, data: Splits, teacher: Teacher | None,
                running: dict[str, torch.Tensor], seen: int, rate: float, distill_weight: float) -> tuple[dict, int]:
    """Rank 0's record after `done` steps, where `plan` calls for one: the running means of the
    `seen` steps since the last log step, with the full-set evaluation when due and where the
    schedules stand (`rate`, `distill_weight`); the model's probes, on their own cadence
    (`Plan.observes`); a confidence snapshot. Returns the running sums to carry on with, emptied by
    a log step."""
    evaluates, snapshots = plan.evaluates(done), plan.snapshots(done)
    # One forward pass over both sets serves the evaluation and the snapshot of this step.
    outputs = predict_splits(model, data) if evaluates or snapshots else None
    if plan.logs(done):
        evaluation = evaluate(outputs, data, teacher.logits if teacher is not None else None) if evaluates else {}
        log.metrics(log_values(running, seen, evaluation, rate, distill_weight, done / plan.steps_per_epoch), done)
        running, seen = {}, 0
    if plan.observes(done):
        log.observe(done, model)
    if snapshots:
        log.snapshot(done, outputs)
    return running, seen


def checkpoint_or_stop(log: RunLog, plan: Plan, config: TrainConfig, done: int, stop: list[int],
                       state: Callable[[], TrainState]) -> None:
    """Checkpoint the `state` after `done` steps where it is kept (`Plan.keeps_checkpoint`), at an
    evaluation or every `checkpoint_every` steps before the end (a finished run needs none), and
    when a signal asked to `stop`; then stop."""
    keep = plan.keeps_checkpoint(done, config.checkpoint_every, config.keep_checkpoints)
    periodic = bool(config.checkpoint_every) and done % config.checkpoint_every == 0
    if stop and leaving():  # a second signal: the run is marked KILLED now, without a last checkpoint
        raise KeyboardInterrupt(f"stopped by a second signal after step {done}")
    if keep or stop or ((plan.evaluates(done) or periodic) and done < plan.final_step):
        log.checkpoint(done, state().as_dict(), keep)
    if stop:
        raise KeyboardInterrupt(f"stopped by signal {stop[0]} after step {done}; checkpoint saved")
