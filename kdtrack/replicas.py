"""A training command on N processes: how it starts (`command`), what rank 0 hands the other
ranks before each run it trains (`Order`), and what they do with it (`serve`).

Rank 0 runs the command as one process would: it alone finds, reuses, resumes or creates runs,
logs, evaluates and checkpoints. Before each `fit` it sends an `Order`: the model as the run
starts, the resume state, the teacher. The other ranks never touch the tracking store: they load
the data themselves, run the teacher on their own part of each batch, and train in step with
rank 0 until it sends no order (None): the command is done.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from kdtrack.config import TrainConfig
from kdtrack.data import Splits
from kdtrack.distributed import World, check_world
from kdtrack.errors import RunFailure, UserError
from kdtrack.schedules import LossWeights
from kdtrack.training import Teacher, TrainState, fit, pick_device, place, predict


@dataclass(frozen=True)
class Order:
    """What the other ranks need to train one run with rank 0."""

    config: TrainConfig
    model: nn.Module  # as the run starts (initialized, or the state `start` is then loaded into)
    weights: LossWeights
    start: TrainState | None
    teacher: nn.Module | None
    temperature: float


def order(job, model: nn.Module, start: TrainState | None) -> Order:
    """Rank 0: the order for `job` (a kdtrack.jobs.Job), whose model is `model`."""
    teacher = job.teacher.module if job.teacher is not None else None
    temperature = job.teacher.temperature if job.teacher is not None else 1.0
    return Order(job.config, model, job.weights, start, teacher, temperature)


def data_fields(config: TrainConfig) -> tuple:
    """The fields `kdtrack.rebuild.load_data` reads: runs of one command that agree on them share
    the data."""
    return (config.dataset, config.data_dir, config.train_size, config.label_noise, config.seed,
            config.image_size, config.workers, config.tokenizer_folder, config.max_length)


def serve(world: World) -> None:
    """The other ranks: train each run rank 0 orders, until it orders none."""
    from kdtrack.rebuild import load_data

    loaded: dict[tuple, Splits] = {}
    device = pick_device()
    while (next_order := world.receive(device)) is not None:
        key = data_fields(next_order.config)
        if key not in loaded:
            loaded = {key: load_data(next_order.config)}  # one data set at a time in memory
        data = loaded[key]
        teacher = None
        if next_order.teacher is not None:
            module = place(next_order.teacher, device).eval()
            # Rank 0's precomputed logits, computed here again: the teacher runs on every rank.
            logits = {} if next_order.config.augment else {"train": predict(module, data.x_train)}
            teacher = Teacher(logits, module, next_order.temperature)
        try:
            fit(place(next_order.model, device), data, next_order.config, next_order.weights, teacher,
                resume=next_order.start, world=world)
        except RunFailure:  # rank 0 saw the same global loss, records it and ends the command
            continue


def command(config: TrainConfig, work: Callable[[World], object], relaunch: list[str]):
    """Run `work` (a training command, given the world it runs in) on `config.nproc_per_node`
    processes. Started by torchrun (its environment says so), this process takes its rank: rank 0
    runs `work`, the others `serve`. Else, with nproc_per_node > 1, the same command (`relaunch`:
    what follows `python`) starts again under torch.distributed.run on this machine; else `work`
    runs here alone."""
    world = World.from_env()
    if world.size == 1 and config.nproc_per_node > 1:
        raise SystemExit(launch(config.nproc_per_node, relaunch))
    if world.size == 1:
        return work(world)
    check_world(config.batch_size, world.size)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    if config.nproc_per_node > 1 and config.nproc_per_node != local:
        raise UserError(f"nproc_per_node={config.nproc_per_node} but torchrun started {local} processes on this "
                        "node; allowed: the same number, or nproc_per_node=1 (torchrun decides)")
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


def launch(processes: int, relaunch: list[str]) -> int:
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

