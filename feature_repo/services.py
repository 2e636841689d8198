"""Feature services: one per model version. Training and serving ask for these by name, never for columns."""

from feast import FeatureService

from feature_repo.on_demand import transaction_features
from feature_repo.views import device_stats, merchant_risk, user_activity, user_profile

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[user_profile, user_activity, device_stats, merchant_risk, transaction_features],
    description="Batch snapshots of the user, device and merchant, plus request-time transaction features.",
    tags={"model": "fraud-detector"},
)
