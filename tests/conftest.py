import pytest

# A tiny configuration of the embedded data: seconds per run on 2 CPU cores.
TINY = {"preset": "mnist_mlp", "train_size": "64", "width": "32", "epochs": "2", "batch_size": "32"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, monkeypatch_module):
    """A temporary tracking store (sqlite + local artifacts), the working directory beside it.

    One per module, shared by its tests in whatever order they run: a test that counts runs, or
    looks for RUNNING ones, looks in an experiment of its own or at the runs it started."""
    folder = tmp_path_factory.mktemp("store")
    monkeypatch_module.chdir(folder)
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch_module.delenv(name, raising=False)
    return folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
