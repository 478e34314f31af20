"""train_teacher: one-hot training of a teacher; reuses a finished run with the same parameters.

    mlflow run . -e train_teacher -P preset=mnist_mlp --env-manager local

Logs a `teacher` run: params, per-epoch metrics, confidences/{train,test}.parquet, the model.
"""
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import TrainConfig
from kdtrack.pipeline.stages import train_teacher

if __name__ == "__main__":
    run_entrypoint(TrainConfig, train_teacher)
