"""Declarative suites: one YAML file declares a study; `kdtrack suite run` trains what is missing.

A file names an `experiment` and `settings`. A setting has a `name`, a `preset`, `overrides`
(config fields), an optional `teacher` ({arch, width, depth, pretrained}), `students` (each {arch, loss:
distill | onehot | switch, and switch fields}; default: one distilled student of the teacher's
architecture), `seeds`, and an optional `matrix` ({field: [values]}) whose cross product expands
it into settings named `<name>[field=value,...]`. Runs keep what a study needs (`STUDY_STORAGE`)
unless a setting's overrides or a student say otherwise. An optional `analysis` holds `analyze`'s
fields for every student's analysis (e.g. `{figures: false}` at thousands of runs). The file's
shape is checked against the pydantic models below (`SuiteSpec`) before anything expands. Runs
are matched by parameters and code version through the pipeline's own reuse keys, so a rerun
trains only what is missing.
"""
from __future__ import annotations

import itertools
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema, StringConstraints, field_validator
from pydantic_core import core_schema

from kdtrack import specfile
from kdtrack.config import KD_STRENGTHS, AnalyzeConfig, DistillConfig, SwitchConfig, from_params
from kdtrack.errors import UserError
from kdtrack.progress import Progress

SHIPPED = Path(__file__).parent / "suites"
MAX_TASKS = 10_000  # a suite is what one `suite run` trains; a bigger matrix is a typo, or should be split
# What a suite's runs keep unless a setting says otherwise: no step checkpoints, as a suite's own
# runs start no `switch` (a switch student trains its first phase itself, or starts from a
# `from_run_id` outside the suite, which kept its own), and no logged model, whose weights
# checkpoints/final.pt already holds. Neither is in a reuse key: runs kept otherwise are reused.
STUDY_STORAGE = {"keep_checkpoints": "last", "log_model": "false"}
TEACHER_FIELDS = {"arch": "teacher_arch", "width": "teacher_width", "depth": "teacher_depth",
                  "pretrained": "teacher_pretrained"}  # a setting's teacher key -> the student config's field


# A config field's value as YAML writes it (YAML reads 1e-3 as text: the config parses it). One
# error for the union, not one per member.
Scalar = Annotated[Union[bool, int, float, str], GetPydanticSchema(lambda _type, _handler: core_schema.union_schema(
    [core_schema.bool_schema(strict=True), core_schema.int_schema(strict=True),
     core_schema.float_schema(strict=True), core_schema.str_schema(strict=True)],
    custom_error_type="scalar", custom_error_message="a string, number or boolean"))]
Name = Annotated[str, StringConstraints(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TeacherSpec(Strict):
    """The teacher's architecture where it differs from the student's (`teacher_*` fields)."""

    arch: Name | None = None
    width: Annotated[int, Field(ge=0)] | None = None
    depth: Annotated[int, Field(ge=0)] | None = None
    pretrained: str | None = None


class StudentSpec(BaseModel):
    """A student: its loss, and any config fields of its own (arch, switch_at, ...)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    __pydantic_extra__: dict[str, Scalar]
    loss: Literal["distill", "onehot", "switch"] = "distill"


class SettingSpec(Strict):
    name: Name
    preset: Name
    overrides: dict[str, Scalar] = {}
    teacher: TeacherSpec = TeacherSpec()
    students: Annotated[list[StudentSpec], Field(min_length=1)] = [StudentSpec()]
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1)] = [0]
    matrix: dict[str, Annotated[list[Scalar], Field(min_length=1)]] = {}

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.matrix.values()) * len(self.students) * len(self.seeds)


class SlurmSpec(Strict):
    """How `suite run --launcher slurm` asks for each job (kdtrack.launch); flags override it."""

    partition: str | None = None  # default: the cluster's
    gpus_per_task: Annotated[int, Field(ge=0)] = 0  # GPUs of each job (one training run); 0 = CPU only
    cpus_per_task: Annotated[int, Field(ge=1)] | None = None  # default: the cluster's
    mem_gb: Annotated[float, Field(gt=0)] | None = None  # default: the cluster's
    time_min: Annotated[int, Field(ge=1)] = 24 * 60  # a job's time limit; a job that reaches it is requeued
    nproc_per_node: Annotated[int, Field(ge=1)] | None = None  # processes per run (DDP); default: the task's own
    sbatch: dict[str, Scalar] = {}  # more `#SBATCH --key=value` lines (account, qos, constraint, ...)


class SuiteSpec(Strict):
    experiment: str = ""
    settings: Annotated[list[SettingSpec], Field(min_length=1)]
    slurm: SlurmSpec = SlurmSpec()
    analysis: dict[str, Scalar] = {}  # `analyze` fields for every student's analysis (quantile, figures, ...)

    @field_validator("settings")
    @classmethod
    def _names_differ(cls, settings: list[SettingSpec]) -> list[SettingSpec]:
        names = [s.name for s in settings]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # they would merge into one setting's tasks
            raise ValueError(f"a distinct name for each setting ({twice[0]!r} is used twice)")
        return settings


@dataclass(frozen=True)
class Task:
    setting: str
    seed: int
    loss: str
    params: dict  # the config's string parameters

    @property
    def label(self) -> str:
        # the KD target and method, where the suite names them, tell the students of one setting and seed apart
        target = self.params.get("kd_target", "")
        strength = self.params.get(KD_STRENGTHS.get(target, ""), "")
        kd = f"{target}={strength}" if strength else target
        return " ".join(part for part in (self.setting, "seed", str(self.seed), self.loss, self.params.get("arch", ""),
                                          kd, self.params.get("kd_loss", "")) if part)

    def config(self):
        cls = SwitchConfig if self.loss == "switch" else DistillConfig
        params = dict(self.params)
        if self.loss == "onehot":
            params["distill_weight"] = "0"
        return from_params(cls, params)


@dataclass(frozen=True)
class Suite:
    name: str
    experiment: str
    tasks: tuple[Task, ...]
    slurm: SlurmSpec = SlurmSpec()
    analysis: tuple[tuple[str, str], ...] = ()  # AnalyzeConfig's string parameters, checked at load


def load(name_or_path: str) -> Suite:
    path, raw = specfile.load_mapping("suite", name_or_path, SHIPPED, ("experiment", "settings", "slurm", "analysis"))
    spec = specfile.validated("suite", path, SuiteSpec, raw)
    size = sum(setting.size for setting in spec.settings)
    if size > MAX_TASKS:  # counted before anything is expanded
        raise UserError(f"suite {str(path)!r} expands to {size} tasks (matrix x students x seeds); "
                        f"allowed: at most {MAX_TASKS}")
    tasks = [task for setting in spec.settings for task in _expand(setting)]
    for task in tasks:  # every config is checked before anything runs
        try:
            task.config()
        except UserError as error:
            raise UserError(f"suite {str(path)!r}, setting {task.setting!r}: {error}") from None
    analysis = tuple((k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in spec.analysis.items())
    _analysis_config(analysis, path)
    return Suite(path.stem, spec.experiment or path.stem, tuple(tasks), spec.slurm, analysis)


def _analysis_config(analysis: tuple[tuple[str, str], ...], path: Path | None = None) -> AnalyzeConfig:
    """The config of a suite's analyses: its `analysis` fields; the student is the task's."""
    fixed = {"student_run_id", "experiment", "theory"} & dict(analysis).keys()
    where = f"suite {str(path)!r}: " if path else ""
    if fixed:
        raise UserError(f"{where}analysis.{sorted(fixed)[0]} is not allowed; allowed: the fields of analyze "
                        "but student_run_id, experiment and theory (the suite sets those)")
    try:
        return from_params(AnalyzeConfig, dict(analysis))
    except UserError as error:
        raise UserError(f"{where}analysis: {error}") from None


def _expand(setting: SettingSpec) -> list[Task]:
    combos = [dict(zip(setting.matrix, values)) for values in itertools.product(*setting.matrix.values())] or [{}]
    teacher = {TEACHER_FIELDS[key]: str(value) for key, value in setting.teacher.model_dump(exclude_none=True).items()}
    tasks = []
    for combo in combos:
        name = setting.name + (f"[{','.join(f'{k}={v}' for k, v in combo.items())}]" if combo else "")
        base = {"preset": setting.preset, **STUDY_STORAGE, **{k: str(v) for k, v in setting.overrides.items()},
                **{k: str(v) for k, v in combo.items()}, **teacher}
        for student in setting.students:
            extra = {k: str(v) for k, v in (student.model_extra or {}).items()}
            for seed in setting.seeds:
                tasks.append(Task(name, seed, student.loss, {**base, **extra, "seed": str(seed)}))
    return tasks


STATES = {"FINISHED": "done", "RUNNING": "running", "FAILED": "failed", "KILLED": "failed"}


def task_state(students: list, task: Task) -> str:
    """done, running, failed (the newest matching student run's status) or missing. A run of other
    code does not match: training would not reuse it (its reuse key holds the code version)."""
    from kdtrack import code_version
    from kdtrack.config import key_params
    from kdtrack.contract import CODE_VERSION

    params, version = key_params(task.config()), code_version()
    matching = [r for r in students if r.data.tags.get(CODE_VERSION) == version
                and all(r.data.params.get(k) == v for k, v in params.items())]
    if any(r.info.status == "FINISHED" for r in matching):
        return "done"
    newest = max(matching, key=lambda r: r.info.start_time, default=None)
    return STATES.get(newest.info.status, "missing") if newest else "missing"


def status(suite: Suite) -> list[tuple[Task, str]]:
    """Each task's state, from one search of the suite's experiment."""
    from kdtrack import tracking
    from kdtrack.contract import ROLE

    experiment_id = tracking.resolve_experiment(suite.experiment)
    students = tracking.search_all([experiment_id], f"tags.`{ROLE}` = 'student'")
    return [(task, task_state(students, task)) for task in suite.tasks]


def context(suite: Suite, task: Task, world=None):
    """What the runs a task trains (its teacher's too) inherit: the suite's tag, and the processes
    that train them (`world`, a kdtrack.training.distributed.World; default one)."""
    from kdtrack.contract import SUITE
    from kdtrack.tracking import RunContext

    tags = {SUITE: f"{suite.name}/{task.setting}"}
    return RunContext(tags=tags) if world is None else RunContext(tags=tags, world=world)


def train_task(suite: Suite, task: Task, world=None) -> str:
    """Train (or reuse) one task's student, its teacher first; the student's run id."""
    from kdtrack.pipeline.stages import distill, switch

    return (switch if task.loss == "switch" else distill)(task.config(), suite.experiment, context(suite, task, world))


def analyze_task(suite: Suite, task: Task, student: str) -> list[str]:
    """The analysis run ids of a task's trained student; then, under the study storage, the
    student's weights go (drop_analyzed_weights)."""
    from kdtrack.analysis.analyze import analyze

    analyses = analyze(replace(_analysis_config(suite.analysis), student_run_id=student), context(suite, task))
    trained = task.config()
    if trained.keep_checkpoints == "last" and not trained.log_model:
        drop_analyzed_weights(student)
    return analyses


def drop_analyzed_weights(student: str) -> None:
    """A study's analyzed student lets go of its weights, `checkpoints/final.pt` and
    `eigen/last_layer_weights.pt` (in table7, 10.4 of a seed's 34 MB): nothing in a study loads
    them again (no one distills from a student, `switch` starts from step checkpoints), and its
    analysis recorded what a later analysis with other parameters needs from them (Fig. 17's
    table, the §D.7 projections: analysis.eigen_evidence.earlier). The teacher keeps its own."""
    from kdtrack import tracking
    from kdtrack.say import say

    paths = [path for path in ("checkpoints/final.pt", "eigen/last_layer_weights.pt")
             if tracking.has_artifact(student, path)]
    refused = tracking.delete_artifacts(student, paths)
    if refused:
        say(f"student {student}: the artifact store cannot delete {', '.join(refused)}; they stay")


def run_setting(suite: Suite, setting: str, progress: Progress | None = None, before: int = 0) -> list[str]:
    """Train (or reuse) and analyze every task of one setting, in order; a setting whose data is
    missing is skipped with its reason. `progress` counts the suite's tasks, `before` of them
    done before this setting."""
    from kdtrack.say import say

    out = []
    tasks = [t for t in suite.tasks if t.setting == setting]
    for number, task in enumerate(tasks, 1):
        say(f"suite {suite.name}: [{number}/{len(tasks)} of setting {setting!r}] {task.label}")
        if progress is not None:
            progress.update(before + number - 1, lambda: {"setting": setting})
        try:
            student = train_task(suite, task)
            out += [student, *analyze_task(suite, task, student)]
            if progress is not None:
                progress.update(before + number, lambda: {"setting": setting})
        except UserError as error:
            say(f"suite {suite.name}: skipping setting {setting!r}: {error}")
            return out
    return out


def pending(suite: Suite, dry_run: bool = False) -> list[Task]:
    """The tasks to train, after one line per task saying what a run does with it; with none
    (or `dry_run`), a line counting what is done."""
    from kdtrack import tracking
    from kdtrack.say import say

    tracking.check_store()
    plan = status(suite)
    for task, state in plan:
        say(f"{'reuse' if state == 'done' else 'train' if state == 'missing' else 'resume'}  {task.label}"
            + (f" ({state})" if state in ("running", "failed") else ""))
    todo = [task for task, state in plan if state != "done"]
    if dry_run or not todo:
        say(f"suite {suite.name}: {len(plan) - len(todo)} of {len(plan)} done"
            + (" (dry run: nothing trained)" if dry_run else ""))
        return []
    return todo


def run(suite: Suite, dry_run: bool = False, workers: int = 1) -> list[str]:
    todo = pending(suite, dry_run)
    missing = list(dict.fromkeys(t.setting for t in todo))  # in the suite's order
    if not missing:
        return []
    sizes = {setting: sum(t.setting == setting for t in suite.tasks) for setting in missing}
    with Progress(sum(sizes.values()), f"suite {suite.name}", "tasks") as progress:
        if workers > 1:  # settings are independent: teachers are per setting
            return run_parallel(suite, missing, sizes, workers, progress)
        before = [sum(sizes[s] for s in missing[:k]) for k in range(len(missing))]
        return [i for setting, done in zip(missing, before) for i in run_setting(suite, setting, progress, done)]


def run_parallel(suite: Suite, settings: list[str], sizes: dict[str, int], workers: int,
                 progress: Progress) -> list[str]:
    """The settings in `workers` processes; `progress` advances as each setting ends."""
    ids, done = {}, 0
    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(run_setting, suite, setting): setting for setting in settings}
        for future in as_completed(futures):
            setting = futures[future]
            ids[setting], done = future.result(), done + sizes[setting]
            progress.update(done, lambda setting=setting: {"finished": setting})
    return [i for setting in settings for i in ids[setting]]
