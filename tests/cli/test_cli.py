"""The entry-point commands generated from cli.ENTRY_COMMANDS: each builds its config from -P (and
ablate's own options) and calls its work function positionally, with --experiment where it takes one
(training commands add their run context by keyword).
The work functions are replaced by recorders: what they do is tested with each entry point."""
import pytest
from click.testing import CliRunner

from kdtrack.cli.main import ENTRY_COMMANDS, main
from kdtrack.config import ENTRY_POINTS


def test_every_entry_point_is_a_command_in_mlprojects_order():
    assert [command.entry_point for command in ENTRY_COMMANDS] == list(ENTRY_POINTS)


CASES = [
    ("kdtrack.pipeline.stages.distill",
     ["distill", "-P", "preset=mnist_mlp", "-P", "train_size=64", "--experiment", "X"],
     "run-1", {"train_size": 64}, ("X",), "run-1"),
    ("kdtrack.studies.ablate.ablate", ["ablate", "-P", "knob=batch_size", "--knob", "lr", "--n-trials", "3",
                               "--experiment", "Y"], "study-1", {"knob": "lr", "n_trials": 3}, ("Y",), "study-1"),
    ("kdtrack.analysis.analyze.analyze", ["analyze", "-P", "experiment=Z"], ["a-1", "a-2"], {"experiment": "Z"},
     (), "a-1 a-2"),
    ("kdtrack.analysis.theory.theory", ["theory", "-P", "n=4", "-P", "p=8"],
     "theory-1", {"n": 4, "p": 8}, (), "theory-1"),
]


@pytest.mark.parametrize("work, args, returns, fields, rest, printed", CASES, ids=[c[1][0] for c in CASES])
def test_a_command_calls_its_work_with_the_config(monkeypatch, work, args, returns, fields, rest, printed):
    calls = []

    def recorder(*positional, **keywords):  # the config and experiment positionally; training commands
        calls.append(positional)  # add the run context (one process here) by keyword
        assert set(keywords) <= {"context"} and ("context" not in keywords or keywords["context"].world.size == 1)
        return returns

    monkeypatch.setattr(work, recorder)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [(config, *others)] = calls
    assert {name: getattr(config, name) for name in fields} == fields
    assert tuple(others) == rest
    assert result.output == printed + "\n"
