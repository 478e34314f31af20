"""The paper's data sets and architectures (Tables 1 and 2): loaders on fixtures written in the
published on-disk formats, device augmentation against a per-image reference, model sizes
against closed forms, and distill -> analyze end to end on each kind of data."""
import json

import datafixtures as fx
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from kdtrack import tracking
from kdtrack.analysis.analyze import analyze
from kdtrack.config import AnalyzeConfig, DistillConfig, from_params
from kdtrack.data import load_dataset
from kdtrack.data.augment import crop_flip, crop_flip_draws
from kdtrack.errors import UserError
from kdtrack.models import build_model
from kdtrack.pipeline.stages import distill
from kdtrack.training.loop import predict


def test_crop_flip_equals_pad_slice_and_mirror_per_image():
    x = torch.rand(6, 3, 8, 8)
    shifts, flips = crop_flip_draws(6, 2, torch.Generator().manual_seed(0))
    out = crop_flip(x, shifts, flips, 2)
    for i in range(6):
        r, c = shifts[i].tolist()
        expected = F.pad(x[i], (2, 2, 2, 2))[:, r:r + 8, c:c + 8]
        assert torch.equal(out[i], expected.flip(-1) if flips[i] else expected)


def test_crop_flip_hand_case():
    x = torch.tensor([[[[1., 2.], [3., 4.]]]])
    # Shift (0, 0) of the 1-padded image: the top-left 2x2 is [[0, 0], [0, 1]]; mirrored: [[0, 0], [1, 0]].
    out = crop_flip(x, torch.tensor([[0, 0]]), torch.tensor([True]), 1)
    assert out.tolist() == [[[[0., 0.], [1., 0.]]]]


def _resnet_v2_params(depth: int, classes: int, width: int = 16) -> int:
    """Closed form: stem conv, per block two 3x3 convs + two BNs (+ 1x1 projection where the
    shape changes), final BN and linear head."""
    n, total, c_in = (depth - 2) // 6, 3 * width * 9, width
    for stage in range(3):
        c = width * 2 ** stage
        for _ in range(n):
            total += 9 * c_in * c + 9 * c * c + 2 * c_in + 2 * c + (c_in * c if c_in != c else 0)
            c_in = c
    return total + 2 * c_in + c_in * classes + classes


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_resnet_sizes(depth):
    model = build_model(f"resnet{depth}", (3, 32, 32), 100)
    assert sum(p.numel() for p in model.parameters()) == _resnet_v2_params(depth, 100)
    assert round(_resnet_v2_params(depth, 10) / 1e6, 2) == {20: 0.27, 56: 0.86}[depth]  # He et al.: 0.27M, 0.85M


@pytest.mark.parametrize("arch,side", [("resnet18", 64), ("resnet50", 32), ("mobilenet_v2", 32), ("resnet18", 224)])
def test_torchvision_models_take_small_and_imagenet_inputs(arch, side):
    model = build_model(arch, (3, side, side), 7).eval()
    assert model(torch.rand(2, 3, side, side)).shape == (2, 7)
    if side <= 64 and arch != "mobilenet_v2":
        assert model.conv1.stride == (1, 1)  # no 4x downsampling of a 32x32 / 64x64 image


def test_roberta_sizes_and_padding_mask():
    model = build_model("roberta_small", (12,), 3, vocab_size=30, pad_id=1)
    config = model.net.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (512, 4, 8)
    tiny = build_model("roberta_small", (12,), 3, width=32, depth=1, vocab_size=30, pad_id=1).eval()
    ids = torch.randint(3, 30, (1, 12))
    padded = ids.clone()
    padded[0, 8:] = 1
    # Padding is masked: a sequence padded to 12 tokens has the logits of its 8 tokens alone.
    assert torch.allclose(tiny(padded), tiny(ids[:, :8]), atol=1e-5)
    assert not torch.allclose(tiny(ids), tiny(padded))


def test_tinyimagenet_layout(tmp_path):
    fx.write_tinyimagenet(tmp_path)
    data = load_dataset("tinyimagenet", str(tmp_path), False, 0, 0.0, 0)
    assert data.num_classes == 3 and data.x_train.shape == (18, 3, 64, 64)
    assert data.y_test.tolist() == [0, 1, 2, 0, 1, 2]  # from val_annotations.txt, wnids sorted
    images = data.x_train[:4]
    assert images.shape == (4, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(UserError, match="val_annotations.txt, line 1"):
        load_dataset("tinyimagenet", str(tmp_path), False, 0, 0.0, 0)


def test_imagenet_layout_and_missing_data(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}.*ImageFolder layout"):
        load_dataset("imagenet", str(tmp_path), False, 0, 0.0, 0)
    fx.write_imagenet(tmp_path)
    data = load_dataset("imagenet", str(tmp_path), False, 0, 0.0, 0)
    assert data.x_train.shape == (10, 3, 224, 224) and data.y_test.tolist() == [0, 0, 1, 1]
    assert data.x_test[[0, 3]].shape == (2, 3, 224, 224)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "saved"])
def test_text_formats(tmp_path, fmt):
    name = "mnli" if fmt == "saved" else "qqp"
    if fmt == "saved":
        fx.write_saved_dataset(tmp_path, name)
    else:
        fx.write_text_files(tmp_path, name, fmt=fmt)
    tokenizer = str(fx.write_tokenizer(tmp_path / "tokenizer"))
    data = load_dataset(name, str(tmp_path), False, 0, 0.0, 0, tokenizer=tokenizer, max_length=16)
    assert data.x_train.shape == (24, 16) and len(data.y_test) == 9  # the labelled split, not test (-1)
    assert data.x_train[:, 0].eq(0).all() and data.extras == {"vocab_size": 20, "pad_id": 1}
    assert data.num_classes == {"mnli": 3, "qqp": 2}[name]


def test_text_errors_name_what_is_wrong(tmp_path):
    tokenizer = str(fx.write_tokenizer(tmp_path / "tokenizer"))
    with pytest.raises(UserError, match=f"{tmp_path / 'agnews'}.*train.<csv"):
        load_dataset("agnews", str(tmp_path), False, 0, 0.0, 0, tokenizer=tokenizer)
    fx.write_text_files(tmp_path, "agnews")
    with pytest.raises(UserError, match="needs tokenizer="):
        load_dataset("agnews", str(tmp_path), False, 0, 0.0, 0)
    with pytest.raises(UserError, match="tokenizer='roberta-base' is not a local folder"):
        load_dataset("agnews", str(tmp_path), False, 0, 0.0, 0, tokenizer="roberta-base")
    pl.read_csv(tmp_path / "agnews" / "train.csv").rename({"text": "body"}).write_csv(tmp_path / "agnews" / "train.csv")
    with pytest.raises(UserError, match="lacks column 'text'"):
        load_dataset("agnews", str(tmp_path), False, 0, 0.0, 0, tokenizer=tokenizer)


# Tiny versions of the Table 1 / §C.1 settings: the presets' optimizer, schedule and augmentation,
# a few steps.
SHORT = {"epochs": "2", "batch_size": "8", "warmup": "0", "seed": "0"}
SETTINGS = {
    "cifar100": {"preset": "cifar100_v1", "arch": "resnet20", "teacher_arch": "resnet56", "width": "4",
                 "teacher_width": "4", "lr": "0.05"},
    "tinyimagenet": {"dataset": "tinyimagenet", "arch": "mobilenet_v2", "teacher_arch": "resnet18",
                     "image_size": "32", "workers": "1", "lr": "0.05"},
    "imagenet": {"dataset": "imagenet", "arch": "resnet18", "image_size": "32", "workers": "1", "lr": "0.05"},
    "qqp": {"dataset": "qqp", "arch": "roberta_small", "width": "32", "depth": "1", "max_length": "16",
            "lr": "1e-3", "warmup": "0", "steps": "6"},
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_distill_and_analyze_on_paper_data(store, tmp_path, name):
    writers = {"cifar100": lambda: fx.write_cifar(tmp_path, 100, per_class=1),
               "tinyimagenet": lambda: fx.write_tinyimagenet(tmp_path),
               "imagenet": lambda: fx.write_imagenet(tmp_path),
               "qqp": lambda: fx.write_text_files(tmp_path, "qqp")}
    writers[name]()
    params = {**SHORT, **SETTINGS[name], "data_dir": str(tmp_path)}
    if name == "qqp":
        params["tokenizer"] = str(fx.write_tokenizer(tmp_path / "tokenizer"))
    config = from_params(DistillConfig, params)
    student_id = distill(config, f"paper-{name}")
    student = tracking.get_run(student_id)
    assert student.data.params["dataset"] == config.dataset and student.data.params["arch"] == config.arch
    for metric in ("train/acc", "test/acc", "train/agreement", "test/kl", "train/kd", "teacher/train_acc"):
        assert metric in student.data.metrics
    train = tracking.load_table(student_id, "confidences/train.parquet")
    test = tracking.load_table(student_id, "confidences/test.parquet")
    assert {"phi_teacher", "phi_student", "kl", "teacher_pred"} <= set(train.columns)
    assert (train.height, test.height) == {"cifar100": (100, 100), "tinyimagenet": (18, 6), "imagenet": (10, 4),
                                           "qqp": (24, 9)}[name]
    assert train["phi_student"].is_finite().all()
    if name == "tinyimagenet":  # `-P dataset=tinyimagenet` alone picks the data set's preset
        assert student.data.params["preset"] == "tinyimagenet" and student.data.params["weight_decay"] == "0.0005"
        assert student.data.params["augment"] == "true"
    teacher = tracking.get_run(student.data.tags["kdtrack.teacher_run_id"])
    if config.teacher_arch and config.teacher_arch != config.arch:  # Table 2's one-hot student exists
        assert tracking.get_run(student.data.tags["kdtrack.onehot_run_id"]).data.params["arch"] == config.arch
    assert teacher.data.params["arch"] == (config.teacher_arch or config.arch)
    [analysis_id] = analyze(AnalyzeConfig(student_run_id=student_id, figures=False))
    assert "test/slope_bottom25" in tracking.get_run(analysis_id).data.metrics


def test_an_unreadable_image_is_named(tmp_path):
    fx.write_tinyimagenet(tmp_path)
    broken = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    broken.write_bytes(b"not a jpeg")
    data = load_dataset("tinyimagenet", str(tmp_path), False, 0, 0.0, 0)
    with pytest.raises(UserError, match="unreadable image .*val_1.JPEG"):
        data.x_test[:3]
    with pytest.raises(UserError, match="^unreadable image .*val_1.JPEG") as read_by_a_worker:
        predict(torch.nn.Flatten(), data.x_test)
    assert "\n" not in str(read_by_a_worker.value)  # one line, not the worker's traceback


def test_folder_reads_in_process_and_through_workers_agree(tmp_path):
    fx.write_tinyimagenet(tmp_path, per_class=30)
    images = load_dataset("tinyimagenet", str(tmp_path), False, 0, 0.0, 0, workers=2).x_train
    many = images[:90]  # through DataLoader workers
    assert many.shape == (90, 3, 64, 64)
    assert torch.equal(many[:5], images[:5]) and torch.equal(many[-3:], images[[87, 88, 89]])


def test_a_local_pretrained_roberta_is_fine_tuned(store, tmp_path):
    """`pretrained` loads the checkpoint's encoder (and its tokenizer) from a local folder and puts
    a new classification head on it; what it cannot take is refused in one line."""
    from transformers import AutoTokenizer, RobertaForMaskedLM

    from kdtrack.config import TrainConfig
    from kdtrack.pipeline.stages import train_teacher

    fx.write_text_files(tmp_path, "qqp")
    folder = fx.write_pretrained(tmp_path / "roberta")
    params = {**SHORT, "dataset": "qqp", "arch": "roberta_small", "width": "32", "depth": "1",
              "data_dir": str(tmp_path), "pretrained": str(folder), "max_length": "16", "lr": "1e-3",
              "warmup": "0", "steps": "4"}
    vocab = len(AutoTokenizer.from_pretrained(str(folder)))
    model = build_model("roberta_small", (16,), 2, 32, 1, vocab_size=vocab, pad_id=1, pretrained=str(folder))
    saved = RobertaForMaskedLM.from_pretrained(str(folder)).roberta.embeddings.word_embeddings.weight
    assert torch.equal(model.net.roberta.embeddings.word_embeddings.weight, saved)
    run_id = train_teacher(from_params(TrainConfig, params), "pretrained")
    assert tracking.get_run(run_id).data.params["pretrained"] == str(folder)
    assert tracking.load_table(run_id, "confidences/train.parquet").height == 24
    with pytest.raises(UserError, match="takes up to 16 tokens .* max_length=17"):
        train_teacher(from_params(TrainConfig, {**params, "max_length": "17"}), "pretrained")
    with pytest.raises(UserError, match="pretrained=.*is not a local model folder"):
        build_model("roberta_small", (16,), 2, vocab_size=vocab, pad_id=1, pretrained=str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="pretrained=.*could not be loaded as a RoBERTa model"):
        build_model("roberta_small", (16,), 2, vocab_size=vocab, pad_id=1, pretrained=str(tmp_path))
    with pytest.raises(UserError, match=f"vocabulary; got max_length=16 and a tokenizer of {vocab + 1}"):
        build_model("roberta_small", (16,), 2, 32, 1, vocab_size=vocab + 1, pad_id=1, pretrained=str(folder))
    # A checkpoint of other sizes than the run names (a Base checkpoint for a Small student) is refused.
    with pytest.raises(UserError, match="hidden size 32 and 1 layers, not 512 and 4: pass width=32 depth=1"):
        build_model("roberta_small", (16,), 2, vocab_size=vocab, pad_id=1, pretrained=str(folder))


def test_cross_architecture_text_distillation_fine_tunes_each_models_own_checkpoint(store, tmp_path):
    """Table 2's text rows: a pretrained Base teacher (`teacher_pretrained`) and a Small student
    from its own checkpoint (`pretrained`) or, here, from random initialization; the tokenizer
    defaults to the student's checkpoint's, else the teacher's."""
    fx.write_text_files(tmp_path, "qqp")
    teacher_folder = fx.write_pretrained(tmp_path / "base")
    params = {**SHORT, "dataset": "qqp", "arch": "roberta_small", "width": "32", "depth": "1",
              "teacher_arch": "roberta_base", "teacher_width": "32", "teacher_depth": "1",
              "teacher_pretrained": str(teacher_folder), "data_dir": str(tmp_path), "max_length": "16",
              "lr": "1e-3", "warmup": "0", "steps": "4"}
    student = tracking.get_run(distill(from_params(DistillConfig, params), "cross-text"))
    teacher = tracking.get_run(student.data.tags["kdtrack.teacher_run_id"])
    onehot = tracking.get_run(student.data.tags["kdtrack.onehot_run_id"])
    assert teacher.data.params["pretrained"] == str(teacher_folder)
    assert student.data.params["pretrained"] == onehot.data.params["pretrained"] == ""
    with pytest.raises(UserError, match="teacher_pretrained=.* is for text"):
        from_params(DistillConfig, {"teacher_pretrained": str(teacher_folder)})


def test_a_tokenizer_folder_with_its_own_code_runs_nothing(tmp_path):
    """transformers runs a folder's own tokenizer code (asking on stdout first) unless told not to:
    kdtrack passes trust_remote_code=False, so reading the data runs none of it, whether the folder
    then loads with transformers' own class or is refused in one line."""
    from transformers import AutoTokenizer

    tokenizer = fx.write_tokenizer(tmp_path / "tokenizer")
    marker = tmp_path / "ran"
    (tokenizer / "custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "from transformers import PreTrainedTokenizerFast\n"
                                         "class Custom(PreTrainedTokenizerFast):\n    pass\n")
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "custom.Custom"]}
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(config))
    fx.write_text_files(tmp_path, "qqp")
    try:
        load_dataset("qqp", str(tmp_path), False, 0, 0.0, seed=0, tokenizer=str(tokenizer), max_length=16)
    except UserError as refused:
        assert "tokenizer=" in str(refused) and "\n" not in str(refused)
    assert not marker.exists()
    AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=True)  # the folder is hostile indeed
    assert marker.exists()
