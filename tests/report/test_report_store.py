"""`kdtrack report` on a generated store: runs made directly through MlflowClient with the params,
tags and metrics the entry points write, in every status, with no artifacts unless a test adds
them. Fast (no training), so it can hold the cases real runs take minutes to reach: re-analyses,
orphans, old code versions, categorical ablations, hostile names."""

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.entities import Metric, Param

from kdtrack import code_version, tracking
from kdtrack.cli.main import main
from kdtrack.contract import CODE_VERSION, KEY, ONEHOT_RUN, ROLE, STUDENT_RUN, STUDY, SWITCH_STEP, TEACHER_RUN, TRIAL
from kdtrack.errors import UserError
from kdtrack.report import tables
from kdtrack.report.collect import counted
from kdtrack.report.dashboard import load
from kdtrack.report.gather import fetch, gather
from kdtrack.report.render import build, without_password

HOSTILE = "<script>alert(document.cookie)</script>"
STUDENT = {"preset": "mnist_mlp", "dataset": "mnist5k", "arch": "mlp", "teacher_arch": "", "label_noise": "0.0",
           "train_size": "64", "batch_size": "32", "lr": "0.001", "epochs": "2"}
TABLE2 = "table2/student_distill_test_acc"


class Store:
    """Runs of one experiment, started one second apart, so that `start_time` orders them."""

    def __init__(self, experiment: str):
        self.client = tracking.client()
        self.experiment = self.client.create_experiment(experiment)
        self.clock = 1_700_000_000_000

    def run(self, role: str, status: str = "FINISHED", params=None, metrics=None, tags=None,
            version: str | None = None, name: str = "") -> str:
        self.clock += 1000
        run_id = self.client.create_run(self.experiment, start_time=self.clock, run_name=name or role, tags={
            ROLE: role, CODE_VERSION: version or code_version(), **(tags or {})}).info.run_id
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in (params or {}).items()],
                              metrics=[Metric(k, v, self.clock, 0) for k, v in (metrics or {}).items()])
        if status != "RUNNING":  # a RUNNING run is an orphan: nothing ever ends it
            self.client.set_terminated(run_id, status)
        return run_id

    def student(self, seed: str, status: str = "FINISHED", self_distilled: bool = False, **params) -> str:
        """A student of a teacher of its own; `self_distilled`: that teacher is its one-hot baseline
        (pipeline.lineage), else a one-hot run of the student's architecture is."""
        teacher = self.run("teacher", params={**STUDENT, "seed": seed})
        onehot = teacher if self_distilled else self.run("teacher", params={**STUDENT, "seed": seed})
        return self.run("student", status, {**STUDENT, "seed": seed, **params}, {"test/acc": 0.5},
                        {TEACHER_RUN: teacher, ONEHOT_RUN: onehot})

    def analysis(self, student: str, accuracy: float, status: str = "FINISHED", version: str | None = None,
                 bins: str = "20") -> str:
        return self.run("analysis", status, {"student_run_id": student, "bins": bins},
                        {TABLE2: accuracy, "test/slope_bottom25": 1.2}, {STUDENT_RUN: student}, version)


def report(tmp_path, *args) -> str:
    result = CliRunner().invoke(main, ["report", *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return (tmp_path / "report.html").read_text()


@pytest.fixture(scope="module")
def reanalyzed(store):
    """One student, one seed: its analysis killed, run again, then again with bins=30; an analysis
    from another code version; a KILLED second student and a FAILED teacher."""
    fake = Store("reanalyzed")
    student = fake.student("0")
    fake.analysis(student, 0.1, "KILLED")
    fake.analysis(student, 0.5)
    newest = fake.analysis(student, 0.7, bins="30")
    fake.analysis(student, 0.9, version="0ldc0de0ld00")
    fake.student("1", "KILLED")
    fake.run("teacher", "FAILED", {**STUDENT, "seed": "2"})
    return student, newest


def test_a_student_counts_once_with_its_newest_finished_analysis_of_this_code(reanalyzed):
    kept, left_out = counted(fetch(["reanalyzed"], ""), code_version())
    row = tables.table2(kept).row(0, named=True)
    assert row["seeds"] == 1 and row["student (distilled) test mean"] == pytest.approx(0.7)
    assert left_out == ["1 analysis run superseded", "1 analysis run of another code version",
                        "1 FAILED teacher run", "1 KILLED analysis run", "1 KILLED student run"]


def test_a_student_trained_again_with_force_is_not_another_seed(store):
    fake = Store("forced")
    teacher = fake.run("teacher", params={**STUDENT, "seed": "0"}, tags={KEY: "t0"})
    first, again = (fake.run("student", params={**STUDENT, "seed": "0"}, tags={TEACHER_RUN: teacher, KEY: "s0"})
                    for _ in range(2))
    for student, accuracy in ((first, 0.5), (again, 0.7)):
        fake.analysis(student, accuracy)
    kept, left_out = counted(fetch(["forced"], ""), code_version())
    assert set(kept.filter(pl.col("role") == "student")["run_id"]) == {again}
    assert tables.table2(kept).row(0, named=True)["student (distilled) test mean"] == pytest.approx(0.7)
    assert left_out == ["1 analysis run whose student is not in the report", "1 student run trained again (force)"]


def test_the_report_says_what_it_left_out(reanalyzed, tmp_path):
    html = report(tmp_path, "--experiment", "reanalyzed")
    assert "<dt>left out</dt><dd>1 analysis run superseded, 1 analysis run of another code version" in html
    assert "confidences/train.parquet" in html  # Fig. 5 says which table it lacks instead of failing


def test_a_report_can_count_the_analyses_of_an_earlier_code_version(store, tmp_path):
    fake = Store("older-code")
    fake.analysis(fake.student("0"), 0.9, version="0123456789ab")
    html = report(tmp_path, "--experiment", "older-code", "--code-version", "0123456789ab")
    assert f"<dd>analyses of 0123456789ab (the report&#39;s own code: {code_version()})</dd>" in html
    assert "left out" not in html
    assert "left out" in report(tmp_path, "--experiment", "older-code")  # by default, this code's analyses only
    result = CliRunner().invoke(main, ["claims", "--experiment", "older-code", "--code-version", "HEAD"])
    assert result.exit_code != 0 and result.output.count("\n") == 1 and "'HEAD'" in result.output
    assert "12 hex digits" in result.output


def test_a_filter_that_leaves_out_the_analyses_renders_with_them(reanalyzed, tmp_path):
    html = report(tmp_path, "--experiment", "reanalyzed", "--filter", "params.preset = 'mnist_mlp'")
    assert "student (distilled) test (%)" in html  # the analyses followed their student
    paper = load("paper")
    teachers = gather(["reanalyzed"], "tags.`kdtrack.role` = 'teacher'", paper.sections)
    assert build(teachers, paper)[0].count("<table") == 2  # claims, runs


def test_an_experiment_of_teachers_only_renders(store, tmp_path):
    fake = Store("teachers-only")
    fake.run("teacher", params={**STUDENT, "seed": "0"})
    assert "teacher" in report(tmp_path, "--experiment", "teachers-only")


def test_a_categorical_knob_plots_as_categories(store, tmp_path):
    fake = Store("ablate-optimizer")
    fake.student("0")
    fake.run("study", params={"knob": "optimizer", "values": "adam,sgd"}, tags={STUDY: "opt"},
             metrics={"trials/complete": 2.0})
    for number, value in enumerate(("adam", "sgd", "sgd")):
        status = "KILLED" if number == 2 else "FINISHED"
        fake.run("trial", status, {"optimizer": value, "seed": "0"}, {"objective/test/acc": 0.5 + number / 10},
                 {STUDY: "opt", TRIAL: str(number)})
    html = report(tmp_path, "--experiment", "ablate-optimizer", "--dashboard", "ablations")
    assert "Ablations" in html and "data:image/png;base64," in html and "1 KILLED trial run" in html


def test_the_report_states_the_size_of_the_artifacts_it_covers(store, tmp_path):
    fake = Store("sized")
    student = fake.student("0")
    (tmp_path / "a.txt").write_bytes(b"x" * 1500)
    (tmp_path / "b.txt").write_bytes(b"y" * 500)
    fake.client.log_artifact(student, str(tmp_path / "a.txt"))
    fake.client.log_artifact(student, str(tmp_path / "b.txt"), "deep/er")
    assert tracking.artifact_bytes(tracking.get_run(student).info.artifact_uri) == 2000
    paper = load("paper")
    html, markdown, *_ = build(gather(["sized"], "", paper.sections), paper)
    assert "<dt>artifacts</dt><dd>2.0 kB in 3 runs</dd>" in html and "**artifacts**: 2.0 kB in 3 runs" in markdown


def test_hostile_names_are_escaped(store, tmp_path):
    fake = Store(HOSTILE)
    student = fake.student("0", preset=HOSTILE)
    fake.analysis(student, 0.5)
    fake.run("student", "FINISHED", {**STUDENT, "seed": "1"}, {"test/acc": 0.5}, {SWITCH_STEP: "3"}, name=HOSTILE)
    dashboard = tmp_path / "hostile.yaml"
    dashboard.write_text(f"title: '{HOSTILE}'\nsections: [runs, table2, slopes, confidence_grid, switch]\n")
    html = report(tmp_path / "out", "--experiment", HOSTILE, "--dashboard", str(dashboard),
                  "--filter", f"params.preset != '{HOSTILE}x'")
    assert "<script" not in html.lower() and "&lt;script&gt;alert(document.cookie)&lt;/script&gt;" in html


# The property: whatever runs a filter picks out of a store in every state, the report renders or
# fails in one line. The store is made once; hypothesis picks subsets and filters.

@pytest.fixture(scope="module")
def everything(store):
    fake = Store("everything")
    students = [fake.student(str(seed), status) for seed, status in
                enumerate(("FINISHED", "FINISHED", "KILLED", "FAILED", "RUNNING"))]
    students.append(fake.student("5", batch_size="64"))
    for student, status in zip(students, ("FINISHED", "KILLED", "FINISHED", "FAILED", "RUNNING", "FINISHED")):
        fake.analysis(student, 0.6, status)
    fake.analysis(students[0], 0.7, version="0ldc0de0ld00")
    fake.analysis(students[0], 0.8, bins="30")
    fake.run("student", params={**STUDENT, "seed": "0", "switch_to": "onehot"}, tags={SWITCH_STEP: "4"})
    fake.run("study", "KILLED", tags={STUDY: "lr"})
    fake.run("study", tags={STUDY: "lr"}, metrics={"trials/complete": 2.0})
    for number, (value, status) in enumerate((("0.1", "FINISHED"), ("0.01", "FINISHED"), ("1", "RUNNING"))):
        fake.run("trial", status, {"lr": value, "seed": "0"}, {"objective/test/acc": 0.5},
                 {STUDY: "lr", TRIAL: str(number)})
    fake.run("trial", tags={STUDY: "bare"})  # no knob, no objective
    fake.run("report", "RUNNING")
    return [run.info.run_id for run in tracking.search_all([fake.experiment], "")]


CLAUSES = st.sampled_from([
    "params.preset = 'mnist_mlp'", "tags.`kdtrack.role` = 'student'", "tags.`kdtrack.role` != 'analysis'",
    "attributes.status = 'FINISHED'", "attributes.status != 'KILLED'", "params.seed = '0'", "params.bins = '30'",
    "tags.`kdtrack.role` IN ('trial', 'study')", "metrics.`test/acc` > 0.1", "params.preset = 'no-such'"])


@st.composite
def filters(draw, run_ids):
    clauses = draw(st.lists(CLAUSES, max_size=2))
    chosen = draw(st.lists(st.sampled_from(run_ids), max_size=8, unique=True))
    if chosen:
        clauses.append("attributes.run_id IN (" + ", ".join(f"'{r}'" for r in chosen) + ")")
    if draw(st.booleans()):
        clauses.append(draw(st.text(max_size=20)))  # mostly not a filter at all
    return " and ".join(clauses)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_subset_renders_or_fails_in_one_line(everything, data):
    filter_string = data.draw(filters(everything))
    dashboard = load(data.draw(st.sampled_from(["paper", "ablations", "switch"])))
    try:
        html, markdown, *_ = build(gather(["everything"], filter_string, dashboard.sections), dashboard)
    except UserError as error:
        assert "\n" not in str(error) and str(error)
    else:
        assert html.startswith("<!doctype html>") and markdown.startswith("# ")


def test_the_fixture_store_holds_every_status(everything):
    statuses = pl.Series([tracking.get_run(r).info.status for r in everything])
    assert set(statuses) == {"FINISHED", "KILLED", "FAILED", "RUNNING"}


@pytest.fixture(scope="module")
def two_seeds(store):
    """Two seeds of a distillation with an own one-hot baseline, one seed of a self-distillation."""
    fake = Store("two-seeds")
    for student, accuracy in ((fake.student("0"), 0.5), (fake.student("1"), 0.7),
                              (fake.student("0", self_distilled=True, preset="self"), 0.9)):
        fake.run("analysis", params={"student_run_id": student, "bins": "20"}, tags={STUDENT_RUN: student},
                 metrics={TABLE2: accuracy, "table2/student_onehot_test_acc": 0.4, "test/slope_bottom25": 1.2})
    return fake


def test_report_tables_hold_mean_plus_minus_std_cells_at_their_precision(two_seeds, tmp_path):
    html = report(tmp_path, "--experiment", "two-seeds")
    paper = load("paper")
    markdown = build(gather(["two-seeds"], "", paper.sections), paper)[1]
    table2 = tables.shown(tables.table2(counted(fetch(["two-seeds"], ""), code_version())[0]))
    row = table2.row(0, named=True)  # mnist_mlp: accuracies 0.5 and 0.7, slopes 1.2 and 1.2
    assert row["seeds"] == 2 and row["student (distilled) test (%)"] == "60.0 ± 14.1"
    assert "60.0 ± 14.1" in html and "60.0 ± 14.1" in markdown
    slopes = tables.shown(tables.slopes(counted(fetch(["two-seeds"], ""), code_version())[0]))
    assert slopes.row(0, named=True)["test/slope_bottom25"] == "1.20 ± 0.00"
    assert slopes.row(1, named=True)["test/slope_bottom25"] == "1.20"  # one seed: no std to show
    assert not any(" mean" in c or " std" in c for c in table2.columns)


def test_self_distillation_says_the_one_hot_student_is_the_teacher(two_seeds):
    table2 = tables.shown(tables.table2(counted(fetch(["two-seeds"], ""), code_version())[0]))
    onehot = dict(zip(table2["setting"], table2["student (one-hot) test (%)"]))
    assert onehot == {"mnist_mlp mlp>mlp noise=0.0": "40.0 ± 0.0", "self mlp>mlp noise=0.0": "= teacher"}


def test_the_header_counts_runs_by_role_and_links_each_run_to_its_ui_page(two_seeds, monkeypatch):
    paper = load("paper")
    html, markdown, *_ = build(gather(["two-seeds"], "", paper.sections), paper)
    # two one-hot baselines; and the report runs of the tests that ran before (pytest-randomly's order)
    reports = len(tracking.search_all([two_seeds.experiment], "tags.`kdtrack.role` = 'report'"))
    counted = f"{11 + reports}: 5 teacher, 3 analysis, 3 student" + (f", {reports} report" if reports else "")
    assert f"<dt>runs</dt><dd>{counted}</dd>" in html
    for name in ("date", "code version", "tracking store", "experiments"):
        assert f"<dt>{name}</dt>" in html and f"**{name}**" in markdown
    assert '<nav>' in html and '<a href="#table-2-accuracy">Table 2: accuracy</a>' in html
    assert "1. [Claims](#claims)" in markdown and '<section id="table-2-accuracy">' in html
    assert "#/experiments/" not in html  # a local store has no UI pages to link
    monkeypatch.setattr(tracking, "tracking_uri", lambda: "https://mlflow.example.org/")
    served = build(gather(["two-seeds"], "", paper.sections), paper)[3]["runs.csv"].decode()
    student = fetch(["two-seeds"], "tags.`kdtrack.role` = 'student'").row(0, named=True)
    page = f"https://mlflow.example.org/#/experiments/{student['experiment_id']}/runs/{student['run_id']}"
    assert f"{student['run_id']},{student['run_name']}," in served and f",{page}\n" in served  # the list's last column


def test_ui_pages_and_store_addresses():
    run_page = tracking.run_address
    assert run_page("3", "abc", "http://localhost:5000") == "http://localhost:5000/#/experiments/3/runs/abc"
    assert run_page("3", "abc", "sqlite:///mlflow.db") == "" and run_page("3", "abc", "file:///tmp/mlruns") == ""
    assert without_password("postgresql://kd:s3cret@db:5432/mlflow") == "postgresql://kd:***@db:5432/mlflow"
    assert without_password("sqlite:///mlflow.db") == "sqlite:///mlflow.db"



def test_the_runs_section_is_a_row_per_setting_and_every_run_goes_to_a_csv_beside_it(two_seeds, tmp_path):
    html = report(tmp_path, "--experiment", "two-seeds")
    markdown = (tmp_path / "report.md").read_text()
    listed = pl.read_csv(tmp_path / "runs.csv", infer_schema=False)
    assert '<a href="runs.csv">runs.csv</a>' in html and "[runs.csv](runs.csv)" in markdown
    assert dict(listed.filter(pl.col("role") != "report").group_by("role").len().rows()) == {
        "teacher": 5, "student": 3, "analysis": 3}
    analyses = listed.filter(pl.col("role") == "analysis")
    assert sorted(zip(analyses["setting name"], analyses["seed"])) == [("mnist_mlp", "0"), ("mnist_mlp", "1"),
                                                                        ("self", "0")]
    section = html.split('<section id="runs">')[1].split("</section>")[0]
    assert not any(run_id in section for run_id in listed["run_id"])  # no row per run in the page
    runs = markdown.split("## Runs")[1]
    # mnist_mlp: two teachers and two one-hot baselines; self: the teacher is the baseline
    assert "| mnist_mlp | 2 | 4 | 2 FINISHED | 2 | 0 |" in runs and "| self | 1 | 1 | 1 FINISHED | 1 | 0 |" in runs
    experiment = tracking.client().get_experiment_by_name("two-seeds").experiment_id
    newest = tracking.search_all([experiment], "tags.`kdtrack.role` = 'report'")[0].info.run_id
    assert "report/runs.csv" in {a.path for a in tracking.client().list_artifacts(newest, "report")}
