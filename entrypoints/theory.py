"""theory: Theorem 4.1 checked in closed form, by finite-step GD and with cross-entropy.

    mlflow run . -e theory -P n=32 -P p=256 --env-manager local
"""
from kdtrack.config import TheoryConfig
from kdtrack.entry import run_entrypoint
from kdtrack.theory import theory

if __name__ == "__main__":
    run_entrypoint(TheoryConfig, theory)
