"""One typed settings object, read from the environment (prefix ``SKEWLESS_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where things live and how to reach them. Nothing here connects; it only says where."""

    model_config = SettingsConfigDict(env_prefix="SKEWLESS_", extra="ignore")

    repo_root: Path = Field(default_factory=Path.cwd, description="Folder holding feature_store.yaml.")
    redis_url: str = Field(
        default="redis://localhost:6379",
        validation_alias=AliasChoices("REDIS_URL", "SKEWLESS_REDIS_URL"),
    )
    feature_service: str = "fraud_model_v2"

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

    # Serving
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)
    serve_workers: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=1_000, ge=1, description="Largest /score/batch request accepted.")
    microbatch_max: int = Field(default=64, ge=1, description="Most single /score requests scored in one call.")
    microbatch_inline: bool = Field(
        default=True,
        description="Score micro-batches on the event loop (no thread hop); false: on a worker thread.",
    )
    microbatch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a lone request waits for company. 0: none; under load, requests that arrive while a "
        "batch is scored form the next batch by themselves.",
    )
    redis_spin_us: float = Field(
        default=1000.0,
        ge=0,
        le=10_000,
        description="How long a micro-batch holding every request the service is answering watches for Redis's "
        "answer before it sleeps until it comes. On a virtual machine, a process woken by a socket can take "
        "100-400 µs to run again; here one request's answer came after ~90 µs (median), eight requests' after ~370. "
        "0: always sleep.",
    )
    gil_switch_ms: float = Field(
        default=0.5,
        gt=0,
        description="Python's thread switch interval in the service (default 5 ms): how long the request loop can "
        "wait for the GIL while the decision-log or model-poller thread holds it.",
    )
    gc_young_threshold: int = Field(
        default=100_000,
        ge=1,
        description="Python's collection threshold for new objects in the service (Python's default: 700): how "
        "many more objects may be made than freed before the youngest generation is collected. Objects that only "
        "reference cycles keep alive wait longer to be freed; the others are freed at once, as always.",
    )
    native_trees: bool = Field(
        default=True,
        description="Compile tree models to a shared library (TL2cgen + gcc) after loading; off: Treelite's GTIL.",
    )
    native_model_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skewless/native",
        description="Cache of compiled tree models, named by a hash of the model.",
    )
    model_alias: str = "champion"
    model_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often the service checks the aliases; a rollback serves within it."
    )
    max_future_seconds: int = Field(default=300, ge=0, description="Tolerated clock skew of request timestamps.")
    fail_policy: str = Field(
        default="error",
        pattern="^(error|approve|review|block)$",
        description="What /score answers when Redis is down: error (503) or a fixed recommendation.",
    )
    reasons_count: int = Field(default=3, ge=0, le=10)
    decision_stream: str = "skewless:decisions"
    worker_group: str = "prediction-log"
    worker_batch: int = Field(default=500, ge=1)

    # Monitoring: where `skewless monitor` publishes its alerts.
    alert_stream: str = "skewless:alerts"

    # Release: canary routing in the service (serving/canary.py), its verdict and the registry moves (release/).
    canary_share: float = Field(
        default=0.05, ge=0, le=1, description="Share of transactions @challenger decides, by txn_id hash."
    )
    canary_mode: str = Field(
        default="canary",
        pattern="^(canary|shadow)$",
        description="canary: the challenger decides its share; shadow: it scores every transaction, unseen.",
    )
    canary_window: int = Field(default=1_000, ge=20, description="Challenger decisions judged in one verdict.")
    canary_max_error_rate: float = Field(default=0.001, ge=0, le=1, description="Challenger scoring failures.")
    canary_max_p99_ratio: float = Field(
        default=2.0, ge=1, description="Challenger model-call p99 / champion's: a p99 of few calls is noisy."
    )
    canary_p99_slack_ms: float = Field(default=2.0, ge=0, description="Added to the p99 bound: timer noise.")
    canary_max_psi: float = Field(default=0.2, ge=0, description="Score distribution shift against the champion.")
    canary_max_block_rate_change: float = Field(default=0.01, ge=0, le=1, description="Absolute, e.g. 0.01 = 1 pp.")
    release_stream: str = "skewless:releases"
    retrain_approver: str = "skewless retrain"

    @field_validator("repo_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Commands chdir to the repo root; a relative root would then point somewhere else.
        return value.resolve()

    @property
    def predictions_dir(self) -> Path:
        return self.data_path / "predictions"

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
