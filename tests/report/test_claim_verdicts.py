"""Per-setting expectations, one-sided p-values, Holm families, trends and seeds needed, on
hand-built run tables and hand-computed numbers (kdtrack/report/claims.py, inference.py)."""
import math

import polars as pl
import pytest
from scipy import stats

from kdtrack.errors import UserError
from kdtrack.report.claims import EXTENSION, NOT_REPORTED, contradictions, evaluate, parse
from kdtrack.report.dashboard import load, shipped
from kdtrack.report.inference import holm, one_sided, seed_slopes, seeds_needed


def _claim(**changes):
    base = {"id": "c", "text": "t", "source": "Table 3", "select": {"role": "student"},
            "statistic": "test/slope_bottom25", "test": "> 1", "min_seeds": 3}
    return parse([{**base, **changes}], "paper.yaml")


def _students(values, preset, **extra):
    return [{"role": "student", "setting": preset, "preset": preset, "seed": str(seed),
             "m:test/slope_bottom25": value, **extra} for seed, value in enumerate(values)]


def _by_setting(result, column):
    return dict(zip(result["setting"], result[column]))


def test_every_shipped_dashboard_parses():
    assert set(shipped()) >= {"paper", "beyond", "switch", "ablations"}
    for name in shipped():
        board = load(name)
        assert board.sections and all(claim.id for claim in board.claims)


def test_a_one_sided_p_value_agrees_with_scipy():
    values = [1.2, 1.4, 1.3, 1.5]
    p, opposite = one_sided(values, 1.0, upward=True)
    assert math.isclose(p, stats.ttest_1samp(values, 1.0, alternative="greater").pvalue, rel_tol=1e-12)
    assert math.isclose(opposite, stats.ttest_1samp(values, 1.0, alternative="less").pvalue, rel_tol=1e-12)
    # by hand: mean 1.35, sd sqrt(0.05/3), t = 0.35 / (sd / 2) = 5.422; P(T_3 > 5.422)
    t = 0.35 / (math.sqrt(0.05 / 3) / 2)
    assert math.isclose(p, stats.t.sf(t, 3), rel_tol=1e-9) and p < 0.025
    below, above = one_sided(values, 1.0, upward=False)
    assert (below, above) == (opposite, p)
    assert all(math.isnan(v) for v in one_sided([1.0], 0.0, upward=True))


def test_holm_on_three_p_values_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04, raised to
    # the running maximum 0.06. Back in the input's order:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan, 0.9])[0] == pytest.approx(1.0) and math.isnan(holm([0.5, math.nan])[1])


def test_a_family_s_holm_verdicts_and_strict_uses_them():
    # Raw one-sided ps (t, 2 df): a 0.0192 (holds), b 0.0014 (holds), c's opposite side 0.0101
    # (fails). Holm over the family: a 2 * 0.0192 = 0.038 and c's opposite side 3 * 0.0101 = 0.030
    # are no longer below 0.025; b's 3 * 0.0014 = 0.004 still is.
    table = pl.DataFrame(_students([1.13, 1.2, 1.27], "a") + _students([2.0, 2.1, 2.2], "b")
                         + _students([0.5, 0.6, 0.7], "c"))
    result = evaluate(table, _claim(family="slopes", expect="holds"))
    assert _by_setting(result, "verdict") == {"a": "holds", "b": "holds", "c": "fails"}
    assert _by_setting(result, "verdict_holm") == {"a": "inconclusive", "b": "holds", "c": "inconclusive"}
    assert result["p_holm"].to_list() == pytest.approx(holm(result["p"].to_list()))
    raw = stats.ttest_1samp([1.13, 1.2, 1.27], 1.0, alternative="greater").pvalue
    assert _by_setting(result, "p")["a"] == pytest.approx(raw) and 0.0125 < raw < 0.025
    assert contradictions(result).is_empty()  # c fails only before the family's correction
    alone = evaluate(table, _claim(expect="holds"))
    assert alone["verdict_holm"].to_list() == alone["verdict"].to_list() and alone["p_holm"].null_count() == 3
    assert contradictions(alone)["setting"].to_list() == ["c"]


def test_a_family_of_one_row_decides_as_the_interval_does():
    for values in ([1.13, 1.2, 1.27], [1.0, 1.2, 1.4], [0.5, 0.6, 0.7]):
        row = evaluate(pl.DataFrame(_students(values, "a")), _claim(family="one")).row(0, named=True)
        assert row["verdict_holm"] == row["verdict"]


def _rules():
    return [{"select": {"preset": "cifar10_v1"}, "expect": "fails", "paper": "Table 3 exception: train slope 0.22"},
            {"select": {"preset": ["cifar100_v1", "cifar10_v1"]}, "expect": "holds", "paper": "Table 3: 1.3-1.6"},
            {"select": {"preset": "tinyimagenet"}, "expect": None, "paper": "Table 3: reported, no claim"}]


def test_per_setting_expectations_first_match_wins_and_no_match_reads_dash():
    table = pl.DataFrame(_students([1.3, 1.4, 1.5], "cifar100_v1") + _students([1.3, 1.4, 1.5], "cifar10_v1")
                         + _students([0.5, 0.6, 0.55], "mnist") + _students([0.5, 0.6, 0.55], "tinyimagenet"))
    result = evaluate(table, _claim(expect=_rules()))
    assert _by_setting(result, "expect") == {"cifar100_v1": "holds", "cifar10_v1": "fails", "mnist": "",
                                             "tinyimagenet": ""}
    assert _by_setting(result, "paper") == {"cifar100_v1": "Table 3: 1.3-1.6",
                                            "cifar10_v1": "Table 3 exception: train slope 0.22",
                                            "mnist": NOT_REPORTED, "tinyimagenet": "Table 3: reported, no claim"}
    # cifar10_v1 holds where the paper reports the exception; mnist and tinyimagenet fail where it claims nothing
    assert contradictions(result)["setting"].to_list() == ["cifar10_v1"]


def test_a_rule_attributes_the_paper_only_to_the_setting_it_states():
    """A rule on a preset speaks for its runs at the preset's values trained with Hinton's KD; an
    override (a sensitivity row, the switching study's interpolating teacher) or another KD method
    is kdtrack's own setting, "-". Table 2 lists several architectures under one Table 1 setting."""
    table7 = {"train_size": "128", "lr": "0.0001", "epochs": "20.0", "width": "1000", "kd_loss": "kd",
              "kd_target": "standard"}
    table1 = {"train_size": "0", "lr": "1.0", "epochs": "450.0", "width": "0", "kd_loss": "kd", "kd_target": "standard"}
    values = [1.3, 1.4, 1.5]
    table = pl.DataFrame(_students(values, "mnist_mlp", **table7) + _students(values, "mnist_mlp", **{
        **table7, "setting": "lr-x10", "lr": "0.001"}) + _students(values, "mnist_mlp", **{
        **table7, "setting": "dkd", "kd_loss": "dkd"}) + _students(values, "cifar10_v1", **{
        **table1, "setting": "resnet20", "arch": "resnet20"}) + _students(values, "cifar10_v1", **{
        **table1, "setting": "short", "epochs": "45"}))
    rules = [{"select": {"preset": "mnist_mlp"}, "expect": "holds", "paper": "Fig. 18"},
             {"select": {"preset": "cifar10_v1"}, "expect": "fails", "paper": "Table 3"}]
    result = evaluate(table, _claim(expect=rules))
    assert _by_setting(result, "paper") == {"mnist_mlp": "Fig. 18", "lr-x10": NOT_REPORTED, "dkd": NOT_REPORTED,
                                            "resnet20": "Table 3", "short": NOT_REPORTED}
    assert _by_setting(result, "expect") == {"mnist_mlp": "holds", "lr-x10": "", "dkd": "", "resnet20": "fails",
                                             "short": ""}


def test_scalar_and_extension_claims_paper_column_and_strict():
    table = pl.DataFrame(_students([0.5, 0.6, 0.55], "mnist"))
    scalar = evaluate(table, _claim(expect="holds")).row(0, named=True)
    assert (scalar["expect"], scalar["paper"]) == ("holds", "Table 3")
    worded = evaluate(table, _claim(expect="holds", paper="Table 3: slopes 1.3-1.6")).row(0, named=True)
    assert worded["paper"] == "Table 3: slopes 1.3-1.6"
    extension = evaluate(table, _claim(extension=True))
    assert extension.row(0, named=True)["paper"] == EXTENSION == "kdtrack's extension"
    assert extension["verdict"].to_list() == ["fails"] and contradictions(extension).is_empty()


@pytest.mark.parametrize("change, message", [
    ({"extension": True, "expect": "holds"}, "expect: an extension claim is kdtrack's own"),
    ({"extension": True, "paper": "Table 3"}, "paper: an extension claim is kdtrack's own"),
    ({"expect": [{"select": {}, "expect": "holds", "paper": "x"}], "paper": "y"}, "paper: with a list of rules"),
    ({"expect": [{"select": {}, "paper": "x", "colour": 1}]}, "expect: 0: colour: Extra inputs are not permitted"),
    ({"expect": [{"select": {}, "expect": "holds"}]}, "expect: 0: paper: Field required"),
    ({"expect": [{"select": {}, "expect": "maybe", "paper": "x"}]}, "expect: 0: expect: Input should be 'holds'"),
    ({"expect": [{"select": {"m:tst/acc": "> 0"}, "paper": "x"}]}, "expect.0.select.m:tst/acc: 'tst/acc' is not"),
    ({"expect": "maybe"}, "expect: Input should be 'holds' or 'fails'"),
])
def test_expectation_errors_are_one_line_naming_the_claim_and_key(change, message):
    with pytest.raises(UserError, match="paper.yaml: claim 'c': ") as error:
        _claim(**change)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_trend_over_a_graded_param_has_the_seeds_mean_slope():
    # Seeds 0-2 rise by 0.4, 0.5, 0.6 per unit of confidence_power from intercepts 0, 10, -5 (the
    # seeds' levels differ far more than their slopes): slope 0.5, 95% CI 0.5 -+ 4.303 * 0.1 / sqrt(3).
    rows = []
    for seed, (intercept, slope) in enumerate([(0.0, 0.4), (10.0, 0.5), (-5.0, 0.6)]):
        for power in (0.0, 1.0, 2.0):
            rows += [{"role": "student", "setting": f"power={power}", "preset": "p", "seed": str(seed),
                      "confidence_power": str(power), "m:test/slope_bottom25": intercept + slope * power}]
    row = evaluate(pl.DataFrame(rows), _claim(trend="confidence_power", test="> 0")).row(0, named=True)
    assert row["setting"] == "trend over confidence_power (3 levels)" and row["n"] == 3
    assert math.isclose(row["estimate"], 0.5) and row["verdict"] == "holds"
    assert math.isclose(row["ci_low"], 0.5 - 4.3026527 * 0.1 / math.sqrt(3), rel_tol=1e-6)
    assert seed_slopes({"0": [(0.0, 1.0), (2.0, 2.0)], "1": [(1.0, 3.0)]}) == [0.5]  # one level: no slope
    one_level = evaluate(pl.DataFrame([r for r in rows if r["confidence_power"] == "1.0"]),
                         _claim(trend="confidence_power", test="> 0")).row(0, named=True)
    assert "1 level; a slope needs 2 or more" in one_level["setting"] and one_level["verdict"] == "inconclusive"
    absent = evaluate(pl.DataFrame(rows), _claim(trend="kd_strength", test="> 0")).row(0, named=True)
    assert "no column 'kd_strength'" in absent["setting"] and absent["verdict"] == "no runs"


def test_seeds_needed_by_hand():
    # mean 1.1, sd 0.2, distance 0.1 from the threshold 1: the normal estimate is
    # ((1.95996 + 0.84162) * 2)^2 = 31.4 -> 32 seeds; with t quantiles 34 is the first n that
    # satisfies n >= ((t_{0.975, n-1} + t_{0.8, n-1}) * 2)^2 (33 needs 33.4).
    values = [0.9, 1.1, 1.3]
    assert math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 2) ** 2) == 32
    for n, enough in ((33, False), (34, True)):
        assert bool(n >= ((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * 2) ** 2) is enough
    assert seeds_needed(values, 1.0) == 34
    assert seeds_needed([1.1], 1.0) is None and seeds_needed([1.0, 1.0], 1.0) is None
    table = pl.DataFrame(_students(values, "unsure") + _students([1.3, 1.4, 1.5], "sure"))
    result = evaluate(table, _claim())
    assert _by_setting(result, "seeds_needed") == {"unsure": 34, "sure": None}


def test_the_shown_table_puts_the_verdict_first_and_the_estimate_with_its_interval():
    from kdtrack.report.verdicts import shown

    table = pl.DataFrame(_students([0.9, 1.1, 1.3], "cifar100_v1") + _students([1.3, 1.4, 1.5], "mnist")
                         + _students([1.2], "one-seed"))
    results = evaluate(table, _claim(expect=_rules())).with_columns(pl.col("setting").alias("setting_name"))
    plain = shown(results, several_experiments=False)
    assert plain.columns == ["verdict", "id", "claim", "setting", "n", "estimate [95% CI]", "test", "expect", "paper",
                             "seeds needed (est.)"]
    # mean 1.1, sd 0.2: 1.1 -+ t_{0.975,2} * 0.2 / sqrt(3) = 1.1 -+ 4.303 * 0.1155 = [0.603, 1.597]
    assert plain.row(0, named=True) == {
        "verdict": "inconclusive", "id": "c", "claim": "t", "setting": "cifar100_v1", "n": 3,
        "estimate [95% CI]": "1.1 [0.603, 1.6]", "test": "test/slope_bottom25 > 1", "expect": "holds",
        "paper": "Table 3: 1.3-1.6", "seeds needed (est.)": "34"}
    assert plain.row(1, named=True)["paper"] == "-" and plain.row(1, named=True)["seeds needed (est.)"] == ""
    assert plain.row(2, named=True)["estimate [95% CI]"] == "1.2 [-]"  # one seed: no interval, no NaN
    nothing = evaluate(table, _claim(select={"role": "nobody"})).with_columns(pl.col("setting").alias("setting_name"))
    assert shown(nothing, False)["estimate [95% CI]"].to_list() == ["-"]
    family = shown(results.with_columns(pl.lit("f").alias("family")).insert_column(0, pl.lit("x").alias("experiment")),
                   True)
    assert family.columns[:4] == ["verdict", "verdict (Holm)", "experiment", "id"]
