"""analyze: confidence-exaggeration analysis of a student (or of every unanalyzed one).

    mlflow run . -e analyze -P student_run_id=<id> --env-manager local

Logs an `analysis` run: Fig. 1a / 13 / 14 / 16 density plots, bottom/top-25% slopes (Tables 3-6),
the Table 2 accuracy row; copies the slopes onto the student run.
"""
from kdtrack.analysis.analyze import analyze
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import AnalyzeConfig

if __name__ == "__main__":
    run_entrypoint(AnalyzeConfig, analyze)
