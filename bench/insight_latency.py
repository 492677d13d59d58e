"""Order -> visible-in-segment latency at 200 orders/s, and two consumers splitting one stream.

    python -m bench.insight_latency [--rate 200] [--seconds 20] [--customers 5000] [--orders 100000]

Starts a real Redis (LocalRedis), loads the generated history, runs the consumer(s) in separate
processes (as in production) and publishes at the given rate. Latency = time the customer's new
segment is written (after the RFM update and re-scoring) minus the order's publish time, both on
this machine's clock. Prints one JSON object: p50/p95/max in ms, p95 / 1000 ms (goal: below 1),
and for the two-consumer phase the orders each consumer applied and whether every order was
counted exactly once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from personagraph.insight.consumer import OrderConsumer
from personagraph.insight.orders import generate_history
from personagraph.insight.simulator import OrderFactory, simulate
from personagraph.insight.store import InsightStore
from personagraph.memory.redis_server import LocalRedis

GROUP = "bench"


def _child(url: str, prefix: str, name: str, seconds: float) -> None:
    store = InsightStore.from_url(url, prefix)
    consumer = OrderConsumer(store, stream=f"{prefix}:orders", group=GROUP, name=name, record_latency=True)
    consumer.run(max_seconds=seconds)


def _spawn(url: str, prefix: str, name: str, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.insight_latency", "--child", url, prefix, name, str(seconds)]
    )


def _phase(server: LocalRedis, store: InsightStore, consumers: list[str], rate: float, seconds: float,
           factory: OrderFactory) -> dict[str, Any]:  # fmt: skip
    prefix = store.p
    before = store.processed_count()
    total_before = sum(int(v or 0) for v in _frequencies(store))
    procs = [_spawn(server.url, prefix, name, seconds + 15) for name in consumers]
    time.sleep(3.0)  # consumers connect and load the model
    sent = simulate(store.r, f"{prefix}:orders", factory, rate=rate, seconds=seconds)
    deadline = time.monotonic() + 15
    while store.processed_count() - before < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:
        p.terminate()
        p.wait(timeout=20)
    applied = store.processed_count() - before
    total_after = sum(int(v or 0) for v in _frequencies(store))
    return {"published": sent, "applied": applied, "frequency_added": total_after - total_before,
            "exactly_once": applied == sent == total_after - total_before,
            "per_consumer": store.consumer_counts()}  # fmt: skip


def _frequencies(store: InsightStore) -> list[Any]:
    pipe = store.r.pipeline(transaction=False)
    for c in store.customer_ids():
        pipe.hget(store.key("c", c), "frequency")
    return pipe.execute()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], argv[3], float(argv[4]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.insight_latency")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--skip-two", action="store_true", help="skip the two-consumer phase")
    args = parser.parse_args(argv)

    with LocalRedis() as server:
        store = InsightStore.from_url(server.url, "bench")
        history = generate_history(args.customers, args.orders, seed=7)
        store.load_history(history)
        setup = OrderConsumer(store, stream="bench:orders", group=GROUP, name="setup")
        setup.ensure_group()
        setup.ensure_model()
        factory = OrderFactory(history.customers["customer_id"].tolist(), history.customers["archetype"].tolist(),
                               seed=1)  # fmt: skip
        one = _phase(server, store, ["c1"], args.rate, args.seconds, factory)
        lat = np.array([float(x) for x in store.r.lrange(store.key("latency"), 0, -1)])  # type: ignore[union-attr]
        result: dict[str, Any] = {
            "bench": "insight_latency", "rate": args.rate, "seconds": args.seconds,
            "customers": args.customers, "history_orders": args.orders, "cpus": _cpus(),
            "one_consumer": one,
            "latency_ms": {"n": int(len(lat)), "p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                           "p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
                           "max": round(float(lat.max()), 1) if len(lat) else None},
        }  # fmt: skip
        p95 = result["latency_ms"]["p95"]
        result["p95_over_goal_1s"] = round(p95 / 1000.0, 3) if p95 is not None else None
        if not args.skip_two:
            store.r.delete(store.key("consumers"))
            result["two_consumers"] = _phase(
                server, store, ["a", "b"], args.rate, min(args.seconds, 10), factory
            )
    print(json.dumps(result))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
