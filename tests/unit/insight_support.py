"""Small seeded customer snapshots for insight tests (a few hundred customers, no Redis)."""

from __future__ import annotations

from functools import lru_cache

from personagraph.insight.orders import History, generate_history
from personagraph.insight.segments import SegmentModel, fit_segment_model, rfm_raw
from personagraph.insight.store import Snapshot, snapshot_from_history

ANCHOR = 1_750_000_000.0


@lru_cache(maxsize=1)
def small_history() -> History:
    return generate_history(300, 6000, seed=1, anchor=ANCHOR)


def model_of(history: History) -> SegmentModel:
    agg = history.orders.groupby("customer_id").agg(last=("ts", "max"), f=("ts", "size"), m=("amount", "sum"))
    return fit_segment_model(
        rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), history.anchor)
    )


def small_model() -> SegmentModel:
    return model_of(small_history())


def small_snapshot() -> Snapshot:
    return snapshot_from_history(small_history(), small_model())


def snapshot_of(customers: int, orders: int, seed: int) -> Snapshot:
    """Another customer base, segmented on its own."""
    history = generate_history(customers, orders, seed=seed, anchor=ANCHOR)
    return snapshot_from_history(history, model_of(history))
