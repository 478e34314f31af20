"""kdtrack: declarative MLflow experiment tracking for knowledge-distillation research.

Reproduces and extends Nagarajan et al., "On student-teacher deviations in distillation:
does it pay to disobey?" (NeurIPS 2023).
"""
import hashlib
import pkgutil
from functools import cache
from pathlib import Path

__version__ = "0.1.0"
# The public API for loops kdtrack does not own (docs/recording.md), by where it lives: imported when
# first asked for, so that `import kdtrack` (every command's start) imports no torch or MLflow.
PUBLIC = {"Recorder": "kdtrack.record.recorder:Recorder", "RecorderCallback": "kdtrack.record.trainer:RecorderCallback"}


def __getattr__(name: str):
    """`kdtrack.Recorder` and `kdtrack.RecorderCallback` (which imports transformers), on first use."""
    if name not in PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return pkgutil.resolve_name(PUBLIC[name])


@cache
def code_version() -> str:
    """A short hash of the package's source, part of every run-reuse key.

    A git commit would miss uncommitted edits and is absent from installed copies; hashing the
    sources changes exactly when the code that trains a model changes.
    """
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
