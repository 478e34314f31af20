"""The KD methods (issue 32, item 3) end to end: `kdtrack distill -P kd_loss=...` on the tiny
configuration trains from the same teacher as plain KD, records the method and its weights, and
names it. The losses themselves: tests/primitives/test_kd_method_losses.py."""
import math

from click.testing import CliRunner
from conftest import TINY

from kdtrack import tracking
from kdtrack.cli.main import main

METHODS = {"kd": {}, "dkd": {"dkd_beta": "4"}, "ls": {}, "dist": {"dist_gamma": "2"}}


def distill(params: dict[str, str]):
    args = ["distill", "--experiment", "kd-methods"]
    args += [item for k, v in {**TINY, **params}.items() for item in ("-P", f"{k}={v}")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return tracking.get_run(result.stdout.split()[-1])


def test_each_kd_loss_trains_from_one_teacher_and_records_itself(store):
    runs = {method: distill({"kd_loss": method, **weights}) for method, weights in METHODS.items()}
    assert len({run.data.tags["kdtrack.teacher_run_id"] for run in runs.values()}) == 1  # paired by teacher
    for method, run in runs.items():
        assert run.info.status == "FINISHED" and run.data.params["kd_loss"] == method
        assert math.isfinite(run.data.metrics["train/kd"]) and "test/acc" in run.data.metrics
    assert (runs["dkd"].data.params["dkd_alpha"], runs["dkd"].data.params["dkd_beta"]) == ("1.0", "4.0")
    assert runs["dist"].data.params["dist_gamma"] == "2.0"
    # the method is spelled out in the name; dkd_beta=4 and dist_gamma=2 override their defaults, so a digest
    digest = runs["kd"].info.run_name.rsplit("·", 1)[1]
    assert runs["ls"].info.run_name == f"mnist_mlp·s0·student·ls·{digest}"
    assert runs["dkd"].info.run_name.startswith("mnist_mlp·s0·student·dkd·")
    assert runs["dkd"].info.run_name != f"mnist_mlp·s0·student·dkd·{digest}"
    # a different KD term, logged as the run's train/kd
    kd = {method: run.data.metrics["train/kd"] for method, run in runs.items()}
    assert len(set(kd.values())) == len(kd)
    # the same command again reuses the finished run
    assert distill({"kd_loss": "dkd", "dkd_beta": "4"}).info.run_id == runs["dkd"].info.run_id
