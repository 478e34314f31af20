"""What a person sees in the terminal: progress on stderr (plain lines when it is not a terminal),
stdout holding only results, the end-of-run summary, `kdtrack params`, run id prefixes and
`kdtrack runs --format`."""
import csv
import io
import json
import math
import re
from dataclasses import fields

import pytest
from click.testing import CliRunner
from conftest import TINY

from kdtrack import tracking
from kdtrack.cli.main import main
from kdtrack.cli.paramdoc import render
from kdtrack.config import ENTRY_POINTS
from kdtrack.errors import UserError
from kdtrack.progress import Progress

RUN_ID = re.compile(r"[0-9a-f]{32}")


def params_of(values: dict[str, str]) -> list[str]:
    return [item for key, value in values.items() for item in ("-P", f"{key}={value}")]


def test_without_a_terminal_progress_is_a_plain_line_at_every_tenth():
    stream = io.StringIO()  # not a TTY, as stderr is in CI, in a log file or under `mlflow run`
    with Progress(25, "training teacher-x", stream=stream) as progress:
        for done in range(1, 26):
            progress.update(done, lambda: {"loss": 0.5, "batch_acc": 0.25})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    percents = [int(re.search(r"(\d+)% (\d+)/25 steps", line).group(1)) for line in lines]
    assert percents == [12, 20, 32, 40, 52, 60, 72, 80, 92, 100]
    assert all(line.startswith("kdtrack: training teacher-x: ") and "steps/s" in line and "<" in line
               and "loss=0.5, batch_acc=0.25" in line for line in lines)


def test_resumed_work_counts_from_where_it_was_and_short_work_shows_nothing():
    stream = io.StringIO()
    with Progress(10, "study 's'", "trials", initial=6, stream=stream) as progress:
        for done in range(7, 11):
            progress.update(done)
    assert [line.split(": ")[2].split(" [")[0] for line in stream.getvalue().splitlines()] == [
        " 70% 7/10 trials", " 80% 8/10 trials", " 90% 9/10 trials", "100% 10/10 trials"]
    quiet = io.StringIO()
    with Progress(10, "evaluating", delay=math.inf, stream=quiet) as progress:
        for done in range(1, 11):
            progress.update(done)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_params_lists_every_field_with_its_default_and_meaning(entry):
    cls = ENTRY_POINTS[entry]
    text = render(entry)
    for field in fields(cls):
        assert re.search(rf"^  {field.name}: \w+ = {re.escape(repr(field.default))}", text, re.M), field.name
        assert field.metadata.get("help"), f"{entry}.{field.name} has no help in kdtrack/config.py"


def test_params_states_allowed_values_and_presets():
    text = render("distill")
    assert "  optimizer: str = 'adam'; allowed: adam, sgd\n" in text
    assert "  label_noise: float = 0.0; allowed: 0 <= label_noise < 1\n" in text
    assert "fraction of training labels flipped uniformly to another class" in text
    assert re.search(r"^  noisy_mnist_rf: dataset=mnist5k, .*label_noise=0\.25", text, re.M)
    assert "presets" not in render("theory") and max(map(len, text.splitlines())) <= 100
    result = CliRunner().invoke(main, ["params", "switch"])
    assert result.exit_code == 0 and "switch_to: str = 'onehot'; allowed: distill, onehot" in result.stdout
    refused = CliRunner().invoke(main, ["params", "distil"])
    assert refused.exit_code == 2 and "entry point 'distil' does not exist; choose one of: train_teacher" in \
        refused.stderr


def test_a_fields_help_is_what_params_mlproject_and_the_option_that_sets_it_show():
    """One declaration (the field's metadata) for the three places a parameter is explained."""
    from kdtrack.cli.mlproject import render as mlproject

    def flat(text: str) -> str:  # wrapped lines back into one
        return " ".join(text.split())

    for entry, name, command in (("ablate", "n_trials", "ablate"), ("analyze", "experiment", "analyze")):
        meaning = next(f for f in fields(ENTRY_POINTS[entry]) if f.name == name).metadata["help"]
        assert meaning in flat(render(entry))
        assert f'      {name}: {{type: string, default: ""}}  # {meaning}\n' in mlproject()
        shown = CliRunner().invoke(main, [command, "--help"])
        assert shown.exit_code == 0 and f"{meaning} (-P {name}=...)" in flat(shown.stdout)


def test_every_command_says_what_it_does_with_an_example():
    commands = [[name] for name in main.commands if name != "suite"] + [["suite", "run"], ["suite", "status"]]
    for command in commands:
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Example: kdtrack " in result.stdout, command


@pytest.fixture(scope="module")
def student(store):
    """A student distilled through the CLI: its stdout, stderr and id."""
    result = CliRunner().invoke(main, ["distill", *params_of(TINY), "--experiment", "terminal"])
    assert result.exit_code == 0, result.output
    return result


def test_distill_prints_only_the_id_on_stdout_and_ends_with_a_summary(student):
    assert RUN_ID.fullmatch(student.stdout.strip()), student.stdout
    summaries = [line for line in student.stderr.splitlines() if " finished: " in line]
    teacher, student_line = summaries  # one line per trained run
    assert re.search(r"teacher run [0-9a-f]{32} \(.*\) finished: train acc \d+\.\d%, test acc \d+\.\d%, "
                     r"wall time \d\d:\d\d$", teacher)
    assert student_line.startswith(f"kdtrack: student run {student.stdout.strip()} ")
    assert re.search(r"agreement with the teacher \d+\.\d% train, \d+\.\d% test, wall time", student_line)


def test_analyze_takes_an_id_prefix_and_experiment_and_prints_only_its_id(student):
    student_id = student.stdout.strip()
    result = CliRunner().invoke(main, ["analyze", "-P", f"student_run_id={student_id[:8]}", "-P", "figures=false",
                                          "--experiment", "terminal"])
    assert result.exit_code == 0, result.output
    analysis = result.stdout.strip()
    assert RUN_ID.fullmatch(analysis) and f"analysis run {analysis} of student {student_id}" in result.stderr
    again = CliRunner().invoke(main, ["analyze", "--experiment", "terminal"])  # every student: analyzed
    assert again.exit_code == 0 and again.stdout == "" and "already analyzed" in again.stderr
    elsewhere = CliRunner().invoke(main, ["analyze", "-P", f"student_run_id={student_id[:8]}", "--experiment",
                                          "other"])
    assert elsewhere.exit_code == 2 and "belongs to experiment 'terminal'" in elsewhere.stderr


def test_a_unique_prefix_resolves_an_ambiguous_or_missing_one_is_refused(store):
    experiment = tracking.resolve_experiment("prefixes")
    ids = [tracking.client().create_run(experiment).info.run_id for _ in range(17)]
    assert tracking.resolve_run_id(ids[0][:8]) == ids[0] and tracking.get_run(ids[0][:8]).info.run_id == ids[0]
    assert tracking.resolve_run_id(ids[0]) == ids[0]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)  # 17 ids, 16 digits
    # The store is shared with other test files: the prefix may start their runs too.
    every = [i.info.run_id for e in tracking.client().search_experiments()
             for i in tracking.search_all([e.experiment_id], "")]
    sharing = [i for i in every if i.startswith(first)]
    with pytest.raises(UserError, match=f"run id prefix '{first}' is ambiguous: it starts ") as refused:
        tracking.resolve_run_id(first)
    listed = RUN_ID.findall(str(refused.value))
    assert set(listed) <= set(sharing) and len(listed) == min(len(sharing), 5) and "\n" not in str(refused.value)
    missing = next(p for p in (f"{n:04x}" for n in range(65536)) if not any(i.startswith(p) for i in every))
    with pytest.raises(UserError, match=f"run id '{missing}' does not exist .* nor does a run whose id starts"):
        tracking.resolve_run_id(missing)


def test_runs_formats_csv_and_json_parse_and_the_table_fits_100_columns(student):
    student_id = student.stdout.strip()
    result = CliRunner().invoke(main, ["runs", "--experiment", "terminal", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert student_id in {row["run_id"] for row in rows} and {"role", "status", "test/acc"} <= set(rows[0])
    listed = CliRunner().invoke(main, ["runs", "--experiment", "terminal", "--format", "json"])
    assert {row["run_id"] for row in json.loads(listed.stdout)} == {row["run_id"] for row in rows}
    table = CliRunner().invoke(main, ["runs", "--experiment", "terminal"])
    assert table.exit_code == 0 and max(map(len, table.stdout.splitlines())) <= 100
    assert student_id[:8] in table.stdout and student_id not in table.stdout


def test_the_summary_names_the_ui_page_only_on_a_server(monkeypatch):
    from kdtrack.tracking import store

    monkeypatch.setattr(store, "tracking_uri", lambda: "http://mlflow.lab:5000/")
    assert store.run_address("3", "ab" * 16) == f"http://mlflow.lab:5000/#/experiments/3/runs/{'ab' * 16}"
    monkeypatch.setattr(store, "tracking_uri", lambda: "sqlite:///mlflow.db")
    assert store.run_address("3", "ab" * 16) == ""
