"""Tracking overhead: the same training loop bare and tracked on MLflow, in one process.

    .venv/bin/python benchmarks/tracking_overhead.py [--train-size 2000 --epochs 20 --snapshots 2]

Three timings of one config (MNIST MLP of Table 7 on more points, so that training dominates
start-up): `bare` trains with no RunLog; `computed` also runs the default evaluation cadence,
snapshots and checkpoints but records them nowhere; `tracked` records them on a temporary
MLflow store. Prints the seconds of each and the ratio tracked / bare (target: <= 1.10), then
the wall time of the whole demo job (target: < 180 s).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--train-size", default="2000")
parser.add_argument("--epochs", default="20", help="the preset's length")
parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the minimum counts")
parser.add_argument("--snapshots", type=int, default=2, help="confidence snapshots during training")
parser.add_argument("--skip-demo", action="store_true")
args = parser.parse_args()

os.chdir(tempfile.mkdtemp())
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"

import torch  # noqa: E402

from kdtrack import tracking  # noqa: E402
from kdtrack.config import TrainConfig, from_params  # noqa: E402
from kdtrack.pipeline import load_data, teacher_job  # noqa: E402
from kdtrack.training import Plan, fit  # noqa: E402

probe = from_params(TrainConfig, {"preset": "mnist_mlp", "train_size": args.train_size, "epochs": args.epochs})
data = load_data(probe)
total = Plan.of(probe, len(data.y_train)).total_steps
config = from_params(TrainConfig, {"preset": "mnist_mlp", "train_size": args.train_size, "epochs": args.epochs,
                                   "snapshot_every": str(total // (args.snapshots + 1)) if args.snapshots else ""})
job = teacher_job(config, data)


class NullLog:
    def metrics(self, values, step): pass
    def snapshot(self, step, logits): job.tables(logits)
    def checkpoint(self, step, state, keep): torch.save(state, os.devnull)
    def observe(self, step, model): pass


def timed(log_factory) -> float:
    model = job.make_model()
    start = time.perf_counter()
    log = log_factory()
    fit(model, data, config, job.weights, log=log)
    if hasattr(log, "finish"):
        log.finish()
    return time.perf_counter() - start


def tracked_run():
    return tracking.TrackedRun(tracking.resolve_experiment("bench"), "teacher", "bench", {}, {}, job.tables)


timed(lambda: None)  # warm-up
variants = {"bare": lambda: None, "computed": NullLog, "tracked": tracked_run}
rounds = [{name: timed(factory) for name, factory in variants.items()} for _ in range(args.rounds)]
times = {name: min(r[name] for r in rounds) for name in variants}  # interleaved: drift hits all alike
plan = Plan.of(config, len(data.y_train), len(data.y_train) + len(data.y_test))
print(f"{total} steps, evaluation every {plan.eval_every}, snapshot every {config.snapshot_every or '-'}")
for name, seconds in times.items():
    print(f"{name:<9} {seconds:7.2f} s   ratio to bare {seconds / times['bare']:6.3f}")
print(f"tracking overhead (tracked / bare): {times['tracked'] / times['bare']:.3f}  (target <= 1.10)")

if not args.skip_demo:
    from kdtrack.demo import demo  # noqa: E402

    start = time.perf_counter()
    demo("bench-demo", Path("out"), ("mnist_mlp", "noisy_mnist_rf"))
    print(f"demo job  {time.perf_counter() - start:7.2f} s  (target < 180 s)")
