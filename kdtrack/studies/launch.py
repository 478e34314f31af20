"""Launchers: a suite's plan, or an ablation's workers, as submitit jobs, on a Slurm cluster
(`--launcher slurm`) or in local processes (`--launcher local`, what the tests use).

A suite submits one job per teacher its missing tasks need and, after it, one job per task
(distill or switch, then analyze): on Slurm each student job depends on its teacher's
(`afterok`), so that a student never starts before its teacher run is FINISHED. Every job only
calls the pipeline, so all state is in the tracking store: `suite status` works from any machine,
and a rerun submits what is still missing or failed. A job preempted or out of time is requeued
by submitit (it is `Checkpointable`) and its run resumes from its last checkpoint, as any rerun
of a kdtrack command does.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import submitit

from kdtrack.config import AblateConfig
from kdtrack.errors import UserError
from kdtrack.say import say
from kdtrack.studies import suite as suites
from kdtrack.studies.suite import SlurmSpec, Suite, Task

LAUNCHERS = ("process", "local", "slurm")
FOLDER = ".kdtrack/submitit"  # beside the working directory, which Slurm jobs share with the submitter
# What submitit raises when a submission fails: one line for the user.
SUBMIT_ERRORS = (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError)
PORTS = (20_000, 40_000)  # a DDP job's rendezvous port, drawn from its job id: jobs sharing a node differ


@dataclass(frozen=True)
class Launch:
    """Where jobs go (`launcher`: local or slurm), where submitit keeps their scripts and logs,
    and what each asks Slurm for."""

    launcher: str
    folder: Path
    slurm: SlurmSpec


def launch_options(launcher: str, flags: dict, slurm: SlurmSpec) -> Launch:
    """The launch the command-line flags ask for. `flags`: those given, by field: `folder`,
    `array` and the Slurm ones, which win over `slurm` (the suite file's)."""
    update = {name: value for name, value in flags.items() if name in SlurmSpec.model_fields}
    return Launch(launcher, Path(flags.get("folder") or FOLDER).resolve(), slurm.model_copy(update=update))


def job_world(processes: int):
    """This task's place among its job's `processes` tasks (kdtrack.training.distributed.World), which
    Slurm (or the local executor) started, not torchrun; None for one process, whose world is its own."""
    if processes == 1:
        return None
    from kdtrack.training.distributed import World

    job = submitit.JobEnvironment()
    port = PORTS[0] + int(job.raw_job_id) % (PORTS[1] - PORTS[0])
    return World.started(job.global_rank, job.num_tasks, job.local_rank, processes, f"tcp://{job.hostnames[0]}:{port}")


@dataclass(frozen=True)
class TeacherJob(submitit.helpers.Checkpointable):
    """Train (or reuse) the teacher a suite's task needs; its run id. Requeued as it is (the
    inherited `checkpoint`): the rerun resumes the run."""

    suite: Suite
    task: Task

    def __call__(self) -> str | None:
        from kdtrack.pipeline.replicas import on_ranks
        from kdtrack.pipeline.stages import train_teacher

        config = self.task.config().teacher_config
        return on_ranks(config, lambda world: train_teacher(
            config, self.suite.experiment, context=suites.context(self.suite, self.task, world)),
            world=job_world(config.nproc_per_node))


@dataclass(frozen=True)
class TaskJob(submitit.helpers.Checkpointable):
    """Train (or reuse) one task's student, then analyze it; the run ids. Requeued as it is (the
    inherited `checkpoint`): the rerun resumes the run."""

    suite: Suite
    task: Task

    def __call__(self) -> list[str]:
        from kdtrack.pipeline.replicas import on_ranks

        config = self.task.config()
        student = on_ranks(config, lambda world: suites.train_task(self.suite, self.task, world),
                           world=job_world(config.nproc_per_node))
        return [student, *suites.analyze_task(self.suite, self.task, student)] if student else []


@dataclass(frozen=True)
class AblateWorker(submitit.helpers.Checkpointable):
    """One worker of a study: `ablate`'s work loop until the study is done; the study run's id."""

    config: AblateConfig
    experiment: str

    def __call__(self, _index: int) -> str:
        from kdtrack.studies.ablate import ablate

        return ablate(self.config, self.experiment)


def check_tools(launch: Launch) -> None:
    """Slurm's commands are on PATH where Slurm launches: said before any plan is printed."""
    if launch.launcher == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise UserError(f"--launcher slurm needs Slurm's {' and '.join(missing)} on PATH; "
                            "submit from a machine of the cluster (or use --launcher local)")


def executor(launch: Launch, name: str, processes: int = 1, after: str = "") -> submitit.AutoExecutor:
    """An executor for one job (or one array): a fresh one each time, since submitit's parameters
    accumulate and a dependency must not carry over to the next job."""
    spec = launch.slurm
    check_tools(launch)
    if spec.gpus_per_task and processes > spec.gpus_per_task:
        raise UserError(f"nproc_per_node={processes} is more than gpus_per_task={spec.gpus_per_task}; "
                        "allowed: one process per GPU")
    jobs = submitit.AutoExecutor(launch.folder, cluster=launch.launcher)
    # A job whose dependency can never be met (its teacher failed) is cancelled, not left pending.
    extra = {**({"kill-on-invalid-dep": "yes"} if after else {}), **{k: str(v) for k, v in spec.sbatch.items()}}
    jobs.update_parameters(name=name, timeout_min=spec.time_min, tasks_per_node=processes,
                           gpus_per_node=spec.gpus_per_task or None, cpus_per_task=spec.cpus_per_task,
                           mem_gb=spec.mem_gb, slurm_partition=spec.partition,
                           slurm_dependency=f"afterok:{after}" if after else None,
                           slurm_additional_parameters=extra or None)
    return jobs


def submit(launch: Launch, job, name: str, processes: int, after: str = "") -> submitit.Job:
    try:
        return executor(launch, name, processes, after).submit(job)
    except SUBMIT_ERRORS as error:
        raise UserError(f"submitting job {name!r} failed: {last_line(str(error))}") from None


def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), text)


def failure(job: submitit.Job) -> str:
    """Why an ended job failed ("" if it did not): its traceback's last line, which names the error."""
    error = job.exception()
    if error is None:
        return ""
    parts = str(error).split("----------------------")  # submitit puts the job's traceback between these
    return f"job {job.job_id}: {last_line(parts[1] if len(parts) > 2 else str(error))}"


def with_processes(task: Task, processes: int | None) -> Task:
    """The task trained on `processes` processes, where the launch sets them (not part of the reuse key)."""
    if processes is None:
        return task
    return dataclasses.replace(task, params={**task.params, "nproc_per_node": str(processes)})


def job_name(suite: Suite, task: Task, kind: str) -> str:
    """What `squeue` shows: suite-setting-seed-kind (kind: teacher, or the student's loss)."""
    return f"{suite.name}-{task.setting}-s{task.seed}-{kind}"


def teacher_groups(suite: Suite, tasks: list[Task]) -> tuple[dict[tuple, list[Task]], list[Task]]:
    """The tasks by the teacher run they need trained first (by its reuse key), and those whose
    teacher is given or FINISHED already."""
    from kdtrack import tracking
    from kdtrack.config import key_params

    experiment_id = tracking.resolve_experiment(suite.experiment)
    groups: dict[tuple, list[Task]] = {}
    ready = []
    for task in tasks:
        config = task.config()
        params = key_params(config.teacher_config)
        key = tracking.run_key("teacher", params)
        if config.teacher_run_id or tracking.find_finished(experiment_id, "teacher", key, params):
            ready.append(task)
        else:
            groups.setdefault(tuple(sorted(params.items())), []).append(task)
    return groups, ready


def run_suite(suite: Suite, launch: Launch, dry_run: bool = False) -> list[str]:
    """Submit the suite's missing tasks, teachers first. Slurm: the submitted job ids, at once;
    local: the run ids, once every job has ended."""
    check_tools(launch)
    tasks = [with_processes(task, launch.slurm.nproc_per_node) for task in suites.pending(suite, dry_run)]
    if not tasks:
        return []
    groups, ready = teacher_groups(suite, tasks)
    say(f"submitit: scripts and logs in {launch.folder}")

    def student(task: Task, after: str = "") -> submitit.Job:
        job = submit(launch, TaskJob(suite, task), job_name(suite, task, task.loss), task.config().nproc_per_node,
                     after)
        say(f"submitted job {job.job_id}: {task.label}" + (f" (after job {after})" if after else ""))
        return job

    teachers = {}
    for key, members in groups.items():
        config = members[0].config().teacher_config
        teachers[key] = submit(launch, TeacherJob(suite, members[0]), job_name(suite, members[0], "teacher"),
                               config.nproc_per_node)
        say(f"submitted job {teachers[key].job_id}: the teacher of {len(members)} task(s), "
            f"{', '.join(t.label for t in members)}")
    students = [student(task) for task in ready]
    if launch.launcher == "slurm":
        students += [student(task, teachers[key].job_id) for key, members in groups.items() for task in members]
        return [job.job_id for job in [*teachers.values(), *students]]
    # The local executor has no dependencies: a teacher's students are submitted once its job has ended well.
    failed = []
    for teacher in submitit.helpers.as_completed(list(teachers.values()), poll_frequency=1):
        key = next(k for k, job in teachers.items() if job is teacher)
        if failure(teacher):
            failed.append(f"the teacher of {len(groups[key])} task(s), not submitted: {failure(teacher)}")
        else:
            students += [student(task) for task in groups[key]]
    failed += [failure(job) for job in students if failure(job)]
    ids = [run_id for job in students if not failure(job) for run_id in job.results()[0]]
    if failed:
        raise UserError(f"{len(failed)} job(s) failed (logs in {launch.folder}): {'; '.join(failed)}")
    return ids


def run_ablate(config: AblateConfig, experiment: str, launch: Launch, array: int) -> list[str]:
    """`array` workers of one study as a job array; Slurm: the job ids, at once; local: the study
    run's id, once every worker has ended."""
    from kdtrack import tracking

    if launch.launcher == "slurm" and (not config.storage or config.storage.startswith("sqlite")):
        raise UserError(f"storage={config.storage or 'the default (sqlite)'!r}: workers on several machines "
                        "need a database server; allowed with --launcher slurm: a server URL such as "
                        "postgresql://user:password@host/optuna")
    tracking.check_store()
    say(f"submitit: scripts and logs in {launch.folder}")
    try:
        jobs = executor(launch, f"ablate:{config.study or config.knob}").map_array(
            AblateWorker(config, experiment), range(array))
    except SUBMIT_ERRORS as error:
        raise UserError(f"submitting the ablation's workers failed: {last_line(str(error))}") from None
    say(f"submitted {array} worker job(s): {', '.join(job.job_id for job in jobs)}")
    if launch.launcher == "slurm":
        return [jobs[0].job_id.split("_")[0]]
    failed = [failure(job) for job in jobs if failure(job)]
    if failed:
        raise UserError(f"{len(failed)} worker(s) failed (logs in {launch.folder}): {'; '.join(failed)}")
    return sorted({job.results()[0] for job in jobs})
