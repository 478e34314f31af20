"""`kdtrack report` against a store of 500 student runs (target: under 60 s), and the ratio to
fetching each run's metrics and per-sample artifacts one call at a time, in the same process.

    .venv/bin/python benchmarks/report_speed.py [--students 500]

The store is generated, not trained: every student gets the params and tags the entry points
write, an analysis run with Table 2 and slope metrics, and real per-sample Parquet confidence
tables of the Table 7 size (128 train rows, 4,872 test rows) built by kdtrack.confidence.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--students", type=int, default=500)
args = parser.parse_args()

os.chdir(tempfile.mkdtemp())
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"

import torch  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

from kdtrack import code_version, tracking  # noqa: E402
from kdtrack.metrics.confidence import student_table  # noqa: E402
from kdtrack.report.dashboard import load  # noqa: E402
from kdtrack.report.gather import gather  # noqa: E402
from kdtrack.report.render import build  # noqa: E402

client = tracking.client()
experiment = client.create_experiment("bench-report")
start = time.perf_counter()
for n in range(args.students):
    preset, seed = ("mnist_mlp", "noisy_mnist_rf")[n % 2], str(n // 2 % 5)
    params = {"preset": preset, "dataset": "mnist5k", "arch": "mlp", "teacher_arch": "", "seed": seed,
              "label_noise": "0.0", "train_size": "128", "batch_size": "32", "lr": str(1e-4 * (1 + n % 50)),
              "epochs": "20"}
    run = client.create_run(experiment, run_name=f"student-{n}", tags={"kdtrack.role": "student"})
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric("test/acc", 0.8, 0, 0), Metric("train/acc", 1.0, 0, 0)])
    for split, rows in (("train", 128), ("test", 4872)):
        labels = torch.randint(0, 10, (rows,))
        table = student_table(torch.randn(rows, 10), torch.randn(rows, 10), labels, torch.zeros(rows, dtype=torch.bool))
        with tempfile.TemporaryDirectory() as tmp:
            table.write_parquet(Path(tmp) / f"{split}.parquet")
            client.log_artifact(run.info.run_id, str(Path(tmp) / f"{split}.parquet"), "confidences")
    client.set_terminated(run.info.run_id)
    analysis = client.create_run(experiment, run_name=f"analysis-{n}", tags={
        "kdtrack.role": "analysis", "kdtrack.student_run_id": run.info.run_id,
        "kdtrack.code_version": code_version()})  # the report counts analyses of this code only
    client.log_batch(analysis.info.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in {
        "table2/student_distill_test_acc": 0.8, "table2/teacher_test_acc": 0.78, "test/slope_bottom25": 1.1,
        "train/slope_bottom25": 1.2}.items()])
    client.set_terminated(analysis.info.run_id)
print(f"generated {args.students} students in {time.perf_counter() - start:.1f} s")

start = time.perf_counter()
paper = load("paper")
html = build(gather(["bench-report"], "", paper.sections), paper)[0]
report_seconds = time.perf_counter() - start

start = time.perf_counter()  # the bare baseline: one call per run for metrics, one per artifact
for run in client.search_runs([experiment], "tags.`kdtrack.role` = 'student'", max_results=1000):
    _ = client.get_run(run.info.run_id).data.metrics
    tracking.load_table(run.info.run_id, "confidences/train.parquet")
    tracking.load_table(run.info.run_id, "confidences/test.parquet")
baseline_seconds = time.perf_counter() - start
print(f"report       {report_seconds:7.2f} s  (target < 60 s)")
print(f"one by one   {baseline_seconds:7.2f} s")
print(f"ratio        {report_seconds / baseline_seconds:7.3f}  (report / one call per run and artifact)")
