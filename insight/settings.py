"""Settings of the insight job (env prefix INSIGHT_), kept apart from serving.settings."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

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
    # Bounds of an order on the stream (issue 16: a bad event never stops a consumer). An order
    # outside them is dead-lettered with the reason; the good orders of its batch are applied.
    order_min_ts: float = Field(
        default=946_684_800.0, ge=0, description="Earliest order time accepted (Unix seconds; 2000-01-01)."
    )
    order_max_future_s: float = Field(
        default=86_400.0, ge=0, description="How far ahead of the consumer's clock an order time may be (s)."
    )
    order_max_amount: int = Field(
        default=100_000_000, ge=1, description="Largest order total accepted (KRW)."
    )
    order_max_price: int = Field(default=10_000_000, ge=1, description="Largest unit price accepted (KRW).")
    order_max_qty: int = Field(default=100, ge=1, le=10_000, description="Largest quantity of one item line.")
    order_max_items: int = Field(default=100, ge=1, le=10_000, description="Most item lines in one order.")
    order_max_entry_bytes: int = Field(
        default=65_536, ge=1024, description="Largest stream entry read (bytes of all fields together)."
    )
    note_max_chars: int = Field(
        default=300, ge=1, le=5000, description="Longest customer note on an order (characters)."
    )
    notes_per_customer: int = Field(default=3, ge=0, le=50, description="Recent notes kept per customer.")
    notes_per_segment: int = Field(
        default=3, ge=0, le=20, description="Recent customer notes quoted in a segment's profile document."
    )
    dead_letter_stream: str | None = Field(
        default=None,
        description="Redis Stream of rejected entries with the reason (default: the stream + ':dead').",
    )
    dead_letter_maxlen: int = Field(
        default=10_000, ge=10, description="About how many dead-lettered entries are kept (XADD MAXLEN ~)."
    )
    dead_letter_raw_chars: int = Field(
        default=2000, ge=100, description="How much of a rejected entry is kept in the dead-letter stream."
    )
    max_deliveries: int = Field(
        default=5, ge=2, description="Deliveries after which an entry that keeps failing is dead-lettered."
    )
    restart_backoff_s: float = Field(
        default=1.0, gt=0, description="First wait before a failed consumer is restarted (doubles each time)."
    )
    restart_backoff_max_s: float = Field(
        default=60.0, gt=0, description="Longest wait between restarts of a failing consumer."
    )
    # Stable live segments (issue 21): simulated clock, warm refits, drift, soft memberships.
    sim_speed: float = Field(
        default=3600.0, gt=0, le=10_000_000,
        description="Simulated seconds per real second in the live demo (3600 = one simulated hour a second).",
    )  # fmt: skip
    sim_warmup_days: float = Field(
        default=14.0,
        ge=0,
        le=365,
        description="Simulated days of orders applied before the live demo starts.",
    )
    sim_scenario: Literal["steady", "shift"] = Field(
        default="steady",
        description="Live demo order mix: steady, or shift (VIP/loyal stop, new customers surge).",
    )
    sim_shift_after_days: float = Field(
        default=3.0, ge=0, description="Simulated days after the demo starts when the shift scenario begins."
    )
    sim_refit_days: float = Field(
        default=1.0,
        gt=0,
        description="Simulated days between refits in the live demo (overrides refit_interval_s).",
    )
    rescore_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between re-scoring every customer (recency changes with time).",
    )
    refit_prior_strength: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the reference model in a warm refit, in multiples of the customers.",
    )
    drift_min_ari: float = Field(
        default=0.9, ge=0, le=1, description="A refit agreeing less (ARI) is held as drift."
    )
    drift_max_size_change: float = Field(
        default=0.05,
        gt=0,
        description="A refit moving a segment's size by more than this share is held as drift.",
    )
    drift_mix_window: int = Field(
        default=3, ge=1, le=50, description="Refits over which customer movement is judged."
    )
    drift_max_mix_change: float = Field(
        default=0.2,
        gt=0,
        description="A segment changing more than this over the window is reported as mix drift.",
    )
    boundary_threshold: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Probability of another segment from which a customer is on its boundary.",
    )


@lru_cache(maxsize=1)
def get_insight_settings() -> InsightSettings:
    return InsightSettings()
