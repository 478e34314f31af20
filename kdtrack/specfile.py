"""Spec files (suites, dashboards): a shipped name or a path, read as a YAML mapping whose top-level
keys are checked (and, with `validated`, its whole shape against a pydantic model), or a one-line
UserError that names the file, the bad key and what is allowed."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kdtrack.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


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
    if path.stat().st_size > MAX_BYTES:  # before parsing: a million seeds took 42 s to read
        raise UserError(f"{kind} {str(path)!r} is {path.stat().st_size:,} bytes; allowed: at most {MAX_BYTES:,}")
    try:
        spec = _safe_load(path.read_text(), kind, path)
    except yaml.YAMLError as error:  # its first line says what and where; the rest quotes the file
        raise UserError(f"{kind} {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise UserError(f"{kind} {str(path)!r} nests too deep to read; allowed: a few levels, as the "
                        "shipped files have") from None
    if not isinstance(spec, dict):
        raise UserError(f"{kind} {str(path)!r} must be a mapping with keys {' and '.join(keys)}")
    unknown = sorted(set(spec) - set(keys), key=str)  # key=str: YAML keys need not be strings
    if unknown:
        raise UserError(f"{kind} {str(path)!r}: unknown key {unknown[0]!r}; allowed: {', '.join(keys)}")
    return path, spec


# An alias is a reference, so YAML can spell a huge document in a few bytes ("billion laughs"):
# a file whose nodes, aliases expanded, pass this count is refused before anything walks them.
MAX_NODES = 100_000
MAX_BYTES = 1_000_000  # the shipped files are a few kB


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """The node count of `node` with every alias expanded, counted once per distinct node."""
    if id(node) not in sizes:
        sizes[id(node)] = 0  # a recursive alias counts as itself while being counted
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _safe_load(text: str, kind: str, path: Path):
    """yaml.safe_load that refuses a document larger than MAX_NODES once its aliases are expanded."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise UserError(f"{kind} {str(path)!r} holds {size} YAML nodes (its aliases expanded); "
                            f"allowed: at most {MAX_NODES}")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _where(loc: tuple) -> str:
    """A pydantic error location as a path: settings[0].overrides.lr."""
    text = "".join(f"[{item}]" if isinstance(item, int) else f".{item}" for item in loc).lstrip(".")
    return text or "the top level"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The pydantic model the value at `loc` (inside `model`) is validated by."""
    kind: object = model
    for item in loc:
        while not (isinstance(kind, type) and issubclass(kind, BaseModel)) and typing.get_args(kind):
            kind = typing.get_args(kind)[-1] if typing.get_origin(kind) is dict else typing.get_args(kind)[0]
        if isinstance(item, str) and isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[item].annotation
    while not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        kind = typing.get_args(kind)[0]
    return kind


def validated(kind: str, path: Path, model: type[Model], spec: dict) -> Model:
    """`spec` as `model`, or a one-line UserError: the file, the path of the bad key, what is allowed."""
    try:
        return model.model_validate(spec)
    except ValidationError as errors:
        error = errors.errors()[0]
        loc, given = error["loc"], repr(error["input"])
        given = given if len(given) <= 60 else given[:57] + "..."
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_model_at(model, loc[:-1]).model_fields)
            raise UserError(f"{kind} {str(path)!r}: {_where(loc[:-1])} has unknown key {loc[-1]!r}; "
                            f"allowed: {allowed}") from None
        if error["type"] == "missing":
            raise UserError(f"{kind} {str(path)!r}: {_where(loc)} is missing; it is required") from None
        if error["type"] == "model_type":
            message = f"a mapping with keys {', '.join(_model_at(model, loc).model_fields)}"
        elif error["type"] == "too_short":
            message = f"at least {error['ctx']['min_length']} item(s)"
        else:
            message = error["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
        if error["type"] == "value_error":  # a check across items: the value is the whole list
            raise UserError(f"{kind} {str(path)!r}: {_where(loc)}: allowed: {message}") from None
        raise UserError(f"{kind} {str(path)!r}: {_where(loc)} = {given} is not allowed; allowed: {message}") from None
