"""chat_smoke: a few turns through persona_chat with whatever model the settings select.

A turn is ok when it ends without error with a non-empty reply, and the expected path was taken
(an unsafe message is refused without a draft). Reports `n`, `ok_rate`, the model and timings.

    python -m evals chat_smoke [--dataset evals/datasets/chat_smoke.jsonl] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

from evals.jsonl import load_jsonl
from personagraph.accounts.identity import Caller
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import endpoint_of

SMOKE_FAN = Caller("eval-smoke")
DEFAULT_DATASET = Path(__file__).parent / "datasets" / "chat_smoke.jsonl"


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m evals chat_smoke")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    cases = load_jsonl(args.dataset)
    cases = cases[: args.limit] if args.limit else cases
    service = ChatService()
    base_url, model = endpoint_of("chat")
    rows = []
    for case in cases:
        started = time.perf_counter()
        request = validate_request(
            message=case["message"], persona_id=case["persona_id"], thread_id=uuid.uuid4().hex
        )
        result = service.send(SMOKE_FAN, request)
        refused = result.intent == "refused"
        ok = (
            result.error is None
            and bool(result.reply.strip())
            and refused == (case.get("expect") == "refusal")
        )
        rows.append({"message": case["message"], "ok": ok, "intent": result.intent, "error": result.error,
                     "reply": result.reply, "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
        print(json.dumps(rows[-1], ensure_ascii=False))
    n = len(rows)
    return {
        "eval": "chat_smoke",
        "n": n,
        "ok_rate": round(sum(r["ok"] for r in rows) / n, 4) if n else 0.0,
        "model": model,
        "base_url": base_url,
        "mean_turn_seconds": round(sum(r["seconds"] for r in rows) / n, 2) if n else 0.0,
    }
