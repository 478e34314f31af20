"""switch: a student whose loss moves between distillation and one-hot mid-training (§5.2, §E).

    mlflow run . -e switch -P preset=mnist_mlp -P switch_to=onehot -P switch_at=0.5 --env-manager local

Logs a `student` run tagged kdtrack.switch_to / kdtrack.switch_step: the loss weights applied per
step (`distill_weight`), test accuracy throughout, and confidence snapshots around the switch.
"""
from kdtrack.cli.entry import run_entrypoint
from kdtrack.config import SwitchConfig
from kdtrack.pipeline.stages import switch

if __name__ == "__main__":
    run_entrypoint(SwitchConfig, switch)
