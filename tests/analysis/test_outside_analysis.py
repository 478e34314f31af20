"""End to end: `kdtrack analyze` on a pair kdtrack never trained (the lineage's teacher by its MLflow
URI, a Hugging Face ViT as the student), then the pair in `kdtrack claims` and the report's runs."""
import json
import math

import polars as pl
from outsidemodels import tiny_vit

EXPERIMENT = "outside-analysis"


def test_an_outside_pair_is_analyzed_and_counts_in_claims_and_the_report(lineage, tmp_path):
    from click.testing import CliRunner

    from kdtrack import tracking
    from kdtrack.cli.main import main
    from kdtrack.contract import ROLE, STUDENT_RUN, STUDENT_SOURCE, TEACHER_SOURCE
    from kdtrack.metrics.deviations import quantile_slope
    from kdtrack.report.collect import counted, runs_table, setting_of

    vit = tiny_vit(tmp_path / "vit")
    result = CliRunner().invoke(main, ["analyze", "-P", f"teacher=runs:/{lineage.teacher}/teacher", "-P",
                                       f"student={vit}", "-P", "dataset=mnist5k", "-P", "train_size=64",
                                       "--experiment", EXPERIMENT])
    assert result.exit_code == 0, result.output
    analysis = tracking.get_run(result.stdout.split()[-1])
    tags = analysis.data.tags
    assert tags[ROLE] == "analysis" and tags[TEACHER_SOURCE].startswith("mlflow runs:/")
    assert tags[STUDENT_SOURCE].startswith(f"huggingface {vit} (sha256:")
    assert "no eigen-evidence: this pair was trained outside kdtrack" in tags["mlflow.note.content"]
    assert not any(name.startswith("eigen/") for name in analysis.data.metrics)
    table = tracking.load_table(tags[STUDENT_RUN], "confidences/test.parquet")
    assert math.isclose(analysis.data.metrics["test/slope_bottom25"], quantile_slope(table, "bottom", 0.25))

    claims = CliRunner().invoke(main, ["claims", "--experiment", EXPERIMENT, "--format", "json"])
    assert claims.exit_code == 0, claims.output
    rows = {row["id"]: row for row in json.loads(claims.stdout)}
    setting = "outside-mnist5k runs:teacher>hf:vit noise=0.0"
    assert rows["slope-test"]["setting"] == setting and rows["slope-test"]["n"] == 1
    assert math.isclose(rows["slope-test"]["estimate"], analysis.data.metrics["test/slope_bottom25"])
    assert rows["slope-test"]["paper"] == "-"  # the paper says nothing of this pair

    kept, _ = counted(setting_of(runs_table([EXPERIMENT])), tags["kdtrack.code_version"])
    student = kept.filter(pl.col("setting") == setting)
    assert student["role"].to_list() == ["student"] and student["run_id"][0] == tags[STUDENT_RUN]
    assert kept.filter(pl.col("student_run_id") == tags[STUDENT_RUN])["run_id"].to_list() == [analysis.info.run_id]
