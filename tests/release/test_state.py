"""The canary's registry moves against a real MLflow store and Redis: each one whole, and every crash recoverable."""

from __future__ import annotations

import socket

import pytest
import redis
from mlflow.tracking import MlflowClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from release import state
from release.rules import Check, Verdict
from skewless.errors import BadInputError, DependencyUnavailableError
from tests.release.conftest import Releases
from training.lifecycle import deploy

pytestmark = pytest.mark.integration

PASS = Verdict(True, True, [Check("psi", 0.01, 0.2, True, "score PSI 0.010 (bound 0.2)")], "500/500")
FAIL = Verdict(True, False, [Check("psi", 3.9, 0.2, False, "score PSI 3.900 (bound 0.2)")], "500/500")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _champion_and_challenger(r: Releases, approved: bool = True) -> tuple[int, int, state.Canary]:
    champion = r.version()
    deploy(r.settings, champion)
    challenger = r.version(approved=approved)
    canary = state.start(r.reg, r.events, challenger, "0-0", by="tester", drill=not approved)
    return champion, challenger, canary


def test_start_records_everything_a_restarted_watcher_needs(releases: Releases) -> None:
    champion, challenger, canary = _champion_and_challenger(releases)
    aliases, tags = releases.reg.model()
    assert aliases["challenger"] == str(challenger) and aliases["champion"] == str(champion)
    assert tags[state.POINTER] == str(challenger)
    assert (canary.status, canary.champion, canary.stream_start) == (state.RUNNING, champion, "0-0")
    assert canary.bounds is not None and canary.bounds.window == releases.settings.canary_window
    assert [e["kind"] for e in releases.stream_events()] == ["canary_started"]


def test_a_verdict_within_bounds_promotes_and_keeps_the_previous_champion(releases: Releases) -> None:
    champion, challenger, canary = _champion_and_challenger(releases)
    assert state.conclude(releases.reg, releases.events, canary, PASS) == state.PROMOTED
    aliases, tags = releases.reg.model()
    assert aliases == {"champion": str(challenger)}
    assert tags["previous_champion"] == str(champion) and state.POINTER not in tags
    vtags = releases.reg.version_tags(challenger)
    assert vtags["canary_status"] == state.PROMOTED and vtags["previous_champion"] == str(champion)
    assert "PSI 0.010" in vtags["canary_reasons"]
    promoted = releases.stream_events()[-1]
    assert (promoted["kind"], promoted["version"], promoted["previous_champion"]) == ("promoted", challenger, champion)


def test_a_verdict_outside_bounds_rolls_back_with_its_reason(releases: Releases) -> None:
    champion, challenger, canary = _champion_and_challenger(releases)
    assert state.conclude(releases.reg, releases.events, canary, FAIL) == state.ROLLED_BACK
    aliases, tags = releases.reg.model()
    assert aliases == {"champion": str(champion)} and state.POINTER not in tags
    vtags = releases.reg.version_tags(challenger)
    assert (vtags["canary_status"], vtags["canary_verdict"]) == (state.ROLLED_BACK, "rollback")
    assert vtags["canary_reasons"] == "score PSI 3.900 (bound 0.2)"
    event = releases.stream_events()[-1]
    assert (event["kind"], event["version"], event["reasons"]) == (
        "rolled_back",
        challenger,
        "score PSI 3.900 (bound 0.2)",
    )
    assert state.last_finished(releases.reg) == (challenger, vtags)


def test_a_drill_within_bounds_is_rolled_back_never_promoted(releases: Releases) -> None:
    champion, challenger, canary = _champion_and_challenger(releases, approved=False)
    assert canary.drill
    assert state.conclude(releases.reg, releases.events, canary, PASS) == state.ROLLED_BACK
    assert releases.reg.aliases() == {"champion": str(champion)}
    assert "never promoted" in releases.reg.version_tags(challenger)["canary_reasons"]


def test_start_refuses_what_must_not_be_canaried(releases: Releases) -> None:
    with pytest.raises(BadInputError, match="no @champion"):
        state.start(releases.reg, releases.events, releases.version(), "0-0", by="t")
    champion = releases.version()
    deploy(releases.settings, champion)
    with pytest.raises(BadInputError, match="already the champion"):
        state.start(releases.reg, releases.events, champion, "0-0", by="t")
    with pytest.raises(BadInputError, match="not approved"):
        state.start(releases.reg, releases.events, releases.version(approved=False), "0-0", by="t")
    with pytest.raises(BadInputError, match="no version 99"):
        state.start(releases.reg, releases.events, 99, "0-0", by="t")
    state.start(releases.reg, releases.events, releases.version(), "0-0", by="t")
    with pytest.raises(BadInputError, match="is running"):
        state.start(releases.reg, releases.events, releases.version(), "0-0", by="t")


def test_an_interrupted_promotion_is_finished_from_the_tags(releases: Releases) -> None:
    champion, challenger, _ = _champion_and_challenger(releases)
    # the watcher died right after recording the verdict: champion not moved yet
    releases.reg.tag_version(challenger, {"canary_status": state.PROMOTING, "canary_reasons": "within bounds"})
    assert releases.reg.aliases()["champion"] == str(champion)
    assert state.recover_and_read(releases.reg, releases.events) is None
    aliases, tags = releases.reg.model()
    assert aliases == {"champion": str(challenger)} and state.POINTER not in tags
    assert releases.reg.version_tags(challenger)["canary_status"] == state.PROMOTED


def test_an_interrupted_start_is_rolled_back_or_completed(releases: Releases) -> None:
    champion = releases.version()
    deploy(releases.settings, champion)
    half_started = releases.version()
    releases.reg.tag_model(state.POINTER, str(half_started))  # died after the first write
    assert state.recover_and_read(releases.reg, releases.events) is None
    assert "interrupted" in releases.reg.version_tags(half_started)["canary_reasons"]
    assert state.POINTER not in releases.reg.model_tags()

    challenger = releases.version()
    state.start(releases.reg, releases.events, challenger, "0-0", by="t")
    releases.reg.client.delete_registered_model_alias(releases.settings.model_name, "challenger")  # died before it
    running = state.recover_and_read(releases.reg, releases.events)
    assert running is not None and running.version == challenger
    assert releases.reg.aliases()["challenger"] == str(challenger)


def test_redis_down_at_the_end_of_a_rollback_leaves_it_to_be_finished(releases: Releases) -> None:
    champion, challenger, canary = _champion_and_challenger(releases)
    down = redis.Redis(port=_closed_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    with pytest.raises(DependencyUnavailableError, match="release stream"):
        state.conclude(releases.reg, down, canary, FAIL)
    # the challenger already serves nothing; the registry says the move is under way
    assert releases.reg.aliases() == {"champion": str(champion)}
    assert releases.reg.version_tags(challenger)["canary_status"] == state.ROLLING_BACK
    assert state.recover_and_read(releases.reg, releases.events) is None
    assert releases.reg.version_tags(challenger)["canary_status"] == state.ROLLED_BACK
    assert releases.stream_events()[-1]["kind"] == "rolled_back"


def test_an_unreachable_registry_changes_nothing(releases: Releases, monkeypatch: pytest.MonkeyPatch) -> None:
    champion, challenger, canary = _champion_and_challenger(releases)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cut_off = state.Registry.__new__(state.Registry)
    cut_off.settings, cut_off.name = releases.settings, releases.settings.model_name
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    cut_off.client = MlflowClient(tracking_uri=unreachable, registry_uri=unreachable)
    with pytest.raises(DependencyUnavailableError, match=r"unreachable|registry"):
        state.conclude(cut_off, releases.events, canary, PASS)
    running = state.recover_and_read(releases.reg, releases.events)
    assert running is not None and running.status == state.RUNNING
    assert releases.reg.aliases() == {"champion": str(champion), "challenger": str(challenger)}


def test_rollback_serves_the_previous_champion_and_walks_back(releases: Releases) -> None:
    first = releases.version()
    deploy(releases.settings, first)
    second = releases.version()
    deploy(releases.settings, second)
    third = releases.version()
    deploy(releases.settings, third)
    canary_version = releases.version()
    state.start(releases.reg, releases.events, canary_version, "0-0", by="t")

    done = state.rollback_champion(releases.reg, releases.events, to=None, reason="alerts firing", by="oncall")
    assert (done.leaving, done.restored, done.stopped_canary, done.event_sent) == (third, second, canary_version, True)
    assert releases.reg.aliases() == {"champion": str(second)}  # the canary judged against v3 is gone too
    tags = releases.reg.version_tags(third)
    assert (tags["rolled_back_to"], tags["rolled_back_by"], tags["rolled_back_reason"]) == (
        str(second),
        "oncall",
        "alerts firing",
    )
    again = state.rollback_champion(releases.reg, releases.events, to=None, reason="still bad", by="oncall")
    assert (again.leaving, again.restored) == (second, first)
    with pytest.raises(BadInputError, match="no previous champion"):
        state.rollback_champion(releases.reg, releases.events, to=None, reason="x", by="oncall")
    forward = state.rollback_champion(releases.reg, releases.events, to=third, reason="fixed upstream", by="oncall")
    assert forward.restored == third
    assert [e["kind"] for e in releases.stream_events()].count("champion_rolled_back") == 3
