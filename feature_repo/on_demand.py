"""On-demand feature views: features of the transaction itself, computed at request time.

Training gets them through `get_historical_features` (the entity frame carries the transaction's fields),
serving through `get_online_features` (the request carries them); both run the functions in
`feature_repo.transformations`, the only copy of that logic. The view's function accepts a DataFrame (Feast) or a
mapping of column arrays (the scoring service) and answers in kind.
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
    # The scoring service calls this same function with a dict of arrays and gets the dict back (no DataFrame).
    from feature_repo import transformations as t

    columns = t.transaction_features(inputs)
    return pd.DataFrame(columns, index=inputs.index) if isinstance(inputs, pd.DataFrame) else columns
