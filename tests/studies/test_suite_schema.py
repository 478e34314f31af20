"""A suite file's shape is checked against its schema before anything expands: every malformed
shape is one line naming the file, the path of the bad key and what is allowed; YAML aliases and
matrices cannot blow up."""
import time

import pytest

from kdtrack.errors import UserError
from kdtrack.studies import suite as suites

HEAD = "experiment: x\nsettings:\n"
BAD = [  # (settings, what the one line must say): each used to be a traceback or silently accepted
    ("  - {name: a, preset: mnist_mlp, seeds: 3}", r"settings\[0\]\.seeds = 3 is not allowed; allowed: a valid list"),
    ("  - {name: a, preset: mnist_mlp, seeds: '01'}", r"settings\[0\]\.seeds = '01' is not allowed"),
    ("  - {name: a, preset: mnist_mlp, seeds: [-1]}", r"settings\[0\]\.seeds\[0\] = -1 is not allowed"),
    ("  - {name: a, preset: mnist_mlp, students: distill}", r"settings\[0\]\.students = 'distill' is not allowed"),
    ("  - {name: a, preset: mnist_mlp, students: [{loss: kd}]}",
     r"settings\[0\]\.students\[0\]\.loss = 'kd' is not allowed; allowed: 'distill', 'onehot' or 'switch'"),
    ("  - {name: a, preset: mnist_mlp, students: [{arch: [mlp]}]}",
     r"settings\[0\]\.students\[0\]\.arch = \['mlp'\] is not allowed; allowed: a string, number or boolean"),
    ("  - {name: a, preset: mnist_mlp, overrides: [lr, 1]}",
     r"settings\[0\]\.overrides = \['lr', 1\] is not allowed; allowed: a valid dictionary"),
    ("  - {name: a, preset: mnist_mlp, overrides: {lr: {x: 1}}}", r"settings\[0\]\.overrides\.lr = \{'x': 1\}"),
    ("  - {name: [a, b], preset: mnist_mlp}", r"settings\[0\]\.name = \['a', 'b'\] is not allowed"),
    ("  - {name: a, preset: mnist_mlp, teacher: resnet20}",
     r"settings\[0\]\.teacher = 'resnet20' is not allowed; allowed: a mapping with keys arch, width, depth"),
    ("  - {name: a, preset: mnist_mlp, teacher: {arc: mlp}}",
     r"settings\[0\]\.teacher has unknown key 'arc'; allowed: arch, width, depth, pretrained"),
    ("  - {name: a, preset: mnist_mlp, matrix: {lr: []}}",
     r"settings\[0\]\.matrix\.lr = \[\] is not allowed; allowed: at least 1 item"),
    ("  - {name: a, preset: null}", r"settings\[0\]\.preset = None is not allowed; allowed: a valid string"),
    ("  - {preset: mnist_mlp}", r"settings\[0\]\.name is missing"),
    ("  - {name: a, preset: mnist_mlp}\n  - {name: a, preset: mnist_mlp, seeds: [1]}",
     r"settings: allowed: a distinct name for each setting \('a' is used twice\)"),
    ("  []", r"settings = \[\] is not allowed; allowed: at least 1 item"),
]


@pytest.mark.parametrize("settings, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_malformed_shape_is_one_line_naming_the_file_and_the_key(tmp_path, settings, message):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + settings + "\n")
    with pytest.raises(UserError, match=r"^suite '.*bad.yaml': " + message) as error:
        suites.load(str(path))
    assert "\n" not in str(error.value)


BOMB = "".join(f"      {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
               for previous, name in zip("abcdefgh", "bcdefghi"))


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine levels of nine aliases: 464 bytes that took 27 s and 2.4 GB, refused at once."""
    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD + "  - name: a\n    preset: mnist_mlp\n    matrix:\n      a: &a [lol, lol, lol, lol, lol, "
                    "lol, lol, lol, lol]\n" + BOMB)
    started = time.process_time()
    with pytest.raises(UserError, match=r"bomb.yaml' holds \d+ YAML nodes \(its aliases expanded\); allowed: at most"):
        suites.load(str(path))
    assert time.process_time() - started < 10  # CPU seconds: generous, the old code took 27 of them


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text(HEAD + "  - {name: a, preset: mnist_mlp, overrides: &small {train_size: 64, width: 32}}\n"
                    "  - {name: b, preset: noisy_mnist_rf, overrides: *small}\n")
    tasks = suites.load(str(path)).tasks
    assert [(t.setting, t.params["width"]) for t in tasks] == [("a", "32"), ("b", "32")]


def test_a_suite_of_too_many_tasks_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "huge.yaml"
    values = "[" + ", ".join(str(v) for v in range(1, 101)) + "]"
    path.write_text(HEAD + f"  - {{name: a, preset: mnist_mlp, matrix: {{width: {values}, batch_size: {values}}}, "
                    "seeds: [0, 1]}\n")
    with pytest.raises(UserError, match=r"huge.yaml' expands to 20000 tasks \(matrix x students x seeds\); "
                                        r"allowed: at most 10000"):
        suites.load(str(path))


def test_the_shipped_suites_fit_the_schema():
    for name in suites.specfile.shipped(suites.SHIPPED):
        assert suites.load(name).tasks
