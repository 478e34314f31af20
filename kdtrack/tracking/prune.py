"""`kdtrack gc`: an existing store pruned to a checkpoint policy. `last` lets go of every step and
resume checkpoint, `switch` of the resume ones (`last_a`/`last_b`) only. What a recorded run still
needs stays, each refusal said in one line: any file of a RUNNING run, the checkpoint a run that
did not finish resumes from (its `kdtrack.resume_checkpoint`), and the step checkpoint a switch run
names as its start (its `kdtrack.from_run_id` and `kdtrack.switch_step`, in any experiment)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping

from kdtrack.contract import FROM_RUN, RESUME, ROLE, SWITCH_STEP
from kdtrack.errors import UserError
from kdtrack.tracking.experiments import experiment_id
from kdtrack.tracking.store import client, delete_artifacts, search_all

POLICIES = ("last", "switch")
STEP, RESUMING = "step checkpoints", "resume checkpoints"


@dataclass(frozen=True)
class Stored:
    """A checkpoint of a training run, its size with its `.sha256`."""

    run_id: str
    status: str
    path: str
    size: int


def kind(path: str) -> str:
    """What a policy may let go of `path`: STEP, RESUMING, or "" for what every policy keeps
    (init.pt and final.pt, which students, `analyze` and `switch` load)."""
    name = path.rsplit("/", 1)[-1]
    if name in ("last_a.pt", "last_b.pt"):
        return RESUMING
    return STEP if name.startswith("step_") and name.endswith(".pt") else ""


@dataclass(frozen=True)
class Pruning:
    """What `keep` deletes, and one line per refusal."""

    delete: tuple[Stored, ...]
    refused: tuple[str, ...]

    def freed(self) -> Counter:
        """Bytes per kind."""
        freed = Counter()
        for file in self.delete:
            freed[kind(file.path)] += file.size
        return freed


def plan(files: list[Stored], keep: str, needed: Mapping[tuple[str, str], str]) -> Pruning:
    """The files the policy `keep` lets go of, less those of RUNNING runs and those `needed`
    ((run id, path) -> which run needs it)."""
    if keep not in POLICIES:
        raise UserError(f"keep={keep!r} is not a policy gc prunes to; allowed: {', '.join(POLICIES)}")
    delete, refused, running = [], [], set()
    for file in files:
        what = kind(file.path)
        if not what or (what == STEP and keep == "switch"):
            continue
        if file.status == "RUNNING":
            running.add(file.run_id)
        elif (file.run_id, file.path) in needed:
            refused.append(f"keeping {file.path} of run {file.run_id}: {needed[file.run_id, file.path]}")
        else:
            delete.append(file)
    refused += [f"keeping every checkpoint of run {run_id}: it is RUNNING" for run_id in sorted(running)]
    return Pruning(tuple(delete), tuple(refused))


def checkpoints(run) -> list[Stored]:
    """A run's checkpoints, each counted with its checksum file."""
    entries = {entry.path: entry.file_size or 0 for entry in client().list_artifacts(run.info.run_id, "checkpoints")
               if not entry.is_dir}
    return [Stored(run.info.run_id, run.info.status, path, size + entries.get(f"{path}.sha256", 0))
            for path, size in entries.items() if not path.endswith(".sha256")]


def needs(runs: list, switch_runs: list) -> dict[tuple[str, str], str]:
    """(run id, path) -> why it stays: resume points of unfinished runs, switch runs' starts."""
    needed = {}
    for run in runs:
        if run.info.status != "FINISHED" and RESUME in run.data.tags:
            needed[run.info.run_id, run.data.tags[RESUME]] = f"the run is {run.info.status} and resumes from it"
    for switch in switch_runs:
        start = (switch.data.tags[FROM_RUN], f"checkpoints/step_{switch.data.tags.get(SWITCH_STEP, '')}.pt")
        needed[start] = f"switch run {switch.info.run_id} starts from it"
    return needed


def prune(experiment: str, keep: str, dry_run: bool) -> Pruning:
    """Prune the training runs of `experiment` to `keep` (with `dry_run`, only say what would go)."""
    found = experiment_id(experiment)
    if found is None:
        raise UserError(f"experiment={experiment!r} does not exist in this tracking store")
    runs = [r for r in search_all([found], "") if r.data.tags.get(ROLE) in ("teacher", "student")]
    everywhere = [e.experiment_id for e in client().search_experiments()]
    switch_runs = search_all(everywhere, f"tags.`{FROM_RUN}` LIKE '%'")
    pruning = plan([file for run in runs for file in checkpoints(run)], keep, needs(runs, switch_runs))
    if dry_run:
        return pruning
    by_run: dict[str, list[str]] = {}
    for file in pruning.delete:
        by_run.setdefault(file.run_id, []).append(file.path)
    kept = {(run_id, name) for run_id, paths in by_run.items() for name in delete_artifacts(run_id, paths)}
    cannot = tuple(f"the artifact store cannot delete {name} of run {run_id}" for run_id, name in sorted(kept))
    return Pruning(tuple(f for f in pruning.delete if (f.run_id, f.path) not in kept), pruning.refused + cannot)


def summary(pruning: Pruning, experiment: str, keep: str, dry_run: bool) -> str:
    """The result line: bytes freed in all and per kind."""
    freed = pruning.freed()
    parts = [f"{what} {size / 1e6:.1f} MB" for what, size in sorted(freed.items())]
    verb = "would free" if dry_run else "freed"
    return (f"gc {experiment} to keep_checkpoints={keep}: {verb} {sum(freed.values()) / 1e6:.1f} MB in "
            f"{len(pruning.delete)} files" + (f" ({', '.join(parts)})" if parts else ""))
