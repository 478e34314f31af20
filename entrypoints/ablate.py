"""ablate: an Optuna study over one knob (batch_size, lr, length, ...), paper §C.5.

    mlflow run . -e ablate -P preset=mnist_mlp -P knob=batch_size --env-manager local

Logs a `study` run, a nested `trial` run per trial, and the students and analyses under those.
"""
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import AblateConfig
from kdtrack.studies.ablate import ablate

if __name__ == "__main__":
    run_entrypoint(AblateConfig, ablate)
