"""Benchmark helper: where a chat turn's own time goes, node by node, with a zero-latency stub model.

Why: bench/load.py measures what the stack adds to the model's time; this says which node it is.
One process, ChatService on a temporary PERSONAGRAPH_HOME (SQLite), the stub model answering at
once, the metrics observer (serving/metrics.py) timing each node; prints one JSON object with the
wall and CPU seconds per turn and each node's seconds per turn.

    python bench/turn_breakdown.py [--turns 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import MESSAGES, OFFLINE_ENV, PERSONA, marker_for  # noqa: E402
from personagraph.serving.stub_model import StubModelServer  # noqa: E402


def node_seconds() -> dict[str, float]:
    """Sum of persona_chat node durations so far, by node."""
    from personagraph.serving import metrics

    totals: dict[str, float] = {}
    for family in metrics.NODE_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum") and sample.labels.get("graph") == "persona_chat":
                totals[sample.labels["node"]] = sample.value
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=8, help="measured turns (after 2 warm-up turns)")
    args = parser.parse_args()
    with (
        StubModelServer(first_token_delay_s=0, tokens_per_s=0) as stub,
        tempfile.TemporaryDirectory(prefix="personagraph-bench-") as home,
    ):
        os.environ.update({**OFFLINE_ENV, **stub.env(), "PERSONAGRAPH_HOME": home})
        from personagraph.serving.settings import get_settings

        get_settings.cache_clear()
        from personagraph.accounts.identity import CLI_CALLER
        from personagraph.services.chat import ChatService, validate_request
        from personagraph.serving import metrics

        metrics.install_observer()
        service = ChatService()

        def turn(i: int, thread_id: str) -> None:
            message = MESSAGES[i % len(MESSAGES)].format(marker=marker_for(0, 0, i))
            service.send(
                CLI_CALLER, validate_request(message=message, thread_id=thread_id, persona_id=PERSONA)
            )

        for i in range(2):  # warm-up: classifier, embedder, persistence
            turn(i, uuid.uuid4().hex)
        before, thread_id = node_seconds(), uuid.uuid4().hex
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.turns):
            turn(i, thread_id)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = node_seconds()
    per_node = {k: round((v - before.get(k, 0.0)) / args.turns, 4) for k, v in after.items()}
    print(json.dumps({
        "bench": "turn_breakdown", "turns": args.turns, "cpu_count": os.cpu_count(),
        "wall_s_per_turn": round(wall / args.turns, 3), "cpu_s_per_turn": round(cpu / args.turns, 3),
        "node_s_per_turn": dict(sorted(((k, v) for k, v in per_node.items() if v > 0), key=lambda kv: -kv[1])),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
