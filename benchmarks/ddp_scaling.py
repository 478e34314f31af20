"""Data-parallel scaling of the training step: `fit` on 2 processes (gloo, CPU; NCCL with 2 GPUs)
against 1 process, on the same global batch, without tracking (`log=None`).

    .venv/bin/python benchmarks/ddp_scaling.py [--ranks 2] [--rounds 5] [--steps 40] [--batch 256] [--width 1000]

Table 7's MLP (2 hidden layers of `--width`) on random 28x28 inputs. Each round times one `fit` of
`--steps` steps in one process, then the same on `--ranks` processes (spawned once, kept for all
rounds), by wall clock; the printed ratio is 1-process time / N-process time: above 1, N ranks
are faster. It is a measurement, not a target: on a 2-core machine shared with other jobs, two
gloo ranks compete for the cores with everything else, and each step adds three all-reduces.
"""
import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kdtrack.config import TrainConfig
from kdtrack.data.splits import Splits
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights
from kdtrack.training.distributed import World
from kdtrack.training.loop import fit, pick_device, place

parser = argparse.ArgumentParser()
parser.add_argument("--ranks", type=int, default=2)
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--width", type=int, default=1000)
args = parser.parse_args()


def setting(device: torch.device):
    torch.manual_seed(0)
    n = args.steps * args.batch
    x = torch.rand(n, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    data = Splits("bench", x, y, y, x[:args.batch], y[:args.batch], 10, "random")
    config = TrainConfig(train_size=0, batch_size=args.batch, steps=args.steps, width=args.width, eigen=False)
    return data, config, constant_weights(args.steps, 0.0)


def timed_fit(data, config, weights, world: World) -> float:
    model = place(build_model("mlp", (1, 28, 28), 10, args.width), data.y_train.device)
    if world.size > 1:
        dist.barrier()
    if data.y_train.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit(model, data, config, weights, world=world)
    if data.y_train.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rank(index: int, results) -> None:
    os.environ.update(RANK=str(index), WORLD_SIZE=str(args.ranks), LOCAL_RANK=str(index),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29531"))
    torch.set_num_threads(1)
    world = World.from_env().join()
    data, config, weights = setting(pick_device())
    for _ in range(args.rounds + 1):  # the first is a warm-up
        seconds = timed_fit(data, config, weights, world)
        if world.leads:
            results.put(seconds)
    world.leave()


if __name__ == "__main__":
    torch.set_num_threads(1)  # each rank one thread, like the single process: the comparison is per core
    data, config, weights = setting(pick_device())
    timed_fit(data, config, weights, World())  # warm-up
    single = [timed_fit(data, config, weights, World()) for _ in range(args.rounds)]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(rank, (queue,), nprocs=args.ranks)
    parallel = [queue.get() for _ in range(args.rounds + 1)][1:]
    ratios = [one / many for one, many in zip(single, parallel)]
    rate = args.steps * args.batch
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    print(f"MLP width {args.width}, global batch {args.batch}, {args.steps} steps, {args.rounds} rounds, {backend}")
    print(f"1 process        {rate / statistics.median(single):9.1f} images/s (median round)")
    print(f"{args.ranks} processes      {rate / statistics.median(parallel):9.1f} images/s (median round)")
    print(f"scaling ratio    {statistics.median(ratios):.2f}x (1-process time / {args.ranks}-process time; "
          f"min {min(ratios):.2f}, max {max(ratios):.2f})")
