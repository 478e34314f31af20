"""Store size: the store `make demo` leaves (Table 7's `mnist_mlp` and `noisy_mnist_rf`: a
teacher, a distilled student and an analysis each, on 128 points), under each `keep_checkpoints`
policy, each in a temporary store of its own (target: the demo's, `last`, under 60 MB).

    .venv/bin/python benchmarks/store_size.py [--policies last,switch,all]

A store's size is its sqlite database plus its artifact folder (not the demo's local copy of the
figures); the ratios are against `keep_checkpoints=all` measured in the same run. Each policy runs
in a subprocess: a fresh process and store, as `make demo` would. About 2 minutes per policy on 2
shared cores. Before issue 16 (every checkpoint carrying random features' 784 x 5000 projection,
all checkpoints kept), the same store was 352 MB (benchmarks/STORE.md).
"""
import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

TARGET_MB = 60
parser = argparse.ArgumentParser()
parser.add_argument("--policies", default="last,switch,all", help="comma-separated keep_checkpoints values")
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
    sizes = Counter({"database": (folder / "mlflow.db").stat().st_size})
    for file in (folder / "mlruns").rglob("*"):
        if file.is_file():
            sizes[kind(file.relative_to(folder / "mlruns"))] += file.stat().st_size
    return sum(sizes.values()), sizes


results = {policy: measure(policy) for policy in args.policies.split(",")}
baseline = results.get("all", (0, None))[0]
for policy, (total, sizes) in results.items():
    ratio = f", {total / baseline:.3f} of keep_checkpoints=all" if baseline else ""
    mark = f"  (make demo's store; target < {TARGET_MB} MB)" if policy == "last" else ""
    print(f"keep_checkpoints={policy:<6} {total / 1e6:7.1f} MB{ratio}{mark}")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"    {name:<22} {size / 1e6:7.2f} MB")
