"""Exact figures from a snapshot: per segment, per customer, comparisons, trends.

Every function reads only the rows of the segment(s) or customer it is given, so a caller that
passes only in-scope names cannot get out-of-scope data. Percentages end in `_pct` (0-100).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np

from personagraph.insight.orders import PRODUCTS
from personagraph.insight.segments import SEGMENT_LABELS, label
from personagraph.insight.store import Snapshot

DAY = 86_400.0


class UnknownSegmentError(ValueError):
    pass


def known_segments(snap: Snapshot) -> list[str]:
    present = set(snap.customers["segment"].unique().tolist())
    return [s for s in SEGMENT_LABELS if s in present]


def _members(snap: Snapshot, segment: str) -> Any:
    if segment not in SEGMENT_LABELS:
        raise UnknownSegmentError(f"unknown segment {segment!r}; allowed: {', '.join(SEGMENT_LABELS)}")
    return snap.customers[snap.customers["segment"] == segment]


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def segment_stats(snap: Snapshot, segment: str) -> dict[str, Any]:
    c = _members(snap, segment)
    n = len(c)
    all_n = max(1, len(snap.customers))
    revenue = int(c["monetary"].sum())
    all_revenue = max(1, int(snap.customers["monetary"].sum()))
    orders = int(c["frequency"].sum())
    recency = (snap.as_of - c["last_ts"]) / DAY
    ch = snap.channels[snap.channels["customer_id"].isin(c.index)].groupby("channel")["orders"].sum()
    ch_total = max(1, int(ch.sum()))
    return {
        "segment": segment,
        "label_en": label(segment, "en"),
        "label_ko": label(segment, "ko"),
        "customers": n,
        "share_of_customers_pct": round(100 * n / all_n, 1),
        "orders": orders,
        "revenue_krw": revenue,
        "share_of_revenue_pct": round(100 * revenue / all_revenue, 1),
        "avg_recency_days": round(float(recency.mean()), 1) if n else 0.0,
        "avg_orders_per_customer": round(orders / n, 1) if n else 0.0,
        "avg_spend_per_customer_krw": int(round(revenue / n)) if n else 0,
        "avg_order_value_krw": int(round(revenue / orders)) if orders else 0,
        "channel_mix_pct": {k: round(100 * int(v) / ch_total, 1) for k, v in ch.items()},
    }


def overview(snap: Snapshot) -> dict[str, Any]:
    """Every segment's size and value (the summary intent's figures)."""
    segments = [segment_stats(snap, s) for s in known_segments(snap)]
    return {
        "customers": len(snap.customers),
        "revenue_krw": int(snap.customers["monetary"].sum()),
        "segments": [
            {
                k: s[k]
                for k in (
                    "segment",
                    "label_en",
                    "label_ko",
                    "customers",
                    "share_of_customers_pct",
                    "share_of_revenue_pct",
                    "avg_spend_per_customer_krw",
                    "avg_recency_days",
                )
            }
            for s in segments
        ],  # fmt: skip
    }


def top_products(snap: Snapshot, segment: str, n: int = 5) -> dict[str, Any]:
    c = _members(snap, segment)
    units = snap.products[snap.products["customer_id"].isin(c.index)].groupby("sku")["units"].sum()
    total = max(1, int(units.sum()))
    rows = []
    for rank, (sku, value) in enumerate(units.sort_values(ascending=False).head(n).items(), start=1):
        product = PRODUCTS.get(str(sku))
        rows.append({
            "rank": rank, "sku": str(sku), "name_en": product.name_en if product else str(sku),
            "name_ko": product.name_ko if product else str(sku), "units": int(value),
            "share_of_units_pct": round(100 * int(value) / total, 1),
        })  # fmt: skip
    return {"segment": segment, "products": rows, "total_units": int(units.sum())}


def trend(snap: Snapshot, segment: str, months: int = 6) -> dict[str, Any]:
    """Orders and revenue per calendar month (customers now in the segment); the current month is partial."""
    c = _members(snap, segment)
    m = snap.months[snap.months["customer_id"].isin(c.index)].groupby("month")[["orders", "revenue"]].sum()
    m = m.sort_index().tail(months)
    rows: list[dict[str, Any]] = [
        {"month": str(k), "orders": int(v["orders"]), "revenue_krw": int(v["revenue"])}
        for k, v in m.iterrows()
    ]
    out: dict[str, Any] = {"segment": segment, "months": rows}
    full = (
        rows[:-1]
        if rows and rows[-1]["month"] == datetime.fromtimestamp(snap.as_of, tz=UTC).strftime("%Y-%m")
        else rows
    )
    if len(full) >= 2 and full[-2]["revenue_krw"]:
        out["last_full_month"] = full[-1]["month"]
        out["revenue_change_pct"] = round(100 * (full[-1]["revenue_krw"] / full[-2]["revenue_krw"] - 1), 1)
        out["orders_change_pct"] = round(100 * (full[-1]["orders"] / max(1, full[-2]["orders"]) - 1), 1)
    return out


def customer_lookup(snap: Snapshot, customer_id: str) -> dict[str, Any]:
    if customer_id not in snap.customers.index:
        return {"customer_id": customer_id, "error": f"unknown customer id {customer_id!r}"}
    row = snap.customers.loc[customer_id]
    freq, money = int(row["frequency"]), int(row["monetary"])
    units = snap.products[snap.products["customer_id"] == customer_id].sort_values("units", ascending=False)
    ch = snap.channels[snap.channels["customer_id"] == customer_id]
    return {
        "customer_id": customer_id,
        "segment": str(row["segment"]),
        "label_en": label(str(row["segment"]), "en"),
        "label_ko": label(str(row["segment"]), "ko"),
        "recency_days": round((snap.as_of - float(row["last_ts"])) / DAY, 1),
        "orders": freq,
        "spend_krw": money,
        "avg_order_value_krw": int(round(money / freq)) if freq else 0,
        "first_order_date": _date(float(row["first_ts"])),
        "last_order_date": _date(float(row["last_ts"])),
        "favourite_products": [
            {
                "name_en": PRODUCTS[s].name_en if s in PRODUCTS else s,
                "name_ko": PRODUCTS[s].name_ko if s in PRODUCTS else s,
                "units": int(u),
            }
            for s, u in zip(units["sku"].head(3), units["units"].head(3), strict=True)
        ],  # fmt: skip
        "channel_orders": {str(k): int(v) for k, v in zip(ch["channel"], ch["orders"], strict=True)},
    }


def compare_segments(snap: Snapshot, segments: list[str]) -> dict[str, Any]:
    if len(segments) < 2:
        raise ValueError("segments: a comparison needs at least two segments")
    stats = [segment_stats(snap, s) for s in segments]
    a, b = stats[0], stats[1]

    def ratio(key: str) -> float:
        return round(a[key] / b[key], 2) if b[key] else 0.0

    return {
        "segments": stats,
        "first_vs_second": {
            "avg_spend_ratio": ratio("avg_spend_per_customer_krw"),
            "avg_orders_ratio": ratio("avg_orders_per_customer"),
            "avg_order_value_ratio": ratio("avg_order_value_krw"),
            "customers_ratio": ratio("customers"),
            "recency_difference_days": round(a["avg_recency_days"] - b["avg_recency_days"], 1),
        },
    }


def records(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a tool result, nested ones included (depth first)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from records(item)
    elif isinstance(value, list):
        for item in value:
            yield from records(item)


def figures(result: Any, path: str = "") -> list[tuple[str, float]]:
    """Every numeric leaf of a tool result as (path, value): what an answer may cite."""
    out: list[tuple[str, float]] = []
    if isinstance(result, dict):
        for k, v in result.items():
            out += figures(v, f"{path}.{k}" if path else str(k))
    elif isinstance(result, list):
        for i, v in enumerate(result):
            out += figures(v, f"{path}[{i}]")
    elif isinstance(result, bool):
        pass
    elif isinstance(result, int | float | np.integer | np.floating):
        out.append((path, float(result)))
    return out
