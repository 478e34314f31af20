"""Tracking overhead: the same training loop bare and tracked on MLflow, in one process.

    .venv/bin/python benchmarks/tracking_overhead.py [--train-size 2000 --epochs 20 --snapshots 2 --rounds 3]

Three timings of one config (MNIST MLP of Table 7 on more points, so that training dominates
start-up): `bare` trains with no RunLog; `computed` also runs the default evaluation cadence,
snapshots and checkpoints but records them nowhere; `tracked` records them on a temporary
MLflow store. Then the wall time of the whole demo job (target: < 180 s). About 4-5 minutes on
2 cores shared with other jobs, without the demo.

A shared machine's speed swings by 10-30% from one second to the next, so a run's total time
varies by 5-15% from one run to the next: more than the overhead measured. So each round times
the three back to back (in an order rotated from round to round) on one torch thread (with two,
each waits for the other whenever another process takes a core), and times the loop's training
steps on their own too: the CPU time of the main thread in `training.train_step`, which is the
same work in all three. A run's total CPU time (all its threads) over its steps' time is its cost
per unit of training, from which the machine's speed of the moment cancels. The headline ratio
tracked / bare is that of the two runs' costs per unit of training (target: <= 1.10): the median
of the rounds, with their min-max. The raw ratios of total CPU and wall time follow, noisier.
It would not show tracking that slowed the training steps themselves (their time is its unit).
"""
import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--train-size", default="2000")
parser.add_argument("--epochs", default="20", help="the preset's length")
parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median ratio counts")
parser.add_argument("--snapshots", type=int, default=2, help="confidence snapshots during training")
parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (0: torch's default)")
parser.add_argument("--skip-demo", action="store_true")
args = parser.parse_args()

os.chdir(tempfile.mkdtemp())
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"

import torch  # noqa: E402

if args.threads:
    torch.set_num_threads(args.threads)

from kdtrack import tracking  # noqa: E402
from kdtrack.config import TrainConfig, from_params  # noqa: E402
from kdtrack.pipeline.stages import load_data, teacher_job  # noqa: E402
from kdtrack.training import loop as training  # noqa: E402
from kdtrack.training.loop import fit  # noqa: E402
from kdtrack.training.state import Plan  # noqa: E402

probe = from_params(TrainConfig, {"preset": "mnist_mlp", "train_size": args.train_size, "epochs": args.epochs})
data = load_data(probe)
total = Plan.of(probe, len(data.y_train)).total_steps
config = from_params(TrainConfig, {"preset": "mnist_mlp", "train_size": args.train_size, "epochs": args.epochs,
                                   "snapshot_every": str(total // (args.snapshots + 1)) if args.snapshots else ""})
job = teacher_job(config, data)


class NullLog:
    def metrics(self, values, step): pass
    def snapshot(self, step, logits): job.confidence_tables(logits)
    def checkpoint(self, step, state, keep): torch.save(state, os.devnull)
    def observe(self, step, model): pass


class StepClock:
    """`training.train_step` (which `fit` looks up at every step), adding up the CPU seconds its
    calls take on this thread: time of the tracking layer's threads is not counted in it."""

    def __init__(self, step):
        self.step, self.seconds = step, 0.0

    def __call__(self, *args):
        start = time.thread_time()
        try:
            return self.step(*args)
        finally:
            self.seconds += time.thread_time() - start


step_clock = training.train_step = StepClock(training.train_step)


def timed(log_factory, steps: int = total) -> dict[str, float]:
    """Wall and CPU seconds (all of the process's threads) of one training run with this log, and
    the CPU seconds of its training steps."""
    model = job.make_model()
    step_clock.seconds = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    log = log_factory()
    fit(model, data, config, dataclasses.replace(job.weights, total_steps=steps), log=log)
    if hasattr(log, "finish"):
        log.finish()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "steps": step_clock.seconds}


def tracked_run():
    experiment = tracking.resolve_experiment("bench")
    return tracking.TrackedRun.create(experiment, "bench", "teacher", {}, tracking.RunContext(), {},
                                      job.confidence_tables)


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):6.3f} (min-max {min(ratios):.3f}-{max(ratios):.3f})"


variants = {"bare": lambda: None, "computed": NullLog, "tracked": tracked_run}
for factory in variants.values():  # warm-up: kernels, the store's tables, MLflow's lazy imports
    timed(factory, steps=20)
names = list(variants)
rounds = []
for index in range(args.rounds):
    order = names[index % len(names):] + names[:index % len(names)]
    rounds.append({name: timed(variants[name]) for name in order})
plan = Plan.of(config, len(data.y_train), len(data.y_train) + len(data.y_test))
print(f"{total} steps, evaluation every {plan.eval_every}, snapshot every {config.snapshot_every or '-'}; "
      f"{args.rounds} rounds, torch threads {torch.get_num_threads()}; medians of the rounds")
print(f"{'':9} {'CPU s':>7} {'steps s':>8} {'wall s':>7}   {'ratio to bare per unit of training':<37} "
      f"{'CPU ratio':<29} wall ratio")
for name in variants:
    runs = [r[name] for r in rounds]
    per_unit = [(r[name]["cpu"] / r[name]["steps"]) / (r["bare"]["cpu"] / r["bare"]["steps"]) for r in rounds]
    cpu = [r[name]["cpu"] / r["bare"]["cpu"] for r in rounds]
    wall = [r[name]["wall"] / r["bare"]["wall"] for r in rounds]
    seconds = {clock: statistics.median(run[clock] for run in runs) for clock in ("cpu", "steps", "wall")}
    print(f"{name:<9} {seconds['cpu']:7.2f} {seconds['steps']:8.2f} {seconds['wall']:7.2f}   "
          f"{spread(per_unit):<37} {spread(cpu):<29} {spread(wall)}")
overhead = statistics.median((r["tracked"]["cpu"] / r["tracked"]["steps"]) / (r["bare"]["cpu"] / r["bare"]["steps"])
                             for r in rounds)
print(f"tracking overhead (tracked / bare per unit of training): {overhead:.3f}  (target <= 1.10)")

if not args.skip_demo:
    from kdtrack.cli.demo import demo  # noqa: E402

    start = time.perf_counter()
    demo("bench-demo", Path("out"), ("mnist_mlp", "noisy_mnist_rf"))
    print(f"demo job  {time.perf_counter() - start:7.2f} s  (target < 180 s)")
