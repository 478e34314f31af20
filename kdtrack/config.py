"""One frozen dataclass per entry point: the single source of truth for its parameters.

Each field declares, in its metadata (as transformers' HfArgumentParser does), what it means
(`help`) and what it takes (`allowed`, checked by `check` or as one of `choices`): `kdtrack params`
(kdtrack/cli/paramdoc.py), MLproject (kdtrack/cli/mlproject.py; tests/primitives/test_config.py
checks it) and the commands' --help are generated from it, and `__post_init__` validates with it.
MLflow passes every parameter as a string and does not type-check, so `from_params` parses and
validates here, and an empty string means "the preset's value, else the default below".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Callable, Collection, Mapping, TypeVar

from kdtrack.data import DATASETS, TEXT_DATASETS
from kdtrack.errors import UserError
from kdtrack.models import ARCHITECTURES, SIZES, TEXT_ARCHITECTURES
from kdtrack.presets import DATASET_PRESETS, PRESETS

OPTIMIZERS = ("adam", "sgd")
SEEDS = "an integer in 0..4294967295 (2**32 - 1, what NumPy and scikit-learn take)"
MAX_STEPS = 10**8  # training length cap: over 100x the paper's longest run (ImageNet, 90 epochs)
INT_DIGITS = 18  # integer parameters are below 10**18: "1e400" is refused, not expanded into a huge number
SCHEDULES = ("constant", "step", "cosine", "linear")
IF_RUNNING = ("wait", "refuse")
KEEP_CHECKPOINTS = ("all", "switch", "last")  # README "Interrupted runs resume" explains each
# The KD targets other than standard (Eq. 2), by the field that holds their strength: §7, point 1,
# "encouraging underfitting of teachers' low-confidence points" by pulling less toward them, or
# toward flatter targets there (kdtrack.losses.KDTarget computes each).
KD_STRENGTHS = {"confidence_weighted": "confidence_power", "confidence_tempered": "confidence_spread"}
KD_TARGETS = ("standard", *KD_STRENGTHS)
# What replaces Hinton's KD term (kd): decoupled KD, logit standardization, DIST (kdtrack.losses),
# by the fields that hold each method's two weights.
KD_LOSS_WEIGHTS = {"dkd": ("dkd_alpha", "dkd_beta"), "ls": (), "dist": ("dist_beta", "dist_gamma")}
KD_LOSSES = ("kd", *KD_LOSS_WEIGHTS)


def param(default: Any, help: str, allowed: str = "", check: Callable[[Any], bool] | None = None,
          choices: Collection[str] = ()) -> Any:
    """A config field: its default, what it means (`help`), and the values it takes: those for
    which `check` holds, as `allowed` says, or one of `choices`. A rule that relates the field to
    others is checked in `__post_init__` (`allowed` still says it, for `kdtrack params`)."""
    return field(default=default, metadata={"help": help, "allowed": allowed, "check": check, "choices": choices})


def allowed_values(spec: dataclasses.Field) -> str:
    """What a field takes, in words: its `allowed`, or its sorted choices ("" where any value is)."""
    choices = spec.metadata["choices"]
    return ", ".join(sorted(choices)) if choices else spec.metadata["allowed"]


def check_fields(config) -> None:
    """Each field's own rule (its metadata), in the order the fields are declared. A field's
    default always passes: an empty teacher_arch is no architecture, but means "as `arch`"."""
    for spec in fields(config):
        value = getattr(config, spec.name)
        if value == spec.default:
            continue
        if spec.metadata["choices"]:
            _choice(spec.name, value, spec.metadata["choices"])
        elif spec.metadata["check"] is not None:
            _check(spec.name, value, spec.metadata["check"](value), spec.metadata["allowed"])


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not allowed; choose one of: {', '.join(sorted(allowed))}")


def _check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise UserError(f"{name}={value!r} is out of range; allowed: {allowed}")


def _check_field(config, name: str, ok: bool) -> None:
    """A rule that relates field `name` to others; the error states the field's `allowed`."""
    spec = next(f for f in fields(config) if f.name == name)
    _check(name, getattr(config, name), ok, spec.metadata["allowed"])


def _text_only(name: str, value: str, dataset: str) -> None:
    if value and dataset not in TEXT_DATASETS:
        raise UserError(f"{name}={value!r} is for text data sets (RoBERTa checkpoints); dataset={dataset!r} "
                        f"trains from random initialization: pass {name}=''")


def check_model(dataset: str, arch: str, width: int, depth: int, prefix: str) -> None:
    """The architecture suits the data's modality and takes the sizes given."""
    text = dataset in TEXT_DATASETS
    if text != (arch in TEXT_ARCHITECTURES):
        allowed = TEXT_ARCHITECTURES if text else tuple(a for a in ARCHITECTURES if a not in TEXT_ARCHITECTURES)
        raise UserError(f"{prefix}arch={arch!r} does not fit dataset={dataset!r}; choose one of: {', '.join(allowed)}")
    for name, value, default in (("width", width, SIZES[arch][0]), ("depth", depth, SIZES[arch][1])):
        if value and default is None:
            raise UserError(f"{prefix}{name}={value} is not used by arch={arch!r}; allowed: 0")
    if arch in TEXT_ARCHITECTURES and width > 64 and width % 64:
        raise UserError(f"{prefix}width={width} does not split into attention heads of 64 dimensions; "
                        "allowed: a multiple of 64, or up to 64 (one head)")


def target_of(strength: str) -> str | None:
    """The KD target that a strength field (confidence_power, confidence_spread) belongs to."""
    return next((target for target, name in KD_STRENGTHS.items() if name == strength), None)


def check_kd_target(kd_target: str, power: float, spread: float, distill_weight: float) -> None:
    """A strength is given only to the target that uses it (else it would be silently ignored),
    and there is a KD term to change."""
    for name, value in (("confidence_power", power), ("confidence_spread", spread)):
        if value and KD_STRENGTHS.get(kd_target) != name:
            owner = target_of(name)
            raise UserError(f"{name}={value!r} is used only by kd_target={owner}, not kd_target={kd_target}; "
                            f"pass kd_target={owner}, or {name}=0")
    if kd_target != "standard" and distill_weight == 0:
        raise UserError(f"kd_target={kd_target} changes the KD term, which distill_weight=0 leaves out; "
                        "allowed: distill_weight > 0, or kd_target=standard")


def check_kd_loss(config: DistillConfig) -> None:
    """A method's weights are given to that method only, it replaces plain KD (so no confidence-aware
    target reshapes it), there is a KD term to replace, and DIST's batch is whole on one process."""
    method, defaults = config.kd_loss, {spec.name: spec.default for spec in fields(config)}
    for owner, names in KD_LOSS_WEIGHTS.items():
        for name in names:
            value, default = getattr(config, name), defaults[name]
            if owner != method and value != default:
                raise UserError(f"{name}={value!r} is used only by kd_loss={owner}, not kd_loss={method}; "
                                f"pass kd_loss={owner}, or leave {name} at {default!r}")
    if method == "kd":
        return
    if config.kd_target != "standard":
        raise UserError(f"kd_loss={method} does not combine with kd_target={config.kd_target}, which reshapes "
                        "plain KD's targets; allowed: kd_target=standard with kd_loss=" + method)
    if config.distill_weight == 0:
        raise UserError(f"kd_loss={method} changes the KD term, which distill_weight=0 leaves out; "
                        "allowed: distill_weight > 0, or kd_loss=kd")
    if method == "dist" and config.nproc_per_node > 1:
        raise UserError(f"kd_loss=dist correlates each class across the whole batch, which "
                        f"nproc_per_node={config.nproc_per_node} splits between processes; allowed: nproc_per_node=1")


def _fractions(text: str) -> bool:
    """Comma-separated fractions of training, each in (0, 1)."""
    try:
        return all(0 < float(m) < 1 for m in text.split(",") if m.strip())
    except ValueError:
        return False


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _finite_nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class TrainConfig:
    """`train_teacher`: one-hot (cross-entropy) training of a teacher or a one-hot student."""

    preset: str = param("mnist_mlp", "a setting of the paper (`kdtrack params` lists the fields each sets), which "
                        "the other parameters override; empty (the MLproject default) = the dataset's preset, "
                        "else mnist_mlp", choices=PRESETS)
    dataset: str = param("mnist5k", "see README \"The paper's data sets\"; a bare dataset picks its preset",
                         choices=DATASETS)
    data_dir: str = param("data", "where data sets on disk are read from (and downloaded to)")
    download: bool = param(False, "fetch a missing data set that can be downloaded (torchvision, Hugging Face)")
    image_size: int = param(0, "Tiny-ImageNet / ImageNet only: side of the input images; 0 = 64 / 224",
                            "an integer >= 0 (0 = default)", lambda value: value >= 0)
    workers: int = param(0, "DataLoader processes decoding Tiny-ImageNet / ImageNet; 0 = min(8, CPUs)",
                         "an integer >= 0 (0 = default)", lambda value: value >= 0)
    tokenizer: str = param("", "text: local directory of a transformers tokenizer; empty = `pretrained`'s "
                           "(or the teacher's)")
    max_length: int = param(128, "text: tokens per example (truncated, padded)", "an integer >= 2",
                            lambda value: value >= 2)
    pretrained: str = param("", "text: local directory of a pretrained RoBERTa to fine-tune; empty = random init")
    train_size: int = param(128, "training points drawn (stratified); 0 = the whole training split",
                            "an integer >= 0 (0 = all)", lambda value: value >= 0)
    label_noise: float = param(0.0, "fraction of training labels flipped uniformly to another class",
                               "0 <= label_noise < 1", lambda value: 0 <= value < 1)
    fit_fraction: float = param(1.0, "train on this stratified fraction of the training set only (1 = all)",
                                "0 < fit_fraction <= 1", lambda value: 0 < value <= 1)
    arch: str = param("mlp", "the student's (and, unless teacher_arch, the teacher's) architecture",
                      choices=ARCHITECTURES)
    width: int = param(0, "0 = the architecture's default (random_features 5000, mlp 1000, cnn 100)",
                       "an integer >= 0 (0 = default)", lambda value: value >= 0)
    depth: int = param(0, "0 = the architecture's default (random_features 1, mlp 2, cnn 3)",
                       "an integer >= 0 (0 = default)", lambda value: value >= 0)
    seed: int = param(0, "seeds the data split, label noise, initialization, batch order and augmentation",
                      SEEDS, lambda value: 0 <= value < 2**32)
    augment: bool = param(False, "random crop (zero padding of 1/8 the side) and horizontal flip; ImageNet: "
                          "random-resized crop")
    optimizer: str = param("adam", "Adam, or SGD with `momentum` and `nesterov`", choices=OPTIMIZERS)
    lr: float = param(1e-4, "peak learning rate", "a finite number > 0", _finite_positive)
    momentum: float = param(0.9, "SGD only (Nesterov when `nesterov`)", "0 <= momentum < 1",
                            lambda value: 0 <= value < 1)
    nesterov: bool = param(True, "SGD only: Nesterov momentum")
    weight_decay: float = param(0.0, "L2 penalty, as the optimizer applies it", "a finite number >= 0",
                                _finite_nonnegative)
    warmup: float = param(0.0, "linear warmup, in the unit of the training length (epochs or steps)",
                          "a number >= 0", _finite_nonnegative)
    schedule: str = param("constant", "learning rate after warmup: constant, step decay, cosine or linear to 0",
                          choices=SCHEDULES)
    decay_factor: float = param(0.1, "`step` schedule: multiply by this at each milestone",
                                "0 < decay_factor <= 1", lambda value: 0 < value <= 1)
    decay_milestones: str = param("0.5,0.75", "`step` schedule: fractions of training",
                                  "comma-separated fractions of training in (0, 1), e.g. 0.5,0.75", _fractions)
    batch_size: int = param(32, "training points per step", "an integer >= 1", lambda value: value >= 1)
    epochs: float = param(20.0, "training length in passes over the training set (fractions allowed)",
                          "a number > 0 (or set steps)")  # checked with steps, in __post_init__
    steps: int = param(0, "when > 0, the training length in steps (epochs is then ignored)",
                       f"an integer in 0..{MAX_STEPS} (0 = use epochs)", lambda value: 0 <= value <= MAX_STEPS)
    log_every: int = param(0, "loss terms and running batch metrics every N steps; 0 = once per epoch",
                           "an integer >= 0 (0 = off)", lambda value: value >= 0)
    eval_every: int = param(0, "full-set train/test evaluation every N steps; 0 = within a 5% compute budget",
                            "an integer >= 0 (0 = off)", lambda value: value >= 0)
    snapshot_every: int = param(0, "per-sample confidence snapshots every N steps; 0 = only at the end",
                                "an integer >= 0 (0 = off)", lambda value: value >= 0)
    checkpoint_every: int = param(0, "kept checkpoints every N steps; 0 = only at 25/50/75% and the end",
                                  "an integer >= 0 (0 = off)", lambda value: value >= 0)
    compile: bool = param(False, "torch.compile the training forward pass")
    nproc_per_node: int = param(1, "processes that train this run together (torch.distributed, one per GPU), "
                                "batch_size / N points of each batch apiece; the result does not depend on it, up "
                                "to float reassociation (README \"Scaling out\")",
                                "an integer >= 1 (1 = this process)", lambda value: value >= 1)
    oversubscribe: bool = param(False, "allow nproc_per_node above this machine's GPUs (without one: its cores)")
    eigen: bool = param(True, "record first-layer eigen-trajectories (eigen/trajectory.parquet); image models only")
    eigen_k: int = param(0, "directions recorded, top first; 0 = every direction with a nonzero eigenvalue",
                         "an integer >= 0 (0 = all)", lambda value: value >= 0)
    eigen_every: int = param(0, "steps between eigen probes (trajectory, displacement, last-layer weights); 0 = "
                             "about 100 evenly spaced points over the run (every step below 150 steps); the last "
                             "step is always probed", "an integer >= 0 (0 = auto)", lambda value: value >= 0)
    force: bool = param(False, "train anew even when a finished run with the same parameters exists")
    resume: bool = param(True, "continue an interrupted run with the same parameters from its checkpoint")
    if_running: str = param("wait", "another process trains the same run: wait for it and reuse it, or refuse",
                            choices=IF_RUNNING)
    keep_checkpoints: str = param("switch", "checkpoints a run keeps: all; switch = the step_<N> ones `switch` "
                                  "starts from; last = none once finished", choices=KEEP_CHECKPOINTS)
    register: bool = param(False, "register the logged model in MLflow's registry as kdtrack-<preset>-<role>")
    log_model: bool = param(True, "log the trained model as an MLflow model (runs:/<id>/<role>); "
                            "checkpoints/final.pt holds the same weights, so suites and ablations turn it off")
    system_metrics: bool = param(True, "MLflow's system/* metrics (CPU, memory, disk, network, GPU) while training")

    def __post_init__(self) -> None:
        check_fields(self)  # each field's own rule; the rules below relate fields to each other
        check_model(self.dataset, self.arch, self.width, self.depth, "")
        if self.eigen and self.dataset in TEXT_DATASETS:
            raise UserError(f"eigen=true is not defined for text (dataset={self.dataset!r}): the theory is "
                            "about a first layer acting on the data; pass eigen=false")
        _text_only("pretrained", self.pretrained, self.dataset)
        if self.batch_size % self.nproc_per_node:
            raise UserError(f"batch_size={self.batch_size} does not divide over nproc_per_node={self.nproc_per_node} "
                            f"processes; allowed: a batch_size that is a multiple of {self.nproc_per_node}")
        _check_field(self, "epochs", math.isfinite(self.epochs) and (self.epochs > 0 or self.steps > 0))
        if self.register and not self.log_model:
            raise UserError("register=true needs the logged model; log_model=false logs none "
                            "(pass log_model=true, or register=false)")

    @property
    def tokenizer_folder(self) -> str:
        """Where text is tokenized from: `tokenizer`, else the checkpoint's."""
        return self.tokenizer or self.pretrained


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """`distill`: a student trained on `distill_weight * KD + (1 - distill_weight) * CE`.

    The training fields above apply to the student and to the teacher it trains or reuses
    (the paper uses one set of hyperparameters for both, Tables 1 and 7).
    """

    teacher_arch: str = param("", "empty = same as `arch` (self-distillation)", choices=ARCHITECTURES)
    teacher_width: int = param(0, "0 = `width` when the architectures match, else the teacher arch's default",
                               "an integer >= 0 (0 = see above)", lambda value: value >= 0)
    teacher_depth: int = param(0, "0 = `depth` when the architectures match, else the teacher arch's default",
                               "an integer >= 0 (0 = see above)", lambda value: value >= 0)
    teacher_pretrained: str = param("", "text: local checkpoint the teacher fine-tunes; empty = `pretrained`")
    teacher_run_id: str = param("", "empty = reuse a matching finished teacher, else train one; a unique id "
                                "prefix works")
    teacher_fit_fraction: float = param(1.0, "the teacher trains on this fraction only (< 1: it cannot interpolate)",
                                        "0 < teacher_fit_fraction <= 1", lambda value: 0 < value <= 1)
    temperature: float = param(4.0, "softmax temperature of the distillation loss (paper Eq. 2)",
                               "a finite number > 0", _finite_positive)
    distill_weight: float = param(1.0, "weight of the distillation term; the one-hot term gets 1 - this",
                                  "0 <= distill_weight <= 1", lambda value: 0 <= value <= 1)
    same_init: bool = param(True, "start from the teacher's exact initial weights (paper §D.3)")
    kd_target: str = param("standard", "what the KD term matches: standard (Eq. 2), or §7's proposal "
                           "(README \"Beyond the paper\") confidence_weighted or confidence_tempered",
                           choices=KD_TARGETS)
    confidence_power: float = param(0.0, "confidence_weighted: gamma >= 0 of the weights c^gamma (0 = standard)",
                                    "a finite number >= 0", _finite_nonnegative)
    confidence_spread: float = param(0.0, "confidence_tempered: beta >= 0, tau * (1 + beta * (1 - quantile)) "
                                     "(0 = standard)", "a finite number >= 0", _finite_nonnegative)
    kd_loss: str = param("kd", "the distillation term: kd (Hinton's, Eq. 2), dkd (decoupled KD, Zhao et al. 2022), "
                         "ls (logit standardization, Sun et al. 2024) or dist (DIST, Huang et al. 2022); other than "
                         "kd only with kd_target=standard (docs/entry-points.md)", choices=KD_LOSSES)
    dkd_alpha: float = param(1.0, "dkd: weight of the target-class term TCKD", "a finite number >= 0",
                             _finite_nonnegative)
    dkd_beta: float = param(8.0, "dkd: weight of the non-target-class term NCKD (8: the paper's CIFAR setting)",
                            "a finite number >= 0", _finite_nonnegative)
    dist_beta: float = param(1.0, "dist: weight of the inter-class (per sample) correlation loss",
                             "a finite number >= 0", _finite_nonnegative)
    dist_gamma: float = param(1.0, "dist: weight of the intra-class (per class, across the batch) correlation loss",
                              "a finite number >= 0", _finite_nonnegative)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_arch:
            check_model(self.dataset, self.teacher_arch, self.teacher_width, self.teacher_depth, "teacher_")
        _text_only("teacher_pretrained", self.teacher_pretrained, self.dataset)
        check_kd_target(self.kd_target, self.confidence_power, self.confidence_spread, self.distill_weight)
        check_kd_loss(self)

    @property
    def kd_loss_weights(self) -> tuple[float, float]:
        """The KD method's two weights (dkd: alpha, beta; dist: beta, gamma); (0, 0) where it has none."""
        names = KD_LOSS_WEIGHTS.get(self.kd_loss, ())
        return tuple(getattr(self, name) for name in names) or (0.0, 0.0)

    @property
    def kd_strength(self) -> float:
        """The KD target's strength: gamma, beta, or 0 for standard."""
        name = KD_STRENGTHS.get(self.kd_target)
        return getattr(self, name) if name else 0.0

    @property
    def tokenizer_folder(self) -> str:
        return self.tokenizer or self.pretrained or self.teacher_pretrained

    @property
    def teacher_config(self) -> TrainConfig:
        """The one-hot training config of this student's teacher. It takes no confidence snapshots
        (nothing reads a teacher's, and they are in the reuse key): students that differ in
        `snapshot_every` share their teacher."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        arch = self.teacher_arch or self.arch
        same = arch == self.arch
        return TrainConfig(**{**shared, "arch": arch, "width": self.teacher_width or (self.width if same else 0),
                              "depth": self.teacher_depth or (self.depth if same else 0),
                              "pretrained": self.teacher_pretrained or self.pretrained,
                              "fit_fraction": self.teacher_fit_fraction, "snapshot_every": 0})

    @property
    def onehot_config(self) -> TrainConfig:
        """The one-hot student of the student's own architecture (Table 2's 'Student (OH)')."""
        return dataclasses.replace(self.teacher_config, arch=self.arch, width=self.width, depth=self.depth,
                                   pretrained=self.pretrained,
                                   fit_fraction=self.fit_fraction)


SWITCH_TO = ("onehot", "distill")


@dataclass(frozen=True)
class SwitchConfig(DistillConfig):
    """`switch`: a student whose loss moves between distillation and one-hot mid-training (§5.2, §E).

    `switch_to=onehot` starts with `distill_weight` and ends at 0; `switch_to=distill` the reverse.
    Step t (1-based, as logged) trains with the start weight while t <= the switch step, with the
    end weight once t > switch step + `switch_window`, and linearly in between.
    """

    switch_to: str = param("onehot", "the loss the run switches to: onehot starts with `distill_weight` and "
                           "ends at 0, distill the reverse", choices=SWITCH_TO)
    switch_at: float = param(0.5, "<= 1: fraction of the nominal training length; > 1: an absolute step",
                             "a fraction in (0, 1] or a whole step number > 1",
                             lambda value: value > 0 and (value <= 1 or float(value).is_integer()))
    switch_window: int = param(0, "steps of a gradual linear switch (Table 1: 1k or 10k); 0 = at once",
                               "an integer >= 0", lambda value: value >= 0)
    extend_to: int = param(0, "train until this step, past the nominal end (the paper: 21k -> 30k); 0 = no",
                           f"an integer in 0..{MAX_STEPS} (0 = the nominal length)",
                           lambda value: 0 <= value <= MAX_STEPS)
    from_run_id: str = param("", "start from this run's checkpoint at the switch step instead of retraining "
                             "(id or prefix)")


SOURCES = ("runs:/<id>/<path> or models:/<name>/<version> (an MLflow PyTorch model), a local Hugging Face model "
           "folder, or <arch>[,width=N][,depth=N][,seed=N]:<state dict file> (a torchvision or kdtrack architecture)")
MLFLOW_SCHEMES = ("runs:/", "models:/")
OUTSIDE_FIELDS = ("teacher", "student", "dataset", "data_dir", "train_size", "seed")  # AnalyzeConfig's pair


def _source(text: str) -> bool:
    """An outside model's source, by its form alone (the pipeline checks that it exists): an MLflow
    URI, a folder, or `<arch>[,key=N...]:<file>` with sizes among width, depth, seed; empty: none."""
    if not text:
        return True
    if text.startswith(MLFLOW_SCHEMES):
        return len(text.split(":/", 1)[1].strip("/")) > 0
    head, colon, path = text.partition(":")
    if not colon or "/" in head:
        return bool(text.strip())
    name, *sizes = head.split(",")
    keys = [size.partition("=") for size in sizes]
    return bool(name and path) and all(k in ("width", "depth", "seed") and eq and v.isdigit() for k, eq, v in keys)


@dataclass(frozen=True)
class AnalyzeConfig:
    """`analyze`: confidence-exaggeration analysis of one student, or of every unanalyzed one."""

    student_run_id: str = param("", "the student to analyze (a unique prefix of its id is enough)")
    experiment: str = param("", "with no student_run_id: analyze every student here lacking an analysis; with "
                            "one: the experiment it must belong to; with teacher and student: where the pair goes")
    quantile: float = param(0.25, "slopes over the bottom / top this fraction by teacher confidence",
                            "0 < quantile <= 0.5", lambda value: 0 < value <= 0.5)
    bins: int = param(60, "density-plot resolution", "an integer >= 5", lambda value: value >= 5)
    eigen_pairs: int = param(32, "random direction pairs (i < j) compared for eigen/exaggerated_pair_frac",
                             "an integer >= 1", lambda value: value >= 1)
    theory: bool = param(False, "also run the Theorem 4.1 check (the `theory` entry point's defaults)")
    figures: bool = param(True, "draw the per-run figures (figures/*.png, about 15 s an analysis on 2 CPU cores); "
                          "false records every number and table and draws none, for studies whose report draws "
                          "its own")
    # A pair kdtrack never trained (README "Analyzing models kdtrack did not train"), evaluated on `dataset`.
    teacher: str = param("", "an outside teacher instead of student_run_id: " + SOURCES, SOURCES, _source)
    student: str = param("", "the outside student, given as `teacher` is", SOURCES, _source)
    dataset: str = param("", "with teacher and student: the registry's data set they are evaluated on",
                         choices=DATASETS)
    data_dir: str = param("data", "with teacher and student: where `dataset` is read from")
    train_size: int = param(0, "with teacher and student: training points drawn (stratified, seeded by `seed`); "
                            "0 = the whole training split", "an integer >= 0 (0 = all)", lambda value: value >= 0)
    seed: int = param(0, "with teacher and student: seeds the data split; the seed the pair counts as in claims",
                      SEEDS, lambda value: 0 <= value < 2**32)

    def __post_init__(self) -> None:
        check_fields(self)
        if bool(self.teacher) != bool(self.student):
            missing = "student" if self.teacher else "teacher"
            raise UserError(f"{missing}='' but {'teacher' if self.teacher else 'student'} is given; an outside pair "
                            f"needs both (allowed: {SOURCES})")
        if self.teacher and self.student_run_id:
            raise UserError(f"student_run_id={self.student_run_id!r} and teacher/student both name what to analyze; "
                            "pass one: a kdtrack student, or an outside pair")
        if self.teacher and not self.dataset:
            raise UserError("dataset='' but an outside pair is evaluated on a data set of the registry; allowed: "
                            + ", ".join(sorted(DATASETS)))

    @property
    def analysis_params(self) -> dict[str, str]:
        """An analysis run's params: how it analyzes, not which pair (its student run holds that)."""
        return {k: v for k, v in to_params(self).items() if k not in OUTSIDE_FIELDS}

    @property
    def outside(self) -> bool:
        """An outside pair (teacher and student given) rather than kdtrack's own students."""
        return bool(self.teacher)


KNOB_DEFAULTS = {  # paper §C.5: smaller batch size and learning rate, 2-2.3x longer training
    "batch_size": lambda base: [base, max(1, base // 2), max(1, base // 4)],
    "lr": lambda base: [base, base / 3, base / 10],
    "length": lambda base: [1.0, 2.0, 2.3],
    # §7 (README "Beyond the paper"): 0 is plain KD exactly, so each study holds its own baseline
    "confidence_power": lambda base: [0.0, 0.5, 1.0, 2.0],
    "confidence_spread": lambda base: [0.0, 0.5, 1.0, 2.0],
}
KNOBS = ("length",) + tuple(f.name for f in fields(DistillConfig))
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class AblateConfig(DistillConfig):
    """`ablate`: an Optuna study over one knob; each trial distills a student (reusing teachers)
    and analyzes it. The fields above are the base setting every trial starts from; a trial's
    runs keep what the study needs (no step checkpoints, no logged model: nothing switches from
    them and checkpoints/final.pt holds the weights) unless these two are passed; `figures`
    is passed on to each trial's analysis."""

    keep_checkpoints: str = param("last", "checkpoints a trial's runs keep (see distill); nothing in a study "
                                  "switches from them", choices=KEEP_CHECKPOINTS)
    log_model: bool = param(False, "log each trial's models as MLflow models (see distill)")
    figures: bool = param(True, "draw each trial's analysis figures (see analyze)")

    knob: str = param("batch_size", "batch_size, lr, length (a multiple of the training length) or any other "
                      "parameter of distill", choices=KNOBS)
    values: str = param("", "comma-separated; empty = the paper's ablation of the knob (KNOB_DEFAULTS)")
    seeds: int = param(1, "seeds per value: seed, seed + 1, ...",
                       f"an integer >= 1 whose last seed (seed + seeds - 1) is {SEEDS}")  # with seed: __post_init__
    n_trials: int = param(0, "0 = the whole grid (values x seeds); > 0 = a TPE search of this many trials",
                          "an integer >= 0 (0 = the grid)", lambda value: value >= 0)
    objective: str = param("test/slope_bottom25", "a metric of the analysis or student run")
    second_objective: str = param("", "optional, e.g. test/acc: a two-objective study")
    direction: str = param("maximize", "of the objective", choices=DIRECTIONS)
    second_direction: str = param("maximize", "of the second objective", choices=DIRECTIONS)
    study: str = param("", "Optuna study name; empty = derived from the experiment, preset and knob")
    storage: str = param("", "SQLAlchemy URL of the study store; empty = optuna.db beside the MLflow store")
    pruner: str = param("median", "median (Optuna's MedianPruner on objectives logged during training) or none",
                        choices=("median", "none"))
    heartbeat: int = param(30, "seconds between a worker's heartbeats; silent for 4x this (at least 60 s) = dead, "
                           "retried", "an integer >= 1 (seconds)", lambda value: value >= 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_field(self, "seeds", 1 <= self.seeds <= 2**32 - self.seed)
        _check("nproc_per_node", self.nproc_per_node, self.nproc_per_node == 1,
               "1 (a study's trials train in one process each; spread them with workers instead)")
        if not self.objective:
            raise UserError("objective='' is not allowed; name a logged metric, e.g. test/slope_bottom25")
        if self.knob not in KNOB_DEFAULTS and not self.values:
            raise UserError(f"knob={self.knob!r} has no default values; pass values=v1,v2,... "
                            f"(defaults exist for {', '.join(KNOB_DEFAULTS)})")
        implied = target_of(self.knob)
        if implied and self.kd_target not in ("standard", implied):
            raise UserError(f"knob={self.knob} sets kd_target={implied}; kd_target={self.kd_target} does not take it "
                            f"(pass kd_target={implied}, or leave it standard)")
        owner = next((loss for loss, names in KD_LOSS_WEIGHTS.items() if self.knob in names), self.kd_loss)
        if owner != self.kd_loss:
            raise UserError(f"knob={self.knob} is a weight of kd_loss={owner}, not of kd_loss={self.kd_loss}; "
                            f"pass kd_loss={owner}")
        if self.values and not self.values.replace(",", "").strip():  # "" is the default grid; ",,," is none
            raise UserError(f"values={self.values!r} holds no value; pass comma-separated values, e.g. values=1,2")

    def knob_values(self) -> list:
        """The values of the knob, parsed with the field's type (`length`: a float multiple)."""
        kind = float if self.knob == "length" else field_types(DistillConfig)[self.knob]
        if not self.values:
            base = 1.0 if self.knob == "length" else getattr(self, self.knob)
            return KNOB_DEFAULTS[self.knob](base)
        return [parse_value(self.knob, v, kind) for v in self.values.split(",") if v.strip()]


THEORY_BYTES = 4 * 2**30  # what the theory check's weight paths may hold


@dataclass(frozen=True)
class TheoryConfig:
    """`theory`: Theorem 4.1 on a random linear-regression instance with p > n (kdtrack/theory.py)."""

    n: int = param(32, "samples", "an integer from 2 to 2000", lambda value: 2 <= value <= 2000)  # n^2 pairs
    p: int = param(256, "parameters (> n)", "an integer > n: the theorem is about p > n")  # with n: __post_init__
    seed: int = param(0, "draws the random instance", SEEDS, lambda value: 0 <= value < 2**32)
    teacher_time: float = param(5.0, "T_te, in units of 1 / (top eigenvalue of X X^T)", "a finite number > 0",
                                _finite_positive)
    steps: int = param(200, "gradient-descent steps to T_te (cross-entropy runs 5 times as many)",
                       "an integer >= 1", lambda value: value >= 1)
    pairs: int = param(32, "direction pairs sampled for the finite-step and cross-entropy checks",
                       "an integer >= 1", lambda value: value >= 1)
    classes: int = param(4, "classes of the cross-entropy check", "an integer >= 2", lambda value: value >= 2)
    experiment: str = param("", "MLflow experiment of the theory run; empty = MLFLOW_EXPERIMENT_NAME, else Default")

    def __post_init__(self) -> None:
        check_fields(self)
        _check("p", self.p, self.p > self.n, f"an integer > n (= {self.n}): the theorem is about p > n")
        # the cross-entropy check keeps its weights (p x classes) at each of its 5 * steps steps
        path_bytes = 5 * self.steps * self.p * self.classes * 8
        _check("p", self.p, path_bytes <= THEORY_BYTES, f"p * steps * classes small enough for the weight paths "
               f"to fit in {THEORY_BYTES / 2**30:.0f} GiB (here {path_bytes / 2**30:.3g} GiB)")


# Entry points whose runs train on `nproc_per_node` processes (kdtrack.pipeline.replicas).
PARALLEL = (TrainConfig, DistillConfig, SwitchConfig)
ENTRY_POINTS = {"train_teacher": TrainConfig, "distill": DistillConfig, "switch": SwitchConfig,
                "analyze": AnalyzeConfig, "ablate": AblateConfig, "theory": TheoryConfig}
Config = TypeVar("Config", TrainConfig, DistillConfig, SwitchConfig, AnalyzeConfig, AblateConfig, TheoryConfig)


def parse_value(name: str, raw: str, kind: type) -> Any:
    """Parse one MLflow string parameter; the error names the value and the expected type."""
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:  # exactly, never through a float: "9007199254740993" stays odd, "1e3" is 1000
            value = Decimal(text)
            if not value.is_finite() or value != value.to_integral_value() or value.adjusted() >= INT_DIGITS:
                raise ValueError
            return int(value)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return text
    except (ValueError, ArithmeticError):  # decimal's InvalidOperation is an ArithmeticError
        expected = {bool: "true or false", int: f"an integer (of at most {INT_DIGITS} digits)",
                    float: "a finite number"}[kind]
        raise UserError(f"{name}={raw!r} is not {expected}") from None


def field_types(cls: type) -> dict[str, type]:
    hints = {"bool": bool, "int": int, "float": float, "str": str}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def from_params(cls: type[Config], params: Mapping[str, str]) -> Config:
    """Build a config from string parameters: the preset's values first, non-empty ones on top."""
    types = field_types(cls)
    unknown = sorted(set(params) - set(types))
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(types)}")
    values: dict[str, Any] = {}
    if "preset" in types:
        dataset = (params.get("dataset") or "").strip()
        preset = (params.get("preset") or "").strip() or DATASET_PRESETS.get(dataset, cls.preset)
        _choice("preset", preset, PRESETS)
        values = {k: v for k, v in PRESETS[preset].items() if k in types}
        values["preset"] = preset
    for name, raw in params.items():
        if name != "preset" and raw is not None and str(raw).strip() != "":
            values[name] = parse_value(name, str(raw), types[name])
    return cls(**values)


def to_params(config) -> dict[str, str]:
    """The config as the strings MLflow stores; reuse keys compare these strings."""
    return {f.name: _as_string(getattr(config, f.name)) for f in fields(config)}


def _as_string(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


# Fields that do not change what is trained, left out of reuse keys. eigen_every with them: the
# probes read the weights (and draw from no generator), so only how often they are recorded changes.
# Not snapshot_every: a student's confidence snapshots are what `analyze` draws its timeline from,
# so a run with other snapshots is another record (teachers take none: `teacher_config`).
NOT_IN_KEY = ("preset", "download", "log_every", "eval_every", "checkpoint_every",
              "eigen", "eigen_k", "eigen_every", "teacher_run_id", "force", "resume", "if_running",
              "keep_checkpoints", "log_model", "nproc_per_node", "oversubscribe", "register", "system_metrics")


def unused_kd_fields(config) -> set[str]:
    """kd_loss and its methods' weights, where they do not shape training: kd_loss=kd (plain KD, as
    every run before the field trained, so such a run keeps the key it had) and the weights of
    methods other than the chosen one (check_kd_loss holds those at their defaults)."""
    method = getattr(config, "kd_loss", None)
    if method is None:
        return set()
    unused = {name for owner, names in KD_LOSS_WEIGHTS.items() if owner != method for name in names}
    return unused | ({"kd_loss"} if method == "kd" else set())


def key_params(config) -> dict[str, str]:
    """The params of a training run that its reuse key holds: those that shape what is trained.
    Here rather than with the jobs, so that `suite status` can match runs without torch."""
    unused = unused_kd_fields(config)
    return {k: v for k, v in to_params(config).items() if k not in NOT_IN_KEY and k not in unused}
