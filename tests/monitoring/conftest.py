"""Fixtures shared by the monitoring tests: the served repo of the serving tests (a trained, deployed champion)."""

from tests.serving.conftest import served_repo  # noqa: F401  (a fixture, used by name)
