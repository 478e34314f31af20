"""`ablate`: Optuna studies over one knob (paper §C.5: batch size, learning rate, length).

Each trial distills a student from the trial's setting (teachers are reused: one per teacher
configuration, found by the pipeline's reuse keys) and analyzes it; its objective is a metric of
the analysis run (else of the student run). MLflow: one `study` run, a nested `trial` run per
trial under it (tags kdtrack.study / kdtrack.trial; the trial's user attribute `mlflow_run_id`
points back), with the runs the trial trained or reused nested under that.

Storage: Optuna's own database (it cannot share MLflow's): `optuna.db` beside a SQLite MLflow
store, else in the working directory; or any SQLAlchemy URL, shared by workers on several
machines. Heartbeats mark trials of dead workers FAILED and `RetryHeartbeatStaleTrialCallback` runs them
again (see `StudyStore`); `work_loop` stops every worker once the grid or the trial budget is done.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models  # the heartbeat table: Optuna has no public query for it
from optuna.trial import TrialState

from kdtrack import tracking
from kdtrack.config import AblateConfig, AnalyzeConfig, DistillConfig, target_of, to_params
from kdtrack.contract import ANALYSIS_RUN, BEST_RUNS, BEST_TRIALS, PRUNED, STUDENT_RUN, STUDY, TRIAL
from kdtrack.errors import StopRun, UserError
from kdtrack.progress import Progress
from kdtrack.say import say
from kdtrack.tracking import RunContext


class Pruned(StopRun, optuna.TrialPruned):
    """Optuna's pruning decision, raised from inside the student's training loop."""


def make_pruner(config: AblateConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=2) if config.pruner == "median" else optuna.pruners.NopPruner()


def pruning_hook(trial: optuna.Trial, objective: str):
    """Report the objective whenever the student logs it during training (e.g. test/acc at each
    evaluation) and stop the trial when the pruner says so. Objectives known only after the
    analysis (the slopes) are never intermediate: such trials are not pruned."""
    def hook(role: str, values: dict[str, float], step: int) -> None:
        if role == "student" and objective in values and step > 0:
            trial.report(values[objective], step)
            if trial.should_prune():
                raise Pruned(f"pruned at step {step}: {objective}={values[objective]:.4g}")
    return hook

def default_storage() -> str:
    uri = tracking.tracking_uri()
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


STALE_FLOOR = 60  # seconds: a worker the machine starves (load, swap, a stopped VM) is not taken for dead


class StudyStore(RDBStorage):
    """Optuna's database storage, with a stale check that also sees a worker killed between creating its trial and
    its first heartbeat. Optuna sends heartbeats from a thread of their own (not waiting on training: torch releases
    the GIL and Python hands it over every 5 ms), but that thread starts only after `study.ask()` has made the
    trial RUNNING and Optuna's own check skips a trial with no heartbeat row: such a trial stayed RUNNING forever and
    the surviving workers waited for it forever (how tests/studies/test_ablate_workers.py once hung: it kills a worker
    as soon as its trial is RUNNING, and on a loaded machine that moment often comes before the first heartbeat). Here
    a RUNNING trial without a heartbeat is stale once this process has seen it so for the grace period, timed on
    its own clock, as no shared clock records when the trial started."""

    def __init__(self, url: str, heartbeat: int) -> None:
        super().__init__(url, heartbeat_interval=heartbeat, grace_period=max(4 * heartbeat, STALE_FLOOR),
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
        self.silent_since: dict[int, float] = {}  # trial id: when this process first saw it RUNNING without heartbeat

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        now = time.monotonic()
        self.silent_since = {i: self.silent_since.get(i, now) for i in self.silent_trial_ids(study_id)}
        return stale + [i for i, since in self.silent_since.items() if now - since > self.grace_period]

    def silent_trial_ids(self, study_id: int) -> list[int]:
        running = [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))]
        session = self.scoped_session()
        try:
            beating = {i for (i,) in session.query(models.TrialHeartbeatModel.trial_id)
                       .filter(models.TrialHeartbeatModel.trial_id.in_(running))}
        finally:
            session.close()
        return [i for i in running if i not in beating]


LOST_CREATION_RACE = ("already exists", "alembic_version")


def storage(url: str, heartbeat: int) -> StudyStore:
    for attempt in range(3):
        try:
            return StudyStore(url or default_storage(), heartbeat)
        except Exception as error:
            # Workers started together on a new database race to create Optuna's tables and stamp
            # their version; the loser finds them made ("table ... already exists", or "UNIQUE
            # constraint failed: alembic_version.version_num", as CI once saw) and opens it again.
            if any(sign in str(error) for sign in LOST_CREATION_RACE) and attempt < 2:
                continue
            raise UserError(f"storage={url or default_storage()!r} cannot be opened as an Optuna study store: "
                            f"{str(error).splitlines()[0]}") from None


def trial_setting(config: AblateConfig, value, seed: int) -> DistillConfig:
    """The base setting with the knob at `value` and the given seed; a KD target's strength
    (confidence_power, confidence_spread) comes with its target."""
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(DistillConfig)}
    if config.knob == "length":
        if config.steps:
            base["steps"] = max(1, round(config.steps * value))
        else:
            base["epochs"] = config.epochs * value
    else:
        base[config.knob] = value
    if target_of(config.knob):
        base["kd_target"] = target_of(config.knob)
    return DistillConfig(**{**base, "seed": seed})


def objective_values(student_id: str, analysis_id: str, names: list[str]) -> list[float]:
    metrics = {**tracking.get_run(student_id).data.metrics, **tracking.get_run(analysis_id).data.metrics}
    missing = [n for n in names if n not in metrics]
    if missing:
        raise UserError(f"objective={missing[0]!r} is not a metric of the student or its analysis; "
                        f"some that are: {', '.join(sorted(metrics)[:12])}")
    return [metrics[n] for n in names]


@dataclass(frozen=True)
class StudyPlan:
    """What every trial of a study shares, complete before the study opens: its name, the grid
    (`values` of the knob by `seeds`), the objectives and where the runs go."""

    config: AblateConfig
    name: str
    values: list
    seeds: list[int]
    objectives: list[str]
    directions: list[str]
    experiment: str  # as given (distill resolves it again for the runs it makes)
    experiment_id: str

    @property
    def total(self) -> int:
        """Trials to run: the budget of a search, else the grid's size."""
        return self.config.n_trials or len(self.values) * len(self.seeds)


def plan_study(config: AblateConfig, experiment: str, context: RunContext) -> StudyPlan:
    """The study `config` asks for, every setting checked before anything trains."""
    values = config.knob_values()
    for value in values:
        trial_setting(config, value, config.seed)
    experiment_id = tracking.resolve_experiment(experiment, context)
    name = config.study or f"{experiment or experiment_id}-{config.preset}-{config.knob}"
    tracking.quoted(name)  # a name no search filter can find the study run by is refused before the study exists
    second = [config.second_objective] if config.second_objective else []
    return StudyPlan(config, name, values, [config.seed + s for s in range(config.seeds)], [config.objective, *second],
                     [config.direction] + ([config.second_direction] if second else []), experiment, experiment_id)


def open_study(plan: StudyPlan) -> optuna.Study:
    """The Optuna study, created or (another worker's, an earlier run's) loaded: a grid sampler
    over (value, seed), or TPE for a budget of trials."""
    config = plan.config
    grid = {"value": plan.values, "seed": plan.seeds}
    sampler = optuna.samplers.GridSampler(grid, seed=0) if not config.n_trials else optuna.samplers.TPESampler(seed=0)
    return optuna.create_study(study_name=plan.name, storage=storage(config.storage, config.heartbeat),
                               sampler=sampler, directions=plan.directions, load_if_exists=True,
                               pruner=make_pruner(config))


def ablate(config: AblateConfig, experiment: str = "", context: RunContext = RunContext()) -> str:
    """Run (or continue) the study; returns the id of its `study` run."""
    tracking.check_store()
    plan = plan_study(config, experiment, context)
    study = open_study(plan)
    tracking.reap_experiments([plan.experiment_id])  # trial runs a killed worker left RUNNING are marked KILLED
    with tracking.study_run(plan.experiment_id, plan.name, to_params(config), context) as study_run:
        say(f"study {plan.name!r}: {plan.total} trials over {config.knob} = {plan.values} x seeds {plan.seeds} "
            f"(study run {study_run.run_id})")
        # A trial's own run nests under the study run; the runs it trains or reuses nest under it.
        trial_context = replace(context, parent=study_run.run_id, report_to="")
        grid = [(value, seed) for value in plan.values for seed in plan.seeds]
        with Progress(plan.total, f"study {plan.name!r}", "trials") as progress:
            work_loop(study, partial(objective, plan=plan, context=trial_context), grid, config.n_trials,
                      config.heartbeat, progress)
        record_best(study, study_run, plan.objectives)
    return study_run.run_id


def objective(trial: optuna.Trial, plan: StudyPlan, context: RunContext):
    """One trial: its point (the grid's, or TPE's choice), distilled and analyzed; the objectives'
    values. A failure is kept on the trial (`failure`), which the grid then counts as done."""
    if plan.config.n_trials:
        value = suggest(trial, plan.config.knob, plan.values)
        seed = trial.suggest_categorical("seed", plan.seeds)
    else:
        value, seed = trial.suggest_categorical("value", plan.values), trial.suggest_categorical("seed", plan.seeds)
        skip_done_point(trial)
    try:
        scores = run_trial(trial, plan.config, value, seed, plan.objectives, plan.experiment, plan.experiment_id,
                           context)
    except Pruned:
        raise
    except BaseException as error:
        trial.set_user_attr("failure", str(error)[:1000])
        raise
    if any(not math.isfinite(s) for s in scores):
        raise UserError(f"objective is not finite: {scores}")
    return scores[0] if len(scores) == 1 else tuple(scores)


def run_trial(trial: optuna.Trial, config: AblateConfig, value, seed: int, objectives: list[str], experiment: str,
              experiment_id: str, context: RunContext) -> list[float]:
    """Distill and analyze the trial's setting inside a `trial` run; the objectives' values."""
    from kdtrack.analysis.analyze import analyze
    from kdtrack.pipeline.stages import distill

    with tracking.run(experiment_id, f"trial-{trial.number}-{config.knob}={value}-seed{seed}", "trial",
                      {config.knob: str(value), "seed": str(seed)}, context,
                      {STUDY: trial.study.study_name, TRIAL: str(trial.number)}, fluent=False) as run:
        trial.set_user_attr("mlflow_run_id", run.run_id)
        inner = context.within(run.run_id)
        if len(objectives) == 1:  # Optuna prunes single-objective studies only
            inner = inner.hooked(pruning_hook(trial, config.objective))
        try:
            student = distill(trial_setting(config, value, seed), experiment, inner)
        except Pruned as error:
            run.set_tags({PRUNED: str(error)})
            raise
        [analysis] = analyze(AnalyzeConfig(student_run_id=student, figures=config.figures), inner)
        scores = objective_values(student, analysis, objectives)
        run.metrics({f"objective/{n}": v for n, v in zip(objectives, scores)}, 0)
        run.set_tags({STUDENT_RUN: student, ANALYSIS_RUN: analysis})
    return scores


def work_loop(study: optuna.Study, objective, grid: list[tuple], n_trials: int, heartbeat: int,
              progress: Progress | None = None) -> None:
    """Run trials until the study is done, one at a time, so that any number of workers share it:
    a grid is done when every point has a finished trial (a genuine failure counts; a trial whose
    worker died does not: the heartbeat marks it FAILED and its retry is queued); a search when
    `n_trials` trials have finished or run. While only other workers' trials run, wait and look
    for stale ones. `progress` counts the trials that ended, this worker's or others'."""
    while True:
        trials = study.get_trials(deepcopy=False)
        counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                    TrialState.WAITING) or "failure" in t.user_attrs]
        if progress is not None:
            ended = [t for t in counted if t.state not in (TrialState.RUNNING, TrialState.WAITING)]
            progress.update(min(len(ended), progress.total))
        if n_trials:
            todo = n_trials - len(counted)
        else:
            todo = len(set(grid) - {(t.params.get("value"), t.params.get("seed")) for t in counted})
        if todo > 0 or any(t.state == TrialState.WAITING for t in trials):
            study.optimize(objective, n_trials=1, catch=(UserError,))
        elif any(t.state == TrialState.RUNNING for t in trials):
            optuna.storages.fail_stale_trials(study)
            time.sleep(heartbeat)
        else:
            return


def skip_done_point(trial: optuna.Trial) -> None:
    """Stop (as PRUNED, so the point is not queued again) a grid trial whose point another trial has completed.
    This happens to the retry of a worker killed before its trial chose a point: the grid counted that point as
    missing and ran it meanwhile, and the retry, queued later by the stale check, takes the same point."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.params == trial.params:
            raise optuna.TrialPruned(f"grid point {trial.params} is already done by trial {other.number}")


def suggest(trial: optuna.Trial, knob: str, values: list):
    """TPE's search space: the range of the given values (log scale for lr), or the values."""
    if isinstance(values[0], bool) or isinstance(values[0], str):
        return trial.suggest_categorical("value", values)
    if isinstance(values[0], int):
        return trial.suggest_int("value", min(values), max(values), log=knob == "batch_size")
    return trial.suggest_float("value", min(values), max(values), log=knob == "lr")


def record_best(study: optuna.Study, study_run: tracking.TrackedRun, objectives: list[str]) -> None:
    """The study run's record: trial counts, and the best trial (or the Pareto front)."""
    metrics, tags = best_of(study, objectives)
    if tags:
        study_run.set_tags(tags)
    study_run.metrics(metrics, 0)


def best_of(study: optuna.Study, objectives: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """The trial counts by state and, once a trial completed, the best trial's objectives as
    metrics; the best trials (several on a Pareto front) and their runs as tags."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)}
    metrics = {f"trials/{k}": float(v) for k, v in counts.items()}
    if not counts["complete"]:
        return metrics, {}
    best = study.best_trials
    tags = {BEST_TRIALS: ",".join(str(t.number) for t in best),
            BEST_RUNS: ",".join(t.user_attrs.get("mlflow_run_id", "") for t in best)}
    scores = {f"best/{name}": value for name, value in zip(objectives, best[0].values)}
    return {**metrics, **scores, "best/trial": float(best[0].number)}, tags
