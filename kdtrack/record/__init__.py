"""Recording a distillation kdtrack does not train: `Recorder` for a plain PyTorch loop, and
`kdtrack.record.trainer.RecorderCallback` for a `transformers.Trainer` (imported on its own, so
that the recorder needs no transformers)."""
from kdtrack.record.recorder import Recorder

__all__ = ["Recorder"]
