"""What every load tool's command line shares (``python -m loadtests.<tool>``): bad input is one
sentence and exit status 1, as everywhere in cutover (argparse's own is a usage block and 2), and a
measurement runs with SIGTERM turned into an exception, so the containers it started are removed by
its ``finally`` blocks when CI or a user stops it.

Pure of Locust: importing it patches nothing (soak and rehearsal import Locust first themselves).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable, NoReturn

from rich.console import Console
from rich.markup import escape


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one sentence on stderr and exit status 1."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    """Bad input: ``error: <one sentence>.`` on stderr, exit status 1."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]error:[/bold red] {escape(message.rstrip('.'))}.")
    sys.exit(1)


def positive(kind: type) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a number above 0 (``int`` or ``float``), refused in one sentence."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    return parse


def _terminate(signum, _frame) -> NoReturn:
    raise SystemExit(128 + signum)


def run_measurement(measure: Callable[[], dict], errors: tuple[type[BaseException], ...]) -> int:
    """Run ``measure`` (which returns its summary) with SIGTERM as SystemExit; exit status 0 when
    its summary counts no failure, 1 when it does or when ``errors`` stopped it (said in one line)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = measure()
    except errors as exc:
        Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        return 1
    return 1 if summary["failures"] else 0
