"""Shared body of the thin scripts in entrypoints/: parse `--field value` pairs into the entry
point's config, run it, and turn user errors into one line and exit status 2."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import fields
from typing import Callable

from kdtrack.errors import UserError


class _Once(argparse.Action):
    """Store an option's value, refusing a second one: argparse would silently keep the last."""

    def __call__(self, parser, namespace, value, option_string=None):
        if getattr(namespace, self.dest) is not None:
            raise UserError(f"{option_string} is given twice ({getattr(namespace, self.dest)!r}, then {value!r}); "
                            "allowed: each parameter once")
        setattr(namespace, self.dest, value)


def parse_args(config_class, argv: list[str]) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=config_class.__doc__)
    for field in fields(config_class):
        meaning = field.metadata["help"].replace("%", "%%")  # argparse formats help with %
        parser.add_argument(f"--{field.name}", action=_Once, help=f"{meaning} (default: {field.default!r})")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v not in (None, "")}


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
    """Training entry points run on `nproc_per_node` processes (kdtrack.replicas): this one, or
    the ranks torchrun starts; rank 0 alone claims the `mlflow run` launcher and prints the result."""
    from kdtrack import tracking
    from kdtrack.config import PARALLEL, from_params
    from kdtrack.pipeline import replicas

    args = sys.argv[1:] if argv is None else argv

    def parse_and_work():
        config = from_params(config_class, parse_args(config_class, args))
        if config_class not in PARALLEL:
            return work(config, context=tracking.claim_launcher())
        return replicas.command(config, lambda world: work(config, context=tracking.claim_launcher(world)),
                                [sys.argv[0], *args])

    result = exit_on_user_error(parse_and_work)
    if result is not None:  # None: a rank other than 0
        print(f"kdtrack: result run id(s): {result}")
