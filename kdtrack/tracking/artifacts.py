"""Artifacts as kdtrack writes them: each file with its SHA-256 beside it (`<path>.sha256`), which
`store.verified` checks when the file is read back."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from kdtrack.tracking.store import client


def upload_file(run_id: str, local: Path, artifact_path: str, scratch: Path) -> None:
    """The checksum as `<artifact_path>.sha256` of the run, then the file; staged in `scratch`.
    In that order, a write refused between the two (a full disk) leaves a checksum without its
    file, which a read refuses, never a file without its checksum, which a read would trust."""
    folder, name = os.path.split(artifact_path)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        named = Path(tmp) / name
        shutil.copyfile(local, named)
        (Path(tmp) / f"{name}.sha256").write_text(hashlib.sha256(named.read_bytes()).hexdigest())
        for file in (f"{name}.sha256", name):
            client().log_artifact(run_id, str(Path(tmp) / file), folder or None)


def upload_bytes(run_id: str, payload: bytes, artifact_path: str, scratch: Path) -> None:
    """`payload` as `artifact_path` of the run, with its checksum; staged in `scratch`."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        local = Path(tmp) / os.path.basename(artifact_path)
        local.write_bytes(payload)
        upload_file(run_id, local, artifact_path, scratch)
