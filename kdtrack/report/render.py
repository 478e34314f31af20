"""Build a report: tables (polars), figures (matplotlib, embedded as base64 PNG), HTML through a
jinja2 template and Markdown through polars' own table formatting."""
from __future__ import annotations

import base64
import io
import os
import re
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import jinja2
import polars as pl
from markupsafe import Markup, escape

from kdtrack import code_version, tracking
from kdtrack.errors import UserError
from kdtrack.markdown import inert, inert_html
from kdtrack.report import tables
from kdtrack.report.collect import experiment_ids
from kdtrack.report.dashboard import Dashboard
from kdtrack.report.gather import gather
from kdtrack.report.sections import SECTIONS, Fetched, Section, claims_section

# Autoescaped: experiment, run and dashboard names and the filter are the user's text, and a report
# is shared and shown as an MLflow artifact. Only the tables, which pandas' Styler escapes itself,
# are marked safe (`build`); images are base64 text. No external resource: the page works offline.
# Table cells: text left-aligned and wrapped, so that a table of long claims and settings fits the
# page rather than scrolling sideways; numbers (class "number") right-aligned on one line.
TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;padding:1.5em 2em;
max-width:1280px}
h1{font-size:1.6em;margin-bottom:.3em} h2{font-size:1.25em;margin-top:2em;padding-top:.4em;border-top:1px solid #ddd}
a{color:#0b5cad} .note{color:#555;margin:.2em 0 .8em} .missing{color:#8a4b00}
dl.header{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:0 0 1em}
dl.header dt{color:#666} dl.header dd{margin:0} nav ol{margin:.2em 0;padding-left:1.4em}
.table{overflow-x:auto;margin:.6em 0 1.2em}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th{background:#f4f5f7;font-weight:600;text-align:center} td,th{border:1px solid #d9dce1;padding:3px 8px}
td{text-align:left;vertical-align:top;overflow-wrap:break-word} td.number{text-align:right;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:0 1em;font-size:13px;margin:-.6em 0 1.2em}
dl.legend dt{font-weight:600} dl.legend dd{margin:0;color:#444}
figure{margin:1em 0} img{max-width:100%;height:auto;border:1px solid #eee}
</style></head>
<body><h1>{{ title }}</h1>
<dl class="header">{% for name, value in header %}<dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
<nav><strong>Contents</strong><ol>{% for section in sections %}<li><a href="#{{ section.anchor }}">
{{- section.heading }}</a></li>{% endfor %}</ol></nav>
{% for section in sections %}<section id="{{ section.anchor }}"><h2>{{ section.heading }}</h2>
{% if section.note %}<p class="note">{{ section.note }}</p>{% endif %}
{% for line in section.missing %}<p class="missing">not shown: {{ line }}</p>{% endfor %}
{% for table in section.tables %}<div class="table">{{ table }}</div>{% endfor %}
{% if section.settings %}<dl class="legend">{% for name, setting in section.settings.items() %}<dt>{{ name }}</dt>
<dd>{{ setting }}</dd>{% endfor %}</dl>{% endif %}
{% for name in section.files %}<p class="note">every run, one a row: <a href="{{ name }}">{{ name }}</a></p>
{% endfor %}
{% for image in section.images %}<figure><img alt="{{ section.heading }}" src="data:image/png;base64,{{ image }}">
</figure>{% endfor %}</section>
{% endfor %}</body></html>
""")


def png(figure) -> bytes:
    import matplotlib.pyplot as plt

    from kdtrack.analysis.style import DPI

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


VERDICT_COLOURS = {"holds": "#c8e6c9", "fails": "#ffcdd2", "inconclusive": "#fff3c4", "no runs": "#eeeeee"}
# A number as the tables write it: "0.905", "-1.2e-05", "12.3 ± 0.4", "0.905 [0.886, 0.924]", "45%", "1.3 kB"
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?%?|[-+]?(nan|inf)|-|bytes|kB|MB|GB")
NOT_A_VALUE = ("", "-", "[-]", tables.TEACHER_CELL)  # cells that neither make a column text nor a number


def is_number(text: str) -> bool:
    tokens = re.sub(r"[\[\],±]", " ", text).split()
    return bool(re.search(r"\d|nan|inf", text)) and all(NUMBER.fullmatch(token) for token in tokens)


def numeric_columns(frame: pl.DataFrame) -> list[str]:
    """The columns to right-align: numbers, or text that writes numbers (every cell one, or empty)."""
    out = []
    for name in frame.columns:
        dtype = frame.schema[name]
        if dtype.is_numeric():
            out.append(name)
        elif dtype == pl.String:
            cells = [c for c in frame[name].drop_nulls().to_list() if c.strip() not in NOT_A_VALUE]
            if cells and all(is_number(c) for c in cells):
                out.append(name)
    return out


def html_table(frame: pl.DataFrame, pages: dict[str, str] | None = None,
               settings: dict[str, str] | None = None) -> str:
    """`frame` as an HTML table, its text escaped, numbers right-aligned; run ids link to their
    `pages`, a setting's short name shows its whole name (`settings`) on hover, and a claims
    table's verdicts are in colour."""
    table = frame.to_pandas()
    styled = table.style.hide(axis="index").format(precision=4, na_rep="", escape="html")
    numbers = numeric_columns(frame)
    styled = styled.set_td_classes(table.apply(lambda column: column.map(
        lambda _: "number" if column.name in numbers else "")))
    if pages and "run_id" in frame.columns:  # Styler escapes before it formats: the link stays a link
        styled = styled.format(lambda r: f'<a href="{escape(pages[r])}">{escape(r)}</a>' if pages.get(r)
                               else escape(r or ""), subset=["run_id"])
    if settings and "setting" in frame.columns:
        styled = styled.format(lambda s: f'<span title="{escape(settings[s])}">{escape(s)}</span>'
                               if s in settings else escape(s or ""), subset=["setting"])
    verdicts = [c for c in frame.columns if c.startswith("verdict")]  # and "verdict (Holm)"
    if verdicts:
        colour = lambda verdict: f"background-color: {VERDICT_COLOURS.get(verdict, 'white')}"  # noqa: E731
        styled = styled.map(colour, subset=verdicts)
    return styled.to_html()


def markdown_cell(value) -> str:
    """A value as one Markdown table cell: whole (polars' own Markdown display cuts text at a width),
    with `|` and line breaks escaped so that the row stays one row."""
    if value is None:
        return ""
    text = inert_html(f"{value:.4f}" if isinstance(value, float) else str(value))
    return text.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def markdown_table(frame: pl.DataFrame) -> str:
    """`frame` as a Markdown table, numbers right-aligned (`---:`)."""
    numbers = numeric_columns(frame)
    rule = ["---:" if name in numbers else "---" for name in frame.columns]
    lines = ["| " + " | ".join(markdown_cell(v) for v in line) + " |" for line in [frame.columns, *frame.rows()]]
    return "\n".join([lines[0], "| " + " | ".join(rule) + " |", *lines[1:]])


def markdown_legend(settings: dict[str, str]) -> str:
    """The settings' short names and whole names below a Markdown table."""
    return "\n".join(f"- **{inert(name)}**: {inert(setting)}" for name, setting in settings.items())


def _shown(section: Section | None) -> Section | None:
    """`section` without its empty tables, or None when no table, figure or note of what is
    missing is left to show."""
    if section is None:
        return None
    frames = tuple(f for f in section.frames if not f.is_empty())
    return replace(section, frames=frames) if (frames or section.figures or section.missing) else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build(fetched: Fetched, dashboard: Dashboard) -> tuple[str, str, dict[str, bytes], dict[str, bytes]]:
    """The report of what report.gather `fetched`, as (HTML, Markdown, figures, files). The HTML
    embeds its figures; the Markdown links them as figures/<name>.png, so that it reads well where
    it is committed; both link the files (runs.csv), which go beside them. Statistics use only the
    runs that `collect.counted` keeps; the header says what it left out, and the artifacts' size;
    with a tracking server, run ids link to their pages in its UI."""
    sections = [claims_section(fetched, dashboard.claims)] if dashboard.claims else []
    for name in dashboard.sections:
        section = _shown(SECTIONS[name](fetched))
        if section:
            sections.append(section)
    store = tracking.tracking_uri()
    header = header_lines(fetched, store)
    pages = {r: tracking.run_address(e, r, store)
             for e, r in fetched.table.select("experiment_id", "run_id").iter_rows()}
    figures = [{f"{slug(s.heading)}-{i + 1}": png(f) for i, f in enumerate(s.figures)} for s in sections]
    html = TEMPLATE.render(title=dashboard.title, header=header, sections=[
        {"heading": s.heading, "anchor": slug(s.heading), "note": s.note, "missing": s.missing,
         "tables": [Markup(html_table(tables.shown(f), pages, s.settings)) for f in s.frames],
         "settings": s.settings, "files": s.files,
         "images": [base64.b64encode(image).decode() for image in images.values()]}
        for s, images in zip(sections, figures)])
    contents = "\n".join(f"{i + 1}. [{s.heading}](#{slug(s.heading)})" for i, s in enumerate(sections))
    markdown = "\n\n".join([f"# {inert(dashboard.title)}",
                             "\n".join(f"- **{name}**: {inert(value)}" for name, value in header),
                             f"**Contents**\n\n{contents}"] + [
        "\n\n".join([f"## {s.heading}", s.note, *[f"not shown: {inert(m)}" for m in s.missing],
                       *[markdown_table(tables.shown(f)) for f in s.frames],
                       *([markdown_legend(s.settings)] if s.settings else []),
                       *[f"every run, one a row: [{name}]({name})" for name in s.files],
                       *[f"![{s.heading}](figures/{name}.png)" for name in images]])
        for s, images in zip(sections, figures)]) + "\n"
    files = {name: with_pages(frame, pages).write_csv().encode() for s in sections for name, frame in s.files.items()}
    return html, markdown, {name: image for images in figures for name, image in images.items()}, files


def with_pages(frame: pl.DataFrame, pages: dict[str, str]) -> pl.DataFrame:
    """A run list with each run's page in the tracking server's UI, where there is one."""
    if "run_id" not in frame.columns or not any(pages.values()):
        return frame
    return frame.with_columns(pl.col("run_id").replace_strict(pages, default="").alias("page"))


def without_password(uri: str) -> str:
    """`uri` as a report may show it: a database or server password replaced by ***."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def header_lines(fetched: Fetched, store: str) -> list[tuple[str, str]]:
    """What the report covers, as (name, value) rows: experiments, runs by role, date, code
    version, tracking store, artifacts' size, and the runs left out of the statistics."""
    table, version, filtered = fetched.table, fetched.version, fetched.filter_string
    roles = table["role"].fill_null("non-kdtrack").value_counts().sort("count", "role", descending=[True, False]).rows()
    return [("experiments", ", ".join(fetched.experiments) + (f" (filter: {filtered})" if filtered else "")),
            ("runs", f"{table.height}: " + ", ".join(f"{count} {role}" for role, count in roles)),
            ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("code version", version if version == code_version()
             else f"analyses of {version} (the report's own code: {code_version()})"),
            ("tracking store", without_password(store)),
            ("artifacts", f"{tables.size(table['artifact_bytes'].sum())} in {table.height} runs"),
            *([("left out", ", ".join(fetched.left_out))] if fetched.left_out else [])]


def check_writable(out: Path) -> None:
    """Refuse, in one line, an output folder that cannot be made or written to."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as error:
        raise UserError(f"--out {str(out)!r} cannot be written: {error.strerror or error}; "
                        "allowed: a folder this user can create and write to") from None


def write_whole(path: Path, data: bytes) -> None:
    """`data` as `path`, written under a temporary name and renamed once complete: a full disk
    leaves the previous report, or none, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def report(experiments: list[str], filter_string: str, dashboard: Dashboard, out: Path,
           formats: tuple[str, ...] = ("html", "md"), version: str = "") -> str:
    """Write report.html (self-contained) and/or report.md (with its figures/ beside it) to `out`,
    and log them in a `report` run; its id."""
    tracking.check_store()
    check_writable(out)  # first: a folder it cannot write to is refused before anything is read
    # Everything read before the run starts: bad input leaves no run behind, and the run only records.
    fetched = gather(experiments, filter_string, dashboard.sections, version)
    first = experiment_ids(experiments[:1])[experiments[0]]
    with tracking.run(first, f"report-{dashboard.title[:40]}", "report",
                      {"experiments": ",".join(experiments), "filter": filter_string}) as run:
        html, markdown, figures, beside = build(fetched, dashboard)
        files = {"report.html": html.encode()} if "html" in formats else {}
        if "md" in formats:
            files["report.md"] = markdown.encode()
            files.update({f"figures/{name}.png": image for name, image in figures.items()})
        files.update(beside)
        for name, data in files.items():
            write_whole(out / name, data)
            run.log_bytes(data, f"report/{name}")
    written = " and ".join(str((out / f"report.{f}").resolve()) for f in formats)
    click.echo(f"kdtrack: report written to {written}; run {run.run_id} holds a copy", err=True)
    return run.run_id
