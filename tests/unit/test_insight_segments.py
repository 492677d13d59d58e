"""History generator, GMM segments named from centroids, atomic model swap, model report."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from personagraph.insight.orders import CATALOGUE, Order, generate_history, load_or_generate, read_history
from personagraph.insight.segments import (
    SEGMENTS,
    DriftPolicy,
    SegmentModel,
    SegmentScorer,
    fit_segment_model,
    model_report,
    name_components,
)
from personagraph.insight.simulator import OrderFactory
from tests.unit.insight_support import ANCHOR, small_history, small_model


def test_history_is_seeded_and_complete() -> None:
    a = generate_history(200, 3000, seed=5, anchor=ANCHOR)
    b = generate_history(200, 3000, seed=5, anchor=ANCHOR)
    assert len(a.orders) == 3000 and a.orders["customer_id"].nunique() == 200
    assert a.orders["amount"].tolist() == b.orders["amount"].tolist()
    per_order = a.items.assign(line=a.items["qty"] * a.items["price"]).groupby("order_id")["line"].sum()
    assert (per_order.loc[a.orders["order_id"]].to_numpy() == a.orders["amount"].to_numpy()).all()
    span_days = (a.orders["ts"].max() - a.orders["ts"].min()) / 86400
    assert 500 < span_days <= 731
    assert set(a.orders["channel"]) == {"app", "web", "store"}
    assert set(a.items["sku"]) <= {p.sku for p in CATALOGUE}


def test_history_rejects_fewer_orders_than_customers() -> None:
    with pytest.raises(ValueError, match="n_orders"):
        generate_history(100, 50)


def test_history_is_stored_under_home_and_reused() -> None:
    first = load_or_generate(100, 1500, seed=2)
    again = load_or_generate(100, 1500, seed=2)
    assert first.orders["order_id"].tolist() == again.orders["order_id"].tolist()
    assert again.anchor == first.anchor


def test_segments_are_named_from_centroids() -> None:
    model = small_model()
    assert sorted(model.names) == sorted(SEGMENTS)
    centres = model.centroids()
    assert centres["vip"]["monetary"] == max(c["monetary"] for c in centres.values())
    assert centres["dormant"]["recency_days"] == max(c["recency_days"] for c in centres.values())
    # Archetypes land mostly in their segment.
    h = small_history()
    agg = h.orders.groupby("customer_id").agg(last=("ts", "max"), f=("ts", "size"), m=("amount", "sum"))
    from personagraph.insight.segments import rfm_raw

    raw = rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), h.anchor)
    segments = np.array(model.predict(raw))
    archetype = h.customers.set_index("customer_id").loc[agg.index, "archetype"].to_numpy()
    assert (segments[archetype == "dormant"] == "dormant").mean() > 0.8


def test_name_components_uses_each_name_once() -> None:
    names = name_components(np.array([[1.3, -0.9, -0.7], [-0.8, 1.5, 1.7], [-1.1, -1.0, -1.1]]))
    assert names == ["dormant", "vip", "new"]


def test_model_json_round_trip_predicts_the_same() -> None:
    model = small_model()
    raw = np.array([[3.0, 40.0, 4_000_000.0], [500.0, 1.0, 20_000.0], [5.0, 1.0, 30_000.0]])
    again = SegmentModel.from_json(model.to_json())
    assert again.predict(raw) == model.predict(raw)
    assert model.predict(raw)[1] == "dormant"


def test_scorer_keeps_scoring_during_refits() -> None:
    model = small_model()
    # Random rows unlike the model's customers: a policy that lets every refit through, so each swaps.
    scorer = SegmentScorer(model, policy=DriftPolicy(min_ari=0.0, max_size_change=100.0))
    rng = np.random.default_rng(0)
    raw = np.column_stack([rng.uniform(0, 600, 400), rng.integers(1, 60, 400), rng.uniform(1e4, 5e6, 400)])
    errors: list[Exception] = []
    stop = threading.Event()

    def score_forever() -> None:
        while not stop.is_set():
            try:
                assert len(scorer.score(raw[:50])) == 50
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            stop.wait(0.001)  # a tight loop would hold the GIL and starve the refits (minutes in CI)

    thread = threading.Thread(target=score_forever)
    thread.start()
    for _ in range(3):
        scorer.refit(raw)
    stop.set()
    thread.join()
    assert not errors
    assert scorer.model.version == model.version + 3


def test_fit_needs_enough_customers() -> None:
    with pytest.raises(ValueError, match="at least"):
        fit_segment_model(np.ones((10, 3)), components=5)


def test_model_report_compares_kmeans_and_gmm() -> None:
    h = small_history()
    agg = h.orders.groupby("customer_id").agg(last=("ts", "max"), f=("ts", "size"), m=("amount", "sum"))
    from personagraph.insight.segments import report_markdown, rfm_raw

    raw = rfm_raw(agg["last"].to_numpy(), agg["f"].to_numpy(), agg["m"].to_numpy(), h.anchor)
    report = model_report(raw, ks=(4, 5), bootstraps=2)
    assert {(r["algorithm"], r["k"]) for r in report["rows"]} == {
        ("gmm", 4),
        ("gmm", 5),
        ("kmeans", 4),
        ("kmeans", 5),
    }
    for row in report["rows"]:
        assert -1 <= row["silhouette"] <= 1 and -1 <= row["stability_ari"] <= 1 and np.isfinite(row["bic"])
    assert "| gmm | 5 |" in report_markdown(report)


def test_order_factory_is_seeded_and_valid() -> None:
    h = small_history()
    a = OrderFactory(
        h.customers["customer_id"].tolist(), h.customers["archetype"].tolist(), seed=3, run_id="r"
    )
    b = OrderFactory(
        h.customers["customer_id"].tolist(), h.customers["archetype"].tolist(), seed=3, run_id="r"
    )
    orders = [a.next_order(ts=ANCHOR) for _ in range(50)]
    assert orders == [b.next_order(ts=ANCHOR) for _ in range(50)]
    for o in orders:
        assert isinstance(o, Order) and o.amount == sum(i.qty * i.price for i in o.items)
    with pytest.raises(ValueError, match="archetype"):
        OrderFactory(["C00001"], ["whale"])


def test_read_history_matches_saved(tmp_path: object) -> None:
    from personagraph.insight.orders import history_path, save_history

    h = generate_history(60, 600, seed=9, anchor=ANCHOR)
    path = save_history(h, history_path(60, 600, 9))
    assert read_history(path).orders["amount"].sum() == h.orders["amount"].sum()
