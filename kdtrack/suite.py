"""Declarative suites: one YAML file declares a study; `kdtrack suite run` trains what is missing.

A file names an `experiment` and `settings`. A setting has a `name`, a `preset`, `overrides`
(config fields), an optional `teacher` ({arch, width, depth, pretrained}), `students` (each {arch, loss:
distill | onehot | switch, and switch fields}; default: one distilled student of the teacher's
architecture), `seeds`, and an optional `matrix` ({field: [values]}) whose cross product expands
it into settings named `<name>[field=value,...]`. Runs are matched by parameters and code version
through the pipeline's own reuse keys, so a rerun trains only what is missing.
"""
from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kdtrack import specfile
from kdtrack.config import DistillConfig, SwitchConfig, from_params
from kdtrack.errors import UserError

SHIPPED = Path(__file__).parent / "suites"
SETTING_KEYS = {"name", "preset", "overrides", "teacher", "students", "seeds", "matrix"}
LOSSES = ("distill", "onehot", "switch")
TEACHER_FIELDS = {"arch": "teacher_arch", "width": "teacher_width", "depth": "teacher_depth",
                  "pretrained": "teacher_pretrained"}  # a setting's teacher key -> the student config's field


@dataclass(frozen=True)
class Task:
    setting: str
    seed: int
    loss: str
    params: dict  # the config's string parameters

    @property
    def label(self) -> str:
        return f"{self.setting} seed {self.seed} {self.loss} {self.params.get('arch', '')}".strip()

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


def _bad(path: Path, key: str, allowed: str) -> UserError:
    return UserError(f"suite {str(path)!r}: {key}; allowed: {allowed}")


def load(name_or_path: str) -> Suite:
    path, spec = specfile.load_mapping("suite", name_or_path, SHIPPED, ("experiment", "settings"))
    if not isinstance(spec.get("settings"), list):
        raise UserError(f"suite {str(path)!r}: key 'settings' must be a list of settings (each with name and preset)")
    tasks = []
    for index, setting in enumerate(spec["settings"]):
        if not isinstance(setting, dict) or "name" not in setting or "preset" not in setting:
            raise _bad(path, f"settings[{index}] needs name and preset", ", ".join(sorted(SETTING_KEYS)))
        unknown = sorted(set(setting) - SETTING_KEYS)
        if unknown:
            raise _bad(path, f"settings[{index}] has unknown key {unknown[0]!r}", ", ".join(sorted(SETTING_KEYS)))
        tasks += _expand(path, setting)
    for task in tasks:  # every config is checked before anything runs
        try:
            task.config()
        except UserError as error:
            raise UserError(f"suite {str(path)!r}, setting {task.setting!r}: {error}") from None
    return Suite(path.stem, str(spec.get("experiment") or path.stem), tuple(tasks))


def _expand(path: Path, setting: dict) -> list[Task]:
    matrix = setting.get("matrix") or {}
    if not isinstance(matrix, dict) or any(not isinstance(v, list) for v in matrix.values()):
        raise _bad(path, f"setting {setting['name']!r}: matrix must map fields to lists", "{field: [values]}")
    combos = [dict(zip(matrix, values)) for values in itertools.product(*matrix.values())] or [{}]
    teacher = setting.get("teacher") or {}
    students = setting.get("students") or [{"loss": "distill"}]
    tasks = []
    for combo in combos:
        name = setting["name"] + (f"[{','.join(f'{k}={v}' for k, v in combo.items())}]" if combo else "")
        base = {"preset": setting["preset"], **{k: str(v) for k, v in (setting.get("overrides") or {}).items()},
                **{k: str(v) for k, v in combo.items()},
                **{field: str(teacher[key]) for key, field in TEACHER_FIELDS.items() if key in teacher}}
        for student in students:
            loss = student.get("loss", "distill")
            if loss not in LOSSES:
                raise _bad(path, f"setting {setting['name']!r}: loss {loss!r}", ", ".join(LOSSES))
            extra = {k: str(v) for k, v in student.items() if k != "loss"}
            for seed in setting.get("seeds") or [0]:
                tasks.append(Task(name, int(seed), loss, {**base, **extra, "seed": str(seed)}))
    return tasks


STATES = {"FINISHED": "done", "RUNNING": "running", "FAILED": "failed", "KILLED": "failed"}


def task_state(students: list, task: Task) -> str:
    """done, running, failed (the newest matching student run's status) or missing."""
    from kdtrack.jobs import key_params

    params = key_params(task.config())
    matching = [r for r in students if all(r.data.params.get(k) == v for k, v in params.items())]
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


def run_setting(suite: Suite, setting: str) -> list[str]:
    """Train (or reuse) and analyze every task of one setting, in order; a setting whose data is
    missing is skipped with its reason."""
    from kdtrack.analysis.analyze import analyze
    from kdtrack.config import AnalyzeConfig
    from kdtrack.contract import SUITE
    from kdtrack.pipeline import distill, switch
    from kdtrack.say import say
    from kdtrack.tracking import RunContext

    out = []
    tasks = [t for t in suite.tasks if t.setting == setting]
    for number, task in enumerate(tasks, 1):
        say(f"suite {suite.name}: [{number}/{len(tasks)} of setting {setting!r}] {task.label}")
        context = RunContext(tags={SUITE: f"{suite.name}/{task.setting}"})
        try:
            config = task.config()
            student = (switch if task.loss == "switch" else distill)(config, suite.experiment, context)
            out += [student, *analyze(AnalyzeConfig(student_run_id=student), context)]
        except UserError as error:
            say(f"suite {suite.name}: skipping setting {setting!r}: {error}")
            return out
    return out


def run(suite: Suite, dry_run: bool = False, workers: int = 1) -> list[str]:
    from kdtrack import tracking
    from kdtrack.say import say

    tracking.check_store()
    plan = status(suite)
    for task, state in plan:
        say(f"{'reuse' if state == 'done' else 'train' if state == 'missing' else 'resume'}  {task.label}"
            + (f" ({state})" if state in ("running", "failed") else ""))
    missing = sorted({t.setting for t, state in plan if state != "done"}, key=[t.setting for t in suite.tasks].index)
    if dry_run or not missing:
        say(f"suite {suite.name}: {sum(s == 'done' for _, s in plan)} of {len(plan)} done"
            + (" (dry run: nothing trained)" if dry_run else ""))
        return []
    if workers > 1:  # settings are independent: teachers are per setting
        with ProcessPoolExecutor(workers) as pool:
            return [i for ids in pool.map(run_setting, [suite] * len(missing), missing) for i in ids]
    return [i for setting in missing for i in run_setting(suite, setting)]
