"""One typed settings object, read from the environment (prefix ``SKEWLESS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where things live and how to reach them. Nothing here connects; it only says where."""

    model_config = SettingsConfigDict(env_prefix="SKEWLESS_", extra="ignore")

    repo_root: Path = Field(default_factory=Path.cwd, description="Folder holding feature_store.yaml.")
    redis_url: str = Field(
        default="redis://localhost:6379",
        validation_alias=AliasChoices("REDIS_URL", "SKEWLESS_REDIS_URL"),
    )
    feature_service: str = "fraud_model_v1"

    # MLflow: embedded SQLite under data/ unless MLFLOW_TRACKING_URI says otherwise (e.g. postgresql://...).
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "SKEWLESS_MLFLOW_TRACKING_URI")
    )
    model_name: str = "fraud-detector"

    # Training: labels younger than this are left out (chargebacks are still arriving for them).
    label_maturity_days: int = Field(default=7, ge=0)
    validation_share: float = Field(default=0.25, gt=0, lt=1, description="Latest share of the label window held out.")
    min_training_rows: int = Field(default=1_000, ge=1)
    min_positive_labels: int = Field(default=20, ge=1)
    # OpenMP/BLAS threads for fitting and scoring. One is fastest on a small shared machine: two threads
    # fighting other processes for two cores made gradient boosting 6x slower here.
    train_threads: int = Field(default=1, ge=1)
    # Decision thresholds are set on the validation window so that these shares of traffic are flagged.
    block_rate: float = Field(default=0.005, gt=0, lt=1)
    review_rate: float = Field(default=0.02, gt=0, lt=1)

    # validate-model gate
    min_pr_auc: float = Field(default=0.30, ge=0, le=1)
    min_recall_at_1pct_fpr: float = Field(default=0.30, ge=0, le=1)
    max_pr_auc_drop: float = Field(default=0.02, ge=0, le=1, description="Allowed PR-AUC drop against the champion.")

    @property
    def data_path(self) -> Path:
        # Feature sources in feature_repo/ name paths relative to the repo root, so data always lives here.
        return self.repo_root / "data"

    @property
    def raw_dir(self) -> Path:
        return self.data_path / "raw"

    @property
    def features_dir(self) -> Path:
        return self.data_path / "features"

    @property
    def reports_dir(self) -> Path:
        return self.data_path / "reports"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_path / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where runs' artifacts go when the tracking store is the embedded one."""
        return self.data_path / "mlartifacts"
