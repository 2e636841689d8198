"""The `skewless` command: one subcommand per stage.

Each stage package has a `cli` module with `register(subparsers)`; this root only collects them, loads the
settings, runs the handler and turns the project's errors into a message and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from skewless.cli_types import Handler, register_command
from skewless.errors import SkewlessError
from skewless.settings import Settings

STAGE_COMMANDS = (
    "data.cli",
    "pipeline.cli",
    "validation.cli",
    "training.cli",
    "serving.cli",
    "monitoring.cli",
    "monitoring.skew",
    "release.cli",
)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from skewless.summary import print_summary

    print_summary(settings, service_name=args.feature_service or settings.feature_service, sample=args.sample)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skewless", description="Fraud detection without training-serving skew.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in STAGE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A stage without commands yet is fine; a command module with a broken import is not.
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    insp = register_command(
        sub, "inspect", "summarise a training set and online vectors of a feature service", _inspect
    )
    insp.add_argument(
        "--feature-service", default=None, help="feature service (default: SKEWLESS_FEATURE_SERVICE, fraud_model_v2)"
    )
    insp.add_argument("--sample", type=int, default=3, help="online feature vectors to print")
    return parser


_NOT_FOR_OPERATORS = (DeprecationWarning, FutureWarning)
_NOT_FOR_OPERATORS_TEXT = ("Stream feature views are experimental",)


def _quiet_library_warnings() -> None:
    """Deprecation notices from Feast, MLflow, SQLAlchemy and ibis are for their developers, not for operators,
    and so is Feast's "experimental" notice about the stream feature views the velocity features are declared as.

    Filters alone do not hold: Feast's modules put their own ("once") filters in front when they are imported, so
    the display hook drops these categories whatever the filters say; everything else is shown as usual."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    show = warnings.showwarning

    def showwarning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, _NOT_FOR_OPERATORS) or any(t in str(message) for t in _NOT_FOR_OPERATORS_TEXT):
            return
        show(message, category, *args, **kwargs)  # type: ignore[arg-type]

    warnings.showwarning = showwarning


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    # Feast resolves feature source paths against the working directory, like `feast` itself run at the root.
    os.chdir(settings.repo_root)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except SkewlessError as exc:
        print(f"skewless {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"skewless {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
