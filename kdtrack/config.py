"""One frozen dataclass per entry point: the single source of truth for its parameters.

MLproject mirrors these field names (tests/primitives/test_config.py checks it). MLflow passes every
parameter as a string and does not type-check, so `from_params` parses and validates here, and
an empty string means "the preset's value, else the default below".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Mapping, TypeVar

from kdtrack.errors import UserError
from kdtrack.presets import DATASET_PRESETS, PRESETS

OPTIMIZERS = ("adam", "sgd")
SEEDS = "an integer in 0..4294967295 (2**32 - 1, what NumPy and scikit-learn take)"
MAX_STEPS = 10**8  # training length cap: over 100x the paper's longest run (ImageNet, 90 epochs)
INT_DIGITS = 18  # integer parameters are below 10**18: "1e400" is refused, not expanded into a huge number
SCHEDULES = ("constant", "step", "cosine", "linear")
IF_RUNNING = ("wait", "refuse")
KEEP_CHECKPOINTS = ("all", "switch", "last")  # README "Interrupted runs resume" explains each


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not allowed; choose one of: {', '.join(sorted(allowed))}")


def _check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise UserError(f"{name}={value!r} is out of range; allowed: {allowed}")


def _text_only(name: str, value: str, dataset: str) -> None:
    from kdtrack.data import TEXT_DATASETS

    if value and dataset not in TEXT_DATASETS:
        raise UserError(f"{name}={value!r} is for text data sets (RoBERTa checkpoints); dataset={dataset!r} "
                        f"trains from random initialization: pass {name}=''")


def check_model(dataset: str, arch: str, width: int, depth: int, prefix: str) -> None:
    """The architecture exists, suits the data's modality, and takes the sizes given."""
    from kdtrack.data import TEXT_DATASETS
    from kdtrack.models import ARCHITECTURES, SIZES, TEXT_ARCHITECTURES

    _choice(f"{prefix}arch", arch, ARCHITECTURES)
    text = dataset in TEXT_DATASETS
    if text != (arch in TEXT_ARCHITECTURES):
        allowed = TEXT_ARCHITECTURES if text else tuple(a for a in ARCHITECTURES if a not in TEXT_ARCHITECTURES)
        raise UserError(f"{prefix}arch={arch!r} does not fit dataset={dataset!r}; choose one of: {', '.join(allowed)}")
    for name, value, default in (("width", width, SIZES[arch][0]), ("depth", depth, SIZES[arch][1])):
        _check(f"{prefix}{name}", value, value >= 0, "an integer >= 0 (0 = default)")
        if value and default is None:
            raise UserError(f"{prefix}{name}={value} is not used by arch={arch!r}; allowed: 0")
    if arch in TEXT_ARCHITECTURES and width > 64 and width % 64:
        raise UserError(f"{prefix}width={width} does not split into attention heads of 64 dimensions; "
                        "allowed: a multiple of 64, or up to 64 (one head)")


KD_STRENGTHS = {"confidence_weighted": "confidence_power", "confidence_tempered": "confidence_spread"}


def target_of(strength: str) -> str | None:
    """The KD target that a strength field (confidence_power, confidence_spread) belongs to."""
    return next((target for target, name in KD_STRENGTHS.items() if name == strength), None)


def check_kd_target(kd_target: str, power: float, spread: float, distill_weight: float) -> None:
    """The KD target exists, its strength is a finite number >= 0, a strength is given only to
    the target that uses it (else it would be silently ignored), and there is a KD term to change."""
    from kdtrack.losses import KD_TARGETS

    _choice("kd_target", kd_target, KD_TARGETS)
    for name, value in (("confidence_power", power), ("confidence_spread", spread)):
        _check(name, value, math.isfinite(value) and value >= 0, "a finite number >= 0")
        if value and KD_STRENGTHS.get(kd_target) != name:
            owner = target_of(name)
            raise UserError(f"{name}={value!r} is used only by kd_target={owner}, not kd_target={kd_target}; "
                            f"pass kd_target={owner}, or {name}=0")
    if kd_target != "standard" and distill_weight == 0:
        raise UserError(f"kd_target={kd_target} changes the KD term, which distill_weight=0 leaves out; "
                        "allowed: distill_weight > 0, or kd_target=standard")


@dataclass(frozen=True)
class TrainConfig:
    """`train_teacher`: one-hot (cross-entropy) training of a teacher or a one-hot student."""

    preset: str = "mnist_mlp"  # empty (the MLproject default) = the dataset's preset, else mnist_mlp
    dataset: str = "mnist5k"  # see README "The paper's data sets"; a bare dataset picks its preset
    data_dir: str = "data"  # where data sets on disk are read from (and downloaded to)
    download: bool = False  # fetch a missing data set that can be downloaded (torchvision, Hugging Face)
    image_size: int = 0  # Tiny-ImageNet / ImageNet only: side of the input images; 0 = 64 / 224
    workers: int = 0  # DataLoader processes decoding Tiny-ImageNet / ImageNet; 0 = min(8, CPUs)
    tokenizer: str = ""  # text: local directory of a transformers tokenizer; empty = `pretrained`'s (or the teacher's)
    max_length: int = 128  # text: tokens per example (truncated, padded)
    pretrained: str = ""  # text: local directory of a pretrained RoBERTa to fine-tune; empty = random init
    train_size: int = 128  # training points drawn (stratified); 0 = the whole training split
    label_noise: float = 0.0  # fraction of training labels flipped uniformly to another class
    fit_fraction: float = 1.0  # train on this stratified fraction of the training set only (1 = all)
    arch: str = "mlp"  # the student's (and, unless teacher_arch, the teacher's) architecture
    width: int = 0  # 0 = the architecture's default (random_features 5000, mlp 1000, cnn 100)
    depth: int = 0  # 0 = the architecture's default (random_features 1, mlp 2, cnn 3)
    seed: int = 0  # seeds the data split, label noise, initialization, batch order and augmentation
    # random crop (zero padding of 1/8 the side) and horizontal flip; ImageNet: random-resized crop
    augment: bool = False
    optimizer: str = "adam"  # Adam, or SGD with `momentum` and `nesterov`
    lr: float = 1e-4  # peak learning rate
    momentum: float = 0.9  # SGD only (Nesterov when `nesterov`)
    nesterov: bool = True  # SGD only: Nesterov momentum
    weight_decay: float = 0.0  # L2 penalty, as the optimizer applies it
    warmup: float = 0.0  # linear warmup, in the unit of the training length (epochs or steps)
    schedule: str = "constant"  # learning rate after warmup: constant, step decay, cosine or linear to 0
    decay_factor: float = 0.1  # `step` schedule: multiply by this at each milestone
    decay_milestones: str = "0.5,0.75"  # `step` schedule: fractions of training
    batch_size: int = 32  # training points per step
    epochs: float = 20.0  # training length in passes over the training set (fractions allowed)
    steps: int = 0  # when > 0, the training length in steps (epochs is then ignored)
    log_every: int = 0  # loss terms and running batch metrics every N steps; 0 = once per epoch
    eval_every: int = 0  # full-set train/test evaluation every N steps; 0 = within a 5% compute budget
    snapshot_every: int = 0  # per-sample confidence snapshots every N steps; 0 = only at the end
    checkpoint_every: int = 0  # kept checkpoints every N steps; 0 = only at 25/50/75% and the end
    compile: bool = False  # torch.compile the training forward pass
    # processes training the run together, batch_size / N points of each batch apiece (torch.distributed,
    # one per GPU); the result does not depend on it, up to float reassociation (README "Scaling out")
    nproc_per_node: int = 1  # processes that train this run together (torch.distributed), one per GPU
    eigen: bool = True  # record first-layer eigen-trajectories (eigen/trajectory.parquet); image models only
    eigen_k: int = 0  # directions recorded, top first; 0 = every direction with a nonzero eigenvalue
    force: bool = False  # train anew even when a finished run with the same parameters exists
    resume: bool = True  # continue an interrupted run with the same parameters from its checkpoint
    if_running: str = "wait"  # another process trains the same run: wait for it and reuse it, or refuse
    # checkpoints a run keeps: all; switch = the step_<N> ones `switch` starts from; last = none once finished
    keep_checkpoints: str = "switch"
    register: bool = False  # register the logged model in MLflow's registry as kdtrack-<preset>-<role>
    system_metrics: bool = True  # MLflow's system/* metrics (CPU, memory, disk, network, GPU) while training

    def __post_init__(self) -> None:
        from kdtrack.data import DATASETS, TEXT_DATASETS

        _choice("preset", self.preset, PRESETS)
        _choice("dataset", self.dataset, DATASETS)
        check_model(self.dataset, self.arch, self.width, self.depth, "")
        if self.eigen and self.dataset in TEXT_DATASETS:
            raise UserError(f"eigen=true is not defined for text (dataset={self.dataset!r}): the theory is "
                            "about a first layer acting on the data; pass eigen=false")
        _text_only("pretrained", self.pretrained, self.dataset)
        for name in ("image_size", "workers"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "an integer >= 0 (0 = default)")
        _check("max_length", self.max_length, self.max_length >= 2, "an integer >= 2")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("if_running", self.if_running, IF_RUNNING)
        _choice("keep_checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS)
        _check("train_size", self.train_size, self.train_size >= 0, "an integer >= 0 (0 = all)")
        _check("seed", self.seed, 0 <= self.seed < 2**32, SEEDS)
        _check("label_noise", self.label_noise, 0 <= self.label_noise < 1, "0 <= label_noise < 1")
        _check("fit_fraction", self.fit_fraction, 0 < self.fit_fraction <= 1, "0 < fit_fraction <= 1")
        _check("lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number > 0")
        _check("momentum", self.momentum, 0 <= self.momentum < 1, "0 <= momentum < 1")
        _check("weight_decay", self.weight_decay, math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               "a finite number >= 0")
        _check("warmup", self.warmup, math.isfinite(self.warmup) and self.warmup >= 0, "a number >= 0")
        _check("decay_factor", self.decay_factor, 0 < self.decay_factor <= 1, "0 < decay_factor <= 1")
        try:
            milestones = [float(m) for m in self.decay_milestones.split(",") if m.strip()]
        except ValueError:
            milestones = [-1.0]
        _check("decay_milestones", self.decay_milestones, all(0 < m < 1 for m in milestones),
               "comma-separated fractions of training in (0, 1), e.g. 0.5,0.75")
        _check("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        _check("nproc_per_node", self.nproc_per_node, self.nproc_per_node >= 1, "an integer >= 1 (1 = this process)")
        if self.batch_size % self.nproc_per_node:
            raise UserError(f"batch_size={self.batch_size} does not divide over nproc_per_node={self.nproc_per_node} "
                            f"processes; allowed: a batch_size that is a multiple of {self.nproc_per_node}")
        _check("epochs", self.epochs, math.isfinite(self.epochs) and (self.epochs > 0 or self.steps > 0),
               "a number > 0 (or set steps)")
        _check("steps", self.steps, 0 <= self.steps <= MAX_STEPS, f"an integer in 0..{MAX_STEPS} (0 = use epochs)")
        _check("eigen_k", self.eigen_k, self.eigen_k >= 0, "an integer >= 0 (0 = all)")
        for name in ("log_every", "eval_every", "snapshot_every", "checkpoint_every"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "an integer >= 0 (0 = off)")

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

    teacher_arch: str = ""  # empty = same as `arch` (self-distillation)
    teacher_width: int = 0  # 0 = `width` when the architectures match, else the teacher arch's default
    teacher_depth: int = 0  # 0 = `depth` when the architectures match, else the teacher arch's default
    teacher_pretrained: str = ""  # text: local checkpoint the teacher fine-tunes; empty = `pretrained`
    teacher_run_id: str = ""  # empty = reuse a matching finished teacher, else train one; a unique id prefix works
    teacher_fit_fraction: float = 1.0  # the teacher trains on this fraction only (< 1: it cannot interpolate)
    temperature: float = 4.0  # softmax temperature of the distillation loss (paper Eq. 2)
    distill_weight: float = 1.0  # weight of the distillation term; the one-hot term gets 1 - this
    same_init: bool = True  # start from the teacher's exact initial weights (paper §D.3)
    # §7's proposal (README "Beyond the paper"): standard (Eq. 2), confidence_weighted, confidence_tempered
    kd_target: str = "standard"  # what the KD term matches: standard, confidence_weighted, confidence_tempered
    confidence_power: float = 0.0  # confidence_weighted: gamma >= 0 of the weights c^gamma (0 = standard)
    confidence_spread: float = 0.0  # confidence_tempered: beta >= 0, tau * (1 + beta * (1 - quantile)) (0 = standard)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_arch:
            check_model(self.dataset, self.teacher_arch, self.teacher_width, self.teacher_depth, "teacher_")
        _text_only("teacher_pretrained", self.teacher_pretrained, self.dataset)
        _check("teacher_fit_fraction", self.teacher_fit_fraction, 0 < self.teacher_fit_fraction <= 1,
               "0 < teacher_fit_fraction <= 1")
        for name in ("teacher_width", "teacher_depth"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, "an integer >= 0 (0 = see above)")
        _check("temperature", self.temperature, math.isfinite(self.temperature) and self.temperature > 0,
               "a finite number > 0")
        _check("distill_weight", self.distill_weight, 0 <= self.distill_weight <= 1, "0 <= distill_weight <= 1")
        check_kd_target(self.kd_target, self.confidence_power, self.confidence_spread, self.distill_weight)

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
        """The one-hot training config of this student's teacher."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        arch = self.teacher_arch or self.arch
        same = arch == self.arch
        return TrainConfig(**{**shared, "arch": arch, "width": self.teacher_width or (self.width if same else 0),
                              "depth": self.teacher_depth or (self.depth if same else 0),
                              "pretrained": self.teacher_pretrained or self.pretrained,
                              "fit_fraction": self.teacher_fit_fraction})

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

    switch_to: str = "onehot"  # the loss the run switches to (see above)
    switch_at: float = 0.5  # <= 1: fraction of the nominal training length; > 1: an absolute step
    switch_window: int = 0  # steps of a gradual linear switch (Table 1: 1k or 10k); 0 = at once
    extend_to: int = 0  # train until this step, past the nominal end (the paper: 21k -> 30k); 0 = no
    from_run_id: str = ""  # start from this run's checkpoint at the switch step instead of retraining (id or prefix)

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("switch_to", self.switch_to, SWITCH_TO)
        whole_or_fraction = self.switch_at <= 1 or float(self.switch_at).is_integer()
        _check("switch_at", self.switch_at, self.switch_at > 0 and whole_or_fraction,
               "a fraction in (0, 1] or a whole step number > 1")
        _check("switch_window", self.switch_window, self.switch_window >= 0, "an integer >= 0")
        _check("extend_to", self.extend_to, 0 <= self.extend_to <= MAX_STEPS,
               f"an integer in 0..{MAX_STEPS} (0 = the nominal length)")


@dataclass(frozen=True)
class AnalyzeConfig:
    """`analyze`: confidence-exaggeration analysis of one student, or of every unanalyzed one."""

    student_run_id: str = ""  # the student to analyze (a unique prefix of its id is enough)
    experiment: str = ""  # with no student_run_id: analyze every student here lacking an analysis;
    # with one: the experiment it must belong to
    quantile: float = 0.25  # slopes over the bottom / top this fraction by teacher confidence
    bins: int = 60  # density-plot resolution
    eigen_pairs: int = 32  # random direction pairs (i < j) compared for eigen/exaggerated_pair_frac
    theory: bool = False  # also run the Theorem 4.1 check (the `theory` entry point's defaults)

    def __post_init__(self) -> None:
        _check("quantile", self.quantile, 0 < self.quantile <= 0.5, "0 < quantile <= 0.5")
        _check("bins", self.bins, self.bins >= 5, "an integer >= 5")
        _check("eigen_pairs", self.eigen_pairs, self.eigen_pairs >= 1, "an integer >= 1")


KNOB_DEFAULTS = {  # paper §C.5: smaller batch size and learning rate, 2-2.3x longer training
    "batch_size": lambda base: [base, max(1, base // 2), max(1, base // 4)],
    "lr": lambda base: [base, base / 3, base / 10],
    "length": lambda base: [1.0, 2.0, 2.3],
    # §7 (README "Beyond the paper"): 0 is plain KD exactly, so each study holds its own baseline
    "confidence_power": lambda base: [0.0, 0.5, 1.0, 2.0],
    "confidence_spread": lambda base: [0.0, 0.5, 1.0, 2.0],
}
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class AblateConfig(DistillConfig):
    """`ablate`: an Optuna study over one knob; each trial distills a student (reusing teachers)
    and analyzes it. The fields above are the base setting every trial starts from."""

    knob: str = "batch_size"  # batch_size, lr, length (a multiple of the training length) or any field above
    values: str = ""  # comma-separated; empty = the paper's ablation of the knob (KNOB_DEFAULTS)
    seeds: int = 1  # seeds per value: seed, seed + 1, ...
    n_trials: int = 0  # 0 = the whole grid (values x seeds); > 0 = a TPE search of this many trials
    objective: str = "test/slope_bottom25"  # a metric of the analysis or student run
    second_objective: str = ""  # optional, e.g. test/acc: a two-objective study
    direction: str = "maximize"  # of the objective
    second_direction: str = "maximize"  # of the second objective
    study: str = ""  # Optuna study name; empty = derived from the experiment, preset and knob
    storage: str = ""  # SQLAlchemy URL of the study store; empty = optuna.db beside the MLflow store
    pruner: str = "median"  # median (Optuna's MedianPruner on objectives logged during training) or none
    heartbeat: int = 30  # seconds between a worker's heartbeats; silent for 4x this (at least 60 s) = dead, retried

    def __post_init__(self) -> None:
        super().__post_init__()
        knobs = ("length",) + tuple(f.name for f in fields(DistillConfig))
        _choice("knob", self.knob, knobs)
        _check("seeds", self.seeds, 1 <= self.seeds <= 2**32 - self.seed,
               f"an integer >= 1 whose last seed (seed + seeds - 1) is {SEEDS}")
        _check("n_trials", self.n_trials, self.n_trials >= 0, "an integer >= 0 (0 = the grid)")
        _check("heartbeat", self.heartbeat, self.heartbeat >= 1, "an integer >= 1 (seconds)")
        _check("nproc_per_node", self.nproc_per_node, self.nproc_per_node == 1,
               "1 (a study's trials train in one process each; spread them with workers instead)")
        _choice("direction", self.direction, DIRECTIONS)
        _choice("second_direction", self.second_direction, DIRECTIONS)
        _choice("pruner", self.pruner, ("median", "none"))
        if not self.objective:
            raise UserError("objective='' is not allowed; name a logged metric, e.g. test/slope_bottom25")
        if self.knob not in KNOB_DEFAULTS and not self.values:
            raise UserError(f"knob={self.knob!r} has no default values; pass values=v1,v2,... "
                            f"(defaults exist for {', '.join(KNOB_DEFAULTS)})")
        implied = target_of(self.knob)
        if implied and self.kd_target not in ("standard", implied):
            raise UserError(f"knob={self.knob} sets kd_target={implied}; kd_target={self.kd_target} does not take it "
                            f"(pass kd_target={implied}, or leave it standard)")
        if self.values and not self.values.replace(",", "").strip():  # "" is the default grid; ",,," is none
            raise UserError(f"values={self.values!r} holds no value; pass comma-separated values, e.g. values=1,2")

    def knob_values(self) -> list:
        """The values of the knob, parsed with the field's type (`length`: a float multiple)."""
        kind = float if self.knob == "length" else field_types(DistillConfig)[self.knob]
        if not self.values:
            base = 1.0 if self.knob == "length" else getattr(self, self.knob)
            return KNOB_DEFAULTS[self.knob](base)
        return [parse_value(self.knob, v, kind) for v in self.values.split(",") if v.strip()]


@dataclass(frozen=True)
class TheoryConfig:
    """`theory`: Theorem 4.1 on a random linear-regression instance with p > n (kdtrack/theory.py)."""

    n: int = 32  # samples
    p: int = 256  # parameters (> n)
    seed: int = 0  # draws the random instance
    teacher_time: float = 5.0  # T_te, in units of 1 / (top eigenvalue of X X^T)
    steps: int = 200  # gradient-descent steps to T_te (cross-entropy runs 5 times as many)
    pairs: int = 32  # direction pairs sampled for the finite-step and cross-entropy checks
    classes: int = 4  # classes of the cross-entropy check
    experiment: str = ""  # MLflow experiment of the theory run; empty = MLFLOW_EXPERIMENT_NAME, else Default

    def __post_init__(self) -> None:
        _check("n", self.n, self.n >= 2, "an integer >= 2")
        _check("p", self.p, self.p > self.n, f"an integer > n (= {self.n}): the theorem is about p > n")
        _check("teacher_time", self.teacher_time, math.isfinite(self.teacher_time) and self.teacher_time > 0,
               "a finite number > 0")
        for name in ("steps", "pairs"):
            _check(name, getattr(self, name), getattr(self, name) >= 1, "an integer >= 1")
        _check("classes", self.classes, self.classes >= 2, "an integer >= 2")
        _check("seed", self.seed, 0 <= self.seed < 2**32, SEEDS)


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
