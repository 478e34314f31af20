"""A distillation through transformers' Trainer, recorded for `kdtrack analyze` (docs/recording.md):
the same one-hot MLP teacher and KD student as record_torch.py, each trained by a Trainer with a
RecorderCallback. Prints the student's run id. Needs accelerate (`pip install kdtrack[trainer]`).

    python docs/examples/record_trainer.py    # STEPS=20 TRAIN_SIZE=128 for a quick look
"""
import os

import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments

from kdtrack.models import build_model
from kdtrack.record import Recorder
from kdtrack.record.trainer import RecorderCallback

STEPS, TEMPERATURE = int(os.environ.get("STEPS", 400)), 4.0
DATA = dict(data="mnist5k", train_size=int(os.environ.get("TRAIN_SIZE", 512)), setting="my-kd-trainer")


class Trained(nn.Module):
    """A model as the Trainer calls it, (inputs, labels) -> {"loss", "logits"}: KD at TEMPERATURE
    against `teacher`, else cross-entropy."""

    def __init__(self, model, teacher=None):
        super().__init__()
        self.model, self.teacher = model, teacher.requires_grad_(False) if teacher else None

    def forward(self, inputs, labels):
        logits = self.model(inputs)
        if self.teacher is None:
            return {"loss": F.cross_entropy(logits, labels), "logits": logits}
        soft = F.softmax(self.teacher(inputs) / TEMPERATURE, 1)
        kd = F.kl_div(F.log_softmax(logits / TEMPERATURE, 1), soft, reduction="batchmean") * TEMPERATURE**2
        return {"loss": kd, "logits": logits}


def train(model, recorder, teacher=None):
    rows = [{"inputs": x, "labels": y} for x, y in zip(recorder.data.x_train, recorder.data.y_train)]
    args = TrainingArguments("trainer-out", max_steps=STEPS, per_device_train_batch_size=32, learning_rate=1e-4,
                             lr_scheduler_type="constant", save_strategy="no", report_to="none", seed=recorder.seed)
    callback = RecorderCallback(recorder, every=STEPS // 4)
    Trainer(model=Trained(model, teacher), args=args, train_dataset=rows, callbacks=[callback]).train()


teacher = build_model("mlp", (1, 28, 28), 10, width=256, depth=2, seed=0)
teacher_run = Recorder(teacher, **DATA, student_name="mlp")
train(teacher, teacher_run)
student = build_model("mlp", (1, 28, 28), 10, width=256, depth=2, seed=1)
run = Recorder(student, teacher, **DATA, teacher_run_id=teacher_run.run_id, student_name="mlp", teacher_name="mlp")
train(student, run, teacher)
print(run.run_id)
