"""The claim engine on hand-built run tables whose answers are known."""
import math

import polars as pl
import pytest

from kdtrack.errors import UserError
from kdtrack.report.claims import contradictions, evaluate, parse, t_interval, verdict


def _runs(rows):
    return pl.DataFrame(rows, infer_schema_length=None)


def _claim(**changes):
    base = {"id": "c", "text": "t", "source": "Table 3", "select": {"role": "student"},
            "statistic": "test/slope_bottom25", "test": "> 1", "min_seeds": 3}
    return parse([{**base, **changes}], "paper.yaml")


def _students(values, setting="mnist", metric="test/slope_bottom25", **extra):
    return [{"role": "student", "setting": setting, "preset": setting, "seed": str(seed), f"m:{metric}": value, **extra}
            for seed, value in enumerate(values)]


def test_t_interval_against_a_hand_computed_reference():
    # mean 3, sd sqrt(2.5), se sqrt(0.5), t_{0.975, 4} = 2.7764451 (tables): 3 -+ 1.9632
    mean, low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3 and math.isclose(low, 3 - 2.7764451 * math.sqrt(0.5), rel_tol=1e-6)
    assert math.isclose(high, 3 + 2.7764451 * math.sqrt(0.5), rel_tol=1e-6)
    assert math.isnan(t_interval([2.0])[1])


def test_verdicts_of_intervals():
    assert verdict(1.1, 1.5, (">", 1.0), 5, 3) == "holds"
    assert verdict(0.2, 0.9, (">", 1.0), 5, 3) == "fails"
    assert verdict(0.9, 1.2, (">", 1.0), 5, 3) == "inconclusive"
    assert verdict(1.1, 1.5, (">", 1.0), 2, 3) == "inconclusive"  # too few seeds
    assert verdict(-0.5, -0.1, ("<", 0.0), 4, 3) == "holds"
    assert verdict(math.nan, math.nan, (">", 1.0), 0, 3) == "no runs"


def test_a_claim_that_holds_one_that_fails_one_inconclusive_per_setting():
    table = _runs(_students([1.3, 1.4, 1.5, 1.35], "holds") + _students([0.5, 0.6, 0.55], "fails")
                  + _students([0.5, 1.5, 1.0], "straddles") + [{"role": "teacher", "setting": "holds", "seed": "0"}])
    result = evaluate(table, _claim(expect="holds"))
    by_setting = dict(zip(result["setting"], result["verdict"]))
    assert by_setting == {"holds": "holds", "fails": "fails", "straddles": "inconclusive"}
    row = result.filter(pl.col("setting") == "holds").row(0, named=True)
    assert row["n"] == 4 and math.isclose(row["estimate"], 1.3875)
    assert contradictions(result)["setting"].to_list() == ["fails"]


def test_no_runs_and_a_missing_metric_say_why():
    table = _runs(_students([1.2, 1.3, 1.4]))
    nothing = evaluate(table, _claim(select={"role": "student", "preset": "cifar"})).row(0, named=True)
    assert nothing["verdict"] == "no runs" and nothing["n"] == 0 and "no run matches" in nothing["setting"]
    missing = evaluate(table, _claim(statistic="train/mislabeled_underfit_frac")).row(0, named=True)
    assert missing["verdict"] == "no runs" and "3 selected runs lack" in missing["setting"]


def test_a_paired_difference_matches_runs_by_seed():
    # Students beat their one-hot baselines by 0.01, 0.015, 0.02 on seeds 0-2 (mean 0.015, 95% CI
    # 0.015 -+ 4.303 * 0.005 / sqrt(3) = [0.0026, 0.0274]); the seed-3 student has no baseline.
    students = _students([0.81, 0.815, 0.82, 0.99], metric="test/acc")
    baselines = [{"role": "onehot", "setting": "mnist", "preset": "mnist", "seed": str(s), "m:test/acc": 0.8}
                 for s in range(3)]
    claim = _claim(statistic={"metric": "test/acc", "minus": {"metric": "test/acc", "select": {"role": "onehot"}}},
                   test="> 0")
    row = evaluate(_runs(students + baselines), claim).row(0, named=True)
    assert row["n"] == 3 and math.isclose(row["estimate"], 0.015) and row["verdict"] == "holds"
    assert math.isclose(row["ci_low"], 0.015 - 4.3026527 * 0.005 / math.sqrt(3), rel_tol=1e-5)


def test_a_difference_within_one_run():
    rows = _students([0.9, 0.9, 0.9], metric="test/student_acc")
    for row, b in zip(rows, (0.5, 0.6, 0.7)):
        row["m:test/teacher_acc"] = b
    claim = _claim(statistic={"metric": "test/student_acc", "minus": {"metric": "test/teacher_acc"}}, test="> 0")
    row = evaluate(_runs(rows), claim).row(0, named=True)
    assert math.isclose(row["estimate"], 0.3) and row["verdict"] == "holds"


def test_selecting_an_absent_value_and_lists():
    rows = _students([1.2, 1.3, 1.4], switch_to="onehot") + _students([0.1, 0.2, 0.3], switch_to=None)
    plain = evaluate(_runs(rows), _claim(select={"role": "student", "switch_to": None}))
    assert plain["verdict"].to_list() == ["fails"]
    both = evaluate(_runs(rows), _claim(select={"role": ["student", "x"], "switch_to": ["onehot"]}))
    assert both["verdict"].to_list() == ["holds"]


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"test": "about 1"}, "test: 'about 1' must be a comparison"),
    ({"select": {"m:acc": "high"}}, "select: 'high' must be a comparison"),
    ({"expect": "maybe"}, "expect: Input should be 'holds' or 'fails'"),
    ({"min_seeds": 0}, "min_seeds: Input should be greater than or equal to 1"),
    ({"statistic": "test/slop_bottom25"}, "statistic: 'test/slop_bottom25' is not a metric kdtrack logs"),
    ({"statistic": {"metric": "test/acc", "minus": {"metric": "tst/acc"}}},
     "statistic.minus: 'tst/acc' is not a metric kdtrack logs"),
    ({"select": {"m:teacher/trainacc": "> 0.99"}}, "select.m:teacher/trainacc: 'teacher/trainacc' is not a metric"),
])
def test_claim_errors_are_one_line_naming_the_key(change, message):
    with pytest.raises(UserError, match="paper.yaml: claim 'c': ") as error:
        _claim(**change)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_duplicate_ids_are_refused():
    claim = {"id": "c", "text": "t", "source": "s", "select": {}, "statistic": "test/acc", "test": "> 0"}
    with pytest.raises(UserError, match="claim id 'c' is declared twice"):
        parse([claim, claim], "d.yaml")


def test_metric_conditions_select_runs_and_exact_claims_need_one_seed():
    rows = _students([1.2, 1.3, 1.4]) + _students([0.2, 0.3, 0.4], "noisy")
    for row in rows:
        row["m:teacher/train_acc"] = 1.0 if row["setting"] == "mnist" else 0.8
    interpolating = evaluate(_runs(rows), _claim(select={"role": "student", "m:teacher/train_acc": ">= 0.999"}))
    assert interpolating["setting"].to_list() == ["mnist"] and interpolating["verdict"].to_list() == ["holds"]
    exact = [{"role": "theory", "setting": "theory", "seed": "0", "m:theory/closed_form_holds_frac": 1.0}]
    claim = _claim(select={"role": "theory"}, statistic="theory/closed_form_holds_frac", test=">= 1", min_seeds=1)
    assert evaluate(_runs(exact), claim)["verdict"].to_list() == ["holds"]


def _store_with_students(experiment: str, slopes: list[float], stale_slope: float,
                         preset: str = "tinyimagenet") -> None:
    """Students of one setting (the runs distill writes), each with a FINISHED analysis of this
    code; the first also has a newer analysis of other code whose slope must not count."""
    from mlflow.entities import Metric, Param

    from kdtrack import code_version, tracking
    from kdtrack.contract import CODE_VERSION, ROLE, STUDENT_RUN

    client = tracking.client()
    experiment_id = client.create_experiment(experiment)
    clock = 1_700_000_000_000

    def run(role, params, metrics, tags=(), version=None):
        nonlocal clock
        clock += 1000
        run_id = client.create_run(experiment_id, start_time=clock, tags={
            ROLE: role, CODE_VERSION: version or code_version(), **dict(tags)}).info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric(k, v, clock, 0) for k, v in metrics.items()])
        client.set_terminated(run_id, "FINISHED")
        return run_id

    for seed, slope in enumerate(slopes):
        student = run("student", {"preset": preset, "arch": "mlp", "label_noise": "0.0", "seed": str(seed)},
                      {"test/acc": 0.9, "test/slope_bottom25": stale_slope})  # the copy on the student
        run("analysis", {"student_run_id": student}, {"test/slope_bottom25": slope}, {STUDENT_RUN: student})
        if seed == 0:
            run("analysis", {"student_run_id": student}, {"test/slope_bottom25": stale_slope},
                {STUDENT_RUN: student}, version="0ldc0de0ld00")


def test_claims_command_reads_the_counted_analyses_and_strict_fails_on_a_contradiction(store, tmp_path):
    import json

    from click.testing import CliRunner

    from kdtrack.cli.main import main

    _store_with_students("claims-fail", [0.5, 0.6, 0.55], stale_slope=5.0)
    _store_with_students("claims-hold", [1.3, 1.4, 1.5], stale_slope=0.1)
    rows = {}
    for experiment in ("claims-fail", "claims-hold"):
        result = CliRunner().invoke(main, ["claims", "--experiment", experiment, "--format", "json"])
        assert result.exit_code == 0, result.output
        rows[experiment] = {r["id"]: r for r in json.loads(result.stdout)}
    failing = rows["claims-fail"]["slope-test"]
    assert failing["n"] == 3 and abs(failing["estimate"] - 0.55) < 1e-9 and failing["verdict"] == "fails"
    assert failing["expect"] == "holds" and failing["ci_low"] < 0.55 < failing["ci_high"]
    assert rows["claims-hold"]["slope-test"]["verdict"] == "holds"
    assert rows["claims-hold"]["eigen-exaggeration"]["verdict"] == "no runs"
    assert failing["verdict_holm"] == "fails" and failing["paper"] and "seeds_needed" in failing
    assert failing["p_opposite"] < 0.025 < failing["p"]
    strict = CliRunner().invoke(main, ["claims", "--experiment", "claims-fail", "--strict"])
    assert strict.exit_code == 1 and "contradict the paper: slope-test" in strict.stderr
    assert "paper" in strict.stdout and "seeds needed (est.)" in strict.stdout
    # the terminal's columns are the report's: verdict first, the claim's text whole, the short name
    header = next(line for line in strict.stdout.splitlines() if "estimate [95% CI]" in line)
    assert header.split()[1] == "verdict" and header.index(" id ") < header.index(" claim ") < header.index(" setting ")
    assert "settings:\n  tinyimagenet: tinyimagenet mlp>mlp noise=0.0\n" in strict.stdout
    assert failing["setting"] == "tinyimagenet mlp>mlp noise=0.0" and failing["setting_name"] == "tinyimagenet"
    assert "equivalently a one-sided t test at 2.5%" in strict.stdout
    assert "--strict reads the Holm verdict" in strict.stdout
    assert CliRunner().invoke(main, ["claims", "--experiment", "claims-hold", "--strict"]).exit_code == 0
    # Tables 3-4 have no MNIST row: the same failing slopes there contradict nothing the paper says
    _store_with_students("claims-mnist", [0.5, 0.6, 0.55], stale_slope=5.0, preset="mnist_mlp")
    mnist = CliRunner().invoke(main, ["claims", "--experiment", "claims-mnist", "--format", "json", "--strict"])
    assert mnist.exit_code == 0, mnist.output
    row = {r["id"]: r for r in json.loads(mnist.stdout)}["slope-test"]
    assert (row["verdict"], row["expect"], row["paper"]) == ("fails", "", "-")
    html = CliRunner().invoke(main, ["report", "--experiment", "claims-fail", "--out", str(tmp_path)])
    assert html.exit_code == 0, html.output
    text = (tmp_path / "report.html").read_text()
    assert text.index("<h2>Claims</h2>") < text.index("<h2>Runs</h2>") and "#ffcdd2" in text


def test_a_theory_run_without_a_preset_is_a_setting_of_its_own():
    from kdtrack.report.collect import TEXT, setting_of

    rows = [{c: None for c in TEXT} | {"role": "theory", "seed": "0", "m:theory/closed_form_holds_frac": 1.0},
            {c: None for c in TEXT} | {"role": "student", "preset": "mnist_mlp", "arch": "mlp", "label_noise": "0.0",
                                       "seed": "0", "m:theory/closed_form_holds_frac": None}]
    claim = _claim(select={"role": "theory"}, statistic="theory/closed_form_holds_frac", test=">= 1", min_seeds=1)
    table = pl.DataFrame(rows, schema_overrides={c: pl.String for c in TEXT})  # typed as runs_table types them
    row = evaluate(setting_of(table), claim).row(0, named=True)
    assert (row["setting"], row["n"], row["verdict"]) == ("theory", 1, "holds")


def test_a_students_distillation_is_self_where_it_has_its_teachers_architecture():
    from kdtrack.report.collect import TEXT, setting_of

    def student(arch, teacher_arch):
        return {c: None for c in TEXT} | {"role": "student", "preset": "p", "arch": arch,
                                          "teacher_arch": teacher_arch, "label_noise": "0.0"}

    rows = [student("resnet56", ""), student("resnet56", "resnet56"), student("resnet20", "resnet56"),
            {c: None for c in TEXT} | {"role": "teacher", "preset": "p", "arch": "resnet56", "label_noise": "0.0"}]
    table = setting_of(pl.DataFrame(rows, schema_overrides={c: pl.String for c in TEXT}))
    assert table["distillation"].to_list() == ["self", "self", "cross", None]


def test_students_are_grouped_by_kd_loss_and_only_their_own_methods_weights():
    """A student stored before kd_loss existed is plain KD's, and a method's weights name only its own
    setting: kd and ls students show none, so old and new plain-KD seeds are one setting."""
    from kdtrack.report.collect import TEXT, known_params, setting_of

    defaults = {"dkd_alpha": "1.0", "dkd_beta": "8.0", "dist_beta": "1.0", "dist_gamma": "1.0"}
    stored = [{}, {"kd_loss": "kd", **defaults}, {"kd_loss": "dkd", **defaults}, {"kd_loss": "ls", **defaults}]
    base = {"preset": "p", "arch": "mlp", "label_noise": "0.0"}
    def known(params: dict, role: str) -> list[dict]:
        row = {c: None for c in TEXT} | {"role": role} | params
        return known_params(pl.DataFrame([row], schema_overrides={c: pl.String for c in TEXT})).to_dicts()

    rows = [row for params in stored for row in known({**base, **params}, "student")]
    assert known({**base, "kd_loss": "dist", **defaults}, "student")[0]["dist_gamma"] == "1.0"
    assert known(base, "teacher")[0]["kd_loss"] is None  # a teacher distills nothing
    settings = setting_of(pl.DataFrame(rows, schema_overrides={c: pl.String for c in TEXT}))["setting"].to_list()
    plain = "p mlp>mlp noise=0.0 kd_loss=kd dkd_alpha=- dkd_beta=-"
    assert settings == [plain, plain, "p mlp>mlp noise=0.0 kd_loss=dkd dkd_alpha=1.0 dkd_beta=8.0",
                        "p mlp>mlp noise=0.0 kd_loss=ls dkd_alpha=- dkd_beta=-"]
