from __future__ import annotations

import pytest

from feature_repo.stores.redis_url import RedisURLOnlineStoreConfig, to_feast_connection_string


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379", "localhost:6379"),
        ("redis://127.0.0.1:6380/15", "127.0.0.1:6380,db=15"),
        ("rediss://:s3cret@cache.internal/2", "cache.internal:6379,db=2,password=s3cret,ssl=true"),
        ("${REDIS_URL}", "localhost:6379"),  # variable unset: feature_store.yaml keeps working
        ("", "localhost:6379"),
        ("redis-master:6379,db=1", "redis-master:6379,db=1"),  # Feast's own form passes through
    ],
)
def test_urls_become_feast_connection_strings(url: str, expected: str) -> None:
    assert to_feast_connection_string(url) == expected


def test_bad_urls_name_the_problem() -> None:
    with pytest.raises(ValueError, match="scheme must be redis"):
        to_feast_connection_string("http://localhost:6379")
    with pytest.raises(ValueError, match="database must be a number"):
        to_feast_connection_string("redis://localhost:6379/abc")


def test_config_accepts_url() -> None:
    config = RedisURLOnlineStoreConfig(connection_string="redis://localhost:6379/3")
    assert config.connection_string == "localhost:6379,db=3"
