"""kdtrack's architecture, kept by its import graph: layers import downward, no import circle
(function-level imports count), only the primitives at the top of the package, short functions.
Built from the source with `ast`, so nothing is imported to check it."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kdtrack"

# Lowest first. A module may import its own layer (without a circle) and the layers before it.
LAYERS = (
    ("primitives", ("kdtrack", "kdtrack.__main__", "kdtrack.errors", "kdtrack.contract", "kdtrack.presets",
                    "kdtrack.interrupts", "kdtrack.progress", "kdtrack.say", "kdtrack.markdown", "kdtrack.specfile",
                    "kdtrack.schedules", "kdtrack.losses")),
    ("data, models", ("kdtrack.data", "kdtrack.models")),
    ("config", ("kdtrack.config",)),
    ("metrics", ("kdtrack.metrics",)),
    ("training", ("kdtrack.training",)),
    ("tracking", ("kdtrack.tracking",)),
    ("record", ("kdtrack.record",)),
    ("pipeline", ("kdtrack.pipeline",)),
    ("analysis", ("kdtrack.analysis",)),
    ("report", ("kdtrack.report",)),
    ("studies", ("kdtrack.studies",)),
    ("cli", ("kdtrack.cli",)),
)
# `python -m kdtrack` is the command line itself: it may import the top floor.
EXEMPT = {("kdtrack.__main__", "kdtrack.cli.main")}
LONGEST_FUNCTION = 60


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The kdtrack modules `name` imports, anywhere in its source (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] == "kdtrack" and t != name}
    return found


def layer(name: str) -> int:
    if name == "kdtrack":
        return 0
    ranks = [i for i, (_, prefixes) in enumerate(LAYERS)
             if any(name == p or name.startswith(p + ".") for p in prefixes if p != "kdtrack")]
    assert ranks, f"{name} belongs to no layer: add it to LAYERS in {__file__}"
    return max(ranks)


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def test_every_import_resolves_to_a_module():
    unknown = {(m, t) for m, targets in GRAPH.items() for t in targets if t not in GRAPH}
    assert not unknown


def test_no_import_runs_up_a_layer():
    upward = sorted(f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
                    for m, targets in GRAPH.items() for t in targets
                    if layer(t) > layer(m) and (m, t) not in EXEMPT)
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    """Depth-first search for a back edge; a package's __init__ importing its own modules, and
    those modules importing the package (for its public names), count like any other edge."""
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting a submodule that imports a sibling through the package name
    # would be a circle here; kdtrack's submodules import their siblings by full module name.
    assert not circles, "\n".join(circles)


def test_only_primitives_at_the_top_of_the_package():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    allowed = {name.removeprefix("kdtrack.") for name in LAYERS[0][1]} | {"__init__", "config"}
    assert top <= allowed, f"move these into a layer's package: {sorted(top - allowed)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_are_short(path):
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION]
    assert not long


def test_a_planted_circle_and_upward_import_are_caught(tmp_path):
    """The checks see what they must: a function-level import from a metric to the report."""
    planted = tmp_path / "kdtrack" / "metrics" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from kdtrack.report import render\n")
    found = imports("kdtrack.metrics.planted", planted, {"kdtrack.report.render": planted})
    assert found == {"kdtrack.report.render"} and layer("kdtrack.report.render") > layer("kdtrack.metrics.planted")
