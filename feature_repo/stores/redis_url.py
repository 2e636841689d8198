"""Feast's Redis online store, configured by a ``redis://`` URL.

The rest of the project reads Redis from ``REDIS_URL`` (``redis://host:port/db``); Feast's own store wants
``host:port,db=N``. This config accepts either form, so ``feature_store.yaml`` can say
``connection_string: ${REDIS_URL}`` and one variable points everything at the same server. Keys, values and
reads are Feast's own: ``feast serve`` and ``get_online_features`` see exactly what stock Feast would write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal
from urllib.parse import unquote, urlparse

from feast import FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from pydantic import field_validator

from feature_repo.stores.redis_writer import ArrowRowWriter, open_writer

DEFAULT_REDIS_URL = "redis://localhost:6379"


def to_feast_connection_string(value: str) -> str:
    """Turn ``redis://[:password@]host:port[/db]`` into Feast's ``host:port,db=N,...`` form.

    A value that is already in Feast's form passes through. An unset ``${REDIS_URL}`` (left verbatim by
    ``os.path.expandvars``) or an empty string means the default local server.
    """
    value = value.strip()
    if not value or value.startswith("${"):
        value = DEFAULT_REDIS_URL
    if "://" not in value:
        return value
    url = urlparse(value)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL: scheme must be redis:// or rediss://, got {url.scheme!r}")
    if not url.hostname:
        raise ValueError(f"REDIS_URL: no host in {value!r}")
    parts = [f"{url.hostname}:{url.port or 6379}"]
    db = url.path.lstrip("/")
    if db:
        if not db.isdigit():
            raise ValueError(f"REDIS_URL: database must be a number, got {db!r}")
        parts.append(f"db={int(db)}")
    if url.password:
        parts.append(f"password={unquote(url.password)}")
    if url.username:
        parts.append(f"username={unquote(url.username)}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


class RedisURLOnlineStoreConfig(RedisOnlineStoreConfig):
    """Feast's Redis config, plus ``redis://`` URLs in ``connection_string``."""

    type: Literal["feature_repo.stores.redis_url.RedisURLOnlineStore"] = (  # type: ignore[assignment]
        "feature_repo.stores.redis_url.RedisURLOnlineStore"
    )

    @field_validator("connection_string", mode="before")
    @classmethod
    def _accept_url(cls, value: str) -> str:
        return to_feast_connection_string(value)


class RedisURLOnlineStore(RedisOnlineStore):
    """Feast's Redis online store; its configuration accepts URLs, and it offers a bulk path for materialization.

    Reads and ``online_write_batch`` are Feast's own. ``arrow_writer`` is what the streaming materialization
    engine (``feature_repo.stores.streaming_engine``) writes through: the same keys, fields and bytes, the same
    timestamp rule, a Lua call per chunk instead of two commands per row.
    """

    def arrow_writer(
        self, config: RepoConfig, feature_view: FeatureView, progress: Callable[[int], object] | None = None
    ) -> ArrowRowWriter | None:
        """A bulk writer for ``feature_view``'s rows, or None where stock's path is needed (see ``open_writer``)."""
        return open_writer(self, config, feature_view, progress)
