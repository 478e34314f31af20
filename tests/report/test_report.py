"""`kdtrack report` and `kdtrack runs` on runs made by the entry points on the embedded data."""
import json
import re
import shutil
import subprocess
from html import unescape as html_unescape

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import TINY

from kdtrack import code_version, tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.cli.main import main
from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
from kdtrack.errors import UserError
from kdtrack.pipeline.stages import distill
from kdtrack.report import tables
from kdtrack.report.claims import parse
from kdtrack.report.collect import TEXT, runs_table, setting_of
from kdtrack.report.dashboard import Dashboard, load, shipped
from kdtrack.report.render import build
from kdtrack.report.sections import SECTIONS, Fetched


@pytest.fixture(scope="module")
def studies(store):
    """Two experiments, of two seeds (means and spreads) and one (enough for a difference):
    students analyzed."""
    analyses = {}
    for experiment, seed in (("report-a", "0"), ("report-a", "1"), ("report-b", "0")):
        student = distill(from_params(DistillConfig, {**TINY, "seed": seed}), experiment)
        analyses[(experiment, seed)] = analyze(AnalyzeConfig(student_run_id=student, figures=False))[0]
    return analyses


def test_table2_and_slopes_equal_the_runs_own_numbers(studies):
    table = setting_of(runs_table(["report-a"]))
    row = tables.table2(table).row(0, named=True)
    values = [tracking.get_run(studies[("report-a", s)]).data.metrics for s in ("0", "1")]
    test_acc = [v["table2/student_distill_test_acc"] for v in values]
    assert row["seeds"] == 2
    assert row["student (distilled) test mean"] == pytest.approx(sum(test_acc) / 2)
    assert row["student (distilled) test std"] == pytest.approx(pl.Series(test_acc).std())
    slope = tables.slopes(table).row(0, named=True)["test/slope_bottom25 mean"]
    assert slope == pytest.approx(sum(v["test/slope_bottom25"] for v in values) / 2)


def test_every_dashboard_renders_and_the_report_is_logged(studies, tmp_path):
    for name in shipped():
        out = tmp_path / name
        result = CliRunner().invoke(main, ["report", "--experiment", "report-a", "--experiment", "report-b",
                                           "--dashboard", name, "--out", str(out)])
        assert result.exit_code == 0, result.output
        html = (out / "report.html").read_text()
        assert "<table" in html and "report-a" in html and (out / "report.md").exists()
    html = (tmp_path / "paper" / "report.html").read_text()
    assert "data:image/png;base64," in html and "diff" in html  # figures embedded; A vs B compared
    experiment = tracking.client().get_experiment_by_name("report-a").experiment_id
    reports = tracking.search_all([experiment], "tags.`kdtrack.role` = 'report'")
    assert {a.path for a in tracking.client().list_artifacts(reports[0].info.run_id, "report")} >= {
        "report/report.html", "report/report.md"}


def test_markdown_report_links_its_figures_beside_it(studies, tmp_path):
    out = tmp_path / "md"
    result = CliRunner().invoke(main, ["report", "--experiment", "report-a", "--format", "md", "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    links = re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", markdown)
    assert links and all((out / link).read_bytes().startswith(b"\x89PNG") for link in links)
    assert "base64" not in markdown and not (out / "report.html").exists() and "**code version**: " in markdown


def test_runs_lists_the_runs(studies):
    result = CliRunner().invoke(main, ["runs", "--experiment", "report-a"])
    assert result.exit_code == 0 and "student" in result.output and "teacher" in result.output


def test_bad_report_input_is_one_clear_line(studies, tmp_path):
    for args, named in ((["--experiment", "no-such"], "experiment 'no-such' does not exist"),
                        (["--experiment", "report-a", "--filter", "params.seed = '99'"], "match"),
                        (["--experiment", "report-a", "--dashboard", "nope"], "dashboard 'nope'")):
        result = CliRunner().invoke(main, ["report", *args, "--out", str(tmp_path)])
        assert result.exit_code == 2 and named in result.output, result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nsectons: [runs]\n")
    with pytest.raises(UserError, match="unknown key 'sectons'"):
        load(str(bad))
    bad.write_text("sections: [runs, pie_chart]\n")
    with pytest.raises(UserError, match="sections has 'pie_chart'") as refused:
        load(str(bad))
    assert str(refused.value).endswith(f"allowed: {', '.join(SECTIONS)}")  # the builders' names, in order


def loaded_in_chromium(html: str, probe: str, folder, width: int = 1400) -> str:
    """What `probe` (a script expression, run once the page has loaded) evaluates to in headless
    Chromium with a window `width` pixels wide: the page is copied with a script that writes the
    value into the DOM, which Chromium dumps."""
    script = ("<script>addEventListener('load', () => { const p = document.createElement('p'); p.id = 'probe'; "
              f"p.textContent = {probe}; document.body.append(p); }});</script>")
    page = folder / "probe.html"
    page.write_text(html.replace("</body>", script + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={folder / 'profile'}",
             f"--window-size={width},900"]
    dom = subprocess.run(["chromium", *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return re.search(r'<p id="probe">([^<]*)</p>', dom).group(1)


CHROMIUM = pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run "
                              "installs it)")


@pytest.mark.slow
@CHROMIUM
def test_the_html_loads_in_headless_chromium(studies, tmp_path):
    CliRunner().invoke(main, ["report", "--experiment", "report-a", "--out", str(tmp_path)])
    # How many images decoded and how many contents links lead to a section of the page.
    probe = ("(() => { const i = [...document.images]; const a = [...document.querySelectorAll('nav a')]; "
             "return `${i.length}/${i.filter(x => x.complete && x.naturalWidth > 0).length}/${a.length}/"
             "${a.filter(x => document.getElementById(x.hash.slice(1))).length}`; })()")
    found = loaded_in_chromium((tmp_path / "report.html").read_text(), probe, tmp_path)
    total, decoded, links, leading = map(int, found.split("/"))
    assert total >= 1 and decoded == total and links >= 3 and leading == links


def long_claims_study() -> tuple[Fetched, Dashboard]:
    """What a report would gather from 12 settings of 3 seeds that differ in six parameters (so that
    every generated setting name is long), checked by claims with long texts and long paper texts."""
    varying = {"width": "1000", "depth": "2", "batch_size": "32", "lr": "0.0001", "epochs": "20",
               "temperature": "4.0"}
    rows = []
    for setting in range(12):
        params = {k: f"{v}{setting}" for k, v in varying.items()}
        for seed in range(3):
            rows.append({"experiment": "wide", "experiment_id": "1", "run_id": f"s{setting}-{seed}", "role": "student",
                         "status": "FINISHED", "preset": "a_preset_with_a_long_name", "arch": "mlp",
                         "label_noise": "0.0", "seed": str(seed), **params, "start_time": setting * 10 + seed,
                         "m:test/acc": 0.8 + 0.01 * seed, "artifact_bytes": 1000})
    table = setting_of(pl.DataFrame(rows, schema={**{c: pl.String for c in TEXT}, "start_time": pl.Int64,
                                                  "m:test/acc": pl.Float64, "artifact_bytes": pl.Int64}))
    words = " ".join(["the student deviates from its teacher in the least confident points"] * 4)
    claims = parse([{"id": f"a-claim-with-a-rather-long-identifier-{i}", "text": f"Claim {i}: {words}.",
                     "source": "Table 3", "select": {"role": "student"}, "statistic": "test/acc", "test": "> 0.5",
                     "family": "accuracy", "expect": [{"select": {"role": "student"}, "expect": "holds",
                                                       "paper": f"Tables 3-4, §C.4: {words}"}]}
                    for i in range(3)], "wide.yaml")
    fetched = Fetched(("wide",), "", code_version(), table, table, ())
    return fetched, Dashboard("A report of long claims and long settings", ("runs",), claims)


@pytest.mark.slow
@CHROMIUM
def test_the_claims_table_fits_1400_pixels_without_scrolling_sideways(store, tmp_path):
    html = build(*long_claims_study())[0]
    assert "Claim 0: the student deviates" in html and "a_preset_with_a_long_name width=10000" in html  # legend
    # Each table's width, its box's, the widest table cell's right edge, and the page's scroll width.
    probe = ("(() => { const t = [...document.querySelectorAll('table')]; const verdict = document.querySelector("
             "'tbody td'); return JSON.stringify({tables: t.map(x => x.getBoundingClientRect().width), boxes: t.map("
             "x => x.parentElement.clientWidth), verdict: verdict.textContent, right: verdict.getBoundingClientRect()"
             ".right, page: document.documentElement.scrollWidth, window: innerWidth}); })()")
    found = json.loads(html_unescape(loaded_in_chromium(html, probe, tmp_path)))
    assert found["window"] == 1400 and found["page"] <= 1400 and len(found["tables"]) == 2  # claims, runs
    assert all(width <= box for width, box in zip(found["tables"], found["boxes"])), found
    assert found["verdict"] == "holds" and found["right"] <= 1400


def test_markdown_cells_keep_their_row_and_their_whole_text():
    from kdtrack.report.render import markdown_table

    claim = "a claim whose text is longer than eighty characters, as the shipped dashboards' claims are"
    text = markdown_table(pl.DataFrame({"text": [claim, "a | b", "two\nlines"], "mean": [1.0, None, 0.123456]}))
    assert text.splitlines() == ["| text | mean |", "| --- | ---: |", f"| {claim} | 1.0000 |",
                                 r"| a \| b |  |", "| two<br>lines | 0.1235 |"]
