"""Benchmark: one persona_chat turn, outside the model vs with the embedded model, in one run.

"Outside the model" runs the real graph with real persistence (SQLite checkpointer + store),
real retrieval (Chroma + packaged embeddings) and a zero-latency scripted model; the difference to
the real-model turn is model time. Prints the overhead as a share of the turn.

    python bench/chat_turn.py [--turns 3] [--fake-turns 20]
    LOCAL_MODEL=smollm2-135m python bench/chat_turn.py      (faster, tiny model)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

from personagraph.accounts.identity import CLI_CALLER  # noqa: E402
from personagraph.services.chat import ChatService, validate_request  # noqa: E402
from personagraph.serving.models import endpoint_of, use_models  # noqa: E402

MESSAGES = [
    "When did STELLA debut?",
    "What's the story behind the song Orbit?",
    "유나야, 월드 투어는 어땠어?",
    "I'm Minji and my favourite song is Polaris!",
]


class ZeroLatencyModel(GenericFakeChatModel):
    """Answers instantly: JSON for structured calls, a short reply otherwise."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        from langchain_core.outputs import ChatGeneration, ChatResult

        wants_json = "JSON" in str(messages[-1].content)
        text = (
            '{"intent": "knowledge", "search_query": "STELLA"}'
            if wants_json
            else "Thanks for asking, Starlight!"
        )
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def time_turns(service: ChatService, n: int) -> list[float]:
    times = []
    for i in range(n):
        request = validate_request(message=MESSAGES[i % len(MESSAGES)], thread_id=uuid.uuid4().hex)
        started = time.perf_counter()
        result = service.send(CLI_CALLER, request)
        times.append(time.perf_counter() - started)
        if result.error:
            raise SystemExit(f"turn failed: {result.error}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=3, help="turns with the real model")
    parser.add_argument("--fake-turns", type=int, default=20, help="turns with the zero-latency model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        import os

        os.environ["PERSONAGRAPH_HOME"] = home
        from personagraph.serving.settings import get_settings

        get_settings.cache_clear()
        service = ChatService()
        fake = ZeroLatencyModel(messages=iter(()))
        with use_models({"router": fake, "chat": fake}):
            time_turns(service, 1)  # warm-up: builds the index, loads the embedder
            fake_times = time_turns(service, args.fake_turns)
        base_url, model = endpoint_of("chat")  # starts the embedded server if none is configured
        time_turns(service, 1)  # warm-up: model load, prompt cache
        real_times = time_turns(service, args.turns)
    fake_median, real_median = statistics.median(fake_times), statistics.median(real_times)
    print(json.dumps({
        "bench": "chat_turn",
        "model": model,
        "base_url": base_url,
        "turns_fake": len(fake_times),
        "turns_real": len(real_times),
        "median_turn_s_outside_model": round(fake_median, 4),
        "median_turn_s_with_model": round(real_median, 3),
        "overhead_share_of_turn": round(fake_median / real_median, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
