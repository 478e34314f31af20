"""The run contract's tag names: what a kdtrack run carries, and what reports and the analysis
read back. Spelled once here so that writers and readers cannot drift apart (README, "What runs
record")."""
import re

ROLE = "kdtrack.role"  # teacher, student, analysis, theory, study, trial, report, launcher
KEY = "kdtrack.key"  # reuse key: role, params that shape the result, upstream run, code version
CODE_VERSION = "kdtrack.code_version"
FAILURE = "kdtrack.failure"  # why a run ended FAILED or KILLED
RESUME = "kdtrack.resume_checkpoint"  # artifact path of a run's newest checkpoint
INCOMPLETE = "kdtrack.incomplete"  # log steps whose metrics were lost before a resume, never to be logged again
RESULT = "kdtrack.result_run_id"  # on a launcher: the run that did the work
PARENT = "mlflow.parentRunId"
NOTE = "mlflow.note.content"  # a run's (or an experiment's) Markdown description in the MLflow UI
# MLflow 3's UI opens an experiment by its kind: without one it guesses, and shows the GenAI overview
# (traces, "Detect issues"); kdtrack's experiments are model training, whose first page is the runs
# table. MLflow's Python package names neither the tag nor its values (its web app does).
EXPERIMENT_KIND = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# A run's lease (kdtrack.tracking.lease): who works on it, until when, and how it was claimed.
LEASE_OWNER = "kdtrack.lease_owner"  # host:pid of the process holding the lease
LEASE_UNTIL = "kdtrack.lease_until"  # epoch ms when the lease lapses unless renewed; the end time once released
LEASE_TICKET = "kdtrack.lease_ticket"  # elects one of the runs that identical commands created at once
TAKEOVER = "kdtrack.takeover"  # param prefix: `<prefix>.<lease_until>` names the one process that took a lapsed run

NUM_CLASSES = "kdtrack.num_classes"
TEACHER_RUN = "kdtrack.teacher_run_id"
ONEHOT_RUN = "kdtrack.onehot_run_id"
STUDENT_RUN = "kdtrack.student_run_id"
ANALYSIS_RUN = "kdtrack.analysis_run_id"
FROM_RUN = "kdtrack.from_run_id"
SAME_INIT = "kdtrack.same_init"
INIT_DIGEST = "kdtrack.init_digest"  # a keep_checkpoints=last run's initial weights, rebuilt from its seed
SWITCH_TO = "kdtrack.switch_to"
SWITCH_STEP = "kdtrack.switch_step"
SWITCH_WINDOW = "kdtrack.switch_window"
EIGEN_LAST_LAYER = "kdtrack.eigen_last_layer"
# Where an outside pair's models came from (`analyze -P teacher=... -P student=...`): "<kind> <as given>
# (<fingerprint>)", on its student run and its analysis; a student run with them trained nowhere in kdtrack.
TEACHER_SOURCE = "kdtrack.teacher_source"
STUDENT_SOURCE = "kdtrack.student_source"
# Where a training run's model was trained: "recorded" by kdtrack.record in a loop kdtrack does not
# own (a user's script, a Trainer); absent on the runs kdtrack trains itself.
SOURCE = "kdtrack.source"
RECORDED = "recorded"

SUITE = "kdtrack.suite"
STUDY = "kdtrack.study"
TRIAL = "kdtrack.trial"
PRUNED = "kdtrack.pruned"
BEST_TRIALS = "kdtrack.best_trials"
BEST_RUNS = "kdtrack.best_run_ids"

# Analysis metrics whose names contain one of these (or start with eigen/) are copied onto the
# student, for sorting students in the UI; statistics take them from the analysis that counts.
COPIED_METRICS = ("slope", "underfit", "gap_", "below_frac", "exaggeration", "kl_", "mislabeled", "table2/",
                  "group_frac")


def copied_to_student(metric: str) -> bool:
    return metric.startswith("eigen/") or any(part in metric for part in COPIED_METRICS)

# Every metric name kdtrack logs, as patterns. Dashboards and claims name metrics, and a misspelt
# one would otherwise read as "no runs"; tests/pipeline/test_pipeline.py checks that every metric a real
# pipeline logs matches one of these, so the list cannot fall behind the code.
METRIC_PATTERNS = (
    r"(train|test)/(acc|agreement|kl|student_acc|teacher_acc|underfit_frac|exaggeration_index|underfit_err_excess)",
    r"train/(loss|ce|kd|batch_acc|batch_agreement|batch_kl|acc_clean_labels|mislabeled_underfit_(frac|excess)|mislabeled_fit_gap)",
    r"train/mislabeled_bottom\d+_share",
    r"(timeline/)?(train|test)/(slope_(bottom|top)\d+(_label)?|gap_(bottom|top)\d+(_label)?|below_frac_bottom\d+)",
    r"(train|test)/kl_(bottom|top)\d+",
    r"switch/(train|test)/(kd_)?gap_bottom\d+_(before|change)",  # Fig. 25-26 from the snapshots (analysis/switching.py)
    r"(train|test)/group_frac_(Both|Neither|Only_student|Only_teacher)",
    r"teacher/(train|test)_acc",
    r"table2/(teacher|student_distill|student_onehot)_(train|test)_acc",
    # the pair statistic (delta), overall and per log-eigenvalue-ratio bin, and the own-scale one
    r"eigen/(layer\d+_)?((exaggerated_pair_frac|median_delta|pairs)(_logratio_[\d.]+-([\d.]+|inf))?"
    r"|pairs_left_out|(teacher|student)_top_biased_frac|top_biased_pairs)",
    r"theory/(closed_form_holds_frac|closed_form_max_ratio|closed_form_checks|gd_holds_frac|gd_checks)",
    r"theory/(closed_form|ce)_(exaggerated_pair_frac|median_delta|pairs|pairs_left_out)",
    r"lr|epoch|distill_weight",
    r"trials/\w+|best/.+|objective/.+",  # an ablation's own objectives and counts
    r"system/.+",  # MLflow's system metrics (system_metrics=true)
)
_METRIC = re.compile("|".join(f"(?:{p})" for p in METRIC_PATTERNS))


def known_metric(name: str) -> bool:
    return _METRIC.fullmatch(name) is not None
