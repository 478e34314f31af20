"""Training throughput of the CIFAR ResNet-56 distillation step: kdtrack's loop (`fit`: batch
order, on-device crop/flip, teacher under inference mode on the augmented batch, bf16 autocast and
channels_last on CUDA) against a bare PyTorch loop doing the same work, in the same process.

    .venv/bin/python benchmarks/resnet_step.py [--rounds R] [--steps N] [--batch B] [--size S] [--threads T]

On CPU the default is reduced (16x16 inputs, batch 32, 50 rounds of 4 steps per loop: 2 to 3.5
minutes on 2 cores shared with other jobs); on a GPU, 32x32, batch 512, 20 rounds of 20 steps.
Both loops run without tracking (`log=None`): tracking_overhead.py measures that part.

A shared machine's speed swings by 10-30% from one second to the next, so the two loops alternate
in many short rounds (ABBA order, so that neither always runs first), each round gives one ratio
kdtrack / bare of back-to-back timings, and the median round is the figure to quote; the spread
of the rounds (interquartile range, min-max) is printed with it. On CPU torch runs one thread and
the clock is the process's CPU time: with two threads, each waits for the other whenever another
process takes a core (steps then take 5x as long), and wall time counts the time others hold it.
"""
import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from kdtrack.config import TrainConfig
from kdtrack.data.augment import augment
from kdtrack.data.splits import Splits
from kdtrack.models import build_model
from kdtrack.schedules import constant_weights
from kdtrack.training.loop import Teacher, fit, pick_device, place, predict

device = pick_device()
gpu = device.type == "cuda"
parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=20 if gpu else 50)
parser.add_argument("--steps", type=int, default=20 if gpu else 4, help="steps per loop per round")
parser.add_argument("--batch", type=int, default=512 if gpu else 32)
parser.add_argument("--size", type=int, default=32 if gpu else 16)
parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (0: torch's default)")
args = parser.parse_args()
if args.rounds < 2:
    parser.error("--rounds: at least 2, for a spread")
if args.threads:
    torch.set_num_threads(args.threads)
# On one CPU thread, the process's CPU time (see above); with more threads, or on a GPU, wall time.
clock = time.process_time if torch.get_num_threads() == 1 and not gpu else time.perf_counter

n = args.steps * args.batch
torch.manual_seed(0)
x = torch.rand(n, 3, args.size, args.size, device=device)
y = torch.randint(0, 100, (n,), device=device)
data = Splits("bench", x, y, y, x[:args.batch], y[:args.batch], 100, "random")
teacher = place(build_model("resnet56", (3, args.size, args.size), 100), device).eval()
distill = Teacher({"train": predict(teacher, x), "test": predict(teacher, data.x_test)}, teacher, 4.0)
config = TrainConfig(dataset="cifar100", arch="resnet56", train_size=0, batch_size=args.batch, steps=args.steps,
                     optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True, eigen=False)
weights = constant_weights(args.steps, 1.0)


def sync():
    if gpu:
        torch.cuda.synchronize()


def kdtrack_loop() -> float:
    """Seconds of one `fit` of `args.steps` steps on a fresh student (built outside the timing)."""
    student = place(build_model("resnet56", (3, args.size, args.size), 100), device)
    sync()
    start = clock()
    fit(student, data, config, weights, distill)
    sync()
    return clock() - start


def bare_loop() -> float:
    student = place(build_model("resnet56", (3, args.size, args.size), 100), device)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    amp = torch.autocast("cuda", torch.bfloat16) if gpu else nullcontext()
    layout = torch.channels_last if gpu else torch.contiguous_format
    sync()
    start = clock()
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
    return clock() - start


def quartiles(values: list[float]) -> tuple[float, float, float]:
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
print(f"device: {name}; ResNet-56 student and teacher, {args.size}x{args.size}, batch {args.batch}; "
      f"{args.rounds} rounds of {args.steps} steps per loop")
bare_loop(), kdtrack_loop()  # warm-up (cuDNN autotuning, allocator)
ratios, bare_rates, our_rates = [], [], []
for round_index in range(args.rounds):
    if round_index % 2 == 0:
        bare, ours = bare_loop(), kdtrack_loop()
    else:
        ours, bare = kdtrack_loop(), bare_loop()
    ratios.append(bare / ours)  # throughput kdtrack / bare
    bare_rates.append(n / bare)
    our_rates.append(n / ours)
low, median, high = quartiles(ratios)
print(f"bare PyTorch loop  {statistics.median(bare_rates):9.1f} images/s (median round)")
print(f"kdtrack fit        {statistics.median(our_rates):9.1f} images/s (median round)")
print(f"ratio kdtrack/bare {median:9.3f}  median of {args.rounds} rounds; IQR {low:.3f}-{high:.3f}, "
      f"min-max {min(ratios):.3f}-{max(ratios):.3f}  (target >= 0.95)")
