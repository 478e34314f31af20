"""Checkpoint rotation. A run's checkpoint goes to `checkpoints/step_<N>.pt` when kept (`switch`
starts there), else alternately to `checkpoints/last_a.pt` and `last_b.pt`: never over the file
the resume tag names, which a kill in mid-upload would leave torn. Each is staged in a file of its
own before the upload; one that never reached the store is kept beside the working directory."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SPARES = ("checkpoints/last_a.pt", "checkpoints/last_b.pt")


def next_path(step: int, keep: bool, newest: str) -> str:
    """Where the checkpoint of `step` goes, `newest` being the path of the one before it."""
    if keep:
        return f"checkpoints/step_{step}.pt"
    return SPARES[1] if newest == SPARES[0] else SPARES[0]


def stage(state: dict, folder: Path) -> Path:
    """`state` serialized now (its tensors change with the next step), straight to a new file in
    `folder`: no second in-memory copy of a large model's checkpoint while it waits for upload."""
    import torch  # here, not above: commands that only read the store do without it

    handle, local = tempfile.mkstemp(prefix="checkpoint-", suffix=".pt", dir=folder)
    os.close(handle)
    try:
        torch.save(state, local)
    except BaseException:  # a full disk: torch says RuntimeError, not OSError; no torn file stays
        Path(local).unlink(missing_ok=True)
        raise
    return Path(local)


def keep_unsaved(run_id: str, artifact_path: str, local: Path) -> str:
    """Move a staged checkpoint that never reached the store beside the working directory (as
    `kdtrack-unsaved/<run id>/<name>`); the clause that says where, or "" where none is left. The
    move may be a copy (another file system): it goes to a temporary name, renamed once complete,
    so a full disk leaves no torn checkpoint there, only the clause saying it could not be kept."""
    if not local.exists():
        return ""
    kept = (Path("kdtrack-unsaved") / run_id / Path(artifact_path).name).resolve()
    partial = kept.with_name(f".{kept.name}.partial")
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(local, partial)
        os.replace(partial, kept)
    except OSError as error:
        partial.unlink(missing_ok=True)
        return f"; its last checkpoint could not be kept at {kept}: {error.strerror or error}"
    return f"; the last checkpoint is kept at {kept}"
