"""Shared body of the thin scripts in entrypoints/ and of the `kdtrack` commands: parse the
parameters given (`parse_params`: `-P KEY=VALUE`, or the scripts' `--KEY VALUE`), run the work, and
turn user errors into one line and exit status 2."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import fields
from typing import Callable, Iterable

from kdtrack.errors import UserError


def parse_params(items: Iterable[str], option: str = "-P {}") -> dict[str, str]:
    """`KEY=VALUE` items (what -P takes) by key. A key given twice is refused: keeping either value
    would run what was not meant. `option` spells a key as the command line gave it, for errors."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{option.format(repr(item))} is not KEY=VALUE")
        key = key.strip()
        if key in params:
            raise UserError(f"{option.format(key)} is given twice ({params[key]!r}, then {value!r}); "
                            "allowed: each parameter once")
        params[key] = value
    return params


def parse_args(config_class, argv: list[str]) -> dict[str, str]:
    """The scripts' `--KEY VALUE` pairs (as MLproject passes them), each key once; blank ones are not given."""
    parser = argparse.ArgumentParser(description=config_class.__doc__)
    for field in fields(config_class):
        meaning = field.metadata["help"].replace("%", "%%")  # argparse formats help with %
        parser.add_argument(f"--{field.name}", action="append", default=[],
                            help=f"{meaning} (default: {field.default!r})")
    given = vars(parser.parse_args(argv))
    params = parse_params((f"{key}={value}" for key, values in given.items() for value in values), "--{}")
    return {key: value for key, value in params.items() if value != ""}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def exit_on_user_error(work: Callable[[], object]) -> object:
    """Run `work`; a UserError becomes one line on stderr and exit status 2, no traceback.
    SIGTERM is made an interrupt like Ctrl-C, so a run being logged is marked KILLED either way
    (inside the training loop, `interrupts.stop_requests` turns both into a checkpoint first; a
    second signal while the run is being stopped makes the process leave, see kdtrack.interrupts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return work()
    except UserError as error:
        print(f"kdtrack: error: {error}", file=sys.stderr)
        sys.exit(2)


def run_entrypoint(config_class, work: Callable, argv: list[str] | None = None) -> None:
    """Training entry points run on `nproc_per_node` processes (kdtrack.pipeline.replicas): this one, or
    the ranks torchrun starts; rank 0 alone claims the `mlflow run` launcher and prints the result."""
    from kdtrack import tracking
    from kdtrack.config import PARALLEL, from_params
    from kdtrack.pipeline.replicas import on_ranks

    args = sys.argv[1:] if argv is None else argv

    def parse_and_work():
        config = from_params(config_class, parse_args(config_class, args))
        if config_class not in PARALLEL:
            return work(config, context=tracking.claim_launcher())
        return on_ranks(config, lambda world: work(config, context=tracking.claim_launcher(world)),
                        [sys.argv[0], *args])

    result = exit_on_user_error(parse_and_work)
    if result is not None:  # None: a rank other than 0
        print(f"kdtrack: result run id(s): {result}")
