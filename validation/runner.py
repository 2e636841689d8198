"""Running expectation suites on frames with Great Expectations, quietly and only when needed.

Great Expectations is imported on first use, never at import time: importing it takes seconds (it pulls in
scipy, altair and SQLAlchemy), so a pipeline run with nothing new to validate never pays for it. The context is
ephemeral (in-memory stores, no project folder; nothing is written until data docs are asked for), with usage
statistics and progress bars off.

A frame is validated in two passes at most. The first asks for ``BOOLEAN_ONLY`` results, which skip collecting
unexpected values and cost about half as much; only a frame that fails is validated again with ``SUMMARY``
results, whose failing counts and sample values go into the error message and the report.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SAMPLE_SIZE = 5  # bad values shown per failed expectation

_DATASOURCE = "skewless"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the deprecation chatter GX emits on import and while validating; our own warnings still show."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", module=r"great_expectations(\..*)?$")
        yield


def gx() -> Any:
    """The ``great_expectations`` module, imported now (once), with analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    with quiet():
        import great_expectations

        return great_expectations


def expectations() -> Any:
    """``great_expectations.expectations``: the expectation classes suites are built from."""
    gx()
    import great_expectations.expectations as gxe

    return gxe


def _context(docs_dir: Path | None = None) -> Any:
    module = gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites[_DATASOURCE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    with quiet():
        return module.get_context(mode="ephemeral", project_config=config)


@dataclass
class Outcome:
    """One suite run on one target (a file, a table, a frame)."""

    target: str  # e.g. "transactions/2026-11-03.parquet"
    suite: Any  # gx.ExpectationSuite
    result: Any  # gx ExpectationSuiteValidationResult

    @property
    def success(self) -> bool:
        return bool(self.result.success)


class Runner:
    """Validates frames against suites in one ephemeral context and keeps every outcome for the report."""

    def __init__(self) -> None:
        self._context = _context()
        self._datasource = self._context.data_sources.add_pandas(_DATASOURCE)
        self._batches: dict[str, Any] = {}
        self.outcomes: list[Outcome] = []

    def validate(
        self, suite: Any, frame: pd.DataFrame, target: str, asset: str, *, quick_first: bool = True
    ) -> Outcome:
        """Run ``suite`` on ``frame``; ``asset`` groups targets of one kind (a source, a view) in the docs.

        With ``quick_first`` a passing frame costs one ``BOOLEAN_ONLY`` run; otherwise, or when it fails, the
        result is a ``SUMMARY`` one, with failing counts and sample values.
        """
        batch_definition = self._batch_definition(asset)
        with quiet():
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(suite, result_format="BOOLEAN_ONLY") if quick_first else None
            if result is None or not result.success:
                result = batch.validate(
                    suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
                )
        outcome = Outcome(target=target, suite=suite, result=result)
        self.outcomes.append(outcome)
        return outcome

    def failed_only(self, outcome: Outcome) -> Any:
        """A suite of the expectations ``outcome`` failed: re-running only those on parts of its frame costs a
        fraction of the whole suite (GX's overhead grows with the number of expectations, not rows)."""
        failed = [r.expectation_config.to_domain_obj() for r in outcome.result.results if not r.success]
        return gx().ExpectationSuite(name=f"{outcome.suite.name}.failed", expectations=failed)

    def _batch_definition(self, asset: str) -> Any:
        if asset not in self._batches:
            data_asset = self._datasource.add_dataframe_asset(asset)
            self._batches[asset] = data_asset.add_batch_definition_whole_dataframe("whole frame")
        return self._batches[asset]


def build_docs(outcomes: Sequence[Outcome], docs_dir: Path, run_name: str) -> Path:
    """Render GX data docs (a static HTML site) for ``outcomes`` into ``docs_dir``; returns its index page."""
    gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _context(docs_dir)
    run_id = RunIdentifier(run_name=run_name)
    with quiet():
        for outcome in outcomes:
            if outcome.suite.name not in {s.name for s in context.suites.all()}:
                context.suites.add(outcome.suite)
            key = ValidationResultIdentifier(
                ExpectationSuiteIdentifier(name=outcome.suite.name), run_id, _docs_key(outcome.target)
            )
            context.validation_results_store.set(key, outcome.result)
        context.build_data_docs(site_names=[_DATASOURCE])
    return docs_dir / "index.html"


def _docs_key(target: str) -> str:
    # The docs store builds file names from keys and refuses path separators in them.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("_")
