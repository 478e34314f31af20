"""A distillation in a plain PyTorch loop, recorded for `kdtrack analyze` (docs/recording.md):
a one-hot MLP teacher and its KD student on the embedded MNIST digits. Prints the student's run id.

    python docs/examples/record_torch.py    # STEPS=20 TRAIN_SIZE=128 for a quick look; about a minute as it stands
"""
import os

import torch
import torch.nn.functional as F

from kdtrack.models import build_model
from kdtrack.record import Recorder

STEPS, TEMPERATURE = int(os.environ.get("STEPS", 400)), 4.0
DATA = dict(data="mnist5k", train_size=int(os.environ.get("TRAIN_SIZE", 512)), setting="my-kd")


def train(model, recorder, teacher=None):
    """Adam on batches of 32; cross-entropy for the teacher, KD at TEMPERATURE for the student."""
    x, y = recorder.data.x_train, recorder.data.y_train
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    for step in range(1, STEPS + 1):
        batch = torch.randint(len(y), (32,))
        logits = model(x[batch])
        if teacher is None:
            loss = F.cross_entropy(logits, y[batch])
        else:
            with torch.no_grad():
                soft = F.softmax(teacher(x[batch]) / TEMPERATURE, 1)
            loss = F.kl_div(F.log_softmax(logits / TEMPERATURE, 1), soft, reduction="batchmean") * TEMPERATURE**2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % (STEPS // 4) == 0:
            recorder.snapshot(step)


teacher = build_model("mlp", (1, 28, 28), 10, width=256, depth=2, seed=0)
with Recorder(teacher, **DATA, student_name="mlp") as teacher_run:
    train(teacher, teacher_run)
student = build_model("mlp", (1, 28, 28), 10, width=256, depth=2, seed=1)
with Recorder(student, teacher, **DATA, teacher_run_id=teacher_run.run_id,
              student_name="mlp", teacher_name="mlp") as run:
    train(student, run, teacher)
print(run.run_id)
