"""kdtrack's progress lines, on stderr so that stdout carries only results."""
import sys


def say(message: str) -> None:
    print(f"kdtrack: {message}", file=sys.stderr, flush=True)
