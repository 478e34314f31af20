"""Data-parallel training (issue 19): one run on 2 CPU processes through torch.distributed (gloo),
started by `-P nproc_per_node=2` (which runs the command again under torch.distributed.run),
against a temporary store; compared with the same run in one process.

Marked `distributed`: each 2-rank command starts torchrun and two Python processes, minutes on
a loaded 2-core machine. Waits last as long as the processes live; nothing is timed."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import LINEAGE, TINY

from kdtrack import tracking
from kdtrack.cli.main import main
from kdtrack.config import DistillConfig, TrainConfig, from_params
from kdtrack.errors import UserError
from kdtrack.pipeline.rebuild import data_of, rebuild_model
from kdtrack.pipeline.stages import distill
from kdtrack.training.distributed import World
from kdtrack.training.loop import predict

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
KDTRACK = [sys.executable, "-m", "kdtrack"]


def runs_of(experiment: str, role: str) -> list:
    return tracking.search_all([tracking.experiment_id(experiment)], f"tags.`kdtrack.role` = '{role}'")


def artifacts(run_id: str, folder: str = "") -> set[str]:
    found = set()
    for path, is_dir in tracking.artifact_paths(run_id, folder or None):
        found |= artifacts(run_id, path) if is_dir else {path}
    return found


def invoke(command: str, params: dict[str, str], *args: str):
    """`kdtrack` in this process: for refusals, which come before any process is started."""
    return CliRunner().invoke(main, [command, *(f"-P{k}={v}" for k, v in params.items()), *args])


def test_a_world_splits_each_batch_into_disjoint_parts_that_cover_it():
    batch = torch.arange(10)
    parts = [World(rank, 3, rank, "gloo").part(batch) for rank in range(3)]
    assert torch.equal(torch.cat(parts), batch) and [len(p) for p in parts] == [3, 3, 4]


def test_a_world_started_without_torchrun_says_where_its_ranks_meet(monkeypatch):
    """A Slurm job's tasks (kdtrack.studies.launch.job_world) describe their world themselves,
    nothing in the environment; torchrun's is read from it. One process is the default world."""
    world = World.started(1, 2, 1, 2, "tcp://node1:20001")
    assert (world.rank, world.size, world.local_rank, world.local_size) == (1, 2, 1, 2)
    assert world.address == "tcp://node1:20001" and world.backend in ("gloo", "nccl")
    assert World.started(0, 1, 0, 1, "tcp://node1:20001") == World()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    env = World.from_env()
    assert (env.rank, env.size, env.local_rank, env.local_size, env.address) == (3, 4, 1, 2, "")


@pytest.mark.parametrize("params, wrong", [({"nproc_per_node": "0"}, "nproc_per_node=0"),
                                            ({"nproc_per_node": "2", "batch_size": "33"}, "batch_size=33"),
                                            ({"nproc_per_node": "-3"}, "nproc_per_node=-3")])
def test_a_bad_nproc_per_node_or_a_batch_it_does_not_divide_is_refused_in_one_line(store, params, wrong):
    with pytest.raises(UserError, match=wrong) as refused:
        from_params(DistillConfig, {**TINY, **params})
    assert "\n" not in str(refused.value)
    # through the command (in this process: the refusal comes before torchrun would start one): one line, status 2
    done = invoke("distill", {**TINY, **params})
    assert done.exit_code == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert wrong in done.stderr and "torch.distributed" not in done.stderr


def test_the_batch_norm_architectures_are_those_built_with_batch_norm():
    from kdtrack.models import ARCHITECTURES, BATCH_NORM_ARCHITECTURES, TEXT_ARCHITECTURES, _build

    for arch in ARCHITECTURES:
        shape = (16,) if arch in TEXT_ARCHITECTURES else (3, 32, 32)
        with torch.device("meta"):  # allocates nothing
            model = _build(arch, shape, 10, vocab_size=100)
        norms = any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())
        assert norms == (arch in BATCH_NORM_ARCHITECTURES), arch


def test_batch_norm_is_refused_only_where_it_would_train_on_several_cpu_processes():
    from kdtrack.pipeline.replicas import check_batch_norm

    student = from_params(DistillConfig, {**TINY, "arch": "resnet20", "width": "16", "depth": "0"})
    teacher = from_params(DistillConfig, {**TINY, "teacher_arch": "resnet20"})
    for config in (student, teacher):
        check_batch_norm(config, 1, cuda=False)
        check_batch_norm(config, 2, cuda=True)
        with pytest.raises(UserError, match="nproc_per_node=2"):
            check_batch_norm(config, 2, cuda=False)
    # a teacher given by id is only run, in eval mode (running statistics): it needs no SyncBatchNorm
    check_batch_norm(from_params(DistillConfig, {**TINY, "teacher_arch": "resnet20", "teacher_run_id": "abc"}), 2,
                     cuda=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="SyncBatchNorm runs on CUDA: nothing is refused there")
@pytest.mark.parametrize("params, field", [({"arch": "resnet20", "width": "16", "depth": "0"}, "arch='resnet20'"),
                                           ({"teacher_arch": "resnet20"}, "teacher_arch='resnet20'")])
def test_a_batch_norm_model_on_several_cpu_processes_is_refused_before_any_run(store, params, field):
    experiment = f"batch-norm-{field.split('=')[0]}"
    done = invoke("distill", {**TINY, **params, "nproc_per_node": "2"}, "--experiment", experiment)
    assert done.exit_code == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert field in done.stderr and "nproc_per_node=2" in done.stderr and "CUDA" in done.stderr
    found = tracking.experiment_id(experiment)
    assert not (found and tracking.search_all([found], "")), "a run was created before the refusal"


def test_nproc_per_node_is_not_in_the_reuse_key():
    from kdtrack.config import key_params

    one, two = from_params(TrainConfig, TINY), from_params(TrainConfig, {**TINY, "nproc_per_node": "2"})
    assert key_params(one) == key_params(two)


@pytest.fixture(scope="module")
def one_and_two(lineage):
    """The tiny distillation in this process (the shared lineage), and on 2 ranks through the
    command: student run ids."""
    done = subprocess.run([*KDTRACK, "distill", *(f"-P{k}={v}" for k, v in LINEAGE.items()), "-P", "nproc_per_node=2",
                           "--experiment", "two-ranks"],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return lineage.student, done.stdout.split()[-1]


def test_two_ranks_train_one_run_with_the_artifacts_and_weights_of_one_process(one_and_two):
    single, parallel = one_and_two
    [student] = runs_of("two-ranks", "student")  # one run, not one per rank
    assert student.info.run_id == parallel and student.info.status == "FINISHED"
    assert len(runs_of("two-ranks", "teacher")) == 1  # the teacher it needed trained on 2 ranks too
    assert student.data.params["world_size"] == "2" and student.data.params["backend"] == "gloo"
    reference = tracking.get_run(single)
    assert reference.data.params["world_size"] == "1" and reference.data.params["backend"] == "none"
    assert artifacts(parallel) == artifacts(single)
    assert_trained_alike(parallel, single)
    for split in ("train", "test"):  # the per-sample Parquet: same rows and columns, same values up to float
        table, expected = (tracking.load_table(run, f"confidences/{split}.parquet") for run in (parallel, single))
        assert table.columns == expected.columns and table.height == expected.height
        for column in expected.columns:
            if expected[column].dtype.is_float():
                assert (table[column] - expected[column]).abs().max() < 1e-3, column
            else:
                assert table[column].equals(expected[column]), column
    # the running batch means are the global batch's, not rank 0's part
    history = {m.step: m.value for m in tracking.client().get_metric_history(single, "train/loss")}
    for metric in tracking.client().get_metric_history(parallel, "train/loss"):
        assert metric.value == pytest.approx(history[metric.step], rel=1e-4)


def assert_trained_alike(parallel: str, single: str) -> None:
    """Final weights equal within float tolerance, and test predictions agreeing on >= 99% of points."""
    ours, theirs = (tracking.load_state(run, "checkpoints/final.pt") for run in (parallel, single))
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5)
    data = data_of(tracking.get_run(single))
    predicted = [predict(rebuild_model(tracking.get_run(run), data), data.x_test).argmax(1)
                 for run in (single, parallel)]
    assert (predicted[0] == predicted[1]).float().mean().item() >= 0.99


@pytest.mark.parametrize("target", [{"kd_target": "confidence_weighted", "confidence_power": "2"},
                                    {"kd_target": "confidence_tempered", "confidence_spread": "2"}])
def test_two_ranks_train_a_confidence_aware_student_as_one_process_does(store, target):
    """confidence_weighted normalizes its weights over the global batch, which each rank sees part
    of; confidence_tempered's temperatures come from quantiles over the whole train set: both must
    reach every rank as one process has them. 48 points in batches of 32: the last batch of each
    epoch (16) splits too."""
    params = {**TINY, "train_size": "48", **target}
    single = distill(from_params(DistillConfig, params), "kd-one-process")
    done = subprocess.run([*KDTRACK, "distill", *(f"-P{k}={v}" for k, v in params.items()), "-P", "nproc_per_node=2",
                           "--experiment", "kd-two-ranks"], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    parallel = done.stdout.split()[-1]
    assert tracking.get_run(parallel).data.params["kd_target"] == target["kd_target"]
    assert_trained_alike(parallel, single)
    history = {m.step: m.value for m in tracking.client().get_metric_history(single, "train/kd")}
    for metric in tracking.client().get_metric_history(parallel, "train/kd"):
        assert metric.value == pytest.approx(history[metric.step], rel=1e-4)


# 64 points, batch 16: 4 steps per epoch, 400 steps; a resume checkpoint every 40 steps.
LONG = ["-P", "preset=mnist_mlp", "-P", "train_size=64", "-P", "width=32", "-P", "batch_size=16",
        "-P", "epochs=100", "-P", "checkpoint_every=40", "-P", "log_every=10"]


def checkpointed_runs(experiment: str) -> list:
    found = tracking.experiment_id(experiment)
    return tracking.search_all([found], "tags.`kdtrack.resume_checkpoint` != ''") if found else []


def rank_process(job: int, rank: int) -> int:
    """The pid of the process torchrun started as `rank` under `job` (its environment says)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    agents = [pid for pid, parent in parents.items() if parent == job]
    for pid in (pid for pid, parent in parents.items() if parent in agents):
        if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"no process of rank {rank} under {job}")


def test_a_killed_rank_stops_the_job_and_the_run_resumes_on_another_number_of_ranks(store):
    experiment = "killed-rank"
    job = subprocess.Popen([*KDTRACK, "train-teacher", *LONG, "-P", "nproc_per_node=2", "--experiment", experiment],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (checkpointed := checkpointed_runs(experiment)):
        assert job.poll() is None, job.stderr.read()[-2000:]
        time.sleep(0.05)
    os.kill(rank_process(job.pid, 1), signal.SIGKILL)
    _, err = job.communicate(timeout=3600)  # torchrun stops rank 0 too, and fails
    run_id = checkpointed[0].info.run_id
    assert job.returncode != 0 and tracking.get_run(run_id).info.status != "FINISHED", err[-2000:]
    if tracking.get_run(run_id).info.status == "RUNNING":  # rank 0 was killed before it could end the run
        tracking.client().set_tag(run_id, "kdtrack.lease_until", "0")  # its lease would lapse in 90 s: now

    again = subprocess.run([*KDTRACK, "train-teacher", *LONG, "--experiment", experiment],  # 1 process now
                           capture_output=True, text=True, timeout=3600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming teacher run {run_id}" in again.stderr and again.stdout.split()[-1] == run_id
    assert tracking.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in tracking.client().get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == list(range(10, 401, 10))  # none twice, none missing


def test_more_ranks_than_the_machine_has_are_refused_unless_oversubscribed(monkeypatch):
    """Issue 30, case 4: nproc_per_node=64 on a two-core machine started 64 ranks."""
    import torch

    from kdtrack.pipeline.replicas import check_capacity

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    check_capacity(2, False)
    with pytest.raises(UserError, match=r"nproc_per_node=64 is more than this machine's 2 CPU cores; allowed: 1 to 2, "
                                        r"or -P oversubscribe=true"):
        check_capacity(64, False)
    check_capacity(64, True)
