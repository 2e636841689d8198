"""Windowed aggregations over the transaction stream: velocity features, declared once for training and serving.

Each view is a Feast ``StreamFeatureView`` over the ``transactions_push`` source with Feast ``Aggregation`` s.
Offline, ``get_historical_features`` computes them from the raw transactions (``feature_repo.stores.
window_aggregates``); online, the scoring service records each transaction in Redis and computes them at score
time (``serving.realtime``). Both read this declaration through ``feature_repo.windows``; neither names a feature.

The definition, the same on both sides
--------------------------------------
For a transaction ``x`` at time ``t`` (its ``event_timestamp``) and an entity ``k`` of it (its user, its device),
a feature with window ``W`` aggregates the *other* transactions of ``k`` whose timestamp ``s`` satisfies

    t - W <= s < t

- **Strictly before.** An event at exactly ``t`` does not count: two payments of one user in the same
  microsecond do not see each other, whichever is scored first; the transaction never counts itself.
- **Exactly W before counts**, as a row exactly TTL old still counts for a feature view.
- **Duplicates.** All rows or requests with one ``txn_id`` are one event, placed at the earliest timestamp among
  them. A copy is answered as of ``min(its timestamp, the earliest timestamp of its txn_id)``, so a retry gets the
  features the first attempt got and adds nothing (copies are expected to be identical; if same-timestamp copies
  differ in amount or device, online keeps the first recorded, offline the smallest values).
- **Precision.** Timestamps are compared in whole microseconds of UTC, the raw data's precision.
- **Empty windows.** Counts, sums and maxima (of amounts, never negative) are 0; ``seconds_since_last`` (``t``
  minus the latest event in the window, in seconds) is the window's length. A windowed feature is never missing.

Event time, late events and clock skew
--------------------------------------
Only event time enters a value; the server clock never does. The API refuses timestamps more than
``max_future_seconds`` (300 s) ahead of the server clock, and takes anything else as stamped, so a client clock a
little fast or slow moves its own events, the same way offline and online.

- **Out of order, within the allowed lateness** (the ``allowed_lateness_seconds`` tag, 1 hour, at least the
  future tolerance): exact. The late transaction's features count everything before it, and it counts for
  every transaction scored after it arrived.
- **Scored before a late event arrived**: a transaction cannot count what has not arrived, while the offline
  rebuild, which sees every event, does. This is the one divergence real time cannot remove; ``skewless skew``
  shows its rows, and an in-order stream has none.
- **Later than the allowed lateness** (older than its entity's newest event minus the lateness): online state
  keeps each entity's largest window plus the lateness, so such a transaction's own window may be cut short.
- Online state of an entity expires after its largest window plus twice the lateness without a transaction.
"""

import warnings
from datetime import timedelta

from feast import Aggregation, Field
from feast.stream_feature_view import StreamFeatureView

from feature_repo.entities import device, user
from feature_repo.sources import transactions_push
from feature_repo.windows import EVENT_ID_TAG, LATENESS_TAG, aggregate_schema

WINDOWS = {"10m": timedelta(minutes=10), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
DAY = WINDOWS["24h"]
_TAGS = {"owner": "fraud", "refresh": "real-time", EVENT_ID_TAG: "txn_id", LATENESS_TAG: "3600"}


def _velocity(column: str, function: str, prefix: str) -> list[Aggregation]:
    return [
        Aggregation(column=column, function=function, time_window=window, name=f"{prefix}_{label}")
        for label, window in WINDOWS.items()
    ]


def _stream_view(name: str, entity: object, aggregations: list[Aggregation], description: str) -> StreamFeatureView:
    schema: list[Field] = aggregate_schema(aggregations)
    with warnings.catch_warnings():
        # Feast warns that stream feature views are alpha: its stream processing is. Only the declaration is
        # used here; the computation on both sides is this project's (see the module docstring).
        warnings.simplefilter("ignore", RuntimeWarning)
        return StreamFeatureView(
            name=name,
            entities=[entity],  # type: ignore[list-item]
            source=transactions_push,
            aggregations=aggregations,
            timestamp_field="event_timestamp",
            schema=schema,
            online=False,  # not materialized: the scoring service keeps this state itself (serving/realtime.py)
            description=description,
            tags=_TAGS,
        )


user_velocity = _stream_view(
    "user_velocity",
    user,
    [
        *_velocity("txn_id", "count", "txn_count"),  # Payments by the user in the window.
        *_velocity("amount", "sum", "amount_sum"),  # Money the user spent in the window.
        *_velocity("amount", "max", "amount_max"),  # The user's largest payment in the window.
        Aggregation(column="device_id", function="count_distinct", time_window=DAY, name="distinct_devices_24h"),
        Aggregation(column="merchant_id", function="count_distinct", time_window=DAY, name="distinct_merchants_24h"),
        Aggregation(
            column="event_timestamp", function="seconds_since_last", time_window=DAY, name="seconds_since_last_txn"
        ),
    ],
    "The user's payments in the last 10 minutes, hour and day, before the one being scored.",
)

device_velocity = _stream_view(
    "device_velocity",
    device,
    [Aggregation(column="user_id", function="count_distinct", time_window=DAY, name="device_distinct_users_24h")],
    "Accounts that paid from the device in the last day, before the payment being scored.",
)
