"""A training command on N processes: how it starts (`on_ranks`), what rank 0 hands the other
ranks before each run it trains (`Order`), and what they do with it (`serve`).

Rank 0 runs the command as one process would: it alone finds, reuses, resumes or creates runs,
logs, evaluates and checkpoints. Before each `fit` it sends an `Order`: the model as the run
starts, the resume state, the teacher (its module and KD target, without its logits). The other
ranks never touch the tracking store: they load the data themselves, run the teacher on their own
part of each batch, and train in step with rank 0 until it sends no order (None): the command is
done. A BatchNorm model on CPU is refused before any of this (`check_batch_norm`)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn

from kdtrack.config import DistillConfig, TrainConfig
from kdtrack.data import Splits
from kdtrack.errors import RunFailure, UserError
from kdtrack.models import ARCHITECTURES, BATCH_NORM_ARCHITECTURES, TEXT_ARCHITECTURES
from kdtrack.schedules import LossWeights
from kdtrack.training.distributed import World, check_world
from kdtrack.training.loop import Teacher, fit, pick_device, place, predict
from kdtrack.training.state import TrainState


@dataclass(frozen=True)
class Order:
    """What the other ranks need to train one run with rank 0."""

    config: TrainConfig
    model: nn.Module  # as the run starts (initialized, or the state `start` is then loaded into)
    weights: LossWeights
    start: TrainState | None
    # Rank 0's teacher without its logits, which each rank computes itself; its KD target, strength
    # and quantiles (confidence_tempered's, over the whole train set) are rank 0's, so every rank
    # trains on the same loss.
    teacher: Teacher | None


def order(job, model: nn.Module, start: TrainState | None) -> Order:
    """Rank 0: the order for `job` (a kdtrack.pipeline.jobs.Job), whose model is `model`."""
    teacher = replace(job.teacher, logits={}) if job.teacher is not None else None
    return Order(job.config, model, job.weights, start, teacher)


def data_fields(config: TrainConfig) -> tuple:
    """The fields `kdtrack.pipeline.rebuild.load_data` reads: runs of one command that agree on them share
    the data."""
    return (config.dataset, config.data_dir, config.train_size, config.label_noise, config.seed,
            config.image_size, config.workers, config.tokenizer_folder, config.max_length)


def serve(world: World) -> None:
    """The other ranks: train each run rank 0 orders, until it orders none."""
    from kdtrack.pipeline.rebuild import load_data

    loaded: dict[tuple, Splits] = {}
    device = pick_device()
    while (next_order := world.receive(device)) is not None:
        key = data_fields(next_order.config)
        if key not in loaded:
            loaded = {key: load_data(next_order.config)}  # one data set at a time in memory
        data = loaded[key]
        teacher = next_order.teacher
        if teacher is not None:
            module = place(teacher.module, device).eval()
            # Rank 0's precomputed logits, computed here again: the teacher runs on every rank.
            logits = {} if next_order.config.augment else {"train": predict(module, data.x_train)}
            teacher = replace(teacher, logits=logits, module=module)
        try:
            fit(place(next_order.model, device), data, next_order.config, next_order.weights, teacher,
                resume=next_order.start, world=world)
        except RunFailure:  # rank 0 saw the same global loss, records it and ends the command
            continue


def on_ranks(config: TrainConfig, work: Callable[[World], object], relaunch: Sequence[str] = (),
             world: World | None = None):
    """Run `work` (a training command, given the world it runs in) on `config.nproc_per_node`
    processes: how every command trains on N ranks. `world` is this process's place among those
    started together (default: what torchrun's environment says; a Slurm job's tasks say it
    themselves, kdtrack.studies.launch): rank 0 runs `work`, the others `serve`. A process alone
    with nproc_per_node > 1 starts the same command (`relaunch`: what follows `python`) again under
    torch.distributed.run on this machine; else `work` runs here alone."""
    world = World.from_env() if world is None else world
    check_batch_norm(config, world.size if world.size > 1 else config.nproc_per_node, torch.cuda.is_available())
    if world.size == 1 and config.nproc_per_node > 1:
        check_capacity(config.nproc_per_node, config.oversubscribe)
        raise SystemExit(launch(config.nproc_per_node, relaunch))
    if world.size == 1:
        return work(world)
    check_world(config.batch_size, world.size)
    if config.nproc_per_node > 1 and config.nproc_per_node != world.local_size:
        raise UserError(f"nproc_per_node={config.nproc_per_node} but torchrun started {world.local_size} processes "
                        "on this node; allowed: the same number, or nproc_per_node=1 (torchrun decides)")
    world = world.join()
    try:
        if not world.leads:
            serve(world)
            return None
        result = work(world)
        world.send(None)  # only once all went well: else the failed rank 0 makes torchrun stop the others
        return result
    finally:
        world.leave()


def trained_architectures(config: TrainConfig) -> dict[str, str]:
    """The architectures a command may train, by the field that names them: `distill` and `switch`
    train their teacher too, unless given one (teacher_run_id); a teacher they only run (eval mode)
    uses its BatchNorm layers' running statistics, the same on every rank."""
    found = {"arch": config.arch}
    if isinstance(config, DistillConfig) and not config.teacher_run_id:
        found["teacher_arch"] = config.teacher_config.arch
    return found


def check_capacity(processes: int, oversubscribe: bool) -> None:
    """Refuse to start more ranks than the machine has GPUs (without one, cores): 64 ranks on two
    cores only thrash. `oversubscribe` allows it."""
    cuda = torch.cuda.is_available()
    capacity, unit = (torch.cuda.device_count(), "GPUs") if cuda else (os.cpu_count() or 1, "CPU cores")
    if processes > capacity and not oversubscribe:
        raise UserError(f"nproc_per_node={processes} is more than this machine's {capacity} {unit}; allowed: 1 to "
                        f"{capacity}, or -P oversubscribe=true to start that many processes anyway")


def check_batch_norm(config: TrainConfig, processes: int, cuda: bool) -> None:
    """Refuse, before torchrun starts and before any run exists, to train a BatchNorm model on
    several processes without CUDA: its layers need SyncBatchNorm there (kdtrack.training.distributed), which
    runs on CUDA only. Decided from the architectures' names, without building a model."""
    if processes == 1 or cuda:
        return
    for name, arch in trained_architectures(config).items():
        if arch in BATCH_NORM_ARCHITECTURES:
            others = [a for a in ARCHITECTURES if a not in BATCH_NORM_ARCHITECTURES + TEXT_ARCHITECTURES]
            reuse = ", or teacher_run_id of a finished teacher" if name == "teacher_arch" else ""
            raise UserError(f"{name}={arch!r} has BatchNorm layers, which nproc_per_node={processes} processes would "
                            "share through SyncBatchNorm, and SyncBatchNorm runs on CUDA only (none here); allowed: "
                            f"a CUDA device, nproc_per_node=1, or a {name} without BatchNorm ({', '.join(others)})"
                            + reuse)


def launch(processes: int, relaunch: Sequence[str]) -> int:
    """Run `python RELAUNCH...` on `processes` local processes through torch.distributed.run; its
    exit status. A signal to this process goes on to all of them (torchrun passes it on)."""
    if torch.cuda.is_available() and processes > torch.cuda.device_count():
        raise UserError(f"nproc_per_node={processes} is more than the {torch.cuda.device_count()} CUDA devices "
                        f"here; allowed: 1..{torch.cuda.device_count()} (one process per GPU)")
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc-per-node={processes}", *relaunch])
    try:
        return agent.wait()
    except KeyboardInterrupt:
        agent.terminate()
        return agent.wait()

