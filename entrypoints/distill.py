"""distill: a student distilled from a teacher that is given (teacher_run_id), reused or trained.

    mlflow run . -e distill -P preset=noisy_mnist_rf --env-manager local

Logs a `student` run (and the teacher / one-hot student runs it needed): params, per-epoch
metrics with agreement and KL to the teacher, per-sample confidences, the model.
"""
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import DistillConfig
from kdtrack.pipeline.stages import distill

if __name__ == "__main__":
    run_entrypoint(DistillConfig, distill)
