"""Settings of the insight job (env prefix INSIGHT_), kept apart from serving.settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InsightSettings(BaseSettings):
    """INSIGHT_REDIS_URL, INSIGHT_CUSTOMERS, ... (all optional)."""

    model_config = SettingsConfigDict(env_prefix="INSIGHT_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis with the live customer state; falls back to REDIS_URL."
    )
    prefix: str = Field(default="insight", description="Prefix of every Redis key of the job.")
    stream: str = Field(default="insight:orders", description="Redis Stream the orders are published to.")
    group: str = Field(default="insight-rfm", description="Consumer group that updates RFM and segments.")
    customers: int = Field(default=5000, ge=50, description="Customers in the generated history.")
    orders: int = Field(default=100_000, ge=100, description="Orders in the generated history.")
    seed: int = Field(default=7, description="Seed of the generated history.")
    # 7 = every named segment (insight.segments.DEFAULT_COMPONENTS; kept literal so settings stay light).
    components: int = Field(default=7, ge=2, le=7, description="Segments (GMM components).")
    refit_interval_s: float = Field(default=60.0, gt=0, description="Seconds between model refits.")
    snapshot_ttl_s: float = Field(default=1.0, ge=0, description="How long a read snapshot is reused.")
    profile_max_age_s: float = Field(
        default=120.0, ge=0, description="Rebuild segment profile documents when older than this."
    )


@lru_cache(maxsize=1)
def get_insight_settings() -> InsightSettings:
    return InsightSettings()
