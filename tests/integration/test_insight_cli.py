"""`personagraph insight ...` end to end in subprocesses, against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from personagraph.memory.redis_server import LocalRedis

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "personagraph")


def insight(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "insight", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def env(redis_server: LocalRedis) -> dict[str, str]:
    """A small history and a key prefix of its own on the shared Redis."""
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    return {
        "INSIGHT_CUSTOMERS": "300",
        "INSIGHT_ORDERS": "4000",
        "INSIGHT_PREFIX": prefix,
        "INSIGHT_STREAM": f"{prefix}:orders",
        "INSIGHT_REDIS_URL": redis_server.url,
    }


def test_history_load_simulate_consume_report_and_ask(env: dict[str, str]) -> None:
    made = insight(env, "generate-history")
    assert made.returncode == 0, made.stderr
    assert "300 customers, 4,000 orders" in made.stdout

    loaded = insight(env, "load")
    assert loaded.returncode == 0, loaded.stderr
    state = json.loads(loaded.stdout)
    assert state["customers"] == 300 and sum(state["segments"].values()) == 300

    published = insight(env, "simulate", "--count", "40", "--rate", "1000")
    assert published.returncode == 0, published.stderr
    assert "published 40 orders" in published.stdout

    consumed = insight(env, "consume", "--name", "c1", "--seconds", "3")
    assert consumed.returncode == 0, consumed.stderr
    stats = json.loads(consumed.stdout)
    assert stats["applied"] == 40 and stats["duplicates"] == 0 and stats["invalid"] == 0
    again = insight(env, "consume", "--name", "c1", "--seconds", "1")  # nothing left to read
    assert json.loads(again.stdout)["applied"] == 0

    # On the simulated clock (five days a second) with the shift scenario: the clock is the state's.
    shifted = insight(env, "simulate", "--seconds", "2", "--speed", str(5 * 86_400), "--scenario", "shift",
                      "--shift-after-days", "1")  # fmt: skip
    assert shifted.returncode == 0, shifted.stderr
    assert int(shifted.stdout.split()[1]) > 0  # "published N orders ..."
    clock = redis.Redis.from_url(env["INSIGHT_REDIS_URL"], decode_responses=True).hgetall(
        f"{env['INSIGHT_PREFIX']}:clock"
    )
    assert float(clock["speed"]) == 5 * 86_400
    consumed = insight(env, "consume", "--name", "c1", "--seconds", "3")
    assert json.loads(consumed.stdout)["applied"] == int(shifted.stdout.split()[1])

    report = insight(env, "report", "--json", "--redis-url", env["INSIGHT_REDIS_URL"])
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    assert {"gmm", "kmeans"} <= {r["algorithm"] for r in rows["rows"]}

    # Out of scope and a lookup without a known customer need no model: they show the routing.
    weather = insight(env, "ask", "내일 서울 날씨 어때?", "--router", "keywords", "--json")
    assert weather.returncode == 0, weather.stderr
    out = json.loads(weather.stdout)
    assert out["intent"] == "out_of_scope" and out["scope"] == {"segments": [], "customers": []}
    # Each ask is kept in a thread of the terminal's account; --thread continues one of its own.
    again = insight(env, "ask", "and in English?", "--thread", out["thread_id"], "--router", "keywords")
    assert again.returncode == 0, again.stderr
    assert f"thread {out['thread_id']}" in again.stderr


def test_errors_name_what_is_missing(env: dict[str, str]) -> None:
    no_redis = {**env, "INSIGHT_REDIS_URL": "", "REDIS_URL": ""}
    failed = insight(no_redis, "load")
    assert failed.returncode == 2
    assert "INSIGHT_REDIS_URL" in failed.stderr and "--redis-url" in failed.stderr

    endless = insight(env, "simulate")
    assert endless.returncode == 2 and "--count" in endless.stderr
    wall_clock_shift = insight(env, "simulate", "--count", "5", "--scenario", "shift")
    assert wall_clock_shift.returncode == 2 and "speed" in wall_clock_shift.stderr
    backwards = insight(env, "simulate", "--count", "5", "--speed", "-1")
    assert backwards.returncode == 2 and "speed" in backwards.stderr

    empty = insight(env, "ask", "   ", "--router", "keywords")
    assert empty.returncode == 2 and "question" in empty.stderr.lower()

    bad_router = insight(env, "ask", "VIP?", "--router", "psychic")
    assert bad_router.returncode == 2 and "hybrid" in bad_router.stderr

    for thread in ("0123456789abcdef", "../x"):  # never started here; not an id at all
        unknown = insight(env, "ask", "VIP?", "--thread", thread, "--router", "keywords")
        assert unknown.returncode == 2 and "thread_id" in unknown.stderr


def test_import_orders_from_a_csv_export(tmp_path: Path) -> None:
    home = {"PERSONAGRAPH_HOME": str(tmp_path / "home")}
    template = tmp_path / "orders.csv"
    written = insight(home, "orders-template", "--out", str(template))
    assert written.returncode == 0 and template.read_text(encoding="utf-8").startswith("order_id,customer_id")
    made = insight(home, "import-orders", str(template), "--dataset", "shop", "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["dataset"] == "shop" and sum(out["segments"].values()) == out["customers"] >= 10
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,customer_id,ordered_at,sku,qty,unit_price\nA1,M1,2025-03-01,SK02,zero,100\n")
    refused = insight(home, "import-orders", str(bad), "--dataset", "bad")
    assert refused.returncode == 2 and "row 2, column qty" in refused.stderr
    taken = insight(home, "import-orders", str(template), "--dataset", "shop")
    assert taken.returncode == 2 and "dataset" in taken.stderr
    listed = insight(home, "datasets")
    assert [d["name"] for d in json.loads(listed.stdout)] == ["shop"]
