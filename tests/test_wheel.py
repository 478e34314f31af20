"""The built wheel carries what kdtrack reads at run time besides its modules (the dashboards, the
suites), and `kdtrack claims` installed from it, not from the checkout, finds its shipped dashboard.

The slow tests build the wheel offline (--no-build-isolation: this environment's setuptools) and
install it with --no-deps into a fresh virtual environment, which takes torch, mlflow and polars from
this one's site-packages through a .pth line; about half a minute on 2 cores."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_package():
    """pyproject lists the packages (packages.find cannot map dashboards/ into kdtrack): one added
    to kdtrack/ but not to the list would be missing from the wheel."""
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted([*find_packages(str(REPO), include=["kdtrack*"]), "kdtrack.dashboards"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the checkout's sources: pip builds in the source folder, and the copy
    keeps build/ and kdtrack.egg-info/ out of the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for folder in ("kdtrack", "dashboards"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(source)], check=True)
    [built] = out.glob("kdtrack-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_the_dashboards_and_the_suites(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    dashboards = {f"kdtrack/dashboards/{p.name}" for p in (REPO / "dashboards").glob("*.yaml")}
    suites = {f"kdtrack/studies/suites/{p.name}" for p in (REPO / "kdtrack/studies/suites").glob("*.yaml")}
    assert "kdtrack/dashboards/paper.yaml" in dashboards and "kdtrack/studies/suites/table7.yaml" in suites
    assert dashboards <= names and suites <= names


@pytest.mark.slow
def test_an_installed_kdtrack_finds_its_shipped_dashboard(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the fresh one (--python), the wheel alone: nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True)
    # The dependencies come from this environment's site-packages, appended after the fresh one's own:
    # a plain path line, so this environment's .pth files (its editable kdtrack among them) are not read.
    ours = sysconfig.get_path("purelib", vars={"base": sys.prefix, "platbase": sys.prefix})
    theirs = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            check=True, capture_output=True, text=True).stdout.strip()
    (Path(theirs) / "kdtrack-test-dependencies.pth").write_text(ours + "\n")

    outside = tmp_path / "elsewhere"  # the working directory: not the checkout, which '' would put first
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"

    def run(*command):
        return subprocess.run(command, cwd=outside, env=env, capture_output=True, text=True, timeout=300)

    where = run(python, "-c", "import kdtrack; print(kdtrack.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    made = run(python, "-c", "from mlflow import MlflowClient; client = MlflowClient(); run = client.create_run("
                             "client.create_experiment('installed')); client.set_terminated(run.info.run_id)")
    assert made.returncode == 0, made.stderr
    claims = run(venv / "bin" / "kdtrack", "claims", "--experiment", "installed", "--format", "json")
    assert claims.returncode == 0, claims.stdout + claims.stderr
    # The shipped paper dashboard's claims, each with no runs: one run without a role is no claim's.
    paper = yaml.safe_load((REPO / "dashboards" / "paper.yaml").read_text())
    rows = json.loads(claims.stdout)
    assert [row["id"] for row in rows] == [claim["id"] for claim in paper["claims"]]
    assert {row["verdict"] for row in rows} == {"no runs"}
