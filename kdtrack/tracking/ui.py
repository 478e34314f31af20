"""What a person sees of kdtrack's runs in the MLflow UI: a Markdown description on every run
(`mlflow.note.content`) that says what the run is and links the runs it is made from, MLflow's
standard provenance tags, and an experiment's description, kind (model training: the UI opens on
its runs) and tags."""
from __future__ import annotations

from typing import Callable, Mapping

from mlflow.tracking.context.registry import resolve_tags

from kdtrack.contract import (
    ANALYSIS_RUN,
    EXPERIMENT_KIND,
    FROM_RUN,
    NOTE,
    ONEHOT_RUN,
    PARENT,
    RESULT,
    STUDENT_RUN,
    SUITE,
    TEACHER_RUN,
    TRAINING_KIND,
)
from kdtrack.markdown import inert
from kdtrack.presets import TABLE1, TABLE7, TEXT

# Tags that name another run, and how a description calls that run.
LINKS = {TEACHER_RUN: "teacher", ONEHOT_RUN: "one-hot baseline", FROM_RUN: "started from the checkpoint of",
         STUDENT_RUN: "student", ANALYSIS_RUN: "analysis", PARENT: "parent", RESULT: "made"}
ROLES = {
    "teacher": "One-hot (cross-entropy, Eq. 1) training: a teacher, or a student's one-hot baseline (Table 2).",
    "student": "A student trained on `distill_weight * KD + (1 - distill_weight) * CE` against its teacher.",
    "analysis": "The confidence-exaggeration analysis of one student: slopes, Table 2's row, the paper's figures.",
    "theory": "Theorem 4.1 checked on a random linear-regression instance.",
    "study": "An Optuna study over one knob; its trials are nested under it.",
    "trial": "One trial of a study: a student distilled and analyzed at one value of the knob.",
    "report": "A report: tables and figures over experiments.",
    "launcher": "The run `mlflow run` created; the runs that did the work are nested under it.",
}
PAPER_TABLES = {**{name: "Table 7" for name in TABLE7}, **{name: "Table 1" for name in TABLE1},
                **{name: "§C.1 (text)" for name in TEXT}}


def link(experiment_id: str, run_id: str) -> str:
    """A run's page, relative to the MLflow UI (its single-page app routes on the fragment)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def experiment_link(experiment_id: str) -> str:
    """An experiment's table of training runs, relative to the MLflow UI."""
    return f"#/experiments/{experiment_id}/runs"


def provenance(tags: Mapping[str, str]) -> dict[str, str]:
    """`tags` over the tags `mlflow.start_run` would add: mlflow.user, mlflow.source.name and
    .type, mlflow.source.git.commit in a git checkout (MLflow's run-context providers)."""
    return resolve_tags(dict(tags))


def linked(note: str, tags: Mapping[str, str], where: Callable[[str], tuple[str, str] | None]) -> str:
    """`note` with a line `- <label>: <link>` for each tag in `tags` that names a run it does not
    link yet under that label. `where`: a run id -> (experiment id, run name), or None for a run
    the store does not hold."""
    lines = note.splitlines() if note else []
    for key, label in LINKS.items():
        run_id = tags.get(key, "")
        there = any(line.startswith(f"- {label}: ") and f"/runs/{run_id})" in line for line in lines)
        found = where(run_id) if run_id and not there else None
        if found:
            experiment_id, name = found
            lines.append(f"- {label}: [{inert(name or run_id[:8])}]({link(experiment_id, run_id)}) `{run_id[:8]}`")
    return "\n".join(lines)


def describe(role: str, summary: str, tags: Mapping[str, str],
             where: Callable[[str], tuple[str, str] | None]) -> str:
    """A new run's description: what it is (its role's line, and `summary`), then its links."""
    head = f"**{role}**: {ROLES.get(role, '')}" + (f"\n\n{summary}" if summary else "")
    return linked(head + "\n\n", tags, where)  # a blank line between the text and the links


def experiment_tags(existing: Mapping[str, str], params: Mapping[str, str],
                    run_tags: Mapping[str, str]) -> dict[str, str]:
    """What an experiment gains from a new run in it: a description when it has none, the kind
    that opens it on its runs table in the UI when it has none (one made by `mlflow run` or
    before kdtrack set it; a kind a person chose stays), and a tag for the preset
    (`kdtrack.preset.<name>`: the paper's table) and the suite that made it."""
    new = {} if EXPERIMENT_KIND in existing else {EXPERIMENT_KIND: TRAINING_KIND}
    preset = params.get("preset", "")
    if preset in PAPER_TABLES:
        new[f"kdtrack.preset.{preset}"] = PAPER_TABLES[preset]
    suite = run_tags.get(SUITE, "").split("/")[0]
    if suite:
        new[SUITE] = suite
    if NOTE not in existing:
        made_by = f"suite {inert(suite)}" if suite else (f"preset `{preset}`" if preset else "kdtrack")
        new[NOTE] = (f"kdtrack runs, first made by {made_by}. The tag `kdtrack.role` says what each run is "
                     "(teacher, student, analysis, ...); each run's description links the runs it is made from. "
                     "The `kdtrack.preset.*` tags name the presets of its runs.")
    return {k: v for k, v in new.items() if existing.get(k) != v}
