"""`RecorderCallback`: a `transformers.Trainer`'s distillation recorded like `Recorder`'s, for a
Trainer-based loop (docs/recording.md). The Trainer needs accelerate (`pip install kdtrack[trainer]`).

    recorder = Recorder(student, teacher, "mnist5k", setting="my-kd", seed=args.seed)
    Trainer(model=..., args=args, callbacks=[RecorderCallback(recorder, every=50)], ...).train()
    recorder.run_id   # for `kdtrack analyze -P student_run_id=...`
"""
from __future__ import annotations

from transformers import TrainerCallback

from kdtrack.errors import UserError
from kdtrack.record.recorder import Recorder


class RecorderCallback(TrainerCallback):
    """Opens `recorder` as training begins (step 0: the models as the Trainer placed them),
    snapshots every `every` optimizer steps, and records the final tables as training ends. The
    recorder's `student` is the module that maps inputs to logits: the Trainer's model itself, or
    the module inside the wrapper that gives it the Trainer's `(inputs, labels) -> {"loss", "logits"}`."""

    def __init__(self, recorder: Recorder, every: int = 50):
        if every < 1:
            raise UserError(f"every={every!r}; allowed: a whole number of steps >= 1")
        self.recorder, self.every = recorder, every

    def on_train_begin(self, args, state, control, **kwargs):
        self.recorder.open()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.recorder.snapshot(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.close(state.global_step)
