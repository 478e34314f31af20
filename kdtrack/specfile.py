"""Spec files (suites, dashboards): a shipped name or a path, read as a YAML mapping whose top-level
keys are checked, or a one-line UserError that names the file and what is allowed."""
from __future__ import annotations

from pathlib import Path

import yaml

from kdtrack.errors import UserError


def shipped(folder: Path) -> dict[str, Path]:
    """The YAML files shipped in `folder`, by name (the file's stem)."""
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def load_mapping(kind: str, name_or_path: str, folder: Path, keys: tuple[str, ...]) -> tuple[Path, dict]:
    """The file `name_or_path` names (a name shipped in `folder`, else a path) and its YAML mapping,
    whose top-level keys must be among `keys`. `kind` ("suite", "dashboard") starts every error."""
    known = shipped(folder)
    path = known.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise UserError(f"{kind} {name_or_path!r} is neither a shipped one ({', '.join(sorted(known))}) nor a file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:  # its first line says what and where; the rest quotes the file
        raise UserError(f"{kind} {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise UserError(f"{kind} {str(path)!r} must be a mapping with keys {' and '.join(keys)}")
    unknown = sorted(set(spec) - set(keys), key=str)  # key=str: YAML keys need not be strings
    if unknown:
        raise UserError(f"{kind} {str(path)!r}: unknown key {unknown[0]!r}; allowed: {', '.join(keys)}")
    return path, spec
