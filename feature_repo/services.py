"""Feature services: one per model version. Training and serving ask for these by name, never for columns."""

from feast import FeatureService

from feature_repo.aggregations import device_velocity, user_velocity
from feature_repo.on_demand import transaction_features
from feature_repo.views import device_stats, merchant_risk, user_activity, user_profile

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[user_profile, user_activity, device_stats, merchant_risk, transaction_features],
    description="Batch snapshots of the user, device and merchant, plus request-time transaction features.",
    tags={"model": "fraud-detector"},
)

fraud_model_v2 = FeatureService(
    name="fraud_model_v2",
    features=[
        user_profile,
        user_activity,
        device_stats,
        merchant_risk,
        transaction_features,
        user_velocity,
        device_velocity,
    ],
    description="v1's features plus real-time velocity: the user's and device's payments in the last 10 minutes, "
    "hour and day before the one being scored.",
    tags={"model": "fraud-detector"},
)
