"""Build a report: tables (polars), figures (matplotlib, embedded as base64 PNG), HTML through a
jinja2 template and Markdown through polars' own table formatting."""
from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import jinja2
import polars as pl
from markupsafe import Markup

from kdtrack import code_version, tracking
from kdtrack.errors import UserError
from kdtrack.report import tables
from kdtrack.report.collect import counted, runs_table, setting_of, with_analyses
from kdtrack.report.dashboard import Dashboard

# Autoescaped: experiment, run and dashboard names and the filter are the user's text, and a report
# is shared and shown as an MLflow artifact. Only the tables, which pandas escapes itself, are
# marked safe (`build`); images are base64 text.
TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} img{max-width:100%}</style></head>
<body><h1>{{ title }}</h1>{% for line in subtitle %}<p>{{ line }}</p>{% endfor %}
{% for section in sections %}<h2>{{ section.heading }}</h2><p>{{ section.note }}</p>
{% for line in section.missing %}<p>not shown: {{ line }}</p>{% endfor %}
{% for table in section.tables %}{{ table }}{% endfor %}
{% for image in section.images %}<img alt="{{ section.heading }}" src="data:image/png;base64,{{ image }}">{% endfor %}
{% endfor %}</body></html>
""")


@dataclass
class Section:
    heading: str
    note: str = ""
    frames: list[pl.DataFrame] = field(default_factory=list)
    figures: list = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what a figure lacks: the artifact and why


def png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


VERDICT_COLOURS = {"holds": "#c8e6c9", "fails": "#ffcdd2", "inconclusive": "#fff3c4", "no runs": "#eeeeee"}


def html_table(frame: pl.DataFrame) -> str:
    if "verdict" in frame.columns:  # the claims table: verdicts in colour; Styler escapes the text
        styled = frame.to_pandas().style.hide(axis="index").format(precision=4, na_rep="", escape="html")
        colour = lambda verdict: f"background-color: {VERDICT_COLOURS.get(verdict, 'white')}"  # noqa: E731
        return styled.map(colour, subset=["verdict"]).to_html()
    return frame.to_pandas().to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")


def claim_table(kept: pl.DataFrame, experiments: list[str], claims) -> pl.DataFrame:
    """Each claim's verdict per experiment and setting, from the runs `counted` keeps."""
    from kdtrack.report.claims import evaluate

    students = with_analyses(kept)
    frames = [evaluate(students.filter(pl.col("experiment") == e), claims).insert_column(0, pl.lit(e).alias(
        "experiment")) for e in experiments]
    return pl.concat(frames)


def claims_section(kept: pl.DataFrame, experiments: list[str], claims) -> Section:
    results = claim_table(kept, experiments, claims)
    shown = results.select(*(["experiment"] if len(experiments) > 1 else []), "id", "setting", "n", "estimate",
                           pl.format("[{}, {}]", pl.col("ci_low").round_sig_figs(3),
                                     pl.col("ci_high").round_sig_figs(3)).alias("95% CI"),
                           "test", "verdict", pl.col("expect").alias("paper"), "source")
    return Section("Claims", "per claim and setting: seeds (n), mean over seeds, Student's t 95% interval, "
                   "verdict (holds/fails: the whole interval on one side of the threshold), what the paper "
                   "reports", [shown])


def markdown_table(frame: pl.DataFrame) -> str:
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=80, float_precision=4, tbl_width_chars=60_000):
        return str(frame)


def confidence_grid(table: pl.DataFrame, most: int = 6):
    """Fig. 5: per setting (its first seed's student), teacher vs student phi, train above test;
    and the per-sample tables that could not be read (a figure without them, not a failed report)."""
    import matplotlib.pyplot as plt

    from kdtrack.analysis.figures import _density

    students = table.filter(pl.col("role") == "student").sort("setting", "seed")
    chosen = students.unique("setting", keep="first", maintain_order=True).head(most)
    loaded, missing = [], []
    with click.progressbar(chosen.iter_rows(named=True), length=chosen.height, label="confidence tables",
                           file=click.get_text_stream("stderr")) as rows:
        for row in rows:
            try:
                splits = {split: tracking.load_table(row["run_id"], f"confidences/{split}.parquet")
                          for split in ("train", "test")}
            except UserError as error:
                missing.append(str(error))
                continue
            loaded.append((row["setting"], splits))
    if not loaded:
        return None, missing
    figure, axes = plt.subplots(2, len(loaded), figsize=(3.6 * len(loaded), 6.4), squeeze=False)
    for column, (setting, splits) in enumerate(loaded):
        for line, (split, data) in enumerate(splits.items()):
            _density(axes[line, column], data["phi_teacher"], data["phi_student"], 40)
            axes[line, column].set_title(f"{setting}\n{split}", fontsize=8)
    figure.tight_layout()
    return figure, missing


def switch_curves(table: pl.DataFrame):
    from kdtrack.analysis.evidence import test_accuracy
    from kdtrack.analysis.figures import accuracy_curves

    runs = table.filter(pl.col("switch_step").is_not_null())
    if runs.is_empty():
        return None
    labelled = {f"{r['run_name']} ({r['run_id'][:6]})": r for r in runs.iter_rows(named=True)}
    curves = {label: test_accuracy(r["run_id"]) for label, r in labelled.items()}
    marks = {label: int(r["switch_step"]) for label, r in labelled.items()}
    return accuracy_curves({k: v for k, v in curves.items() if v}, marks, "switch runs: test accuracy (Fig. 24)")


# Section builders: each takes the runs table and the experiments compared (every builder gets both,
# so that one dict can call them all) and returns its Section, or None when it has nothing to show.

def runs_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Runs", frames=[tables.runs_summary(table)])


def _per_experiment(table: pl.DataFrame, experiments: list[str], tabulate) -> list[pl.DataFrame]:
    """`tabulate` of each experiment's runs; with two experiments, their difference too."""
    frames = [tabulate(table.filter(pl.col("experiment") == e)) for e in experiments]
    return [*frames, tables.difference(*frames)] if len(experiments) == 2 else frames


def table2_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Table 2: accuracy", "mean and std over seeds, per setting",
                   _per_experiment(table, experiments, tables.table2))


def slopes_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    return Section("Tables 3-6: slopes of the bottom and top 25%", "> 1 at the bottom: exaggerated confidence",
                   _per_experiment(table, experiments, tables.slopes))


def confidence_grid_section(table: pl.DataFrame, experiments: list[str]) -> Section:
    figure, missing = confidence_grid(table)
    return Section("Fig. 5: logit-logit plots", "train above test", figures=[figure] if figure else [],
                   missing=missing)


def eigen_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    if "m:eigen/exaggerated_pair_frac" not in table.columns:  # no analysis computed the eigenspace
        return None
    return Section("Eigenspace: student more top-biased than teacher", "fraction of direction pairs",
                   [tables.eigen(table)])


def switch_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    figure = switch_curves(table)
    return Section("Loss switching", figures=[figure]) if figure else None


def numbers(values: list[str]) -> list[float] | None:
    """`values` as floats, or None when one is not a number (a categorical knob: an optimizer)."""
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def ablation_section(table: pl.DataFrame, experiments: list[str]) -> Section | None:
    import matplotlib.pyplot as plt

    trials = table.filter(pl.col("role") == "trial")
    if trials.is_empty():
        return None
    section = Section("Ablations (§C.5)", "objective of each finished trial against the ablated value")
    studies = table.filter(pl.col("role") == "study")
    section.frames.append(studies.select([c for c in ("study", "run_id", "m:trials/complete", "m:trials/fail",
                                                     "m:trials/pruned", "m:best/trial") if c in studies.columns]))
    for (study,), part in trials.group_by("study", maintain_order=True):
        objectives = [c for c in part.columns if c.startswith("m:objective/") and part[c].is_not_null().any()]
        runs = [tracking.get_run(r) for r in part["run_id"]]  # the knob's name is the trial's param
        knob = next((k for k in runs[0].data.params if k != "seed"), None)
        if knob is None or not objectives:
            section.missing.append(f"study {study}: its trials have no knob param or no objective metric")
            continue
        labels = [r.data.params.get(knob, "") for r in runs]
        values = numbers(labels)
        figure, axes = plt.subplots(1, len(objectives), figsize=(5 * len(objectives), 3.6), squeeze=False)
        for ax, column in zip(axes[0], objectives):
            points = [(x, y) for x, y in zip(values or labels, part[column].to_list()) if y is not None]
            ax.scatter(*zip(*points))  # strings plot as categories, in order of appearance
            ax.set(xlabel=knob, ylabel=column.removeprefix("m:objective/"), title=f"study {study}",
                   xscale="log" if (knob == "lr" and values and min(values) > 0) else "linear")
        figure.tight_layout()
        section.figures.append(figure)
    return section


# The sections a dashboard may name; dashboard.load checks names against these keys and lists them,
# in this order, as what is allowed.
SECTIONS: dict[str, Callable[[pl.DataFrame, list[str]], Section | None]] = {
    "runs": runs_section,
    "table2": table2_section,
    "slopes": slopes_section,
    "confidence_grid": confidence_grid_section,
    "eigen": eigen_section,
    "switch": switch_section,
    "ablation": ablation_section,
}


def _shown(section: Section | None) -> Section | None:
    """`section` without its empty tables, or None when no table, figure or note of what is
    missing is left to show."""
    if section is None:
        return None
    frames = [f for f in section.frames if not f.is_empty()]
    return replace(section, frames=frames) if (frames or section.figures or section.missing) else None


def fetch(experiments: list[str], filter_string: str) -> pl.DataFrame:
    """The runs a report covers, one row each, with the size of their artifacts; bad experiment
    names or filters fail here."""
    table = setting_of(runs_table(experiments, filter_string))
    click.echo(f"kdtrack: fetched {table.height} runs of {', '.join(experiments)}", err=True)
    sizes = [tracking.artifact_bytes(uri) for uri in table["artifact_uri"]]
    return table.with_columns(pl.Series("artifact_bytes", sizes, dtype=pl.Int64))


def size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build(table: pl.DataFrame, experiments: list[str], filter_string: str,
          dashboard: Dashboard) -> tuple[str, str, dict[str, bytes]]:
    """The report of the `fetch`ed runs as (HTML, Markdown, figures). The HTML embeds its figures;
    the Markdown links them as figures/<name>.png, so that it reads well where it is committed.
    Statistics use only the runs that `collect.counted` keeps; the subtitle says what it left out,
    and the artifacts' size."""
    kept, left_out = counted(table, code_version())
    sections = [claims_section(kept, experiments, dashboard.claims)] if dashboard.claims else []
    for name in dashboard.sections:
        section = _shown(SECTIONS[name](kept, experiments))
        if section:
            sections.append(section)
    subtitle = [f"experiments: {', '.join(experiments)}" + (f"; filter: {filter_string}" if filter_string else ""),
                f"code version: {code_version()}",
                f"artifacts: {size(table['artifact_bytes'].sum())} in {table.height} runs",
                *([f"left out: {', '.join(left_out)}"] if left_out else [])]
    figures = [{f"{slug(s.heading)}-{i + 1}": png(f) for i, f in enumerate(s.figures)} for s in sections]
    html = TEMPLATE.render(title=dashboard.title, subtitle=subtitle, sections=[
        {"heading": s.heading, "note": s.note, "missing": s.missing,
         "tables": [Markup(html_table(f)) for f in s.frames],
         "images": [base64.b64encode(image).decode() for image in images.values()]}
        for s, images in zip(sections, figures)])
    markdown = "\n\n".join([f"# {dashboard.title}", *subtitle] + [
        "\n\n".join([f"## {s.heading}", s.note, *[f"not shown: {m}" for m in s.missing],
                       *[markdown_table(f) for f in s.frames],
                       *[f"![{s.heading}](figures/{name}.png)" for name in images]])
        for s, images in zip(sections, figures)]) + "\n"
    return html, markdown, {name: image for images in figures for name, image in images.items()}


def report(experiments: list[str], filter_string: str, dashboard: Dashboard, out: Path,
           formats: tuple[str, ...] = ("html", "md")) -> str:
    """Write report.html (self-contained) and/or report.md (with its figures/ beside it) to `out`,
    and log them in a `report` run; its id."""
    from kdtrack.report.collect import experiment_ids

    tracking.check_store()
    table = fetch(experiments, filter_string)  # before the run: bad input leaves no run behind
    first = experiment_ids(experiments[:1])[experiments[0]]
    with tracking.run(first, f"report-{dashboard.title[:40]}", "report",
                      {"experiments": ",".join(experiments), "filter": filter_string}) as run:
        html, markdown, figures = build(table, experiments, filter_string, dashboard)
        files = {"report.html": html.encode()} if "html" in formats else {}
        if "md" in formats:
            files["report.md"] = markdown.encode()
            files.update({f"figures/{name}.png": image for name, image in figures.items()})
        for name, data in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
            run.log_bytes(data, f"report/{name}")
    written = " and ".join(str((out / f"report.{f}").resolve()) for f in formats)
    click.echo(f"kdtrack: report written to {written}; run {run.run_id} holds a copy", err=True)
    return run.run_id
