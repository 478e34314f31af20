import tomllib
import yaml


def test_conda_env_pins_equal_pyproject():
    pinned = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
    conda = yaml.safe_load(open("conda.yaml"))
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert [p for p in pip if p != "-e ."] == pinned
