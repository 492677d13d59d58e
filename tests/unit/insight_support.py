"""A small seeded customer snapshot for insight tests (300 customers, no Redis)."""

from __future__ import annotations

from functools import lru_cache

from personagraph.insight.orders import History, generate_history
from personagraph.insight.segments import SegmentModel, fit_segment_model, rfm_raw
from personagraph.insight.store import Snapshot, snapshot_from_history

ANCHOR = 1_750_000_000.0


@lru_cache(maxsize=1)
def small_history() -> History:
    return generate_history(300, 6000, seed=1, anchor=ANCHOR)


def small_model() -> SegmentModel:
    h = small_history()
    agg = h.orders.groupby("customer_id").agg(last=("ts", "max"), f=("ts", "size"), m=("amount", "sum"))
    return fit_segment_model(
        rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), h.anchor)
    )


def small_snapshot() -> Snapshot:
    return snapshot_from_history(small_history(), small_model())
