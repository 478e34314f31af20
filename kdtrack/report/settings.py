"""Short names for settings, for tables people read. `collect.setting_of` names a setting by its
preset and every parameter that varies (`mnist_mlp mlp>mlp noise=0.0 width=1000 depth=2 lr=0.0001`):
exact, and what the JSON and `--strict` keep, but too wide for a table column. A table shows the
short name and a legend below it gives the full one.

The short name is the suite's setting name where the runs carry one (`kdtrack.suite` is
`<suite>/<setting>`), else the preset; followed by the parameters that tell apart the settings
sharing that name (a suite setting with several students, a preset run at several rates)."""
from __future__ import annotations

import polars as pl

UNSET = "-"  # what setting_of writes for a parameter a run lacks


def parts(setting: str) -> dict[str, str]:
    """'mnist_mlp mlp>mlp noise=0.0 lr=0.1' -> {'preset': 'mnist_mlp', 'arch': 'mlp>mlp', 'noise=': '0.0',
    'lr=': '0.1'}: its tokens by key (setting_of's values hold no spaces: presets, numbers, names)."""
    preset, *tokens = setting.split(" ")
    out = {"preset": preset}
    for token in tokens:
        key, equals, value = token.partition("=")
        out.update({key + equals: value} if equals else {"arch": token})
    return out


def named(groups: dict[str, str]) -> dict[str, str]:
    """setting -> short name, from each setting's group (its suite setting or preset): the group
    alone where it holds one setting, else the group and the parameters that differ within it
    (an unset one left out). A name that two settings would share falls back to the setting."""
    members: dict[str, list[str]] = {}
    for setting, group in groups.items():
        members.setdefault(group, []).append(setting)
    names = {}
    for group, settings in members.items():
        split = {setting: parts(setting) for setting in settings}
        keys = dict.fromkeys(key for tokens in split.values() for key in tokens)
        differ = [k for k in keys if len({tokens.get(k) for tokens in split.values()}) > 1]
        for setting, tokens in split.items():
            shown = [_token(k, tokens[k]) for k in differ if tokens.get(k, UNSET) != UNSET]
            names[setting] = " ".join([group, *shown])
    twice = {name for name in names.values() if list(names.values()).count(name) > 1}
    return {setting: (setting if name in twice else name) for setting, name in names.items()}


def _token(key: str, value: str) -> str:
    return value if key in ("preset", "arch") else f"{key}{value}"


def short_names(runs: pl.DataFrame) -> dict[str, str]:
    """setting -> short name for the settings of the runs that have a preset (the others' setting
    is their role, short already). A setting's group is the suite setting its students carry (its
    other runs' where it has no student: a teacher serves settings of several names), when there
    is exactly one, else its preset."""
    if "suite" not in runs.columns:
        runs = runs.with_columns(pl.lit(None, pl.String).alias("suite"))
    tagged = runs.filter(pl.col("preset").is_not_null()).select(
        "setting", "preset", "role", pl.col("suite").str.splitn("/", 2).struct.field("field_1").alias("name"))
    students = tagged.filter(pl.col("role") == "student")
    chosen = pl.concat([students, tagged.filter(~pl.col("setting").is_in(students["setting"].implode()))])
    groups = chosen.group_by("setting").agg(pl.col("preset").first(), pl.col("name").drop_nulls().unique())
    return named({setting: (names[0] if len(names) == 1 else preset)
                  for setting, preset, names in groups.iter_rows()})


def legend(names: dict[str, str]) -> dict[str, str]:
    """short name -> setting, for the names that are not the setting itself, in name order."""
    return {name: setting for setting, name in sorted(names.items(), key=lambda pair: pair[1]) if name != setting}
