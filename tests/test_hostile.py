"""Hostile and unlucky input (issue 30), kept so that none of it comes back. Cases that belong to
one layer live beside its tests and are listed here:
- a crafted CIFAR batch runs nothing: tests/data/test_data.py (restricted unpickler);
- a tokenizer folder with custom code runs nothing: tests/data/test_paper_data.py;
- depth=1000000 and width=1e10 are refused by arithmetic: tests/primitives/test_config.py;
- `suite run --workers 1000` is refused before a fork: tests/studies/test_launch.py;
- a checkpoint never overwrites the one the resume tag names: tests/tracking/test_storage.py;
- a finished run drops a stale failure tag: tests/tracking/test_lifecycle.py.
The cases below cross layers: user text that reaches Markdown a browser renders."""
import pytest
from click.testing import CliRunner
from mlflow.entities import Metric, Param

from kdtrack import code_version, tracking
from kdtrack.cli.main import main
from kdtrack.contract import CODE_VERSION, NOTE, ROLE, SUITE
from kdtrack.markdown import inert, inert_html
from kdtrack.tracking import ui

SCRIPT = "<script>alert('kd')</script>"


def test_inert_text_shows_markup_as_typed():
    assert inert(f"x{SCRIPT}[a](b)`c`\\") == "x\\<script>alert('kd')\\</script>\\[a\\](b)\\`c\\`\\\\"
    assert inert_html(f"{SCRIPT} [0.1, 0.2]") == "\\<script>alert('kd')\\</script> [0.1, 0.2]"


def test_report_md_escapes_a_script_in_an_experiment_name(store, tmp_path):
    client = tracking.client()
    experiment_id = client.create_experiment(f"exp{SCRIPT}")
    run_id = client.create_run(experiment_id, tags={ROLE: "teacher", CODE_VERSION: code_version()}).info.run_id
    client.log_batch(run_id, params=[Param("preset", "mnist_mlp"), Param("seed", "0")],
                     metrics=[Metric("test/acc", 0.5, 0, 0)])
    client.set_terminated(run_id, "FINISHED")
    result = CliRunner().invoke(main, ["report", "--experiment", f"exp{SCRIPT}", "--format", "md",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    assert "exp\\<script>" in text and "<script>" not in text.replace("\\<script>", "")


def test_run_descriptions_make_names_inert():
    note = ui.linked("", {"kdtrack.teacher_run_id": "a" * 32}, lambda run_id: ("1", f"t]({SCRIPT})"))
    assert "\\<script>" in note and "t\\](" in note
    tags = ui.experiment_tags({}, {}, {SUITE: f"s`{SCRIPT}/setting"})
    assert "\\`\\<script>" in tags[NOTE]


def test_a_spec_file_too_big_or_too_deep_is_one_line(tmp_path):
    import pytest

    from kdtrack.errors import UserError
    from kdtrack.studies.suite import load

    huge = tmp_path / "seeds.yaml"
    huge.write_text("experiment: x\nsettings:\n  - name: a\n    preset: mnist_mlp\n    seeds:\n"
                    + "".join(f"      - {seed}\n" for seed in range(100_000)))
    with pytest.raises(UserError, match=r"seeds.yaml' is [\d,]+ bytes; allowed: at most 1,000,000"):
        load(str(huge))
    deep = tmp_path / "deep.yaml"
    deep.write_text("experiment: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"deep.yaml' nests too deep to read") as refused:
        load(str(deep))
    assert "\n" not in str(refused.value)


def test_a_5000_character_experiment_name_is_one_line(store):
    import pytest

    from kdtrack.errors import UserError

    with pytest.raises(UserError, match=r"has 5000 characters; allowed: at most 256"):
        tracking.resolve_experiment("x" * 5000)


def test_theory_with_a_huge_instance_is_refused_before_it_runs():
    import pytest

    from kdtrack.config import TheoryConfig, from_params
    from kdtrack.errors import UserError

    with pytest.raises(UserError, match=r"n=100000 is out of range; allowed: an integer from 2 to 2000"):
        from_params(TheoryConfig, {"n": "100000", "p": "200000"})
    with pytest.raises(UserError, match=r"p=100000000 is out of range; allowed: p \* steps \* classes small enough"):
        from_params(TheoryConfig, {"p": "100000000"})


def test_a_suite_task_done_by_other_code_is_not_done(tmp_path):
    """Issue 30, case 8: `suite` called a task done from its params alone, while training, whose
    reuse key holds the code version, would train it again."""
    from types import SimpleNamespace

    from kdtrack.config import key_params
    from kdtrack.studies import suite as suites

    path = tmp_path / "one.yaml"
    path.write_text("experiment: x\nsettings:\n  - {name: a, preset: mnist_mlp}\n")
    [task] = suites.load(str(path)).tasks

    def student(version):
        return SimpleNamespace(data=SimpleNamespace(params=key_params(task.config()), tags={CODE_VERSION: version}),
                               info=SimpleNamespace(status="FINISHED", start_time=1))

    assert suites.task_state([student(code_version())], task) == "done"
    assert suites.task_state([student("0ldc0de0ld00")], task) == "missing"


@pytest.mark.slow
def test_two_analyses_of_one_student_started_together_write_one_run(lineage):
    """Issue 30, case 6: both wrote a run, and the report then said the second was 'trained again
    (force)'. Now one writes; the other waits for it, or withdraws its run, and reuses it."""
    import subprocess
    import sys
    from pathlib import Path

    from kdtrack.contract import STUDENT_RUN

    kdtrack = str(Path(sys.executable).parent / "kdtrack")
    command = [kdtrack, "analyze", "-P", f"student_run_id={lineage.student}", "-P", "bins=33"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate() for process in both]
    assert [process.returncode for process in both] == [0, 0], [err[-2000:] for _, err in outputs]
    [first], [second] = (out.split()[-1:] for out, _ in outputs)
    assert first == second  # the same analysis run, reused by the one that did not write it
    experiment = tracking.get_run(lineage.student).info.experiment_id
    written = [r for r in tracking.search_all([experiment], "tags.`kdtrack.role` = 'analysis'")
               if r.data.tags.get(STUDENT_RUN) == lineage.student and r.data.params.get("bins") == "33"]
    assert [r.info.run_id for r in written] == [first] and written[0].info.status == "FINISHED"


def test_a_roberta_folder_whose_weights_are_a_pickle_is_one_line(tmp_path):
    """Issue 30, point 10: an UnpicklingError traceback; and the pickle's code never runs."""
    import pickle

    from transformers import RobertaConfig

    from kdtrack.errors import UserError
    from kdtrack.models.roberta import _from_pretrained

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    RobertaConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64,
                  vocab_size=100).save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(Planted()))
    with pytest.raises(UserError, match=r"could not be loaded as a RoBERTa model") as refused:
        _from_pretrained(str(tmp_path), 2)
    assert "\n" not in str(refused.value) and not (tmp_path / "ran").exists()
