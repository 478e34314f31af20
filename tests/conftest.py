import os
from dataclasses import dataclass

# One thread per test process and per subprocess it starts (they inherit the environment): on 2
# cores, two pytest-xdist workers each running torch's default pool of 2 threads wait on each other.
# Set before anything imports torch, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402

# A tiny configuration of the embedded data: seconds per run on 2 CPU cores.
TINY = {"preset": "mnist_mlp", "train_size": "64", "width": "32", "epochs": "2", "batch_size": "32"}
# The shared lineage's student: TINY with confidence snapshots every 2 steps (of 4).
LINEAGE = {**TINY, "snapshot_every": "2"}
LINEAGE_EXPERIMENT = "lineage"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The files that hold slow tests first, each part in pytest-randomly's order: with `-n 2
    --dist loadfile` the long files then overlap each other, and the short ones fill the end
    rather than one process finishing a long file alone."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: a file's tests stay together


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A temporary tracking store (sqlite + local artifacts), the working directory beside it.

    One per test process, shared by every test file that process runs, in whatever order: a test
    that counts runs, or looks for RUNNING ones, looks in an experiment of its own or at the runs
    it started. Sharing it lets the tests that need a finished student share `lineage`."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        yield folder


@dataclass(frozen=True)
class Lineage:
    teacher: str
    student: str
    analysis: str


@pytest.fixture(scope="session")
def lineage(store) -> Lineage:
    """The tiny teacher -> student (with snapshots) -> analysis, trained once per test process in
    experiment `lineage` and shared by every test that needs a finished one. Tests may add runs
    to the experiment (reports, refused commands) but never change these three."""
    from kdtrack import tracking
    from kdtrack.analysis.analyze import analyze
    from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
    from kdtrack.contract import TEACHER_RUN
    from kdtrack.pipeline.stages import distill

    student = distill(from_params(DistillConfig, LINEAGE), LINEAGE_EXPERIMENT)
    [analysis] = analyze(AnalyzeConfig(student_run_id=student))
    return Lineage(tracking.get_run(student).data.tags[TEACHER_RUN], student, analysis)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
