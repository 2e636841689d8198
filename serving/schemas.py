"""Request and response models of the HTTP API."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from data import schemas

Recommendation = Literal["block", "review", "approve"]


class Transaction(BaseModel):
    """One payment to score. Unknown fields are ignored; known ones are checked strictly."""

    model_config = ConfigDict(extra="ignore")

    txn_id: str = Field(min_length=1, max_length=64, description="Caller's id; echoed back and logged.")
    user_id: int = Field(ge=0)
    device_id: int = Field(ge=0)
    merchant_id: int = Field(ge=0)
    amount: float = Field(ge=0, le=1e9, description="In `currency`; not negative.")
    currency: str = Field(description="ISO 4217 code.")
    country: str = Field(description="ISO 3166 alpha-2 code of where the card was used.")
    channel: str = Field(description="web, app or pos.")
    timestamp: AwareDatetime = Field(description="When the payment happened, with a time zone.")

    @field_validator("txn_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in schemas.CURRENCIES:
            raise ValueError(f"unknown currency {value!r}; known: {', '.join(schemas.CURRENCIES)}")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value not in schemas.COUNTRIES:
            raise ValueError(f"unknown country {value!r}; known: {', '.join(schemas.COUNTRIES)}")
        return value

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in schemas.CHANNELS:
            raise ValueError(f"unknown channel {value!r}; known: {', '.join(schemas.CHANNELS)}")
        return value


class BatchRequest(BaseModel):
    transactions: list[Transaction] = Field(min_length=1)


class ScoreResponse(BaseModel):
    txn_id: str
    risk_score: float | None = Field(description="Probability of fraud, 0-1; null when a fail policy answered.")
    recommendation: Recommendation
    model_version: int | None
    model_role: Literal["champion", "challenger"] | None = Field(
        default=None, description="Which model decided: the champion, or the challenger in a canary."
    )
    reasons: list[str] = Field(description="For block/review: what pushed the score up most, in words.")
    missing_features: list[str] = Field(description="Features with no stored value; scored as unknown.")
    stale_features: list[str] = Field(description="Features older than their view's TTL; scored as unknown.")
    unknown_entities: list[str] = Field(description="Entities (user, device, merchant) with no stored features.")
    policy: str | None = Field(default=None, description="Set when a dependency was down and a fail policy answered.")


class BatchResponse(BaseModel):
    results: list[ScoreResponse]


class Readiness(BaseModel):
    ready: bool
    redis: str
    model: str
    model_version: int | None
    model_runtime: str | None = Field(
        default=None, description="What computes the scores: native (compiled trees), gtil, estimator or pipeline."
    )
    challenger: str = Field(default="none", description="The canary's challenger, if any; never affects readiness.")
