"""`kdtrack params [ENTRY]`: every parameter of the entry points with its type, default, allowed
values and meaning, and the presets; generated from kdtrack/config.py, as MLproject is
(kdtrack/cli/mlproject.py), so the two cannot drift from the code.

- type and default: the dataclass fields;
- meaning: the comment beside the field (or the comment block above a field that has none; a
  comment line below a field's own comment continues it);
- allowed values: what the config's own validation says when handed a value out of range,
  so that the check and its documentation are one piece of code.
"""
from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
from dataclasses import fields, is_dataclass

from kdtrack.cli.mlproject import entry_points
from kdtrack.config import field_types, from_params
from kdtrack.errors import UserError
from kdtrack.presets import PRESETS

WIDTH = 100
# A value each type's validation refuses where a range applies: every numeric field has a lower bound.
PROBES = {int: "-1", float: "-1", str: "?"}
MARKERS = ("allowed: ", "choose one of: ")


def meanings(cls: type) -> dict[str, str]:
    """Each field's comment, from the source of the class that declares it, as one line."""
    out: dict[str, str] = {}
    for declaring in reversed(cls.__mro__):
        if is_dataclass(declaring):
            out.update(_declared_meanings(declaring))
    return out


def _declared_meanings(cls: type) -> dict[str, str]:
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    standalone = {number for number in comments if lines[number - 1].lstrip().startswith("#")}
    declared = [(node.target.id, node.lineno) for node in ast.parse(source).body[0].body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    out: dict[str, str] = {}
    previous = ""
    for name, line in declared:
        above = []
        number = line - 1
        while number in standalone:
            above.insert(0, comments[number])
            number -= 1
        if line in comments:  # its own comment; a block above it continues the previous field's
            out[name] = comments[line]
            if previous and above:
                out[previous] = " ".join([out[previous], *above]).strip()
        else:
            out[name] = " ".join(above)
        previous = name
    return out


def allowed(cls: type, name: str, kind: type) -> str:
    """The allowed values of a field, as its validation states them ("" where any value is)."""
    if kind is bool:
        return "true or false"
    try:
        from_params(cls, {name: PROBES[kind]})
    except UserError as error:
        for marker in MARKERS:
            if marker in str(error):
                return str(error).split(marker, 1)[1]
    return ""


def describe(entry: str, cls: type, only_new: bool = False) -> list[str]:
    """An entry point's fields; `only_new`: those its base entry point lacks."""
    base = next((b for b in cls.__mro__[1:] if b in entry_points().values()), None)
    inherited = {f.name for f in fields(base)} if only_new and base else set()
    summary = " ".join(inspect.getdoc(cls).split("\n\n")[0].split()).removeprefix(f"`{entry}`: ")
    lines = textwrap.wrap(f"{entry}: {summary}", WIDTH, subsequent_indent="  ")
    if inherited:
        lines.append(f"  (and every parameter of {next(k for k, v in entry_points().items() if v is base)})")
    types, notes = field_types(cls), meanings(cls)
    for field in fields(cls):
        if field.name in inherited:
            continue
        kind = types[field.name]
        rule = allowed(cls, field.name, kind)
        head = f"  {field.name}: {kind.__name__} = {field.default!r}" + (f"; allowed: {rule}" if rule else "")
        lines += textwrap.wrap(head, WIDTH, subsequent_indent="      ")
        lines += textwrap.wrap(notes.get(field.name, ""), WIDTH, initial_indent="      ", subsequent_indent="      ")
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
