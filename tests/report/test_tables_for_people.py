"""What makes a report readable at hundreds of runs, on hand-built tables: settings' short names
(kdtrack/report/settings.py), the Runs section per setting and the run list (tables.py), numbers
right-aligned (render.py) and figures paged (sections.py)."""
import polars as pl

from kdtrack.report import tables
from kdtrack.report.render import markdown_table, numeric_columns
from kdtrack.report.settings import legend, named, short_names

LONG = "mnist_mlp mlp>mlp noise=0.0 width=1000 depth=2 batch_size=32 lr=0.0001 epochs=20"


def test_a_setting_alone_in_its_group_is_named_by_the_group():
    names = named({LONG: "mnist_mlp", "noisy_mnist_rf rf>rf noise=0.2 width=5000 depth=1 batch_size=32 lr=0.1 "
                   "epochs=20": "noisy_mnist_rf"})
    assert sorted(names.values()) == ["mnist_mlp", "noisy_mnist_rf"]


def test_settings_sharing_a_group_add_what_tells_them_apart_and_leave_out_what_is_unset():
    plain = "mnist_mlp mlp>mlp noise=0.0 switch_to=- switch_at=- fit=1.0"
    early = "mnist_mlp mlp>mlp noise=0.0 switch_to=onehot switch_at=0.5 fit=1.0"
    late = "mnist_mlp mlp>mlp noise=0.0 switch_to=onehot switch_at=0.75 fit=1.0"
    cross = "mnist_mlp mlp>rf noise=0.0 switch_to=- switch_at=- fit=0.5"
    names = named({plain: "interpolating", early: "interpolating", late: "interpolating", cross: "mnist_mlp"})
    assert names == {plain: "interpolating", early: "interpolating switch_to=onehot switch_at=0.5",
                     late: "interpolating switch_to=onehot switch_at=0.75", cross: "mnist_mlp"}
    by_arch = named({"p a>b noise=0.0": "p", "p a>c noise=0.0": "p"})
    assert sorted(by_arch.values()) == ["p a>b", "p a>c"]


def test_a_name_two_settings_would_share_falls_back_to_the_setting():
    # a suite setting whose name is what a preset's generated one would be
    alone, slow, fast = "p a>a noise=0.0 lr=0.3", "p a>a noise=0.0 lr=0.1", "p a>a noise=0.0 lr=0.2"
    names = named({alone: "p lr=0.2", slow: "p", fast: "p"})
    assert names == {alone: alone, slow: "p lr=0.1", fast: fast}
    mixed = named({"p a>a noise=0.0": "both", "q a>a noise=0.0": "both"})  # a group of two presets
    assert sorted(mixed.values()) == ["both p", "both q"]


def _runs(rows):
    columns = ("experiment", "run_id", "role", "status", "setting", "preset", "seed", "suite", "teacher_run_id",
               "student_run_id", "dataset", "arch")
    return pl.DataFrame([{c: row.get(c) for c in columns} | {"artifact_bytes": row.get("bytes", 0)} for row in rows],
                        schema={**{c: pl.String for c in columns}, "artifact_bytes": pl.Int64})


def test_short_names_take_the_suite_setting_its_students_carry():
    other = LONG.replace("lr=0.0001", "lr=0.2")
    runs = _runs([{"role": "student", "setting": LONG, "preset": "mnist_mlp", "suite": "table7/mlp-wide"},
                  # a teacher serving two suite settings carries the first one's tag: the students decide
                  {"role": "teacher", "setting": LONG, "preset": "mnist_mlp", "suite": "table7/other"},
                  {"role": "student", "setting": other, "preset": "mnist_mlp", "suite": "sweep/fast"},
                  {"role": "student", "setting": other, "preset": "mnist_mlp", "suite": "sweep/slow"},
                  {"role": "theory", "setting": "theory"}])
    names = short_names(runs)
    assert names == {LONG: "mlp-wide", other: "mnist_mlp"}  # two suite names: the preset's group
    assert legend(names) == {"mlp-wide": LONG, "mnist_mlp": other}
    assert short_names(runs.drop("suite")) == {LONG: "mnist_mlp lr=0.0001", other: "mnist_mlp lr=0.2"}


def test_the_runs_section_has_a_row_per_setting_and_counts_each_kind_of_run():
    rows = [{"run_id": "t", "role": "teacher", "status": "FINISHED", "setting": "t-setting", "bytes": 1000},
            {"run_id": "u", "role": "teacher", "status": "FINISHED", "setting": "t-setting", "bytes": 10},
            *({"run_id": f"s{i}", "role": "student", "status": "FINISHED", "setting": "A", "seed": str(i),
               "teacher_run_id": "t", "bytes": 100} for i in range(3)),
            {"run_id": "k", "role": "student", "status": "KILLED", "setting": "A", "seed": "3", "teacher_run_id": "t"},
            {"run_id": "b0", "role": "student", "status": "FINISHED", "setting": "B", "seed": "0",
             "teacher_run_id": "t"},
            *({"run_id": f"a{i}", "role": "analysis", "status": "FINISHED", "setting": "analysis",
               "student_run_id": f"s{i}", "bytes": 1} for i in range(3)),
            {"run_id": "old", "role": "analysis", "status": "FINISHED", "setting": "analysis", "student_run_id": "s0"},
            {"run_id": "th", "role": "theory", "status": "FINISHED", "setting": "theory"}]
    table = _runs([{"experiment": "e", **row} for row in rows])
    kept = table.filter(~pl.col("run_id").is_in(["k", "old"]))
    summary = tables.by_setting(table, kept, {"A": "short A"})
    assert summary.columns == ["experiment", "setting", "seeds", "teachers", "students", "analyses counted",
                               "analyses not counted", "other runs", "artifacts"]
    rows = {row["setting"]: row for row in summary.iter_rows(named=True)}
    assert set(rows) == {"short A", "B", "t-setting", "theory"}
    assert rows["short A"] | {"experiment": None} == {
        "experiment": None, "setting": "short A", "seeds": 4, "teachers": 1, "students": "3 FINISHED, 1 KILLED",
        "analyses counted": 3, "analyses not counted": 1, "other runs": "", "artifacts": "1.3 kB"}  # 1000 + 300 + 3
    assert rows["B"]["teachers"] == 1 and rows["B"]["students"] == "1 FINISHED"  # t serves both settings
    assert rows["t-setting"]["teachers"] == 1 and rows["theory"]["other runs"] == "1 theory"  # u serves none


def test_the_run_list_shows_an_analysis_with_its_students_setting_and_seed():
    table = _runs([{"experiment": "e", "run_id": "s", "role": "student", "status": "FINISHED", "setting": LONG,
                    "preset": "mnist_mlp", "seed": "7", "dataset": "mnist5k", "arch": "mlp"},
                   {"experiment": "e", "run_id": "a", "role": "analysis", "status": "FINISHED", "setting": "analysis",
                    "student_run_id": "s"},
                   {"experiment": "e", "run_id": "x", "role": "analysis", "status": "FAILED", "setting": "analysis",
                    "student_run_id": "gone"}])
    listed = tables.run_list(table, table.filter(pl.col("run_id") != "x"), {LONG: "mnist_mlp"})
    analysis = listed.filter(pl.col("run_id") == "a").row(0, named=True)
    assert (analysis["setting name"], analysis["setting"], analysis["seed"], analysis["preset"]) == (
        "mnist_mlp", LONG, "7", "mnist_mlp")
    orphan = listed.filter(pl.col("run_id") == "x").row(0, named=True)
    assert (orphan["setting"], orphan["seed"], orphan["counted"]) == ("analysis", None, False)
    assert tables.runs_summary(table).filter(pl.col("run_id") == "a")["seed"].to_list() == ["7"]  # `kdtrack runs`


def test_numbers_are_right_aligned_and_text_left():
    frame = pl.DataFrame({"verdict": ["holds", "fails"], "n": [10, 1], "estimate [95% CI]": ["0.905 [0.886, 0.924]",
                          "-1.2e-05 [-]"], "mean": ["12.3 ± 0.4", "= teacher"], "run": ["3e4f", "12ab"],
                          "seeds needed": ["", "34"], "claim": ["slope > 1", "-"]})
    assert numeric_columns(frame) == ["n", "estimate [95% CI]", "mean", "seeds needed"]
    assert markdown_table(frame).splitlines()[1] == "| --- | ---: | ---: | ---: | --- | ---: | --- |"
    assert numeric_columns(pl.DataFrame({"artifacts": ["1.3 kB", "0 bytes"], "unit": ["kB", "GB"]})) == ["artifacts"]


def test_fig_5_draws_panels_settings_a_figure():
    import matplotlib.pyplot as plt

    from kdtrack.report.sections import PANELS, Fetched, confidence_grids

    settings = PANELS + 2
    runs = _runs([{"experiment": "e", "run_id": f"s{i}", "role": "student", "status": "FINISHED", "preset": f"p{i}",
                   "setting": f"p{i} a>a noise=0.0", "seed": "0"} for i in range(settings)])
    points = pl.DataFrame({"phi_teacher": [0.0, 1.0, 2.0], "phi_student": [0.5, 1.0, 2.5]})
    fetched = Fetched(("e",), "", "v", runs, runs, (), {f"s{i}": {"train": points, "test": points}
                                                        for i in range(settings)})
    figures = confidence_grids(fetched)
    panels = [[ax.get_title() for ax in figure.axes if ax.get_title()] for figure in figures]  # not colour bars
    assert [len(titles) for titles in panels] == [2 * PANELS, 2 * 2]  # train above test, a column each
    assert panels[1][0].startswith("p6, seed 0")  # the short name: the preset alone
    for figure in figures:
        plt.close(figure)
