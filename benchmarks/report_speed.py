"""`kdtrack report` and `kdtrack claims` over a generated store of N students, each with its teacher
and its analysis (3N runs; target: each command under 60 s at 10,000 students).

    .venv/bin/python benchmarks/report_speed.py [--students 500] [--cache /tmp]

The store is generated, not trained, the way the entry points write it: N / 10 settings (two
presets, one learning rate each) of ten seeds, a teacher per seed, every run with the params and
tags the contract names, the student with real per-sample Parquet confidence tables of the Table 7
size (128 train rows, 4,872 test rows, built by kdtrack.metrics.confidence, with their checksums;
ten distinct pairs, linked), the analysis with Table 2 and slope metrics. Rows are written in bulk
through MLflow's SQLAlchemy models (`generate`); the store is kept in
<cache>/kdtrack-report-bench-<N>/ and reused, and each timing works on a copy of its database.
Both commands run as a user runs them, `kdtrack` in a subprocess, with the code version the
analyses were made by (--code-version); each is timed in wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEEDS = 10
TABLES = 10  # distinct confidence-table pairs, copied to every student


def confidence_files(folder: Path) -> list[Path]:
    """TABLES folders, each with train.parquet and test.parquet and their .sha256 beside them."""
    import torch

    from kdtrack.metrics.confidence import student_table

    out = []
    for n in range(TABLES):
        pair = folder / f"pair{n}"
        pair.mkdir(parents=True)
        for split, rows in (("train", 128), ("test", 4872)):
            table = student_table(torch.randn(rows, 10), torch.randn(rows, 10), torch.randint(0, 10, (rows,)),
                                  torch.zeros(rows, dtype=torch.bool))
            path = pair / f"{split}.parquet"
            table.write_parquet(path)
            (pair / f"{split}.parquet.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
        out.append(pair)
    return out


def generate(folder: Path, students: int) -> str:
    """The store in `folder` (mlflow.db, mlruns/); the code version its analyses carry. Rows go in
    through MLflow's own SQLAlchemy models, a thousand students per transaction: one client call per
    run (create_run, log_batch, set_terminated) costs 40-80 ms on this loaded machine, 40 minutes
    for 30,000 runs. Artifacts are hard links into each run's artifact folder, as log_artifact
    would copy them there."""
    import uuid

    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    from kdtrack import code_version
    from kdtrack.config import DistillConfig, from_params, to_params
    from kdtrack.contract import CODE_VERSION, KEY, NOTE, ROLE, STUDENT_RUN, TEACHER_RUN

    version = code_version()
    sql = SqlAlchemyStore(f"sqlite:///{folder}/mlflow.db", (folder / "mlruns").as_uri())
    experiment = sql.create_experiment("bench-report")
    root = folder / "mlruns" / experiment
    pairs = confidence_files(folder / "tables")
    note = "**student**: " + "a description with its links, as every kdtrack run carries. " * 6
    now = int(time.time() * 1000)

    def run(n: int, name: str, role: str, tags: dict, params: dict, metrics: dict) -> str:
        run_id = uuid.uuid4().hex
        tags = {ROLE: role, CODE_VERSION: version, KEY: run_id[:16], NOTE: note, "mlflow.runName": name,
                "mlflow.user": "bench", "mlflow.source.type": "LOCAL", "mlflow.source.name": "kdtrack", **tags}
        rows[SqlRun].append(dict(run_uuid=run_id, name=name, experiment_id=int(experiment), status="FINISHED",
                                 start_time=now + n, end_time=now + n + 1, lifecycle_stage="active",
                                 user_id="bench", source_type="LOCAL", source_name="kdtrack",
                                 artifact_uri=(root / run_id / "artifacts").as_uri()))
        rows[SqlTag] += [dict(key=k, value=v, run_uuid=run_id) for k, v in tags.items()]
        rows[SqlParam] += [dict(key=k, value=v, run_uuid=run_id) for k, v in params.items()]
        for model in (SqlMetric, SqlLatestMetric):
            rows[model] += [dict(key=k, value=v, timestamp=now, step=0, is_nan=False, run_uuid=run_id)
                            for k, v in metrics.items()]
        return run_id

    start = time.perf_counter()
    for first in range(0, students, 1000):
        rows = {model: [] for model in (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric)}
        for n in range(first, min(first + 1000, students)):
            setting, seed = divmod(n, SEEDS)
            params = to_params(from_params(DistillConfig, {
                "preset": ("mnist_mlp", "noisy_mnist_rf")[setting % 2], "seed": str(seed),
                "lr": f"{1e-4 * (1 + setting):.6g}"}))
            teacher = run(3 * n, f"teacher-{n}", "teacher", {}, params, {"test/acc": 0.78, "train/acc": 1.0})
            student = run(3 * n + 1, f"student-{n}", "student", {TEACHER_RUN: teacher}, params,
                          {"test/acc": 0.8, "train/acc": 1.0, "test/agreement": 0.9})
            run(3 * n + 2, f"analysis-{n}", "analysis", {STUDENT_RUN: student}, {}, {
                "table2/student_distill_test_acc": 0.8, "table2/teacher_test_acc": 0.78,
                "test/slope_bottom25": 1.1 + 0.01 * (seed - 4.5),
                "train/slope_bottom25": 1.2 + 0.01 * (seed - 4.5)})
            tables = root / student / "artifacts" / "confidences"
            tables.mkdir(parents=True)
            for file in pairs[n % TABLES].iterdir():
                os.link(file, tables / file.name)
        with sql.ManagedSessionMaker() as session:
            for model, values in rows.items():  # executemany: no ORM object per row
                session.execute(insert(model), values)
        print(f"  {min(first + 1000, students)} students, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return version


def store(cache: Path, students: int) -> tuple[Path, str]:
    """The cached store of `students` students, generated when missing or incomplete."""
    folder = cache / f"kdtrack-report-bench-{students}"
    done = folder / "code_version"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        done.write_text(generate(folder, students))  # written last: its presence marks a whole store
    return folder, done.read_text()


def timed(command: list[str], uri: str, cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of the command. On a shared machine the wall time
    grows with the load and the CPU time hardly does: with the load at 13 on 2 cores a command
    gets about a seventh of a core."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    folder, version = store(args.cache, args.students)
    kdtrack = [sys.executable, "-m", "kdtrack"]
    with tempfile.TemporaryDirectory() as work:
        database = Path(work) / "mlflow.db"  # the report adds a run: the cached store stays as generated
        shutil.copyfile(folder / "mlflow.db", database)
        uri = f"sqlite:///{database}"
        common = ["--experiment", "bench-report", "--code-version", version]
        claims = timed([*kdtrack, "claims", *common], uri, Path(work))
        report = timed([*kdtrack, "report", *common, "--out", f"{work}/report"], uri, Path(work))
    print(f"students {args.students} (runs {3 * args.students}); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for name, (wall, cpu) in (("claims", claims), ("report", report)):
        print(f"{name:8} {wall:7.1f} s wall, {cpu:7.1f} s CPU  (target < 60 s)")


if __name__ == "__main__":
    main()
