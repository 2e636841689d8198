"""On-demand feature views: features of the transaction itself, computed at request time.

Training gets them through `get_historical_features` (the entity frame carries the transaction's fields),
serving through `get_online_features` (the request carries them); both run the functions in
`feature_repo.transformations`, the only copy of that logic.
"""

import pandas as pd
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from feature_repo.sources import transaction_request
from feature_repo.views import device_stats, user_activity, user_profile


@on_demand_feature_view(
    # No `description=` on these fields: Feast 0.67 compares descriptions when it checks the declared schema
    # against the inferred one, and inferred fields have none.
    sources=[transaction_request, user_profile, user_activity, device_stats],
    schema=[
        Field(name="txn_amount", dtype=Float64),  # Payment amount.
        Field(name="txn_channel", dtype=String),  # web, app or pos.
        Field(name="amount_to_typical", dtype=Float64),  # Amount over the user's 30-day mean.
        Field(name="is_new_device", dtype=Int64),  # Device unknown or first seen within a day.
        Field(name="hour_of_day", dtype=Int64),  # Hour of the payment, UTC.
        Field(name="age_group", dtype=Int64),  # Decade of the customer's age; -1 unknown.
        Field(name="avg_spend", dtype=Float64),  # Lifetime spend over lifetime orders.
        Field(name="is_foreign_country", dtype=Int64),  # Paid outside the home country.
    ],
    mode="pandas",
    description="Request-time features of the transaction, relative to the customer's history.",
)
def transaction_features(inputs: pd.DataFrame) -> pd.DataFrame:
    # Imported here so the function Feast serializes carries its own reference to the one implementation.
    from feature_repo import transformations as t

    out = pd.DataFrame(index=inputs.index)
    out["txn_amount"] = inputs["amount"].astype("float64")
    out["txn_channel"] = inputs["channel"].astype("object")
    out["amount_to_typical"] = t.amount_to_typical(inputs["amount"], inputs["amount_mean_30d"])
    out["is_new_device"] = t.is_new_device(inputs["device_age_days"])
    out["hour_of_day"] = t.hour_of_day(inputs["event_timestamp"])
    out["age_group"] = t.age_group(inputs["age"])
    out["avg_spend"] = t.avg_spend(inputs["total_spend"], inputs["orders"])
    out["is_foreign_country"] = t.is_foreign(inputs["country"], inputs["home_country"])
    return out
