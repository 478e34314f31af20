"""Eigen-tracking overhead: the `mnist_mlp` preset's teacher run with and without eigen-trajectories,
interleaved in one process against a temporary store (target: ratio <= 1.15).

    .venv/bin/python benchmarks/eigen_overhead.py [--rounds 5]

Each timing is the whole run (`run_job`: eigendirections, training, every record), `force=true`.
"""
import argparse
import os
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=5)
args = parser.parse_args()

os.chdir(tempfile.mkdtemp())
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"

from kdtrack import tracking  # noqa: E402
from kdtrack.config import TrainConfig, from_params  # noqa: E402
from kdtrack.pipeline.stages import load_data, run_job, teacher_job  # noqa: E402

data = load_data(from_params(TrainConfig, {"preset": "mnist_mlp"}))
experiment = tracking.resolve_experiment("bench-eigen")


def timed(eigen: bool) -> float:
    config = from_params(TrainConfig, {"preset": "mnist_mlp", "force": "true", "eigen": str(eigen)})
    start = time.perf_counter()
    run_job(experiment, teacher_job(config, data), data)
    return time.perf_counter() - start


timed(False)  # warm-up
rounds = [(timed(False), timed(True)) for _ in range(args.rounds)]
plain, eigen = min(r[0] for r in rounds), min(r[1] for r in rounds)
print(f"without eigen  {plain:6.2f} s")
print(f"with eigen     {eigen:6.2f} s")
print(f"ratio          {eigen / plain:6.3f}  (target <= 1.15)")
