"""A teacher-student pair kdtrack never trained, recorded as a student run that `analyze` reads like
any other: each model (an MLflow model URI, a Hugging Face folder, or an architecture and a state
dict) is loaded and checked against the data (class count, input shape, tokenizer) before either
is evaluated; then both are evaluated once on a data set of the registry, and the student run
holds the per-sample confidence tables (`pair_tables`) and accuracies a kdtrack student has.
Nothing trains: there are no eigen-trajectories or snapshots, and the analysis says so."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from kdtrack import tracking
from kdtrack.config import MLFLOW_SCHEMES, SOURCES, AnalyzeConfig
from kdtrack.contract import KEY, NUM_CLASSES, STUDENT_SOURCE, TEACHER_SOURCE
from kdtrack.data import TEXT_DATASETS, Splits, load_dataset
from kdtrack.errors import UserError
from kdtrack.markdown import inert
from kdtrack.metrics.confidence import student_table
from kdtrack.models import outside
from kdtrack.pipeline.stages import split_labels, teacher_accuracy
from kdtrack.say import say
from kdtrack.tracking import RunContext
from kdtrack.training.loop import evaluate, pick_device, place, predict, predict_splits

MAX_LENGTH = 128  # tokens per text example, as kdtrack's own text runs default to
FILE_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where one model of the pair comes from: `kind` mlflow, huggingface or state_dict; `given`, the
    parameter's value; `path`, the folder or file (empty for an MLflow URI); `arch`, a state dict's
    architecture spec."""

    param: str
    given: str
    kind: str
    path: str = ""
    arch: str = ""

    @property
    def name(self) -> str:
        """What the setting calls it: `runs:<artifact path>`, `models:<registered name>`, `hf:<folder
        name>`, `<arch>:<file stem>`. Not the run id or version, nor the folder's parents: the pairs
        of one recipe, one per seed, share a setting. No space or `=`, which split a setting's name
        into its parts (report.settings)."""
        scheme, _, rest = self.given.partition(":/")
        named = {"mlflow": f"{scheme}:" + (rest.split("/", 1)[-1] if scheme == "runs" else rest.split("/")[0]),
                 "huggingface": f"hf:{Path(self.path).name}",
                 "state_dict": f"{self.arch.split(',')[0]}:{Path(self.path).stem}"}.get(self.kind, "")
        return re.sub(r"[\s=]+", "_", named)

    def fingerprint(self) -> str:
        """What identifies the model's contents: an MLflow URI names immutable artifacts; a local
        file or folder is hashed (its weights can be overwritten under the same name)."""
        if self.kind == "mlflow":
            return self.given
        files = [Path(self.path)] if self.kind == "state_dict" else sorted(
            p for p in Path(self.path).rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode())
            with file.open("rb") as stream:
                while chunk := stream.read(FILE_CHUNK):
                    digest.update(chunk)
        return f"sha256:{digest.hexdigest()[:16]}"

    def tag(self) -> str:
        return f"{self.kind} {self.given} ({self.fingerprint()})"


def source(param: str, given: str) -> Source:
    """The parsed source (its form config._source checked), refused in one line where it names no
    file or folder."""
    if given.startswith(MLFLOW_SCHEMES):
        return Source(param, given, "mlflow")
    head, colon, rest = given.partition(":")
    if colon and "/" not in head and not Path(given).exists():
        if not Path(rest).is_file():
            raise UserError(f"{param}={given!r}: no state dict file {rest!r}; allowed: {SOURCES}")
        return Source(param, given, "state_dict", str(Path(rest).resolve()), head)
    if Path(given).is_dir():
        return Source(param, given, "huggingface", str(Path(given).resolve()))
    what = "a file, but a state dict needs its architecture: <arch>:" + given if Path(given).is_file() else "no folder"
    raise UserError(f"{param}={given!r} is {what}; allowed: {SOURCES}")


def load(found: Source, data: Splits) -> nn.Module:
    """The model `found` names, built for `data`, on the data's device, in eval mode."""
    if found.kind == "mlflow":
        model = tracking.load_logged_model(found.given, found.param)
        try:
            model.eval()
        except NotImplementedError:  # MLflow 3's exported format: in inference mode already, and immovable
            return outside.Exported(model)
    elif found.kind == "huggingface":
        model = outside.hf_classifier(found.path, found.param, data.name in TEXT_DATASETS, data.input_shape,
                                      data.num_classes, data.extras.get("pad_id"))
    else:
        model = outside.state_dict_model(found.arch, found.path, found.param, data.input_shape, data.num_classes,
                                         data.extras)
    return place(model, data.y_train.device).eval()


def check_outputs(model: nn.Module, found: Source, data: Splits) -> None:
    """The model takes the data's inputs and gives one logit per class, tried on two training points
    before anything is evaluated."""
    x = data.x_train[:2] if isinstance(data.x_train, torch.Tensor) else data.x_train.subset(np.arange(2))
    try:
        with torch.no_grad():
            logits = predict(model, x)
    except Exception as error:  # the model's own error: shape, dtype, missing input
        detail = " ".join(str(error).split())[:200]
        raise UserError(f"{found.param}={found.given!r} does not take the data's inputs of shape "
                        f"{tuple(data.input_shape)}: {type(error).__name__}: {detail}") from None
    if logits.ndim != 2 or logits.shape[1] != data.num_classes:
        raise UserError(f"{found.param}={found.given!r} gives outputs of shape {tuple(logits.shape[1:])} per "
                        f"example; the data set has {data.num_classes} classes")


def tokenizer_of(pair: tuple[Source, Source], dataset: str) -> str:
    """The folder text is tokenized with: the Hugging Face folders' tokenizer, refused where the two
    folders tokenize differently or neither is a folder (a model alone does not say its tokenizer)."""
    folders = [found for found in pair if found.kind == "huggingface"]
    if not folders:
        raise UserError(f"dataset={dataset!r} is text, tokenized by a Hugging Face folder's tokenizer; neither "
                        "teacher nor student is a Hugging Face folder")
    vocabularies = [outside.tokenizer_vocabulary(found.path, found.param) for found in folders]
    if len(vocabularies) == 2 and vocabularies[0] != vocabularies[1]:
        teacher, student = (len(vocabulary) for vocabulary, _ in vocabularies)
        raise UserError(f"teacher={pair[0].given!r} and student={pair[1].given!r} tokenize differently (vocabularies "
                        f"of {teacher} and {student} tokens, or other padding); one data set cannot feed both")
    return folders[0].path


def outside_data(config: AnalyzeConfig, pair: tuple[Source, Source]) -> Splits:
    tokenizer = tokenizer_of(pair, config.dataset) if config.dataset in TEXT_DATASETS else ""
    data = load_dataset(config.dataset, config.data_dir, False, config.train_size, 0.0, config.seed,
                        image_size=0, workers=0, tokenizer=tokenizer, max_length=MAX_LENGTH)
    return data.to(pick_device())


def pair_tables(teacher_logits: dict[str, torch.Tensor], student_logits: dict[str, torch.Tensor],
                data: Splits) -> dict[str, pl.DataFrame]:
    """The per-sample confidence tables of a student against its teacher, by split: what
    `confidences/<split>.parquet` holds and every analysis reads."""
    return {split: student_table(student_logits[split], teacher_logits[split], *split_labels(data, split))
            for split in student_logits}


def pair_params(config: AnalyzeConfig, pair: tuple[Source, Source]) -> dict[str, str]:
    """The student run's params: the data's fields, and the setting's preset and architectures as
    reports name settings (`outside-<dataset> <teacher>><student> noise=0.0`)."""
    teacher, student = pair
    return {"preset": f"outside-{config.dataset}", "dataset": config.dataset, "data_dir": config.data_dir,
            "train_size": str(config.train_size), "seed": str(config.seed), "label_noise": "0.0",
            "arch": student.name, "teacher_arch": teacher.name, "teacher": teacher.given, "student": student.given}


def outside_student(config: AnalyzeConfig, experiment_id: str, context: RunContext = RunContext()):
    """The student run of the pair `config` names: a finished one with the same params and model
    contents reused, else the pair checked, evaluated and recorded in a new one."""
    pair = (source("teacher", config.teacher), source("student", config.student))
    params = pair_params(config, pair)
    tags = {TEACHER_SOURCE: pair[0].tag(), STUDENT_SOURCE: pair[1].tag()}
    key = tracking.run_key("student", params, upstream=" ".join(tags.values()))
    found = tracking.reuse_finished(experiment_id, "student", key, params, context)
    if found:
        say(f"reusing the outside pair's student run {found.info.run_id}")
        return found
    data = outside_data(config, pair)
    models = [load(model_source, data) for model_source in pair]
    for model, model_source in zip(models, pair):  # both checked before either is evaluated
        check_outputs(model, model_source, data)
    with torch.no_grad():
        teacher_logits, student_logits = (predict_splits(model, data) for model in models)
    metrics = {**evaluate(student_logits, data, teacher_logits), **teacher_accuracy(teacher_logits, data)}
    name = f"{params['preset']}·s{config.seed}·student·{key[:4]}"
    summary = (f"An outside pair, evaluated on `{config.dataset}` (seed {config.seed}); kdtrack trained neither. "
               f"Teacher: {inert(tags[TEACHER_SOURCE])}. Student: {inert(tags[STUDENT_SOURCE])}.")
    with tracking.run(experiment_id, name, "student", params, context,
                      {**tags, KEY: key, NUM_CLASSES: str(data.num_classes)}, summary=summary) as run:
        run.metrics(metrics, 0)
        for split, table in pair_tables(teacher_logits, student_logits, data).items():
            run.log_table(table, f"confidences/{split}.parquet")
    say(f"outside pair recorded as student run {run.run_id}: student test acc {metrics['test/acc']:.1%}, "
        f"teacher test acc {metrics['teacher/test_acc']:.1%}")
    return tracking.get_run(run.run_id)
