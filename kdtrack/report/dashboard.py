"""Dashboard files (dashboards/*.yaml): which sections a report has, in which order, and the
paper's claims it checks (kdtrack.report.claims)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtrack import specfile
from kdtrack.errors import UserError
from kdtrack.report.claims import Claim, parse
from kdtrack.report.sections import SECTIONS

# The one copy of the shipped dashboards is the repository's dashboards/; a wheel carries it as
# kdtrack/dashboards/ (pyproject.toml maps the package kdtrack.dashboards to it), so an installed
# kdtrack finds it beside its modules, a checkout (on PYTHONPATH, or installed with -e) at its top.
# By path, not importlib.resources: the folder is a namespace package, whose files() cannot glob, and
# an editable install's finder would answer for another checkout's folder than the one on PYTHONPATH.
INSTALLED = Path(__file__).resolve().parents[1] / "dashboards"
SHIPPED = INSTALLED if INSTALLED.is_dir() else Path(__file__).resolve().parents[2] / "dashboards"


@dataclass(frozen=True)
class Dashboard:
    title: str
    sections: tuple[str, ...]
    claims: tuple[Claim, ...] = ()  # the report's first section, and `kdtrack claims`


def shipped() -> dict[str, Path]:
    return specfile.shipped(SHIPPED)


def load(name_or_path: str) -> Dashboard:
    path, spec = specfile.load_mapping("dashboard", name_or_path, SHIPPED, ("title", "sections", "claims"))
    # The section names are the keys of the builders (report.sections), so the two cannot drift apart;
    # a tuple, not the dict: a YAML list in `sections` is unhashable.
    names = tuple(SECTIONS)
    allowed = ", ".join(names)
    sections = spec.get("sections")
    if not isinstance(sections, list) or not sections:
        raise UserError(f"dashboard {str(path)!r}: key 'sections' must be a non-empty list of: {allowed}")
    for section in sections:
        if section not in names:
            raise UserError(f"dashboard {str(path)!r}: sections has {section!r}; allowed: {allowed}")
    claims = parse(spec["claims"], f"dashboard {str(path)!r}") if "claims" in spec else ()
    return Dashboard(str(spec.get("title", path.stem)), tuple(sections), claims)
