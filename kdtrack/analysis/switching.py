"""Fig. 25-26 read from the confidence snapshots rather than the final tables: how far a switch
student's bottom-quantile gap moves after its switch begins, and how far its KD sibling's (same
teacher, same params, no switch) moves over the same steps, the paired control. Logged by the
switch student's analysis as `switch/<split>/...` metrics; nothing for a student that does not switch."""
from __future__ import annotations

from kdtrack import tracking
from kdtrack.analysis.evidence import SPLITS, Evidence, snapshot_tables
from kdtrack.config import NOT_IN_KEY, AnalyzeConfig
from kdtrack.contract import CODE_VERSION, ROLE, SWITCH_STEP, TEACHER_RUN
from kdtrack.metrics.deviations import change_after, quantile_gap


def gap_timeline(snapshots, split: str, fraction: float) -> dict[int, float]:
    """The bottom-`fraction` gap (phi_student - phi_teacher) of each snapshot, by step."""
    return {step: quantile_gap(tables[split], "bottom", fraction) for step, tables in snapshots}


def kd_sibling(student):
    """The newest finished student of the same teacher and code that does not switch and shares every
    param of its own that shapes training; None when there is none. It is the switch student before
    its switch, trained on: the same init, data order and loss up to the switch step."""
    teacher = student.data.tags.get(TEACHER_RUN)
    if not teacher:
        return None
    query = (f"tags.`{ROLE}` = 'student' and tags.`{TEACHER_RUN}` = {tracking.quoted(teacher)} "
             "and attributes.status = 'FINISHED'")
    found = [run for run in tracking.search_all([student.info.experiment_id], query)
             if SWITCH_STEP not in run.data.tags
             and run.data.tags.get(CODE_VERSION) == student.data.tags.get(CODE_VERSION)
             and all(student.data.params.get(k) == v for k, v in run.data.params.items() if k not in NOT_IN_KEY)]
    return max(found, key=lambda run: run.info.start_time, default=None)


def switch_evidence(student, config: AnalyzeConfig) -> Evidence:
    """`switch/<split>/gap_bottom<pct>_before` (the gap at the last snapshot at or before the switch
    step) and `..._change` (the last snapshot's minus it); `kd_gap_bottom<pct>_before` and
    `kd_..._change`, the KD sibling's at the same two steps, when it has snapshots there."""
    at = student.data.tags.get(SWITCH_STEP)
    if not at:
        return Evidence({})
    fraction, pct = config.quantile, round(config.quantile * 100)
    sibling = kd_sibling(student)
    mine, theirs = snapshot_tables(student.info.run_id), snapshot_tables(sibling.info.run_id) if sibling else []
    values = {}
    for split in SPLITS:
        gaps, control = gap_timeline(mine, split, fraction), gap_timeline(theirs, split, fraction)
        try:
            start, end, change = change_after(gaps, int(at))
        except ValueError as error:
            return Evidence({}, notes=(f"No gap change across the switch at step {at}: {error}.",))
        values[f"switch/{split}/gap_bottom{pct}_before"] = gaps[start]
        values[f"switch/{split}/gap_bottom{pct}_change"] = change
        if start in control and end in control:
            values[f"switch/{split}/kd_gap_bottom{pct}_before"] = control[start]
            values[f"switch/{split}/kd_gap_bottom{pct}_change"] = control[end] - control[start]
    if f"switch/test/kd_gap_bottom{pct}_change" in values:
        return Evidence(values)
    which = f"KD sibling {sibling.info.run_id} has" if sibling else "no KD sibling (same teacher and params) has"
    return Evidence(values, notes=(f"No paired control of the gap change: {which} snapshots at steps "
                                   f"{start} and {end} (its students need snapshot_every).",))
