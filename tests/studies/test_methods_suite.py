"""The `methods` suite and dashboard (issue 32, item 3): the suite pairs each
KD method with plain KD by seed and teacher, plans through the command, and the dashboard's claims
evaluate as paired differences on hand-built runs. The methods end to end: tests/cli/test_kd_methods.py."""
import math

import polars as pl
from click.testing import CliRunner

from kdtrack.cli.main import main
from kdtrack.config import key_params
from kdtrack.report.claims import evaluate
from kdtrack.report.collect import setting_of
from kdtrack.report.dashboard import load
from kdtrack.studies import suite as suites


def test_the_suite_pairs_every_method_with_plain_kd_by_seed_and_teacher(store):
    suite = suites.load("methods")
    assert len(suite.tasks) == 3 * 4 * 10  # 3 settings x (plain KD + 3 methods) x 10 seeds
    groups: dict = {}
    for task in suite.tasks:
        groups.setdefault((task.setting, task.seed), []).append(task.config())
    assert len(groups) == 30
    for configs in groups.values():
        assert sorted(c.kd_loss for c in configs) == ["dist", "dkd", "kd", "ls"]
        assert len({tuple(sorted(key_params(c.teacher_config).items())) for c in configs}) == 1  # one teacher
        assert len({(c.temperature, c.distill_weight) for c in configs}) == 1  # only the KD term differs
    assert {(c.train_size, c.width) for c in groups[("interpolating", 0)]} == {(512, 256)}
    plan = CliRunner().invoke(main, ["suite", "run", "methods", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    lines = [line for line in plan.output.splitlines() if " seed 4 " in line and "mnist_mlp" in line]
    assert len(lines) == 4 and sorted(line.split()[-1] for line in lines) == ["dist", "distill", "dkd", "ls"]


def _runs() -> pl.DataFrame:
    """Plain KD and DKD on 4 seeds, each seed its own teacher: DKD is +0.01 test accuracy
    (+-0.002) and its bottom-25% gap is 0.05 less negative, paired."""
    rows = []
    for seed in range(4):
        for method, acc, gap in (("kd", 0.80 + 0.01 * seed, -0.3), ("dkd", 0.81 + 0.01 * seed + 0.002 * (-1) ** seed,
                                                                    -0.25)):
            rows.append({"role": "student", "preset": "noisy_mnist_rf", "arch": "random_features", "teacher_arch": "",
                         "label_noise": "0.25", "seed": str(seed), "teacher_run_id": f"teacher{seed}",
                         "switch_to": None, "kd_loss": method, "dkd_alpha": "1.0" if method == "dkd" else None,
                         "dkd_beta": "8.0" if method == "dkd" else None, "m:test/acc": acc, "m:test/gap_bottom25": gap,
                         "m:train/mislabeled_underfit_frac": 0.9, "m:eigen/exaggerated_pair_frac": 0.8,
                         "m:test/slope_bottom25": 1.2})
    return setting_of(pl.DataFrame(rows, infer_schema_length=None))


def test_the_methods_dashboards_claims_are_paired_differences_against_plain_kd():
    board = load("methods")
    # no method is in the paper: only plain KD on Table 7's settings carries the paper's expectation
    assert all(claim.extension or claim.id in ("methods-gap-test", "methods-eigen-exaggeration")
               for claim in board.claims)
    results = evaluate(_runs(), board.claims)
    acc = results.filter(pl.col("id") == "methods-acc").row(0, named=True)
    assert "kd_loss=dkd" in acc["setting"] and acc["n"] == 4
    assert math.isclose(acc["estimate"], 0.01) and acc["verdict"] == "holds"
    gap = results.filter(pl.col("id") == "methods-gap-less").row(0, named=True)
    assert math.isclose(gap["estimate"], 0.05) and gap["verdict"] == "holds"
    underfit = results.filter(pl.col("id") == "methods-mislabeled-underfit").row(0, named=True)
    assert underfit["estimate"] == 0 and underfit["verdict"] == "fails"
    for claim in ("methods-gap-test", "methods-eigen-exaggeration"):  # plain KD and DKD, each on its own
        rows = results.filter(pl.col("id") == claim)
        assert rows.height == 2 and set(rows["verdict"]) == {"holds"}
        expected = dict(zip(rows["setting"].str.contains("kd_loss=dkd"), rows["expect"]))
        assert expected == {False: "holds", True: ""}  # plain KD's row: the paper's Fig. 18-19; DKD's: nothing
