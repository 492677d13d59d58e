"""The live demo's segment sizes over a compressed run (issue 21): orders on a simulated clock, warm
refits every simulated day, everyone re-scored every 0.25 s, the sizes recorded in Redis. The
recorded chart must show no unexplained jump: between any two recordings no segment moves by more
than a small share, and every refit's own change is within the drift policy or held as drift."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from personagraph.accounts.identity import CLI_CALLER, Caller, ForbiddenError, NotFoundError
from personagraph.insight.orders import DAY
from personagraph.insight.settings import InsightSettings
from personagraph.insight.source import LiveDemoSource, RedisSource
from personagraph.memory.redis_server import LocalRedis
from personagraph.services.insight import InsightService

pytestmark = pytest.mark.integration

SPEED = 2 * DAY  # two simulated days per real second: 12.5 s ~ 25 simulated days (a 10-minute demo at 3600x)


@pytest.fixture
def demo() -> Iterator[LiveDemoSource]:
    settings = InsightSettings(
        customers=1500, orders=30_000, seed=5, sim_speed=SPEED, sim_warmup_days=14, sim_refit_days=1,
        rescore_interval_s=0.25,
    )  # fmt: skip
    source = LiveDemoSource(settings=settings).start()
    yield source
    source.close()


def test_recorded_segment_sizes_have_no_unexplained_jump(demo: LiveDemoSource) -> None:
    started = demo.store.now()
    time.sleep(12.5)
    records = demo.size_history()
    refits = demo.store.refits(100)
    assert demo.store.processed_count() > 0  # live orders applied ...
    assert (
        demo.store.dead_letter_count(demo.dead_letter_stream) == 0
    )  # ... every one valid on the simulated clock
    assert len(refits) >= 5 and len(records) >= 10
    sim_times = [r["sim_ts"] for r in records]
    assert sim_times == sorted(sim_times) and sim_times[-1] - started >= 10 * DAY
    total = sum(records[-1]["sizes"].values())
    floor = 0.02 * total  # 30 of 1,500 customers
    jumps = []
    for before, after in zip(records, records[1:], strict=False):
        for segment in set(before["sizes"]) | set(after["sizes"]):
            a, b = before["sizes"].get(segment, 0), after["sizes"].get(segment, 0)
            if abs(b - a) > max(0.1 * a, floor):
                jumps.append((after["event"], segment, a, b))
    assert not jumps, f"unexplained jumps in the recorded sizes: {jumps}"
    for refit in refits:  # each refit's own change (model only, same customers) is small or held
        change = refit.get("change")
        if change and refit.get("accepted") and refit.get("kind") != "accepted":
            assert change["max_size_change"] <= 0.05 and change["ari"] >= 0.9
    status = demo.consumer_status() or {}
    assert status["segments"]["clock"]["speed"] == SPEED and status["segments"]["model_version"] >= 1


def test_a_held_refit_is_reported_and_can_be_accepted(redis_server: LocalRedis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # Unanchored refits and a strict policy, so the jolt below is held (anchored refits move little:
    # a jolt of the customers themselves is reported as mix drift instead, see the unit tests).
    settings = InsightSettings(customers=400, orders=8000, seed=4, prefix=prefix, stream=f"{prefix}:orders",
                               refit_prior_strength=0.0, drift_min_ari=0.99, drift_max_size_change=0.01)  # fmt: skip
    source = RedisSource(redis_server.url, settings)
    try:
        source.bootstrap()
        consumer = source.consumer("c1")
        consumer.ensure_model()
        _, raw, _ = source.store.rfm_rows()
        shifted = raw.copy()
        shifted[::2] = [0.5, 1.0, 20_000.0]  # half the customers suddenly look brand new
        refit = consumer.scorer.refit(shifted)
        assert not refit.accepted
        consumer.publish_refit(refit)
        segments = (source.consumer_status() or {})["segments"]
        assert segments["held"] and segments["drift"]["kind"] == "model" and segments["drift"]["reasons"]
        version = source.store.model_version()
        service = InsightService.for_source(source)  # what the API, the CLI and the tab call
        with pytest.raises(ForbiddenError):
            service.accept_drift(Caller("marketer"))  # swapping the model is an admin's decision
        assert (source.consumer_status() or {})["segments"]["held"]
        accepted = service.accept_drift(CLI_CALLER)
        assert accepted["accepted"] and accepted["model_version"] > version
        assert source.store.model_version() == accepted["model_version"]
        assert sum(accepted["segments"].values()) == 400
        segments = (source.consumer_status() or {})["segments"]
        assert not segments["held"] and segments["drift"] is None
        customers = source.snapshot(fresh=True).customers
        assert customers["p_vip"].notna().all()  # everyone re-scored with memberships
        with pytest.raises(NotFoundError, match="no refit is held"):
            service.accept_drift(CLI_CALLER)  # nothing held any more
        assert source.accept_drift() is None
    finally:
        source.store.clear()
