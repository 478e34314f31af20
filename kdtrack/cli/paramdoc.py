"""`kdtrack params [ENTRY]`: every parameter of the entry points with its type, default, allowed
values and meaning, and the presets; generated from the config dataclasses' field metadata
(kdtrack/config.py: `help`, `allowed`, `choices`), as MLproject is (kdtrack/cli/mlproject.py), so
the documentation and the validation are one declaration.
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import fields

from kdtrack.cli.mlproject import entry_points
from kdtrack.config import allowed_values, field_types
from kdtrack.errors import UserError
from kdtrack.presets import PRESETS

WIDTH = 100


def describe(entry: str, cls: type, only_new: bool = False) -> list[str]:
    """An entry point's fields; `only_new`: those its base entry point lacks."""
    base = next((b for b in cls.__mro__[1:] if b in entry_points().values()), None)
    inherited = {f.name for f in fields(base)} if only_new and base else set()
    summary = " ".join(inspect.getdoc(cls).split("\n\n")[0].split()).removeprefix(f"`{entry}`: ")
    lines = textwrap.wrap(f"{entry}: {summary}", WIDTH, subsequent_indent="  ")
    if inherited:
        lines.append(f"  (and every parameter of {next(k for k, v in entry_points().items() if v is base)})")
    types = field_types(cls)
    for field in fields(cls):
        if field.name in inherited:
            continue
        kind = types[field.name]
        rule = "true or false" if kind is bool else allowed_values(field)
        head = f"  {field.name}: {kind.__name__} = {field.default!r}" + (f"; allowed: {rule}" if rule else "")
        lines += textwrap.wrap(head, WIDTH, subsequent_indent="      ")
        lines += textwrap.wrap(field.metadata["help"], WIDTH, initial_indent="      ", subsequent_indent="      ")
    return lines


def presets() -> list[str]:
    lines = ["presets (-P preset=NAME sets these fields; any other -P wins over them):"]
    for name, values in PRESETS.items():
        text = f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        lines += textwrap.wrap(text, WIDTH, subsequent_indent="      ")
    return lines


def render(entry: str = "") -> str:
    """One entry point's parameters (all of them) and the presets; without `entry`, every entry
    point, each with only what it adds to the one it extends."""
    known = entry_points()
    if entry and entry.replace("-", "_") not in known:
        raise UserError(f"entry point {entry!r} does not exist; choose one of: {', '.join(known)}")
    chosen = {entry.replace("-", "_"): known[entry.replace("-", "_")]} if entry else known
    blocks = [describe(name, cls, only_new=not entry) for name, cls in chosen.items()]
    if any("preset" in {f.name for f in fields(cls)} for cls in chosen.values()):
        blocks.append(presets())
    return "\n\n".join("\n".join(block) for block in blocks)
