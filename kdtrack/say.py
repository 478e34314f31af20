"""kdtrack's status lines, on stderr so that stdout carries only results."""
from kdtrack.progress import write


def say(message: str) -> None:
    write(f"kdtrack: {message}")
