"""The `analyze` entry point's work: for each student, gather the paper's statistics and figures
(`gather`), record them in an `analysis` run, and copy the key numbers onto the student. An
outside pair (teacher and student given) is recorded as a student run first (pipeline.outside)."""
from __future__ import annotations

from dataclasses import replace

import polars as pl

from kdtrack import tracking
from kdtrack.analysis.eigen_evidence import eigen_evidence
from kdtrack.analysis.evidence import Evidence, analysis_name, confidence_evidence, record
from kdtrack.analysis.switching import switch_evidence
from kdtrack.config import AnalyzeConfig, TheoryConfig
from kdtrack.contract import (
    ANALYSIS_RUN,
    KEY,
    ROLE,
    STUDENT_RUN,
    STUDENT_SOURCE,
    TEACHER_RUN,
    TEACHER_SOURCE,
    copied_to_student,
)
from kdtrack.errors import UserError
from kdtrack.pipeline.jobs import Outrun
from kdtrack.pipeline.outside import outside_student
from kdtrack.say import say
from kdtrack.tracking import RunContext


def gather(student, config: AnalyzeConfig) -> Evidence:
    """Everything an analysis run of `student` records, `summary.parquet` (its step-0 metrics
    as rows) included."""
    evidence = confidence_evidence(student, config) + eigen_evidence(student, config) + switch_evidence(student, config)
    if not config.figures:
        evidence = replace(evidence, figures={})
    row = pl.DataFrame([{"metric": k, "value": v} for k, v in evidence.metrics.items()])
    return evidence + Evidence({}, tables={"summary.parquet": row})


def _students(config: AnalyzeConfig) -> list:
    if config.student_run_id:
        run = tracking.require_run(config.student_run_id, "student", "student_run_id",
                                   "a distilled student run (role 'student', from distill) is required")
        if config.experiment:
            if tracking.experiment_id(config.experiment) != run.info.experiment_id:
                raise UserError(f"student_run_id={config.student_run_id!r} belongs to experiment "
                                f"{tracking.experiment_name(run.info.experiment_id)!r}, "
                                f"not to experiment={config.experiment!r}")
        return [run]
    if not config.experiment:
        raise UserError("analyze needs student_run_id=<run id> or experiment=<name>; both are empty")
    experiment = tracking.experiment_id(config.experiment)
    if experiment is None:
        raise UserError(f"experiment={config.experiment!r} does not exist in {tracking.tracking_uri()!r}")
    ids = [experiment]
    analyzed = {r.data.tags.get(STUDENT_RUN) for r in tracking.search_all(
        ids, f"tags.`{ROLE}` = 'analysis' and attributes.status = 'FINISHED'")}
    students = tracking.search_all(ids, f"tags.`{ROLE}` = 'student' and attributes.status = 'FINISHED'")
    return [s for s in students if s.info.run_id not in analyzed]


def analyze_student(student, config: AnalyzeConfig, context: RunContext = RunContext()) -> str:
    """The student's analysis run: a finished one with these params reused, one another process is
    writing waited for, else a new one. One writer per student, as for training runs."""
    student_id, experiment_id = student.info.run_id, student.info.experiment_id
    params = {**config.analysis_params, "student_run_id": student_id, "experiment": ""}
    key = tracking.run_key("analysis", params)
    while True:
        found = tracking.reuse_finished(experiment_id, "analysis", key, params, context)
        if found:
            say(f"reusing finished analysis run {found.info.run_id} of student {student_id}")
            return found.info.run_id
        live = tracking.find_live(experiment_id, "analysis", key, params)
        if live:
            say(f"analysis run {live.info.run_id} of student {student_id} is being written by "
                f"{tracking.holder(live.data.tags)}; waiting for it")
            tracking.wait(live.info.run_id)
            continue
        written = write_analysis(student, config, context, key, params)
        if written:
            return written


def write_analysis(student, config: AnalyzeConfig, context: RunContext, key: str, params: dict[str, str]) -> str:
    """A new analysis run of `student`; "" where an identical one, started at the same moment, won."""
    student_id = student.info.run_id
    evidence = gather(student, config)
    tags = {KEY: key, STUDENT_RUN: student_id, TEACHER_RUN: student.data.tags.get(TEACHER_RUN, ""),
            **{k: student.data.tags[k] for k in (TEACHER_SOURCE, STUDENT_SOURCE) if k in student.data.tags}}
    for note in evidence.notes:
        say(f"student {student_id}: {note}")
    run_id = ""
    try:
        with tracking.run(student.info.experiment_id, analysis_name(student), "analysis", params, context, tags,
                          summary="\n\n".join(evidence.notes)) as run:
            run_id = run.run_id
            if tracking.elect(run_id, student.info.experiment_id, "analysis", key, params) != run_id:
                raise Outrun(f"another analysis of student {student_id}, started at the same moment, writes it")
            record(run, evidence)
    except Outrun:
        tracking.withdraw(run_id)
        return ""
    copied = {k: v for k, v in evidence.metrics.items() if copied_to_student(k)}
    tracking.annotate(student_id, copied, {ANALYSIS_RUN: run_id})  # for sorting students in the UI
    say(f"analysis run {run_id} of student {student_id}: "
          + ", ".join(f"{k}={v:.3f}" for k, v in copied.items() if "slope_bottom" in k and "label" not in k))
    return run_id


def analyze(config: AnalyzeConfig, context: RunContext = RunContext()) -> list[str]:
    tracking.check_store()
    if config.outside:  # a pair kdtrack did not train becomes a student run first, then is analyzed like one
        students = [outside_student(config, tracking.resolve_experiment(config.experiment, context), context)]
    else:
        students = _students(config)
    if not students:
        say(f"every finished student in experiment {config.experiment!r} is already analyzed")
    ids = [analyze_student(student, config, context) for student in students]
    if config.theory:  # Theorem 4.1 beside the empirical evidence, in the same experiment
        from kdtrack.analysis.theory import theory

        name = config.experiment or (tracking.experiment_name(students[0].info.experiment_id) if students else "")
        ids.append(theory(TheoryConfig(experiment=name), context))
    return ids
