"""The CUDA path end to end, for a lent GPU (one script, a few minutes): distillation on
generated CIFAR-100 and Tiny-ImageNet data in the published layouts through the pipeline (bf16
autocast, channels_last, on-device crop/flip, pinned DataLoader workers, the teacher on each
augmented batch), then, on a machine with several GPUs, the CIFAR-100 distillation on all of them
(`-P nproc_per_node=N`: NCCL, SyncBatchNorm) against its one-GPU run, then benchmarks/resnet_step.py
at full size. Runs on CPU too, slowly.

    .venv/bin/python benchmarks/gpu_smoke.py [--per-class 20] [--epochs 2]
"""
import argparse
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--per-class", type=int, default=20)
parser.add_argument("--epochs", default="2")
parser.add_argument("--skip-benchmark", action="store_true")
args = parser.parse_args()

root = Path(tempfile.mkdtemp())
os.chdir(root)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import datafixtures  # noqa: E402
import torch  # noqa: E402

from kdtrack import tracking  # noqa: E402
from kdtrack.config import DistillConfig, from_params  # noqa: E402
from kdtrack.pipeline.stages import distill  # noqa: E402

device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
datafixtures.write_cifar(root / "data", 100, per_class=args.per_class)
datafixtures.write_tinyimagenet(root / "data", per_class=args.per_class)
settings = {
    "cifar100": {"preset": "cifar100_v1", "arch": "resnet20", "teacher_arch": "resnet56", "batch_size": "256"},
    "tinyimagenet": {"preset": "tinyimagenet", "arch": "mobilenet_v2", "teacher_arch": "resnet18", "batch_size": "32"},
}
for name, params in settings.items():
    config = from_params(DistillConfig, {**params, "data_dir": str(root / "data"), "epochs": args.epochs,
                                         "warmup": "0", "lr": "0.05"})
    start = time.perf_counter()
    student = tracking.get_run(distill(config, f"gpu-smoke-{name}"))
    metrics = student.data.metrics
    print(f"[{device}] {name}: teacher {config.teacher_arch} -> student {config.arch}, "
          f"{time.perf_counter() - start:.1f} s with the teacher, train/acc {metrics['train/acc']:.3f}, "
          f"test/acc {metrics['test/acc']:.3f}, train/agreement {metrics['train/agreement']:.3f}")
gpus = torch.cuda.device_count()
if gpus >= 2:  # the same CIFAR-100 setting on every GPU: one run, as the one-GPU one
    import subprocess

    params = {**settings["cifar100"], "data_dir": str(root / "data"), "epochs": args.epochs, "warmup": "0",
              "lr": "0.05", "nproc_per_node": str(gpus)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kdtrack", "distill", *(f"-P{k}={v}" for k, v in params.items()),
                           "--experiment", "gpu-smoke-ddp"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    student = tracking.get_run(done.stdout.split()[-1])
    single = tracking.search_all([tracking.experiment_id("gpu-smoke-cifar100")], "tags.`kdtrack.role` = 'student'")[0]
    print(f"[{device} x{gpus}] cifar100 DDP: {time.perf_counter() - start:.1f} s with the teacher, "
          f"world_size {student.data.params['world_size']}, backend {student.data.params['backend']}, "
          f"test/acc {student.data.metrics['test/acc']:.3f} (one GPU: {single.data.metrics['test/acc']:.3f})")
else:
    print(f"[{device}] DDP case skipped: {gpus} GPU(s); it needs 2 or more")
if not args.skip_benchmark:
    sys.argv = [sys.argv[0]]
    runpy.run_path(str(Path(__file__).with_name("resnet_step.py")), run_name="__main__")
