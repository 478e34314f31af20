"""Training throughput of the CIFAR ResNet-56 distillation step: kdtrack's loop (`fit`: batch
order, on-device crop/flip, teacher under inference mode on the augmented batch, bf16 autocast and
channels_last on CUDA) against a bare PyTorch loop doing the same work, in the same process.

    .venv/bin/python benchmarks/resnet_step.py [--steps N] [--batch B] [--size S]

On CPU the default is reduced (16x16 inputs, batch 32); on a GPU, 32x32 and batch 512. Both
loops run without tracking (`log=None`): benchmarks/tracking_overhead.py measures that part.
"""
import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from kdtrack.config import TrainConfig
from kdtrack.data.augment import augment
from kdtrack.data.splits import Splits
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights
from kdtrack.training import fit, pick_device, place, predict

device = pick_device()
gpu = device.type == "cuda"
parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=60 if gpu else 8)
parser.add_argument("--batch", type=int, default=512 if gpu else 32)
parser.add_argument("--size", type=int, default=32 if gpu else 16)
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()

n = args.steps * args.batch
torch.manual_seed(0)
x = torch.rand(n, 3, args.size, args.size, device=device)
y = torch.randint(0, 100, (n,), device=device)
data = Splits("bench", x, y, y, x[:args.batch], y[:args.batch], 100, "random")
teacher = place(build_model("resnet56", (3, args.size, args.size), 100), device).eval()
logits = {"train": predict(teacher, x), "test": predict(teacher, data.x_test)}
config = TrainConfig(dataset="cifar100", arch="resnet56", train_size=0, batch_size=args.batch, steps=args.steps,
                     optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True, eigen=False)
weights = constant_weights(args.steps, 1.0)


def sync():
    if gpu:
        torch.cuda.synchronize()


def kdtrack_loop() -> float:
    student = place(build_model("resnet56", (3, args.size, args.size), 100), device)
    sync()
    start = time.perf_counter()
    fit(student, data, config, weights, logits, 4.0, teacher=teacher)
    sync()
    return n / (time.perf_counter() - start)


def bare_loop() -> float:
    student = place(build_model("resnet56", (3, args.size, args.size), 100), device)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    amp = torch.autocast("cuda", torch.bfloat16) if gpu else nullcontext()
    layout = torch.channels_last if gpu else torch.contiguous_format
    sync()
    start = time.perf_counter()
    order = torch.randperm(n, device=device)
    for step in range(args.steps):
        batch = order[step * args.batch:(step + 1) * args.batch]
        inputs = augment(x[batch], generator).contiguous(memory_format=layout)
        with torch.no_grad(), amp:
            soft = teacher(inputs).float()
        with amp:
            out = student(inputs).float()
        loss = F.kl_div(F.log_softmax(out / 4, 1), F.log_softmax(soft / 4, 1), log_target=True,
                        reduction="batchmean") * 16
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    return n / (time.perf_counter() - start)


name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
print(f"device: {name}; ResNet-56 student and teacher, {args.size}x{args.size}, batch {args.batch}, "
      f"{args.steps} steps, best of {args.rounds}")
bare_loop(), kdtrack_loop()  # warm-up (cuDNN autotuning, allocator)
bare = max(bare_loop() for _ in range(args.rounds))
ours = max(kdtrack_loop() for _ in range(args.rounds))
print(f"bare PyTorch loop  {bare:9.1f} images/s  [{name}]")
print(f"kdtrack fit        {ours:9.1f} images/s  [{name}]")
print(f"ratio kdtrack/bare {ours / bare:9.3f}  (target >= 0.95)")
