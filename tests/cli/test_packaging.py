from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_conda_env_pins_equal_pyproject():
    pinned = tomllib.load(open(ROOT / "pyproject.toml", "rb"))["project"]["dependencies"]
    conda = yaml.safe_load(open(ROOT / "conda.yaml"))
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert [p for p in pip if p != "-e ."] == pinned
