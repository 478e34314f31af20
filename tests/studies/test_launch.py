"""Suites and ablations as submitit jobs (kdtrack.studies.launch): through submitit's local executor on
the embedded data, and as the sbatch scripts a fake `sbatch` receives (no cluster needed)."""
import os
import stat

import pytest
from click.testing import CliRunner
from conftest import TINY

from kdtrack import tracking
from kdtrack.cli.main import main
from kdtrack.contract import TEACHER_RUN
from kdtrack.pipeline.stages import distill
from kdtrack.studies import suite as suites
from kdtrack.studies.launch import TaskJob, launch_options, run_suite
from kdtrack.studies.suite import SlurmSpec

# One setting: the local executor's runs. Two: the sbatch scripts, whose teachers come first.
ONE = """
experiment: EXPERIMENT
analysis: {figures: false}
settings:
  - name: mlp
    preset: mnist_mlp
    overrides: {train_size: 64, width: 32, epochs: 2, batch_size: 32}
"""
SUITE = ONE + """  - name: rf
    preset: noisy_mnist_rf
    overrides: {train_size: 64, width: 64, epochs: 2, batch_size: 32}
"""


def write(tmp_path, experiment: str, text: str = SUITE) -> str:
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(text.replace("EXPERIMENT", experiment))
    return str(path)


def runs(experiment: str, role: str) -> list:
    found = tracking.client().get_experiment_by_name(experiment)
    return tracking.search_all([found.experiment_id], f"tags.`kdtrack.role` = '{role}'") if found else []


def submitted(folder) -> list:
    return sorted(folder.glob("*_submitted.pkl")) if folder.exists() else []


def local(folder):
    return launch_options("local", {"folder": str(folder)}, SlurmSpec())



# Each job's two tasks form the DDP world, as on a Slurm node: one local suite run shows both that and
# the order of the jobs (the local executor with one task per job runs in the killed-task test below).
DDP = ONE.replace("settings:", "slurm: {nproc_per_node: 2}\nsettings:")


@pytest.mark.slow
def test_local_jobs_of_two_tasks_train_each_student_after_its_teacher_then_a_rerun_submits_nothing(store, tmp_path):
    """The smallest suite that shows it: one teacher's job, then its student's (with the analysis)."""
    path = write(tmp_path, "launch-local", DDP)
    suite = suites.load(path)
    launch = launch_options("local", {"folder": str(tmp_path / "jobs")}, suite.slurm)
    ids = run_suite(suite, launch)
    [student], [teacher] = runs("launch-local", "student"), runs("launch-local", "teacher")  # one run each, not two
    assert len(ids) == 2  # the student and its analysis
    assert student.data.tags["kdtrack.suite"] == "launch-local/mlp"
    assert student.data.tags[TEACHER_RUN] == teacher.info.run_id
    assert teacher.info.status == "FINISHED" and student.info.status == "FINISHED"
    assert student.info.start_time >= teacher.info.end_time  # its job started once the teacher's had ended
    assert student.data.params["world_size"] == teacher.data.params["world_size"] == "2"
    assert student.data.params["backend"] == "gloo"
    jobs = submitted(tmp_path / "jobs")
    assert len(jobs) == 2  # the teacher, then the student

    assert run_suite(suites.load(path), launch) == []
    assert submitted(tmp_path / "jobs") == jobs  # nothing more was submitted


KILLED = """
experiment: launch-kill
analysis: {figures: false}
settings:
  - name: mlp
    preset: mnist_mlp
    overrides: {train_size: 64, width: 32, epochs: 4, batch_size: 16, log_every: 1, checkpoint_every: 4}
"""


def test_a_task_killed_mid_run_is_resubmitted_and_resumes(store, tmp_path):
    """The kill is an interrupt mid-training in this process, as Slurm's preemption signal or a
    SIGTERM makes one; the rerun goes through the local executor."""
    suite = suites.load(write(tmp_path, "launch-kill", KILLED))
    [task] = suite.tasks

    def kill(role, values, step):
        if role == "student" and step == 10:  # 16 steps, a resume checkpoint every 4
            raise KeyboardInterrupt("killed mid-run")

    with pytest.raises(KeyboardInterrupt):
        distill(task.config(), suite.experiment, suites.context(suite, task).hooked(kill))
    [killed] = runs("launch-kill", "student")
    assert killed.info.status == "KILLED" and [state for _, state in suites.status(suite)] == ["failed"]

    run_suite(suite, local(tmp_path / "jobs"))
    assert len(submitted(tmp_path / "jobs")) == 1  # the student alone: its teacher is FINISHED
    [student] = runs("launch-kill", "student")
    assert student.info.run_id == killed.info.run_id and student.info.status == "FINISHED"  # resumed, not new


def test_a_requeued_job_is_the_same_callable_again(tmp_path):
    suite = suites.load(write(tmp_path, "launch-requeue"))
    job = TaskJob(suite, suite.tasks[0])
    again = job.checkpoint()  # what submitit resubmits when Slurm preempts the job or its time is up
    assert again.function is job and again.args == () and again.kwargs == {}


FAKE_SBATCH = """#!/bin/sh
# Keeps each script it is given and answers as sbatch does, with job ids from 4242 up.
here=$(dirname "$0")
n=$(( $(cat "$here/count" 2>/dev/null || echo 4241) + 1 ))
echo $n > "$here/count"
cp "$1" "$here/job_$n.sh"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A folder on PATH with an `sbatch` that keeps the scripts (job_<id>.sh) and an `srun`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 0\n")):
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def sbatch_lines(script: str) -> set[str]:
    return {line for line in script.splitlines() if line.startswith("#SBATCH")}


def test_slurm_scripts_ask_for_the_options_and_students_wait_for_their_teachers(store, tmp_path, fake_slurm):
    slurm = "slurm: {partition: small, gpus_per_task: 1, time_min: 600, sbatch: {account: lab}}\n"
    path = write(tmp_path, "launch-slurm", SUITE + slurm)
    result = CliRunner().invoke(main, ["suite", "run", path, "--launcher", "slurm", "--partition", "gpu",
                                       "--gpus-per-task", "2", "--nproc-per-node", "2",
                                       "--submitit-folder", str(tmp_path / "jobs")])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["4242", "4243", "4244", "4245"]  # the job ids, teachers first
    scripts = {n: (fake_slurm / f"job_{n}.sh").read_text() for n in range(4242, 4246)}
    for script in scripts.values():
        lines = sbatch_lines(script)
        assert {"#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                "#SBATCH --time=600", "#SBATCH --account=lab"} <= lines  # flags win over the file's slurm:
        assert any(line.startswith("srun ") and "-m submitit.core._submit" in line and str(tmp_path / "jobs") in line
                   for line in script.splitlines())
    names = [next(line for line in sbatch_lines(scripts[n]) if "job-name" in line) for n in range(4242, 4246)]
    assert names == [f"#SBATCH --job-name=launch-slurm-{setting}-s0-{kind}"
                     for kind in ("teacher", "distill") for setting in ("mlp", "rf")]
    assert "#SBATCH --dependency=afterok:4242" in sbatch_lines(scripts[4244])
    assert "#SBATCH --dependency=afterok:4243" in sbatch_lines(scripts[4245])
    assert "#SBATCH --kill-on-invalid-dep=yes" in sbatch_lines(scripts[4245])
    assert not any("dependency" in line for n in (4242, 4243) for line in sbatch_lines(scripts[n]))
    assert not runs("launch-slurm", "student") and not runs("launch-slurm", "teacher")  # only submitted


def test_an_ablation_on_slurm_is_one_job_array_of_workers(store, tmp_path, fake_slurm):
    result = CliRunner().invoke(main, ["ablate", "-P", "preset=mnist_mlp", "--knob", "lr", "--launcher", "slurm",
                                       "--array", "8", "--storage", "postgresql://kd@db/optuna", "--partition",
                                       "cpu", "--time", "120", "--submitit-folder", str(tmp_path / "jobs")])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["4242"]
    lines = sbatch_lines((fake_slurm / "job_4242.sh").read_text())
    assert {"#SBATCH --array=0-7%8", "#SBATCH --partition=cpu", "#SBATCH --time=120"} <= lines


@pytest.mark.parametrize("args, message", [
    (["suite", "run", "SUITE", "--partition", "gpu"], "--partition applies to --launcher local or slurm"),
    (["suite", "run", "SUITE", "--launcher", "local", "--workers", "2"], "--workers 2 applies to --launcher process"),
    (["suite", "run", "SUITE", "--workers", "1000"], "--workers 1000 is more than this machine's"),
    (["suite", "run", "SUITE", "--launcher", "slurm", "--gpus-per-task", "1", "--nproc-per-node", "2"],
     "nproc_per_node=2 is more than gpus_per_task=1"),
    (["ablate", "-P", "preset=mnist_mlp", "--array", "2"], "--array applies to --launcher local or slurm"),
    (["ablate", "-P", "preset=mnist_mlp", "--launcher", "slurm", "--array", "2"],
     "storage='the default (sqlite)': workers on several machines need a database server"),
])
def test_bad_launch_options_are_one_line(store, tmp_path, fake_slurm, args, message):
    path = write(tmp_path, "launch-bad")
    result = CliRunner().invoke(main, [path if a == "SUITE" else a for a in args])
    assert result.exit_code == 2 and not submitted(tmp_path)
    [line] = [line for line in result.output.splitlines() if line.startswith("kdtrack: error:")]
    assert message in line


def test_a_suite_files_slurm_options_are_checked(tmp_path):
    path = write(tmp_path, "launch-keys", SUITE + "slurm: {gpus: 1}\n")
    result = CliRunner().invoke(main, ["suite", "run", path, "--launcher", "slurm"])
    assert result.exit_code == 2
    allowed = "partition, gpus_per_task, cpus_per_task, mem_gb, time_min, nproc_per_node, sbatch"
    assert result.output.strip() == f"kdtrack: error: suite {path!r}: slurm has unknown key 'gpus'; allowed: {allowed}"


def test_slurm_without_sbatch_says_where_to_submit_from(store, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(main, ["suite", "run", write(tmp_path, "launch-nosbatch"), "--launcher", "slurm"])
    assert result.exit_code == 2
    assert result.output.splitlines() == ["kdtrack: error: --launcher slurm needs Slurm's sbatch and srun on PATH; "
                                          "submit from a machine of the cluster (or use --launcher local)"]  # no plan


@pytest.mark.slow
def test_local_ablation_workers_share_one_study(store, tmp_path):
    import optuna

    from kdtrack.config import AblateConfig, from_params
    from kdtrack.studies.ablate import default_storage
    from kdtrack.studies.launch import run_ablate

    # A worker with no point left looks again every `heartbeat` seconds until the other's trial ends (30 by default)
    config = from_params(AblateConfig, {**TINY, "knob": "batch_size", "values": "16,32", "study": "local-array",
                                        "heartbeat": "2", "figures": "false"})
    [study_run] = run_ablate(config, "launch-ablate", local(tmp_path / "jobs"), 2)
    assert len(submitted(tmp_path / "jobs")) == 2  # two worker jobs, one study
    trials = optuna.load_study(study_name="local-array", storage=default_storage()).get_trials()
    assert sorted(t.params["value"] for t in trials) == [16, 32]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert tracking.get_run(study_run).data.tags["kdtrack.role"] == "study"
    assert {r.info.run_id for r in runs("launch-ablate", "study")} == {study_run}
