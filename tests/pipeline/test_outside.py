"""Outside pairs (`analyze -P teacher=... -P student=...`): each kind of source becomes a student
run whose confidence tables are those kdtrack computes for its own students, and every mismatch
is refused in one line before anything is evaluated or recorded."""
import math

import pytest
import torch
from outsidemodels import tiny_bert, tiny_vit

from kdtrack.config import AnalyzeConfig
from kdtrack.errors import UserError

EXPERIMENT = "outside-pipeline"
DATA = {"dataset": "mnist5k", "train_size": 64}  # the lineage's split (conftest.TINY, seed 0)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("fields, expected", [
    ({"teacher": "runs:/abc/model"}, "student='' but teacher is given"),
    ({"teacher": "runs:/a/m", "student": "runs:/b/m", "student_run_id": "abc"}, "pass one"),
    ({"teacher": "runs:/a/m", "student": "runs:/b/m"}, "dataset=''"),
    ({"teacher": "mlp,breadth=3:w.pt", "student": "runs:/b/m", "dataset": "mnist5k"}, "teacher='mlp,breadth=3:w.pt'"),
    ({"teacher": "runs:/", "student": "runs:/b/m", "dataset": "mnist5k"}, "teacher='runs:/'"),
])
def test_the_config_refuses_a_malformed_pair(fields, expected):
    with pytest.raises(UserError) as error:
        AnalyzeConfig(**fields)
    assert expected in one_line(error)


def test_sources_are_told_apart_and_named_for_the_setting(tmp_path):
    from kdtrack.pipeline.outside import source

    weights = tmp_path / "my weights.pt"
    torch.save({}, weights)
    (tmp_path / "vit").mkdir()
    assert source("teacher", "runs:/0a1b/teacher").kind == "mlflow"
    assert source("teacher", "runs:/0a1b/models/teacher").name == "runs:models/teacher"
    assert source("teacher", "models:/kd/3").name == "models:kd"
    state = source("student", f"mlp,width=32:{weights}")
    assert (state.kind, state.arch, state.name) == ("state_dict", "mlp,width=32", "mlp:my_weights")
    folder = source("student", str(tmp_path / "vit"))
    assert (folder.kind, folder.name) == ("huggingface", "hf:vit")
    assert state.fingerprint().startswith("sha256:") and state.fingerprint() == state.fingerprint()
    with pytest.raises(UserError) as error:
        source("student", f"mlp:{tmp_path / 'missing.pt'}")
    assert "no state dict file" in one_line(error)
    with pytest.raises(UserError) as error:
        source("student", str(weights))
    assert "needs its architecture: <arch>:" in one_line(error)


def test_pair_tables_are_the_students_phi_against_the_teachers_predicted_class():
    """phi(p) = f_y - logsumexp_{k != y} f_k by hand, on two classes: f_y - f_other."""
    from types import SimpleNamespace

    from kdtrack.pipeline.outside import pair_tables

    teacher = {"test": torch.tensor([[2.0, 0.0], [0.0, 1.0]])}
    student = {"test": torch.tensor([[3.0, 0.0], [0.5, 0.0]])}
    data = SimpleNamespace(y_test=torch.tensor([0, 0]))
    table = pair_tables(teacher, student, data)["test"]
    assert table["teacher_pred"].to_list() == [0, 1]
    assert table["phi_teacher"].to_list() == [2.0, 1.0]
    assert table["phi_student"].to_list() == [3.0, -0.5]
    assert table["phi_student_label"].to_list() == [3.0, 0.5]


@pytest.fixture(scope="module")
def lineage_student_weights(lineage, tmp_path_factory):
    """The lineage student's final weights as a researcher would have them: a torch.save'd state dict."""
    from kdtrack import tracking

    path = tmp_path_factory.mktemp("weights") / "student.pt"
    torch.save(tracking.load_state(lineage.student, "checkpoints/final.pt"), path)
    return str(path)


def test_a_kdtrack_pair_given_from_outside_gives_kdtrack_own_tables(lineage, lineage_student_weights):
    """The lineage's teacher by its MLflow URI and its student as a state dict, on the same split:
    the outside student run holds the tables the lineage student recorded, and its sources."""
    from kdtrack import tracking
    from kdtrack.contract import STUDENT_SOURCE, TEACHER_SOURCE
    from kdtrack.pipeline.outside import outside_student

    config = AnalyzeConfig(teacher=f"runs:/{lineage.teacher}/teacher",
                           student=f"mlp,width=32:{lineage_student_weights}", **DATA)
    run = outside_student(config, tracking.resolve_experiment(EXPERIMENT))
    assert run.data.tags["kdtrack.role"] == "student"
    assert run.data.tags[TEACHER_SOURCE].startswith(f"mlflow runs:/{lineage.teacher}/teacher")
    assert run.data.tags[STUDENT_SOURCE].startswith("state_dict mlp,width=32:") and "sha256:" in run.data.tags[
        STUDENT_SOURCE]
    assert run.data.params["preset"] == "outside-mnist5k" and run.data.params["arch"] == "mlp:student"
    for split in ("train", "test"):
        ours = tracking.load_table(run.info.run_id, f"confidences/{split}.parquet")
        theirs = tracking.load_table(lineage.student, f"confidences/{split}.parquet")
        for column in ("label", "teacher_pred", "pred"):
            assert ours[column].to_list() == theirs[column].to_list()
        for column in ("phi_teacher", "phi_student", "kl"):
            assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5) for a, b in zip(ours[column], theirs[column]))
    student = tracking.get_run(lineage.student).data.metrics
    assert math.isclose(run.data.metrics["test/acc"], student["test/acc"])
    assert math.isclose(run.data.metrics["teacher/test_acc"], student["teacher/test_acc"])
    again = outside_student(config, tracking.resolve_experiment(EXPERIMENT))  # same pair, same contents: reused
    assert again.info.run_id == run.info.run_id


def test_a_registered_model_and_a_hugging_face_folder(lineage, tmp_path):
    import mlflow

    from kdtrack import tracking
    from kdtrack.pipeline.outside import outside_student

    mlflow.register_model(f"runs:/{lineage.teacher}/teacher", "outside-teacher")
    config = AnalyzeConfig(teacher="models:/outside-teacher/1", student=tiny_vit(tmp_path / "vit"), **DATA)
    run = outside_student(config, tracking.resolve_experiment(EXPERIMENT))
    table = tracking.load_table(run.info.run_id, "confidences/test.parquet")
    assert table.height == 5000 - 64 and run.data.params["arch"] == "hf:vit"
    assert 0 <= run.data.metrics["test/acc"] <= 1


def refused(teacher: str, student: str, **fields) -> str:
    """The one-line refusal of analyzing the pair; and nothing was recorded."""
    from kdtrack import tracking
    from kdtrack.analysis.analyze import analyze

    experiment = tracking.resolve_experiment("outside-refused")
    before = len(tracking.search_all([experiment], ""))
    with pytest.raises(UserError) as error:
        analyze(AnalyzeConfig(teacher=teacher, student=student, experiment="outside-refused", **{**DATA, **fields}))
    assert len(tracking.search_all([experiment], "")) == before
    return one_line(error)


def test_refusals_before_any_evaluation(store, tmp_path):
    from kdtrack.models import build_model

    ten = tiny_vit(tmp_path / "ten")
    five = tiny_vit(tmp_path / "five", num_labels=5)
    assert "has 5 classes; the data set has 10" in refused(ten, five)
    wide = tiny_vit(tmp_path / "wide", image_size=14)
    assert "takes images of shape (1, 14, 14); the data set's are (1, 28, 28)" in refused(wide, ten)
    small = tmp_path / "small.pt"  # an MLP for 14x14 inputs: its first layer does not fit 28x28 ones
    torch.save(build_model("mlp", (1, 14, 14), 10, 8, 1).state_dict(), small)
    assert "does not fit 'mlp,width=8,depth=1' built for 10 classes and inputs of shape (1, 28, 28)" in refused(
        ten, f"mlp,width=8,depth=1:{small}")
    assert "does not fit" in refused(ten, f"resnet18:{small}")
    assert "neither a kdtrack architecture" in refused(ten, f"no_such_net:{small}")
    assert "names no model" in refused("runs:/0123456789abcdef0123456789abcdef/model", ten)
    assert "no state dict file" in refused(ten, f"mlp:{tmp_path / 'missing.pt'}")
    assert "is no folder" in refused(str(tmp_path / "nowhere"), ten)


def test_text_pairs_must_share_a_tokenizer(store, tmp_path):
    first = tiny_bert(tmp_path / "first", ["good", "bad", "film"])
    other = tiny_bert(tmp_path / "other", ["good", "bad", "movie", "plot"])
    assert "tokenize differently (vocabularies of 8 and 9 tokens" in refused(first, other, dataset="imdb")
    assert "neither teacher nor student is a Hugging Face folder" in refused(
        "runs:/0123456789abcdef0123456789abcdef/model", "models:/nothing/1", dataset="imdb")


def test_a_text_pair_of_sequence_classifiers_sharing_a_tokenizer(store, tmp_path):
    from datafixtures import WORDS, write_text_files

    from kdtrack import tracking
    from kdtrack.pipeline.outside import outside_student

    words = sorted(set(" ".join(WORDS).split()))
    teacher, student = (tiny_bert(tmp_path / name, words) for name in ("teacher", "student"))
    data_dir = str(write_text_files(tmp_path, "imdb"))
    config = AnalyzeConfig(teacher=teacher, student=student, dataset="imdb", data_dir=data_dir)
    run = outside_student(config, tracking.resolve_experiment(EXPERIMENT))
    tables = {split: tracking.load_table(run.info.run_id, f"confidences/{split}.parquet")
              for split in ("train", "test")}
    assert (tables["train"].height, tables["test"].height) == (24, 9)
    assert run.data.params["arch"] == "hf:student" and run.data.params["teacher_arch"] == "hf:teacher"
