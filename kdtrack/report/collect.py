"""Runs of one or more experiments as one polars table, fetched with MLflow's search API (one
paginated search per experiment, never a call per run)."""
from __future__ import annotations

import polars as pl

from kdtrack import tracking
from kdtrack.contract import CODE_VERSION, ONEHOT_RUN, ROLE, STUDENT_RUN, STUDY, SWITCH_STEP, TEACHER_RUN, TRIAL
from kdtrack.errors import UserError

PARAMS = ("preset", "dataset", "arch", "teacher_arch", "seed", "label_noise", "train_size", "batch_size", "lr",
          "epochs", "switch_to", "switch_at")
TAGS = (ROLE, TEACHER_RUN, ONEHOT_RUN, STUDENT_RUN, SWITCH_STEP, STUDY, TRIAL, CODE_VERSION)


def experiment_ids(names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        found = tracking.experiment_id(name)
        if found is None:
            known = tracking.experiment_names()
            raise UserError(f"experiment {name!r} does not exist; experiments here: {', '.join(known) or 'none'}")
        out[name] = found
    return out


def runs_table(names: list[str], filter_string: str = "") -> pl.DataFrame:
    """One row per run: ids, status, experiment, the PARAMS and TAGS above, every metric."""
    rows = []
    for name, experiment_id in experiment_ids(names).items():
        try:
            runs = tracking.search_all([experiment_id], filter_string)
        except Exception as error:
            raise UserError(f"filter {filter_string!r} is not a valid MLflow search filter: "
                            f"{str(error).splitlines()[0]}") from None
        for run in runs:
            row = {"experiment": name, "run_id": run.info.run_id, "run_name": run.info.run_name,
                   "status": run.info.status, "start_time": run.info.start_time}
            row.update({p: run.data.params.get(p) for p in PARAMS})
            row.update({t.removeprefix("kdtrack."): run.data.tags.get(t) for t in TAGS})
            row.update({f"m:{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
    if not rows:
        matching = f" match {filter_string!r}" if filter_string else ""
        raise UserError(f"no runs in experiment(s) {', '.join(names)}{matching}")
    return pl.DataFrame(rows, infer_schema_length=None)


VARYING = ("train_size", "batch_size", "lr", "epochs", "switch_to", "switch_at")


def setting_of(table: pl.DataFrame) -> pl.DataFrame:
    """A `setting` column, what the paper's tables group seeds by: preset, teacher > student
    architecture and label noise, plus whichever of VARYING differ between the students here."""
    teacher = pl.coalesce(pl.col("teacher_arch").replace("", None), pl.col("arch"))
    students = table.filter(pl.col("role") == "student")
    varying = [c for c in VARYING if students[c].n_unique() > 1]
    parts = [pl.col("preset"), pl.lit(" "), teacher, pl.lit(">"), pl.col("arch"),
             pl.lit(" noise="), pl.col("label_noise")]
    for column in varying:
        parts += [pl.lit(f" {column}="), pl.col(column).fill_null("-")]
    return table.with_columns(pl.concat_str(parts).alias("setting"))
