"""`skewless train | validate-model | approve | deploy | models`."""

from __future__ import annotations

import argparse

import pandas as pd

from skewless.cli_types import register_command
from skewless.settings import Settings


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from training.train import train

    outcome = train(settings, service_name=args.feature_service, seed=args.seed, shuffle_labels=args.shuffle_labels)
    print("candidates on the validation window:")
    for name, metrics in outcome.comparison.items():
        chosen = "  <- kept" if name == outcome.model_type else ""
        print(f"  {name:<24} PR-AUC {metrics['pr_auc']:.4f}  recall@1%FPR {metrics['recall_at_1pct_fpr']:.4f}{chosen}")
    m = outcome.metrics
    print(
        f"registered {settings.model_name} v{outcome.version} as @candidate (run {outcome.run_id[:8]}): "
        f"PR-AUC {m['pr_auc']:.4f}, ROC-AUC {m['roc_auc']:.4f}, recall@1%FPR {m['recall_at_1pct_fpr']:.4f}, "
        f"Brier {m['brier']:.5f}; block precision {m['precision_at_block']:.2%} recall {m['recall_at_block']:.2%}"
    )
    return 0


def _validate_model(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import validate_model

    verdict = validate_model(settings, None if args.version is None else _resolve(settings, args.version))
    line = f"PR-AUC {verdict.metrics['pr_auc']:.4f}, recall@1%FPR {verdict.metrics['recall_at_1pct_fpr']:.4f}"
    if verdict.champion_metrics:
        line += f"; champion v{verdict.champion_version} PR-AUC {verdict.champion_metrics['pr_auc']:.4f}"
    if verdict.passed:
        print(f"{settings.model_name} v{verdict.version}: validation passed ({line})")
        return 0
    print(f"{settings.model_name} v{verdict.version}: validation FAILED ({line})")
    for reason in verdict.reasons:
        print(f"  - {reason}")
    return 1


def _version_or_alias(value: str) -> int | str:
    """`--version 3` or `--version candidate` (an alias of the registered model)."""
    if value.isdigit():
        return int(value)
    if value.isidentifier():
        return value
    raise argparse.ArgumentTypeError(f"expected a version number or an alias such as candidate, got {value!r}")


def _resolve(settings: Settings, version: int | str) -> int:
    if isinstance(version, int):
        return version
    from training import registry

    client = registry.connect(settings)
    return int(registry.model_version(client, settings.model_name, alias=version).version)


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import approve

    version = _resolve(settings, args.version)
    approve(settings, version, args.by)
    print(f"{settings.model_name} v{version} approved by {args.by}")
    return 0


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import deploy

    version = _resolve(settings, args.version)
    previous = deploy(settings, version)
    was = f" (previous champion v{previous} kept for rollback)" if previous and previous != version else ""
    print(f"{settings.model_name}@champion -> v{version}{was}")
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import models_table

    table = models_table(settings)
    if table.empty:
        print(f"no versions of {settings.model_name} yet; run `skewless train`")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = register_command(
        sub, "train", "train on labelled transactions, register the better model @candidate", _train
    )
    train.add_argument(
        "--feature-service", default=None, help="feature service (default: SKEWLESS_FEATURE_SERVICE, fraud_model_v2)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--shuffle-labels", action="store_true", help="train on permuted labels: a deliberately bad model for drills"
    )

    val = register_command(
        sub, "validate-model", "gate a version: minimums and not worse than @champion", _validate_model
    )
    val.add_argument("--version", type=_version_or_alias, default=None, help="number or alias (default: candidate)")

    appr = register_command(sub, "approve", "record who approved a validated version", _approve)
    appr.add_argument("--version", type=_version_or_alias, required=True, help="number, or an alias (candidate)")
    appr.add_argument("--by", required=True, help="name of the approver")

    dep = register_command(sub, "deploy", "move @champion to an approved version", _deploy)
    dep.add_argument("--version", type=_version_or_alias, required=True, help="number, or an alias (candidate)")

    register_command(sub, "models", "versions, aliases, metrics, lineage and approvals", _models)
