"""Store size: the store `make demo` leaves (Table 7's `mnist_mlp` and `noisy_mnist_rf`: a
teacher, a distilled student and an analysis each, on 128 points), under each `keep_checkpoints`
policy, each in a temporary store of its own (target: the demo's, `last`, under 60 MB).

    .venv/bin/python benchmarks/store_size.py [--policies last,switch,all]

A store's size is its sqlite database plus its artifact folder (not the demo's local copy of the
figures); the ratios are against `keep_checkpoints=all` measured in the same run. Each policy runs
in a subprocess: a fresh process and store, as `make demo` would. About 2 minutes per policy on 2
shared cores. Before issue 16 (every checkpoint carrying random features' 784 x 5000 projection,
all checkpoints kept), the same store was 352 MB (benchmarks/STORE.md).

    .venv/bin/python benchmarks/store_size.py --suite table7 [--claims claims.json]

runs a shipped suite (`kdtrack suite run`, with the storage a suite's runs keep) in a temporary
store instead, prints its size against the size documented before (table7: 1.6 GB, issue 31) and
writes `kdtrack claims --format json` of it, for comparison with the committed report. About 13
minutes for table7 on 2 idle cores.

    .venv/bin/python benchmarks/store_size.py --costs

prints what each policy costs per run for the shipped image presets (the README's table), from
each model's state dict built on PyTorch's meta device: nothing is trained.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

TARGET_MB = 60
SUITE_BEFORE_MB = {"table7": 1600}  # issue 31: the store of `suite run table7` with keep_checkpoints=switch
SUITE_TARGET_MB = 150
parser = argparse.ArgumentParser()
parser.add_argument("--policies", default="last,switch,all", help="comma-separated keep_checkpoints values")
parser.add_argument("--suite", help="run this shipped suite in a temporary store and measure it")
parser.add_argument("--claims", default="suite-claims.json", help="where --suite writes the suite's claims")
parser.add_argument("--costs", action="store_true", help="print each policy's cost per run for the image presets")
parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run the demo with this policy in the cwd
args = parser.parse_args()

if args.one:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{os.getcwd()}/mlflow.db"
    from kdtrack.cli.demo import demo

    demo("kdtrack-demo", Path("kdtrack-out"), ("mnist_mlp", "noisy_mnist_rf"), args.one)
    sys.exit(0)


def kind(path: Path) -> str:
    """What a stored file is, for the breakdown."""
    parts = path.parts
    if "models" in parts:
        return "logged models"
    if "checkpoints" in parts:
        return f"checkpoints/{path.name.removesuffix('.sha256').split('_')[0].removesuffix('.pt')}"
    return {".parquet": "tables", ".png": "figures", ".pt": "eigen weights"}.get(path.suffix, "other")


def measure(policy: str) -> tuple[int, Counter]:
    folder = Path(tempfile.mkdtemp(prefix=f"store-{policy}-"))
    done = subprocess.run([sys.executable, __file__, "--one", policy], cwd=folder, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the demo failed with keep_checkpoints={policy}:\n{done.stderr[-3000:]}")
    sizes = sizes_of(folder)
    return sum(sizes.values()), sizes


def sizes_of(folder: Path) -> Counter:
    sizes = Counter({"database": (folder / "mlflow.db").stat().st_size})
    for file in (folder / "mlruns").rglob("*"):
        if file.is_file():
            sizes[kind(file.relative_to(folder / "mlruns"))] += file.stat().st_size
    return sizes


def show(label: str, sizes: Counter, note: str = "") -> None:
    print(f"{label} {sum(sizes.values()) / 1e6:7.1f} MB{note}")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"    {name:<22} {size / 1e6:7.2f} MB")


def measure_suite(name: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"store-{name}-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    kdtrack = [sys.executable, "-m", "kdtrack"]
    done = subprocess.run([*kdtrack, "suite", "run", name], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"suite run {name} failed:\n{done.stderr[-3000:]}")
    claims = subprocess.run([*kdtrack, "claims", "--experiment", name, "--format", "json"], cwd=folder, env=env,
                            capture_output=True, text=True, check=True)
    Path(args.claims).write_text(claims.stdout)
    sizes = sizes_of(folder)
    before = SUITE_BEFORE_MB.get(name)
    ratio = f", {sum(sizes.values()) / 1e6 / before:.3f} of the {before} MB documented before" if before else ""
    show(f"suite {name}:", sizes, f"{ratio} (target <= {SUITE_TARGET_MB} MB); store {folder}; claims {args.claims}")


def costs() -> None:
    """Each image preset's bytes per run under each policy: W (the state dict) for final.pt, W
    more for a logged model and, under `switch` and `all`, for a teacher's init.pt (under `last`
    a digest; a suite's student lets go of final.pt once analyzed), W + the optimizer's moments (Adam: two
    per weight, SGD with momentum: one) per step checkpoint, of which `switch` keeps three and
    `all` two more (last_a/b). The probes a checkpoint also carries (a few MB at most) are left out."""
    import torch

    from kdtrack.config import PRESETS
    from kdtrack.models.build import _build

    shapes = {"mnist5k": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100),
              "tinyimagenet": ((3, 64, 64), 200), "imagenet": ((3, 224, 224), 1000)}
    print("| preset | weights W | a step checkpoint | last, no logged model (a study's) | last | switch (the "
          "default) | all (at most) |")
    print("|---|---|---|---|---|---|---|")
    for name, preset in PRESETS.items():
        if preset["dataset"] not in shapes:
            continue  # text: a pretrained checkpoint's size
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = _build(preset["arch"], *shapes[preset["dataset"]], preset.get("width", 0), preset.get("depth", 0))
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        step = weights + (2 if preset["optimizer"] == "adam" else 1) * trained
        mb = [size / 1e6 for size in (weights, step, weights, 2 * weights, 2 * weights + 3 * step,
                                      2 * weights + 5 * step)]
        print(f"| {name} | " + " | ".join(f"{size:.1f} MB" for size in mb) + " |")


if args.costs:
    costs()
    sys.exit(0)
if args.suite:
    measure_suite(args.suite)
    sys.exit(0)
results = {policy: measure(policy) for policy in args.policies.split(",")}
baseline = results.get("all", (0, None))[0]
for policy, (total, sizes) in results.items():
    ratio = f", {total / baseline:.3f} of keep_checkpoints=all" if baseline else ""
    mark = f"  (make demo's store; target < {TARGET_MB} MB)" if policy == "last" else ""
    show(f"keep_checkpoints={policy:<6}", sizes, f"{ratio}{mark}")
