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
