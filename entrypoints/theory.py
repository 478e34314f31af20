"""theory: Theorem 4.1 checked in closed form, by finite-step GD and with cross-entropy.

    mlflow run . -e theory -P n=32 -P p=256 --env-manager local
"""
from kdtrack.analysis.theory import theory
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import TheoryConfig

if __name__ == "__main__":
    run_entrypoint(TheoryConfig, theory)
