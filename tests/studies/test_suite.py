"""Declarative suites end to end on the embedded data: one setting, one seed, then a second."""
import pytest
from click.testing import CliRunner

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.cli.main import main
from kdtrack.config import AnalyzeConfig
from kdtrack.errors import UserError
from kdtrack.studies import suite as suites

SUITE = """
experiment: suite-test
settings:
  - name: mlp
    preset: mnist_mlp
    overrides: {train_size: 64, width: 32, epochs: 2, batch_size: 32}
    seeds: SEEDS
analysis: {figures: false, quantile: 0.2}
"""


def write(tmp_path, seeds="[0]"):
    path = tmp_path / "small.yaml"
    path.write_text(SUITE.replace("SEEDS", seeds))
    return str(path)


def students():
    experiment = tracking.client().get_experiment_by_name("suite-test")
    return tracking.search_all([experiment.experiment_id], "tags.`kdtrack.role` = 'student'") if experiment else []


def test_a_suite_trains_once_then_only_what_is_added(store, tmp_path):
    path = write(tmp_path)
    dry = CliRunner().invoke(main, ["suite", "run", path, "--dry-run"])
    assert dry.exit_code == 0 and not students()  # the plan, nothing trained

    first = suites.run(suites.load(path))
    assert len(students()) == 1 and len(first) == 2  # the student and its analysis
    assert {s.data.tags["kdtrack.suite"] for s in students()} == {"small/mlp"}
    analysis = tracking.get_run(first[1])  # the suite's `analysis` fields: its numbers, no figures drawn
    assert analysis.data.params["figures"] == "false" and "test/slope_bottom20" in analysis.data.metrics
    assert not tracking.client().list_artifacts(first[1], "figures")
    reanalyzed_without_weights(*first)

    assert suites.run(suites.load(path)) == []  # everything is done: nothing trains
    assert len(students()) == 1

    more = write(tmp_path, "[0, 1]")
    assert [state for _, state in suites.status(suites.load(more))].count("missing") == 1
    unfinished = students()[0]  # a killed run shows as failed and is resumed by the next run
    tracking.client().set_terminated(unfinished.info.run_id, "KILLED")
    states = dict((t.label, state) for t, state in suites.status(suites.load(more)))
    assert list(states.values()).count("failed") == 1
    tracking.client().set_terminated(unfinished.info.run_id, "FINISHED")
    suites.run(suites.load(more))
    seeds = sorted((s.data.tags["kdtrack.suite"], s.data.params["seed"]) for s in students())
    assert seeds == [("small/mlp", "0"), ("small/mlp", "1")]  # only seed 1 was added
    status = CliRunner().invoke(main, ["suite", "status", more])
    assert status.exit_code == 0 and status.output.count("done") == 2


def reanalyzed_without_weights(student: str, analysis: str) -> None:
    """An analyzed study student keeps no weights; an analysis with other parameters takes Fig. 17's
    table and the §D.7 projections from the first one, and finds the same eigen metrics."""
    gone = ("checkpoints/final.pt", "eigen/last_layer_weights.pt")
    assert not any(tracking.has_artifact(student, path) for path in gone)
    assert tracking.has_artifact(student, "confidences/train.parquet")
    [again] = analyze(AnalyzeConfig(student_run_id=student, quantile=0.3, figures=False))
    assert again != analysis
    eigen = [{k: v for k, v in tracking.get_run(run).data.metrics.items() if k.startswith("eigen/")}
             for run in (analysis, again)]
    assert "eigen/layer3_exaggerated_pair_frac" in eigen[0] and eigen[0] == eigen[1]
    for table in ("eigen/top_k_accuracy.parquet", "eigen/layer3_trajectory.parquet",
                  "eigen/layer3_displacement.parquet"):
        assert tracking.load_table(again, table).equals(tracking.load_table(analysis, table)), table


def test_a_malformed_suite_names_the_file_and_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nsettings:\n  - name: a\n    preset: mnist_mlp\n    seed: [0]\n")
    with pytest.raises(UserError, match=r"bad.yaml.*unknown key 'seed'.*allowed: .*seeds"):
        suites.load(str(bad))
    bad.write_text("experiment: x\nsettings:\n  - name: a\n    preset: mnist_mlp\n    overrides: {lr: -1}\n")
    with pytest.raises(UserError, match=r"setting 'a': lr=-1.0 is out of range"):
        suites.load(str(bad))
    bad.write_text("experiment: x\nsetting: []\n")  # top-level keys: checked by the loader dashboards share
    with pytest.raises(UserError, match=r"bad.yaml': unknown key 'setting'; allowed: experiment, settings"):
        suites.load(str(bad))
    setting = "settings:\n  - {name: a, preset: mnist_mlp}\n"
    bad.write_text(setting + "analysis: {figures: maybe}\n")
    with pytest.raises(UserError, match=r"bad.yaml': analysis: figures='maybe' is not"):
        suites.load(str(bad))
    bad.write_text(setting + "analysis: {student_run_id: abc}\n")
    with pytest.raises(UserError, match=r"analysis.student_run_id is not allowed; allowed: the fields of analyze"):
        suites.load(str(bad))
    with pytest.raises(UserError, match=r"suite 'nope' is neither a shipped one \(.*table7.*\) nor a file"):
        suites.load("nope")
    assert len(suites.load("table7").tasks) == 30  # the shipped suite: 3 settings x 10 seeds


def test_a_matrix_expands_the_cross_product(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("experiment: m\nsettings:\n  - name: s\n    preset: mnist_mlp\n"
                    "    matrix: {arch: [mlp, random_features], label_noise: [0.0, 0.25]}\n"
                    "    teacher: {arch: mlp}\n    students: [{loss: distill}, {loss: switch, switch_to: onehot}]\n"
                    "    seeds: [0, 1, 2]\n")
    tasks = suites.load(str(path)).tasks
    assert len(tasks) == 2 * 2 * 2 * 3
    assert {t.setting for t in tasks} >= {"s[arch=mlp,label_noise=0.0]", "s[arch=random_features,label_noise=0.25]"}
    assert all(t.params["teacher_arch"] == "mlp" for t in tasks)


@pytest.mark.parametrize("name,count", [("table2-cifar100", 7), ("table2-cifar10", 4), ("table2-tinyimagenet", 4),
                                        ("table2-imagenet", 3), ("table2-text", 12)])
def test_table2_suites_expand_to_the_papers_rows(name, count):
    suite = suites.load(name)  # five seeds of each row: a claim needs three for an interval
    assert len(suite.tasks) == 5 * count and all(t.config().eigen is False for t in suite.tasks)


def test_table2_text_fine_tunes_each_models_own_checkpoint():
    configs = [t.config() for t in suites.load("table2-text").tasks]
    for config in configs:
        assert config.pretrained == f"checkpoints/{config.arch.replace('_', '-')}"
        assert config.teacher_config.pretrained == f"checkpoints/{config.teacher_config.arch.replace('_', '-')}"
    assert sum(c.teacher_arch != c.arch for c in configs) == 6 * 5  # Table 2's cross-architecture text rows


def test_table2_without_the_data_skips_each_setting_with_its_path(store, capfd):
    assert suites.run(suites.load("table2-tinyimagenet")) == []
    err = capfd.readouterr().err
    assert err.count("skipping setting") == 2 and "tiny-imagenet-200" in err
    assert suites.run(suites.load("table2-text")) == []
    err = capfd.readouterr().err
    assert err.count("skipping setting") == 10 and "mnli not found under data/mnli" in err
