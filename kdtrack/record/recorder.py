"""`Recorder`: a distillation trained in a loop kdtrack does not own, recorded in kdtrack's run
contract so that `kdtrack analyze` reads it like one of its own students (docs/recording.md).

    with Recorder(student, teacher, "mnist5k", setting="my-kd", teacher_run_id=teacher_id) as recorder:
        for step in range(1, steps + 1):
            ...  # the user's own KD step
            if step % 50 == 0:
                recorder.snapshot(step)

At each snapshot (and at step 0, as it opens: the initialization) it records per-sample
confidences against the teacher (`confidences/step_<N>/`), accuracies and agreement, and the first
layer's eigen-trajectory (§D.3); at the end the final tables (`confidences/{train,test}.parquet`).
Without a teacher it records a one-hot `teacher` run, whose trajectory a student's eigen-pair
statistics compare against."""
from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from kdtrack import tracking
from kdtrack.contract import NUM_CLASSES, RECORDED, SOURCE, TEACHER_RUN
from kdtrack.errors import UserError
from kdtrack.metrics.confidence import student_table, teacher_table
from kdtrack.metrics.eigen import EIGEN_POINTS, first_layer_probe, layer_inputs, weight_matrix
from kdtrack.record.data import splits_of
from kdtrack.say import say
from kdtrack.training.loop import evaluate, predict, predict_splits

TRAJECTORIES = ("eigen/trajectory.parquet", "eigen/displacement.parquet")


class Recorder:
    """Opened (`with`, or `open()` ... `close()`) before the first training step, on the `student`
    (any module mapping an input batch to logits), its `teacher` (None: the model is a one-hot
    teacher) and `data` (`kdtrack.record.data.ALLOWED`). `setting` names the run's setting in
    reports and claims (its `preset` param); `seed` pairs it with other settings' runs of that seed.
    `teacher_run_id`: the teacher's own run (a recorded one, or one kdtrack trained), for Table 2's
    teacher row and the eigen-pair statistics. The run nests under MLflow's active run if there is
    one, in its experiment unless `experiment` names another."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, data="mnist5k", *, setting: str,
                 seed: int = 0, teacher_run_id: str = "", experiment: str = "", train_size: int = 0,
                 label_noise: float = 0.0, data_dir: str = "data", student_name: str = "", teacher_name: str = ""):
        if not isinstance(student, nn.Module) or not (teacher is None or isinstance(teacher, nn.Module)):
            raise UserError(f"student and teacher must be torch modules; got {type(student).__name__} and "
                            f"{type(teacher).__name__}")
        if not setting.strip() or len(setting) > 100:
            raise UserError(f"setting={setting!r}; allowed: a name of 1 to 100 characters")
        if teacher_run_id and teacher is None:
            raise UserError(f"teacher_run_id={teacher_run_id!r} without a teacher model; allowed: both, or neither "
                            "(a one-hot teacher's own run)")
        if teacher_run_id:  # a typo would leave the analysis without Table 2's row or eigen-pairs, silently
            tracking.require_run(teacher_run_id, "teacher", "teacher_run_id",
                                 "the teacher's own run (role 'teacher': recorded, or trained by kdtrack) is required")
        self.student, self.teacher, self.setting, self.seed = student, teacher, setting, seed
        self.experiment = experiment
        self.data = splits_of(data, seed, train_size, label_noise, data_dir)
        self.role = "teacher" if teacher is None else "student"
        names = {"arch": student_name or type(student).__name__.lower()}
        if teacher is not None:
            names["teacher_arch"] = teacher_name or type(teacher).__name__.lower()
        self.params = {"preset": setting, "dataset": self.data.name, **names, "seed": str(seed),
                       "label_noise": str(label_noise), "train_size": str(len(self.data.y_train))}
        self.tags = {SOURCE: RECORDED, NUM_CLASSES: str(self.data.num_classes),
                     **({TEACHER_RUN: teacher_run_id} if teacher_run_id else {})}
        self.run: tracking.TrackedRun | None = None
        self.step = -1  # of the last snapshot
        self._stack = ExitStack()

    @property
    def run_id(self) -> str:
        return self.run.run_id if self.run else ""

    def open(self) -> "Recorder":
        """Creates the run and records step 0, the models as they are now: the student's
        initialization is W_0 of its eigen displacement."""
        device = next(self.student.parameters()).device
        self.data = self.data.to(device)
        self.teacher_logits = predict_splits(self.teacher, self.data) if self.teacher is not None else None
        self._check_widths()
        tables, probes = self._eigen()
        context = tracking.active_context()
        experiment_id = tracking.resolve_experiment(self.experiment, context)
        name = f"{self.setting}·s{self.seed}·{self.role}"
        summary = (f"Recorded by `kdtrack.record` in a training loop kdtrack does not own: setting "
                   f"`{self.setting}`, `{self.params['arch']}` on `{self.data.name}`.")
        self.run = self._stack.enter_context(tracking.run(
            experiment_id, name, self.role, self.params, context, self.tags, confidence_tables=self._tables,
            probes=probes, fluent=False, summary=summary))
        try:
            for path, table in tables.items():
                self.run.log_table(table, path)
            if self.teacher_logits is not None:
                teacher = evaluate(self.teacher_logits, self.data, None)
                self.run.metrics({f"teacher/{split}_acc": teacher[f"{split}/acc"] for split in ("train", "test")}, 0)
            say(f"recording {self.role} run {self.run.run_id} ({name})")
            self.snapshot(0)
        except BaseException as error:  # the run ends FAILED with the reason, not RUNNING until its lease lapses
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def snapshot(self, step: int) -> None:
        """Confidences, accuracies and the eigen-trajectory of the student at `step`, a step after
        the last snapshot's."""
        if self.run is None:
            raise UserError("snapshot before open(): open the recorder (`with Recorder(...)`) before training")
        if not isinstance(step, int) or step <= self.step:
            raise UserError(f"snapshot step={step!r}; allowed: an integer above the last snapshot's ({self.step})")
        logits = predict_splits(self.student, self.data)
        self.run.snapshot(step, logits)
        self.run.observe(step, self.student)
        self.run.metrics(evaluate(logits, self.data, self.teacher_logits), step)
        self.step = step

    def close(self, step: int | None = None) -> str:
        """The final tables and accuracies of the student as it is now, at `step` (by default the last
        snapshot's); ends the run FINISHED and returns its id, for `kdtrack analyze -P student_run_id=`."""
        if self.run is None:
            raise UserError("close() before open(): nothing is recorded")
        final = self.step if step is None else step
        if final < self.step:
            raise UserError(f"close step={final!r}; allowed: at least the last snapshot's ({self.step})")
        logits = predict_splits(self.student, self.data)
        for split, table in self._tables(logits).items():
            self.run.log_table(table, f"confidences/{split}.parquet")
        self.run.metrics(evaluate(logits, self.data, self.teacher_logits), final)
        self._stack.close()
        say(f"recorded {self.role} run {self.run.run_id}")
        return self.run.run_id

    def __enter__(self) -> "Recorder":
        return self.open()

    def __exit__(self, *error) -> bool:
        if error[0] is None:
            self.close()
            return False
        return self._stack.__exit__(*error)  # the run ends FAILED (KILLED on Ctrl-C), with the reason

    def _tables(self, logits: dict) -> dict:
        """The per-sample confidence tables of kdtrack's own runs (kdtrack.metrics.confidence)."""
        labels = {"train": (self.data.y_train, self.data.is_noisy),
                  "test": (self.data.y_test, torch.zeros_like(self.data.y_test, dtype=torch.bool))}
        if self.teacher_logits is None:
            return {split: teacher_table(logits[split], *labels[split]) for split in logits}
        return {split: student_table(logits[split], self.teacher_logits[split], *labels[split]) for split in logits}

    def _check_widths(self) -> None:
        """Refused before any training is recorded: models whose logits do not match the classes."""
        widths = {"student": predict(self.student, self.data.x_test[:2]).shape[1]}
        if self.teacher_logits is not None:
            widths["teacher"] = self.teacher_logits["test"].shape[1]
        wrong = {model: width for model, width in widths.items() if width != self.data.num_classes}
        if wrong:
            raise UserError(f"{', '.join(f'the {m} outputs {w} logits' for m, w in wrong.items())}; "
                            f"allowed: {self.data.num_classes}, the classes of data {self.data.name!r}")

    def _eigen(self) -> tuple[dict, dict]:
        """The eigenvalue table and trajectory probe of the student's first layer, where that layer
        acts on the inputs themselves (a linear or convolutional first layer); else none, said why."""
        inputs = self.data.x_train[:EIGEN_POINTS]
        layers = [m for m in self.student.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if not layers or layer_inputs(self.student, inputs, self.seed).shape[1] != weight_matrix(self.student).shape[0]:
            say("no eigen-trajectories: the student's first linear or convolutional layer does not act on the inputs")
            return {}, {}
        eigenvalues, probe = first_layer_probe(self.student, inputs, self.seed)
        return {"eigen/eigenvalues.parquet": eigenvalues}, {TRAJECTORIES: probe}
