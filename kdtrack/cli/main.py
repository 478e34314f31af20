"""The `kdtrack` command: the entry points in-process, and the embedded demo."""
from __future__ import annotations

import dataclasses
import os
import pkgutil
import re
from dataclasses import dataclass, fields
from pathlib import Path

import click

from kdtrack.cli.entry import exit_on_user_error, parse_params
from kdtrack.config import ENTRY_POINTS, from_params
from kdtrack.errors import UserError


def _use_tracking_uri(uri: str | None) -> None:
    if uri:
        from kdtrack import tracking

        tracking.use_tracking_uri(uri)


def _run(work) -> None:
    result = exit_on_user_error(work)
    if result not in (None, ""):  # no result (nothing left to analyze) is no line
        click.echo(result)


@click.group()
def main() -> None:
    """Experiment tracking for knowledge-distillation research on MLflow.

    Results (run ids, tables) go to stdout; progress and status to stderr. Wherever a run id is
    taken, a unique prefix of it (the 8 characters the MLflow UI shows) is enough.

    Example: kdtrack distill -P preset=mnist_mlp --experiment demo"""


PARAM = click.option("-P", "params", multiple=True, metavar="KEY=VALUE",
                     help="A config field, as in `mlflow run -P`.")
EXPERIMENT = click.option("--experiment", default="",
                          help="MLflow experiment name (default: MLFLOW_EXPERIMENT_NAME or Default).")


def field_option(entry: str, name: str):
    """`--NAME` (dashes for underscores): sets the config field `name` of `entry` as `-P NAME=VALUE`
    would, with the field's help (kdtrack/config.py)."""
    spec = next(f for f in fields(ENTRY_POINTS[entry]) if f.name == name)
    return click.option(f"--{name.replace('_', '-')}", default=None, help=f"{spec.metadata['help']} (-P {name}=...)")


@dataclass(frozen=True)
class EntryCommand:
    """`kdtrack NAME -P KEY=VALUE ... [--experiment X]`: builds the entry point's config and calls its
    work function with it (and the experiment, when the command takes one)."""
    entry_point: str  # a key of kdtrack.config.ENTRY_POINTS; the command's name has dashes for underscores
    work: str  # "module:function", imported only when the command runs: importing torch takes seconds
    help: str  # what it does, then an example
    takes_experiment: bool = True  # analyze and theory name theirs in the config (--experiment sets it)
    options: tuple = ()  # more click options; each one given sets the config field of its name
    parallel: bool = False  # trains on `-P nproc_per_node=N` processes (kdtrack.pipeline.replicas)
    # "module:function" that submits the work as jobs with --launcher local|slurm (kdtrack.studies.launch)
    launched: str = ""


# Shorthands for the fields an ablation is mostly about (`--knob lr` is `-P knob=lr`); they win over -P.
ABLATE_OPTIONS = tuple(field_option("ablate", name) for name in ("preset", "knob", "values", "seeds", "n_trials",
                                                                 "storage"))
# How `suite run` and `ablate` submit their work as jobs (kdtrack.studies.launch); how, not what: no config field.
LAUNCHER = click.option("--launcher", type=click.Choice(["process", "local", "slurm"]), default="process",
                        show_default=True, help="process: here; local: submitit jobs on this machine; slurm: "
                        "submitit jobs on a Slurm cluster.")
SLURM_OPTIONS = (
    click.option("--submitit-folder", "folder", default=None,
                 help="Where submitit keeps the job scripts and logs (default .kdtrack/submitit)."),
    click.option("--partition", default=None, help="Slurm partition."),
    click.option("--gpus-per-task", type=click.IntRange(min=0), default=None, help="GPUs of each job."),
    click.option("--cpus-per-task", type=click.IntRange(min=1), default=None, help="CPUs of each job."),
    click.option("--mem-gb", type=click.FloatRange(min=0, min_open=True), default=None, help="Memory of each job."),
    click.option("--time", "time_min", type=click.IntRange(min=1), default=None,
                 help="A job's time limit in minutes (default 1440); a job that reaches it is requeued."),
)


def _options(options: tuple):
    """The decorator of several click options, listed by --help in their order."""
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


ARRAY = click.option("--array", type=click.IntRange(min=1), default=None,
                     help="Worker jobs, as one job array (with --launcher local or slurm; default 1).")
LAUNCH_FIELDS = ("launcher", "folder", "partition", "gpus_per_task", "cpus_per_task", "mem_gb", "time_min",
                 "nproc_per_node", "array")
ENTRY_COMMANDS = (
    EntryCommand("train_teacher", "kdtrack.pipeline.stages:train_teacher",
                 "One-hot training of a teacher (the `train_teacher` entry point), or the reuse of a finished "
                 "identical run; prints its run id.\n\nExample: kdtrack train-teacher -P preset=mnist_mlp "
                 "--experiment demo", parallel=True),
    EntryCommand("distill", "kdtrack.pipeline.stages:distill",
                 "Distill a student (the `distill` entry point), training or reusing its teacher first; prints "
                 "the student's run id.\n\nExample: kdtrack distill -P preset=noisy_mnist_rf -P seed=1 "
                 "--experiment demo", parallel=True),
    EntryCommand("switch", "kdtrack.pipeline.stages:switch",
                 "A student that switches between distillation and one-hot loss (the `switch` entry point); "
                 "prints its run id.\n\nExample: kdtrack switch -P preset=mnist_mlp -P switch_to=onehot "
                 "-P switch_at=0.5 --experiment demo", parallel=True),
    EntryCommand("analyze", "kdtrack.analysis.analyze:analyze",
                 "Analyze a student, every unanalyzed student of an experiment, or a teacher and student "
                 "kdtrack did not train; prints the analysis run ids.\n\nExample: kdtrack analyze -P "
                 "student_run_id=3f2a9c1b   (or: kdtrack analyze --experiment demo; or: kdtrack analyze -P "
                 "teacher=runs:/3f2a9c1b/teacher -P student=./my-hf-model -P dataset=mnist5k)", takes_experiment=False,
                 options=(field_option("analyze", "experiment"),)),
    EntryCommand("ablate", "kdtrack.studies.ablate:ablate",
                 "An Optuna study over one knob (the `ablate` entry point); rerun to continue it, or run the "
                 "same command on several machines against one storage. Prints the study run's id.\n\n"
                 "Example: kdtrack ablate -P preset=mnist_mlp --knob lr --seeds 3 --experiment ablations\n\n"
                 "On a cluster: kdtrack ablate ... --launcher slurm --array 8 --storage postgresql://HOST/optuna",
                 options=(*ABLATE_OPTIONS, LAUNCHER, ARRAY, *SLURM_OPTIONS),
                 launched="kdtrack.studies.launch:run_ablate"),
    EntryCommand("theory", "kdtrack.analysis.theory:theory",
                 "Check Theorem 4.1 on a random linear-regression instance; prints the theory run's id."
                 "\n\nExample: kdtrack theory -P n=32 -P p=256 --experiment theory",
                 takes_experiment=False, options=(field_option("theory", "experiment"),)),
)
PARAMS_HINT = "\n\n`kdtrack params {name}` lists every -P field with its default and allowed values."


def entry_command(command: EntryCommand) -> click.Command:
    def callback(params, **options) -> None:
        work = pkgutil.resolve_name(command.work)
        # --experiment is the work's argument, or (analyze, theory) a config field like the other options
        experiment = options.pop("experiment") if command.takes_experiment else ""
        launching = {name: options.pop(name) for name in LAUNCH_FIELDS if name in options}
        given = {field: str(value) for field, value in options.items() if value is not None}

        def configure_and_work():
            config = from_params(ENTRY_POINTS[command.entry_point], {**parse_params(params), **given})
            submitted = submit_jobs(command, config, experiment, launching) if command.launched else None
            if submitted is not None:
                return " ".join(submitted)
            if command.parallel:  # on nproc_per_node processes (kdtrack.pipeline.replicas)
                from kdtrack.pipeline.replicas import on_ranks
                from kdtrack.tracking import RunContext

                result = on_ranks(config, lambda world: work(config, experiment, context=RunContext(world=world)),
                                  again(command, params, experiment))
            else:
                result = work(config, experiment) if command.takes_experiment else work(config)
            return " ".join(result) if isinstance(result, (list, tuple)) else result  # analyze's run ids

        _run(configure_and_work)

    decorators = [PARAM, *([EXPERIMENT] if command.takes_experiment else []), *command.options]
    for decorator in reversed(decorators):  # innermost first, so that --help lists them in this order
        callback = decorator(callback)
    return click.command(command.entry_point.replace("_", "-"),
                         help=command.help + PARAMS_HINT.format(name=command.entry_point))(callback)


def _launch(launcher: str, flags: dict, slurm=None):
    """The `kdtrack.studies.launch.Launch` that --launcher and the launch flags (by field; None: not given)
    ask for; None for `process`, which takes none of those flags."""
    given = {name: value for name, value in flags.items() if value is not None}
    if launcher == "process":
        if given:
            first = next(iter(given))
            flag = {"time_min": "time", "folder": "submitit-folder"}.get(first, first.replace("_", "-"))
            raise UserError(f"--{flag} applies to --launcher local or slurm; --launcher process runs here")
        return None
    try:
        from kdtrack.studies import launch
        from kdtrack.studies.suite import SlurmSpec
    except ModuleNotFoundError as error:
        if error.name != "submitit":
            raise
        raise UserError(f"--launcher {launcher} needs submitit; install it: pip install 'kdtrack[slurm]'") from None
    return launch.launch_options(launcher, given, slurm or SlurmSpec())


def submit_jobs(command: EntryCommand, config, experiment: str, launching: dict):
    """The work as jobs (kdtrack.studies.launch); None where --launcher process runs it here."""
    launch = _launch(launching["launcher"], {k: v for k, v in launching.items() if k != "launcher"})
    if launch is None:
        return None
    return pkgutil.resolve_name(command.launched)(config, experiment, launch, launching.get("array") or 1)


def again(command: EntryCommand, params: tuple[str, ...], experiment: str) -> list[str]:
    """What follows `python` to run this command again: how torch.distributed.run starts its ranks."""
    return ["-m", "kdtrack", command.entry_point.replace("_", "-"), *(f"-P{pair}" for pair in params),
            *(["--experiment", experiment] if experiment else [])]


for _entry in ENTRY_COMMANDS:
    main.add_command(entry_command(_entry))


CODE_VERSION = click.option(
    "--code-version", "version", default="",
    help="Count the analyses made by this code version (12 hex digits; default: this code's). A report "
         "made after a code change reads a study analyzed before it.")


def _code_version(value: str) -> str:
    """The code version whose analyses count: `value`, checked, or this code's."""
    from kdtrack import code_version

    if value and not re.fullmatch(r"[0-9a-f]{12}", value):
        raise UserError(f"--code-version {value!r} is not a code version; allowed: 12 hex digits, as a "
                        "run's kdtrack.code_version tag shows")
    return value or code_version()


@main.command("report")
@click.option("--experiment", "experiments", multiple=True, required=True, help="Repeat to compare experiments.")
@click.option("--filter", "filter_string", default="",
              help="An MLflow search filter, e.g. \"params.preset = 'mnist_mlp'\".")
@click.option("--dashboard", default="paper", show_default=True, help="A dashboards/ name or a YAML file.")
@click.option("--out", default="kdtrack-report", show_default=True, type=click.Path(file_okay=False))
@click.option("--format", "output", type=click.Choice(["both", "html", "md"]), default="both", show_default=True,
              help="html: one self-contained file; md: report.md with its figures/ beside it, for a repository.")
@CODE_VERSION
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI, else MLflow's default.")
def report_command(experiments, filter_string, dashboard, out, output, version, tracking_uri) -> None:
    """A report comparing the runs of one or more experiments: claims first, then the paper's tables
    and figures.

    Example: kdtrack report --experiment table7 --format md --out docs/reproduction"""
    from kdtrack.report.dashboard import load
    from kdtrack.report.render import report

    _use_tracking_uri(tracking_uri)
    formats = ("html", "md") if output == "both" else (output,)
    _run(lambda: report(list(experiments), filter_string, load(dashboard), Path(out), formats,
                        _code_version(version)))


@main.command("claims")
@click.option("--experiment", "experiments", multiple=True, required=True, help="Repeat to check several.")
@click.option("--dashboard", default="paper", show_default=True, help="A dashboards/ name or a YAML file.")
@click.option("--filter", "filter_string", default="", help="An MLflow search filter, as for `report`.")
@click.option("--format", "output", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when a row's verdict (Holm-corrected within a declared family) "
              "contradicts what the paper expects for that setting; rows with no expectation never fail.")
@CODE_VERSION
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI, else MLflow's default.")
def claims_command(experiments, dashboard, filter_string, output, strict, version, tracking_uri) -> None:
    """The dashboard's claims, each with its seeds, estimate, 95% interval and verdict.

    Example: kdtrack claims --experiment table7 --format md --strict"""
    import json

    from kdtrack import tracking
    from kdtrack.report.claims import contradictions
    from kdtrack.report.dashboard import load
    from kdtrack.report.render import markdown_table
    from kdtrack.report.verdicts import LEGEND, legend_lines, settings_legend, shown, verdicts

    _use_tracking_uri(tracking_uri)

    def check():
        board = load(dashboard)
        if not board.claims:
            raise UserError(f"dashboard {dashboard!r} declares no claims; the paper's are in dashboard 'paper'")
        tracking.check_store()
        results, left_out = verdicts(list(experiments), board.claims, filter_string, _code_version(version))
        if left_out:
            click.echo(f"kdtrack: left out: {', '.join(left_out)}", err=True)
        if output == "json":
            text = json.dumps([{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                               for row in results.iter_rows(named=True)], indent=1)
        else:
            table = shown(results, len(experiments) > 1)
            text = "\n".join([markdown_table(table) if output == "md" else _terminal(table), "",
                              *legend_lines(settings_legend(results)), *LEGEND])
        return text, contradictions(results)

    text, contradicted = exit_on_user_error(check)
    click.echo(text)
    if strict and contradicted.height:
        rows = contradicted.iter_rows(named=True)
        click.echo(f"kdtrack: {contradicted.height} verdict(s) contradict the paper: "
                   + ", ".join(f"{r['id']} ({r['setting']}: {r['verdict_holm']})" for r in rows), err=True)
        raise SystemExit(1)


def _terminal(table) -> str:
    """The claims table at the terminal's width, long text wrapped within its cell, whole (into a
    pipe: a row a line, unwrapped, for grep); numbers right-aligned (written ones padded to their
    column's width: polars aligns only number types)."""
    import shutil
    import sys

    import polars as pl

    from kdtrack.report.render import numeric_columns

    numbers = [c for c in numeric_columns(table) if table.schema[c] == pl.String]
    table = table.with_columns(pl.col(c).str.pad_start(table[c].str.len_chars().max() or 0) for c in numbers)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=1000, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, tbl_cell_numeric_alignment="RIGHT",
                   tbl_width_chars=shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000):
        return str(table)


@main.command("runs")
@click.option("--experiment", "experiments", multiple=True, required=True, help="Repeat to list several.")
@click.option("--filter", "filter_string", default="", help="An MLflow search filter, as for `report`.")
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table: 100 columns, 8-character ids; csv and json: whole ids, for pipes.")
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI, else MLflow's default.")
def runs_command(experiments, filter_string, output, tracking_uri) -> None:
    """The runs of experiments, one line each: role, status, preset, data, architecture, seed, id
    and key metrics.

    Example: kdtrack runs --experiment demo --format csv > runs.csv"""
    from kdtrack import tracking
    from kdtrack.report import listing
    from kdtrack.report.collect import runs_table
    from kdtrack.report.tables import runs_summary

    _use_tracking_uri(tracking_uri)

    def show():
        tracking.check_store()  # one line within seconds, not MLflow's minutes of retries
        # Runs whose process died (RUNNING, their lease lapsed) are marked KILLED before they are listed.
        tracking.reap_experiments([i for i in map(tracking.experiment_id, experiments) if i is not None])
        summary = runs_summary(runs_table(list(experiments), filter_string))
        return {"table": listing.as_table, "csv": listing.as_csv, "json": listing.as_json}[output](summary).rstrip("\n")

    _run(show)


@main.command("params")
@click.argument("entry", required=False, default="")
def params_command(entry) -> None:
    """Every parameter of an entry point (all of them without ENTRY): type, default, allowed
    values and meaning; then the presets and the fields each sets. Generated from
    kdtrack/config.py, like MLproject.

    Example: kdtrack params distill"""
    from kdtrack.cli.paramdoc import render

    _run(lambda: render(entry))


@main.group("suite")
def suite_group() -> None:
    """Declarative suites: a YAML file (or a shipped name: table7) declares settings x seeds.

    Example: kdtrack suite status table7"""


SUITE_EXPERIMENT = click.option("--experiment", default="", help="Instead of the experiment the suite file names.")


def _suite(name: str, experiment: str):
    from kdtrack.studies import suite as suites

    loaded = suites.load(name)
    return dataclasses.replace(loaded, experiment=experiment) if experiment else loaded


@suite_group.command("run")
@click.argument("suite")
@click.option("--dry-run", is_flag=True, help="Print the plan; train nothing.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Settings trained in parallel processes (--launcher process); at most the machine's cores.")
@click.option("--force", is_flag=True, help="Allow more --workers than the machine has cores.")
@SUITE_EXPERIMENT
@LAUNCHER
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=None,
              help="Processes (one per GPU) that train each run of a job (DDP); default: the task's own.")
@_options(SLURM_OPTIONS)
def suite_run(suite, dry_run, workers, force, experiment, launcher, **flags) -> None:
    """Train and analyze what the suite declares and the store lacks, then write its report;
    prints the run ids. With --launcher slurm, submits the jobs (teachers first, each student
    after its teacher's job) and prints their job ids; the Slurm options come from the suite
    file's `slurm:` mapping, and these flags override them.

    Example: kdtrack suite run table7 --dry-run

    On a cluster: kdtrack suite run table7 --launcher slurm --partition gpu --gpus-per-task 1 --time 600"""
    from kdtrack.studies import suite as suites

    def work():
        loaded = _suite(suite, experiment)
        if workers != 1 and launcher != "process":
            raise UserError(f"--workers {workers} applies to --launcher process; with --launcher {launcher} "
                            "every task is a job of its own")
        cores = os.cpu_count() or 1
        if workers > cores and not force:  # before a process is forked
            raise UserError(f"--workers {workers} is more than this machine's {cores} cores; allowed: 1 to {cores}, "
                            "or --force to start that many processes anyway")
        launch = _launch(launcher, flags, loaded.slurm)
        if launch is None:
            ids = suites.run(loaded, dry_run, workers)
        else:
            from kdtrack.studies.launch import run_suite

            ids = run_suite(loaded, launch, dry_run)
        if ids and not dry_run and launcher != "slurm":  # Slurm's jobs have only been submitted
            from kdtrack.report.dashboard import load
            from kdtrack.report.render import report

            report([loaded.experiment], "", load("paper"), Path("kdtrack-report") / loaded.name)
        return " ".join(ids) or None

    _run(work)


@suite_group.command("status")
@click.argument("suite")
@SUITE_EXPERIMENT
def suite_status(suite, experiment) -> None:
    """What is done and what is missing, one task a line.

    Example: kdtrack suite status table7"""
    from kdtrack import tracking
    from kdtrack.studies import suite as suites

    def show():
        loaded = _suite(suite, experiment)  # a bad file is refused before the store is asked
        tracking.check_store()
        return "\n".join(f"{state:<8} {task.label}" for task, state in suites.status(loaded))

    _run(show)


@main.command("gc")
@click.option("--experiment", required=True, help="The experiment whose training runs are pruned.")
@click.option("--keep", type=click.Choice(["last", "switch"]), default="switch", show_default=True,
              help="last: no step or resume checkpoints; switch: the step ones `switch` starts from.")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI, else MLflow's default.")
def gc_command(experiment, keep, dry_run, tracking_uri) -> None:
    """Prune an experiment's checkpoints to a keep_checkpoints policy and print what it freed, per
    kind; what a recorded run still needs stays, one line each on stderr (docs/run-contract.md).

    Example: kdtrack gc --experiment table7 --keep last --dry-run"""
    _use_tracking_uri(tracking_uri)

    def work():
        from kdtrack import tracking
        from kdtrack.say import say
        from kdtrack.tracking import prune

        tracking.check_store()
        pruning = prune.prune(experiment, keep, dry_run)
        for line in pruning.refused:
            say(line)
        return prune.summary(pruning, experiment, keep, dry_run)

    _run(work)


@main.command("demo")
@click.option("--experiment", default="kdtrack-demo", show_default=True)
@click.option("--out", default="kdtrack-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder that receives a local copy of the figures.")
@click.option("--preset", "presets", multiple=True, default=("mnist_mlp", "noisy_mnist_rf"), show_default=True)
@click.option("--keep-checkpoints", default="last", show_default=True,
              help="The runs' keep_checkpoints; `switch` keeps what `switch -P from_run_id=...` starts from.")
def demo_command(experiment, out, presets, keep_checkpoints) -> None:
    """The main job on the embedded data: teacher, distilled student and analysis per preset;
    prints the run ids, slopes, figures and the paper's claims on them.

    Example: kdtrack demo --experiment kdtrack-demo --out kdtrack-out"""
    from kdtrack.cli.demo import demo

    _run(lambda: demo(experiment, Path(out), presets, keep_checkpoints))
