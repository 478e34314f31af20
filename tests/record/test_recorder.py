"""The recorder on hand-built models and data: what it records against closed forms, the runs it
makes (nested, failed), and bad input refused before any run exists. The examples, end to end
through `kdtrack analyze` and `kdtrack claims`, are in test_record_examples.py."""
import math
import re

import mlflow
import pytest
import torch
from torch import nn

from kdtrack import tracking
from kdtrack.contract import PARENT, RECORDED, ROLE, SOURCE, TEACHER_RUN, known_metric
from kdtrack.errors import UserError
from kdtrack.record import Recorder
from kdtrack.report.collect import runs_table

# Inputs whose X^T X is diag(9, 2): eigendirections e1, e2 (tests/metrics/test_eigen.py).
X_TRAIN = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
Y_TRAIN = torch.tensor([0, 1, 2])
X_TEST, Y_TEST = torch.tensor([[1.0, 1.0], [2.0, 0.0]]), torch.tensor([0, 1])
DATA = {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)}


def constant(logits: list[float]) -> nn.Linear:
    """A linear model whose logits are `logits` on every input (zero weights, the logits as bias)."""
    layer = nn.Linear(2, len(logits))
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(logits))
    return layer


def runs_of(experiment: str) -> list:
    found = tracking.experiment_id(experiment)
    return tracking.search_all([found], "") if found else []


def test_the_tables_hold_phi_of_the_logits_by_hand(store):
    """Student logits (2, 0, 0), teacher's (0, 1, 0) on every point: the teacher predicts class 1,
    phi_teacher = 1 - log(e^0 + e^0) = 1 - log 2, phi_student on class 1 = 0 - log(e^2 + e^0); on
    label 0, phi_student_label = 2 - log 2."""
    teacher = constant([0.0, 1.0, 0.0])
    with Recorder(teacher, data=DATA, setting="by-hand", experiment="record-by-hand") as teacher_run:
        pass
    with Recorder(constant([2.0, 0.0, 0.0]), teacher, DATA, setting="by-hand", experiment="record-by-hand",
                  teacher_run_id=teacher_run.run_id) as recorder:
        recorder.snapshot(3)
    test = tracking.load_table(recorder.run_id, "confidences/test.parquet")
    assert test["teacher_pred"].to_list() == [1, 1]
    assert test["phi_teacher"].to_list() == pytest.approx([1 - math.log(2)] * 2)
    assert test["phi_student"].to_list() == pytest.approx([-math.log(math.e ** 2 + 1)] * 2)
    assert test["phi_student_label"][0] == pytest.approx(2 - math.log(2))
    snapshot = tracking.load_table(recorder.run_id, "confidences/step_3/test.parquet")
    assert snapshot.equals(test)  # nothing trained in between
    run = tracking.get_run(recorder.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[ROLE] == "student" and run.data.tags[SOURCE] == RECORDED
    assert run.data.tags[TEACHER_RUN] == teacher_run.run_id
    assert run.data.params["preset"] == "by-hand" and run.data.params["arch"] == "linear"
    assert run.data.metrics["test/acc"] == 0.5 and run.data.metrics["teacher/test_acc"] == 0.5  # both say 0, 1
    assert [name for name in run.data.metrics if not known_metric(name)] == []  # dashboards can name them all
    assert runs_table(["record-by-hand"])["source"].to_list() == ["recorded"] * 2  # what a claim can select on


def test_the_eigen_trajectory_starts_at_the_models_weights_on_opening(store):
    """X^T X = diag(9, 2); the first layer's weights on input 2 move by (0, 2, 0) after opening."""
    model = constant([0.0, 0.0, 0.0])
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0], [2.0, 4.0], [0.0, 0.0]]))
    with Recorder(model, data=DATA, setting="eigen-by-hand", experiment="record-eigen") as recorder:
        with torch.no_grad():
            model.weight[1, 1] += 2.0
        recorder.snapshot(5)
    assert tracking.load_table(recorder.run_id, "eigen/eigenvalues.parquet")["eigenvalue"].to_list() == [9.0, 2.0]
    trajectory = tracking.load_table(recorder.run_id, "eigen/trajectory.parquet")
    displacement = tracking.load_table(recorder.run_id, "eigen/displacement.parquet")
    assert trajectory["step"].to_list() == [0, 5]
    assert trajectory["v2"].to_list() == pytest.approx([5.0, (9 + 36) ** 0.5])
    assert displacement["v2"].to_list() == pytest.approx([0.0, 2.0])
    assert displacement["v1"].to_list() == [0.0, 0.0]
    assert tracking.get_run(recorder.run_id).data.tags[ROLE] == "teacher"  # no teacher: a one-hot run


def test_under_an_active_run_it_nests_in_that_runs_experiment(store):
    experiment = tracking.resolve_experiment("record-nested")
    with mlflow.start_run(experiment_id=experiment) as parent:
        with Recorder(constant([1.0, 0.0, 0.0]), data=DATA, setting="nested") as recorder:
            pass
    run = tracking.get_run(recorder.run_id)
    assert run.data.tags[PARENT] == parent.info.run_id
    assert run.info.experiment_id == experiment


def test_an_error_in_the_users_loop_ends_the_run_failed_with_the_reason(store):
    with pytest.raises(RuntimeError, match="the user's loop broke"):
        with Recorder(constant([1.0, 0.0, 0.0]), data=DATA, setting="failing", experiment="record-failed") as recorder:
            raise RuntimeError("the user's loop broke")
    run = tracking.get_run(recorder.run_id)
    assert run.info.status == "FAILED"
    assert "the user's loop broke" in run.data.tags["kdtrack.failure"]


def test_dataloaders_are_read_once_into_the_same_points(store):
    loaders = {split: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*pair), batch_size=2)
               for split, pair in DATA.items()}
    recorder = Recorder(constant([1.0, 0.0, 0.0]), data=loaders, setting="loaders")
    assert torch.equal(recorder.data.x_train, X_TRAIN) and torch.equal(recorder.data.y_test, Y_TEST)
    assert recorder.data.num_classes == 3


@pytest.mark.parametrize("arguments, message", [
    ({"setting": ""}, "setting=''; allowed: a name of 1 to 100 characters"),
    ({"data": "mnist6k"}, "data='mnist6k' is not a data set kdtrack knows; allowed: a data set of kdtrack's registry"),
    ({"data": [1, 2]}, "data of type list cannot be recorded"),
    ({"data": {"train": (X_TRAIN, Y_TRAIN.float()), "test": (X_TEST, Y_TEST)}},
     "data['train'] has labels of dtype torch.float32"),
    ({"teacher_run_id": "abc"}, "teacher_run_id='abc' without a teacher model"),
    ({"student": "a model"}, "student and teacher must be torch modules; got str"),
    ({"train_size": 2}, "train_size=2, label_noise=0.0 with data of type dict; allowed: 0 and 0.0"),
    ({"teacher": constant([1.0, 0.0, 0.0]), "teacher_run_id": "0" * 32}, f"run id '{'0' * 32}' does not exist"),
], ids=["setting", "unknown data", "data type", "float labels", "teacher run without teacher", "not a module",
        "subsampling own data", "no such teacher run"])
def test_bad_input_is_one_line_naming_the_value_before_any_run(store, arguments, message):
    given = {"student": constant([1.0, 0.0, 0.0]), "data": DATA, "setting": "bad", "experiment": "record-bad",
             **arguments}
    with pytest.raises(UserError, match="^" + re.escape(message)) as error:
        with Recorder(given.pop("student"), given.pop("teacher", None), **given):
            pass
    assert "\n" not in str(error.value)
    assert runs_of("record-bad") == []


def test_logits_of_another_width_and_steps_out_of_order_are_refused(store):
    with pytest.raises(UserError, match="the student outputs 4 logits; allowed: 3, the classes of data 'own'"):
        Recorder(constant([1.0, 0.0, 0.0, 0.0]), data=DATA, setting="wide", experiment="record-bad").open()
    assert runs_of("record-bad") == []
    recorder = Recorder(constant([1.0, 0.0, 0.0]), data=DATA, setting="order", experiment="record-order")
    with pytest.raises(UserError, match="snapshot before open"):
        recorder.snapshot(1)
    with recorder:
        recorder.snapshot(4)
        with pytest.raises(UserError, match=r"snapshot step=4; allowed: an integer above the last snapshot's \(4\)"):
            recorder.snapshot(4)


def test_the_trainer_callback_opens_snapshots_every_n_steps_and_closes(store):
    """The Trainer's hooks called as a Trainer calls them (the whole Trainer, which needs
    accelerate, runs in test_record_examples.py): step 0 on opening, then every 2nd step, the final
    tables at the last."""
    from transformers import TrainerState

    from kdtrack.record.trainer import RecorderCallback

    recorder = Recorder(constant([1.0, 0.0, 0.0]), data=DATA, setting="callback", experiment="record-callback")
    callback, state = RecorderCallback(recorder, every=2), TrainerState()
    callback.on_train_begin(None, state, None)
    for step in range(1, 6):
        state.global_step = step
        callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    assert tracking.load_table(recorder.run_id, "eigen/trajectory.parquet")["step"].to_list() == [0, 2, 4]
    assert [step for step, _ in tracking.metric_history(recorder.run_id, "test/acc")] == [0, 2, 4, 5]
    assert tracking.get_run(recorder.run_id).info.status == "FINISHED"
    with pytest.raises(UserError, match="every=0; allowed: a whole number of steps >= 1"):
        RecorderCallback(recorder, every=0)
