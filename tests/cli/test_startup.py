"""Start-up is part of the interface (STYLE.md, 14): a command imports what it uses when it uses
it. `kdtrack params`, `kdtrack --help` and config validation import no torch, torchvision,
transformers, PIL or MLflow; only the commands that train, analyze or read the store do.

Each command runs in a fresh interpreter under `python -X importtime`, which lists every module
imported. Wall time is not asserted: it belongs in a benchmark, not a test on a shared machine."""
import subprocess
import sys

import pytest

HEAVY = {"torch", "torchvision", "transformers", "PIL", "mlflow"}


def imported(*args: str) -> set[str]:
    """The top-level packages a fresh `python -X importtime ARGS...` imports."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "kdtrack" in names, done.stderr[-2000:]  # it did list the imports
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [["params", "train_teacher"], ["params"], ["--help"], ["distill", "--help"]],
                         ids=" ".join)
def test_reading_the_parameters_and_the_help_imports_nothing_heavy(args):
    assert not imported("-m", "kdtrack", *args) & HEAVY


def test_validating_a_config_imports_nothing_heavy():
    """The data-set and model registries name their loaders; only reading data or building a model
    imports them."""
    code = ("from kdtrack.config import DistillConfig, from_params\n"
            "from_params(DistillConfig, {'preset': 'cifar100_v1', 'teacher_arch': 'resnet20'})\n"
            "from_params(DistillConfig, {'preset': 'mnli', 'arch': 'roberta_small'})\n"
            "import kdtrack.data, kdtrack.models\n"
            "assert kdtrack.data.TEXT_DATASETS and kdtrack.models.SIZES")
    assert not imported("-c", code) & HEAVY


def test_what_the_registries_offer_lazily_is_there():
    """`from kdtrack.models import build_model` and `from kdtrack.data import Splits` still work:
    the packages import the module that holds them on first use."""
    import kdtrack.data
    import kdtrack.models

    for package in (kdtrack.data, kdtrack.models):
        for name in package.LAZY:
            assert getattr(package, name).__name__ == name, (package.__name__, name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        kdtrack.models.nothing  # noqa: B018


TRAINING_STACK = {"torch", "torchvision", "transformers", "PIL"}


@pytest.mark.parametrize("args", [["runs", "--experiment", "one-run"], ["claims", "--experiment", "one-run"],
                                  ["suite", "status", "table7"]], ids=" ".join)
def test_the_read_only_commands_pay_for_mlflow_and_polars_not_for_training(args, tmp_path, monkeypatch):
    """`runs`, `claims` and `suite status` read the store: MLflow and polars, never the training stack."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("one-run"))
    client.set_terminated(run.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    assert not imported("-m", "kdtrack", *args) & TRAINING_STACK


def test_the_recording_api_is_exported_yet_import_kdtrack_stays_light():
    """`from kdtrack import Recorder` works (docs/recording.md), and `import kdtrack` alone, which
    every command does first, still imports neither torch nor MLflow."""
    import kdtrack
    import kdtrack.record

    assert not imported("-c", "import kdtrack") & HEAVY
    assert kdtrack.Recorder is kdtrack.record.Recorder
    with pytest.raises(AttributeError, match="has no attribute 'Recorders'"):
        kdtrack.Recorders  # noqa: B018
