"""Small pieces every stage's command module uses to add its subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date

from skewless.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def day(value: str) -> date:
    """argparse type for YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {value!r}") from None


def register_command(
    sub: argparse._SubParsersAction, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser
