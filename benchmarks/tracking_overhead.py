"""Tracking overhead: the same training loop with and without MLflow tracking, in one process.

    .venv/bin/python benchmarks/tracking_overhead.py [--train-size 2000 --epochs 5]

Prints the seconds of each and the ratio tracked / bare (target: <= 1.10), plus the wall time of
the whole demo job (target: < 180 s). Uses a temporary store.
"""
import argparse
import os
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--train-size", default="2000")
parser.add_argument("--epochs", default="5")
args = parser.parse_args()

os.chdir(tempfile.mkdtemp())
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"

from kdtrack import tracking  # noqa: E402
from kdtrack.config import TrainConfig, from_params  # noqa: E402
from kdtrack.models import build_model  # noqa: E402
from kdtrack.pipeline import load_data, split_labels  # noqa: E402
from kdtrack.schedules import constant_weights  # noqa: E402
from kdtrack.training import Plan, fit  # noqa: E402
import torch  # noqa: E402

config = from_params(TrainConfig, {"preset": "mnist_mlp", "train_size": args.train_size, "epochs": args.epochs,
                                   "snapshot_every": "50"})
data = load_data(config)
weights = constant_weights(Plan.of(config, len(data.y_train)).total_steps, 0.0)


def bare() -> float:
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, 10)
    start = time.perf_counter()
    fit(model, data, config, weights)
    return time.perf_counter() - start


def tracked() -> float:
    from kdtrack.confidence import teacher_table

    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, 10)
    start = time.perf_counter()
    run = tracking.TrackedRun(tracking.resolve_experiment("bench"), "teacher", "bench", {}, {},
                              lambda logits: {s: teacher_table(l, *split_labels(data, s)) for s, l in logits.items()})
    fit(model, data, config, weights, log=run)
    run.finish()
    return time.perf_counter() - start


bare()  # warm-up
plain, logged = min(bare() for _ in range(2)), min(tracked() for _ in range(2))
print(f"bare loop     {plain:7.2f} s")
print(f"tracked loop  {logged:7.2f} s")
print(f"ratio         {logged / plain:7.3f}  (target <= 1.10)")

from kdtrack.demo import demo  # noqa: E402
from pathlib import Path  # noqa: E402

start = time.perf_counter()
demo("bench-demo", Path("out"), ("mnist_mlp", "noisy_mnist_rf"))
print(f"demo job      {time.perf_counter() - start:7.2f} s  (target < 180 s)")
