"""Online features for a feature service, read straight from Feast's Redis layout in one round trip.

Feast stores every feature view of one entity in one Redis hash (key: the serialized entity key plus the project;
fields: murmur3 of ``<view>:<feature>`` and ``_ts:<view>``). This reader works out those keys once, from the
feature service's own definitions and Feast's own key functions, then answers a whole micro-batch with one
pipelined HMGET per entity. Values are decoded with Feast's type map, so they are what `get_online_features`
returns; the equivalence is tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from feast import FeatureService, FeatureStore
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from google.protobuf.timestamp_pb2 import Timestamp

from skewless.errors import DependencyUnavailableError


@dataclass(frozen=True)
class _ViewRead:
    view: str
    join_key: str
    entity: str
    features: list[str]
    fields: list[bytes]  # murmur3 field names, then the timestamp field
    ttl: timedelta | None


@dataclass
class EntityFeatures:
    """One transaction's stored features, plus what was missing or stale."""

    values: dict[str, Any]
    missing: list[str]
    stale: list[str]
    unknown_entities: list[str]
    ages_seconds: dict[str, float]


class OnlineFeatures:
    """Reads the batch features of ``service`` for many transactions at once."""

    def __init__(self, store: FeatureStore, service: FeatureService, client: redis.Redis) -> None:
        self._project = store.project
        self._version = store.config.entity_key_serialization_version
        self._client = client
        on_demand = {v.name for v in store.list_on_demand_feature_views()}
        self._reads: list[_ViewRead] = []
        for projection in service.feature_view_projections:
            if projection.name in on_demand:
                continue
            view = store.get_feature_view(projection.name)
            join_key = view.entity_columns[0].name
            names = [f.name for f in projection.features]
            fields = [_mmh3(f"{view.name}:{n}") for n in names] + [f"_ts:{view.name}".encode()]
            self._reads.append(_ViewRead(view.name, join_key, view.entities[0], names, fields, view.ttl))

    @property
    def join_keys(self) -> list[str]:
        return sorted({r.join_key for r in self._reads})

    @property
    def feature_names(self) -> list[str]:
        return [name for r in self._reads for name in r.features]

    def _key(self, join_key: str, value: int) -> bytes:
        proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(int64_val=int(value))])
        return _redis_key(self._project, proto, entity_key_serialization_version=self._version)

    def read(self, rows: list[dict[str, Any]], now: datetime | None = None) -> list[EntityFeatures]:
        """Stored features for each row (a dict holding the join keys), in the rows' order."""
        now = now or datetime.now(UTC)
        try:
            pipe = self._client.pipeline(transaction=False)
            for row in rows:
                for read in self._reads:
                    pipe.hmget(self._key(read.join_key, row[read.join_key]), read.fields)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"online store (Redis) unavailable: {exc}") from exc
        results = []
        it = iter(replies)
        for _row in rows:
            values: dict[str, Any] = {}
            missing, stale, unknown = [], [], []
            ages: dict[str, float] = {}
            for read in self._reads:
                raw = next(it)
                ts_raw = raw[-1]
                if not ts_raw:
                    unknown.append(read.entity)
                    values.update(dict.fromkeys(read.features))
                    missing.extend(read.features)
                    continue
                ts = Timestamp()
                ts.ParseFromString(ts_raw)
                age = now.timestamp() - (ts.seconds + ts.nanos / 1e9)
                ages[read.view] = age
                is_stale = read.ttl is not None and read.ttl.total_seconds() > 0 and age > read.ttl.total_seconds()
                for name, blob in zip(read.features, raw[:-1], strict=True):
                    # Past the view's TTL training would have seen nothing, so serving uses nothing either.
                    value = None if is_stale else _decode(blob)
                    values[name] = value
                    if is_stale:
                        stale.append(name)
                    elif value is None:
                        missing.append(name)
            results.append(EntityFeatures(values, missing, stale, unknown, ages))
        return results


def _decode(blob: bytes | None) -> Any:
    if not blob:
        return None
    proto = ValueProto()
    proto.ParseFromString(blob)
    return feast_value_type_to_python_type(proto)
