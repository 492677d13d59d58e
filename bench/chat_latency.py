"""Benchmark: how long a fan waits in persona_chat, turn by turn, on the real model (issue 18's goal).

Why: the fan feels the time to the first word and the time to the whole reply; the fix for both is
fewer model calls before the draft and a draft prompt the model server can reuse between turns.
This runs a scripted conversation per persona (Korean and English; small talk, knowledge, story and
personal turns) through `ChatService.stream_turn` on a temporary PERSONAGRAPH_HOME and prints, for
turns 2+ of each session (turn 1 opens the session):

- p50/p95 time to first token (the first checked sentence the fan sees) and turn time (the final
  event), and p50 reply complete (the `respond` node ended: every word of the reply is on screen);
- model calls per turn, by role, and the draft prompt's tokens (sent and actually evaluated by the
  server after its prompt cache; embedded llama.cpp server only, read from its log);
- our overhead: our time to first token minus the model server's own time to first token for the
  draft's final prompt (the same request, timed from its send to its first streamed piece), and the
  ratio of ours to the server's.

    nice python bench/chat_latency.py                         # both personas, 9 turns each
    nice python bench/chat_latency.py --personas stella_yuna --turns 5 --rows
    nice python bench/chat_latency.py --think-s 8               # a fan who reads and types for 8 s
    python bench/chat_latency.py --stub                       # the stub model: a quick check of the bench

A benchmark, not a timed test. One run on the embedded model and two cores takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tracers.context import register_configure_hook  # noqa: E402

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LANGSMITH_TRACING": "false",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
}

# (kind, message): turn 1 opens the session and is not counted.
SCRIPTS: dict[str, list[tuple[str, str]]] = {
    "stella_yuna": [
        ("personal", "Hi Yuna! I'm Minji from Busan and I just finished my exams."),
        ("knowledge", "When did STELLA debut?"),
        ("smalltalk", "유나야 오늘 하루 어땠어?"),
        ("knowledge", "Orbit 노래는 어떻게 만들어졌어?"),
        ("story", "How did the world tour feel for you?"),
        ("personal", "내가 어디 산다고 했는지 기억해?"),
        ("smalltalk", "What do you like to do on your days off?"),
        ("knowledge", "폴라리스는 어떤 곡이야?"),
        ("personal", "Do you remember my name?"),
    ],
    "captain_haneul": [
        ("personal", "함장님 안녕하세요! 저는 인천에 사는 지호예요. 오늘 처음 탔어요."),
        ("knowledge", "What kind of ship is the Mireu?"),
        ("smalltalk", "오늘 항해는 어땠어요?"),
        ("story", "What happened at Kestrel Gate 7?"),
        ("knowledge", "우주연합(UCA)은 어떤 조직이에요?"),
        ("smalltalk", "Do you ever get tired of the stars, Captain?"),
        ("personal", "제 이름 기억하세요?"),
        ("story", "렌 교수님은 왜 구름 성운에 가려고 했어요?"),
        ("personal", "Where did I say I live?"),
    ],
}

_PROMPT_EVAL = re.compile(r"prompt eval time\s*=\s*[\d.]+ ms /\s*(\d+) tokens")
_PREFIX_HIT = re.compile(r"(\d+) prefix-match hit, remaining (\d+) prompt tokens")


@dataclass
class _Call:
    role: str
    node: str
    started: float
    first_piece: float | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (chat template role, text)


@dataclass
class Probe(BaseCallbackHandler):
    """Times every model call and node of the turn being measured (a LangChain callback handler on
    the configure hook, as serving/metrics.py attaches its observer: no wiring in the product)."""

    calls: list[_Call] = field(default_factory=list)
    node_ends: dict[str, float] = field(default_factory=dict)
    _open: dict[UUID, _Call] = field(default_factory=dict)
    _nodes: dict[UUID, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    run_inline = True
    raise_error = False

    def reset(self) -> list[_Call]:
        """Start a new turn; returns the calls made since the last turn ended (the next-turn warm-up)."""
        with self._lock:
            between = self.calls
            self.calls, self.node_ends, self._open, self._nodes = [], {}, {}, {}
        return between

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = (kwargs.get("metadata") or {}).get("langgraph_node")
        if node and kwargs.get("name") == node:
            with self._lock:
                self._nodes[run_id] = str(node)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            node = self._nodes.pop(run_id, None)
            if node is not None:
                self.node_ends[node] = time.perf_counter()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        metadata = kwargs.get("metadata") or {}
        sent = [(_ROLES.get(m.type, "user"), str(m.content)) for m in (messages[0] if messages else [])]
        node = "prewarm" if metadata.get("prewarm") else str(metadata.get("langgraph_node", "?"))
        call = _Call(str(metadata.get("role", "?")), node, time.perf_counter(), None, sent)
        with self._lock:
            self._open[run_id] = call
            self.calls.append(call)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            call = self._open.get(run_id)
            if call is not None and call.first_piece is None and token:
                call.first_piece = time.perf_counter()

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            call = self._open.pop(run_id, None)
            if call is not None and call.first_piece is None:  # a call that did not stream
                call.first_piece = time.perf_counter()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._open.pop(run_id, None)


_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class ScriptedRouter(GenericFakeChatModel):
    """The router role on stub runs: the stub answers a schema with its first enum value (always
    "smalltalk", so no turn would retrieve); this answers the script's intent for the turn (the
    router model's job done right) and an empty profile for extraction calls, at once."""

    intent: str = "smalltalk"

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        routing = "You route a fan's chat message" in str(messages[0].content)
        text = json.dumps({"intent": self.intent, "search_query": ""} if routing else {"facts": []})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


_probe_var: ContextVar[Probe | None] | None = None


def install_probe(probe: Probe) -> None:
    """Add `probe` to every LangChain run in this process (the hook's default reaches every thread)."""
    global _probe_var
    _probe_var = ContextVar("chat_latency_probe", default=probe)
    register_configure_hook(_probe_var, inheritable=True)


class ServerLog:
    """New lines of the embedded llama.cpp server's log since the last read (None: no local server)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.offset = path.stat().st_size if path is not None and path.exists() else 0

    def read_new(self) -> str:
        if self.path is None or not self.path.exists():
            return ""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        return data.decode("utf-8", errors="replace")


def prompt_tokens(log_text: str) -> tuple[int | None, int | None]:
    """(prompt tokens sent, prompt tokens the server evaluated) over the calls in a log excerpt.

    llama-cpp-python prints "N prefix-match hit, remaining M prompt tokens" when it reuses a prefix
    (sent = N + M, evaluated = M) and llama.cpp's "prompt eval time = ... / M tokens" per call."""
    evaluated = [int(m) for m in _PROMPT_EVAL.findall(log_text)]
    if not evaluated:
        return None, None
    reused = sum(int(hit) for hit, _ in _PREFIX_HIT.findall(log_text))
    return sum(evaluated) + reused, sum(evaluated)


class PromptCacheModel:
    """What the embedded llama.cpp server evaluates for a sequence of calls, for runs on the stub
    model (whose timings say nothing about prompt length): the calls' messages in the model's chat
    template (ChatML, as Qwen2.5's), tokenized by the GGUF's own vocabulary, and llama-cpp-python's
    reuse rule: the longest common token prefix with the context of the previous call, or with any
    state in its RAM prompt cache when the cache is on (LOCAL_MODEL_PROMPT_CACHE_MB > 0). Replies
    are not added to the context (a slight overcount of what is evaluated)."""

    def __init__(self, model_file: Path, ram_cache: bool):
        from llama_cpp import Llama

        self.llama = Llama(model_path=str(model_file), vocab_only=True, verbose=False)
        self.ram_cache = ram_cache
        self.context: list[int] = []
        self.saved: list[list[int]] = []

    def tokens(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
        return list(
            self.llama.tokenize((text + "<|im_start|>assistant\n").encode(), add_bos=False, special=True)
        )

    def call(self, messages: Sequence[tuple[str, str]]) -> tuple[int, int]:
        """(prompt tokens sent, prompt tokens evaluated) of one call."""
        prompt = self.tokens(messages)
        reuse = max(_common_prefix(prompt, seen) for seen in [self.context, *self.saved])
        reuse = min(reuse, len(prompt) - 1)  # the last prompt token is always evaluated
        self.context = prompt
        if self.ram_cache:
            self.saved.append(prompt)
        return len(prompt), len(prompt) - reuse


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class TurnRow:
    persona: str
    turn: int
    kind: str
    intent: str
    ttft_s: float | None
    turn_s: float
    reply_done_s: float | None
    calls: dict[str, int]
    server_ttft_s: float | None  # the draft call's own time to first piece
    prompt_sent: int | None
    prompt_evaluated: int | None
    error: str | None
    reply_chars: int
    prompt_evaluated_to_draft: int | None = (
        None  # by the calls up to the first draft call (before the first word)
    )


def run_turn(service: Any, caller: Any, probe: Probe, log: ServerLog, persona: str, thread: str,
             turn: int, kind: str, message: str, cache_model: PromptCacheModel | None = None) -> TurnRow:  # fmt: skip
    from personagraph.services.chat import validate_request

    request = validate_request(message=message, thread_id=thread, persona_id=persona)
    log.read_new()
    between = probe.reset()  # the previous turn's warm-up call(s), made while the fan "typed"
    if cache_model is not None:
        for call in between:
            cache_model.call(call.messages)
    started = time.perf_counter()
    first: float | None = None
    result = None
    for event in service.stream_turn(caller, request):
        if event.kind == "token" and first is None:
            first = time.perf_counter()
        if event.kind in ("final", "error"):
            result = event.result
    ended = time.perf_counter()
    drafts = [c for c in probe.calls if c.node == "draft" and c.first_piece is not None]
    server_ttft = drafts[0].first_piece - drafts[0].started if drafts else None  # type: ignore[operator]
    done = probe.node_ends.get("respond") or probe.node_ends.get("refuse")
    sent, evaluated = prompt_tokens(log.read_new())
    to_draft: int | None = None
    if cache_model is not None:  # the stub: what the embedded server would have evaluated
        sent = evaluated = to_draft = 0
        drafted = False
        for call in probe.calls:
            call_sent, call_evaluated = cache_model.call(call.messages)
            if call.node == "prewarm":  # the warm-up for the next turn: read while the fan types
                continue
            sent, evaluated = sent + call_sent, evaluated + call_evaluated
            if not drafted:
                to_draft += call_evaluated
                drafted = call.node == "draft"
    return TurnRow(
        persona=persona, turn=turn, kind=kind, intent=getattr(result, "intent", ""),
        ttft_s=None if first is None else first - started, turn_s=ended - started,
        reply_done_s=None if done is None else done - started,
        calls=dict(Counter(f"{c.node}:{c.role}" for c in probe.calls if c.node != "prewarm")),
        server_ttft_s=server_ttft, prompt_sent=sent, prompt_evaluated=evaluated,
        error=getattr(result, "error", None), reply_chars=len(getattr(result, "reply", "") or ""),
        prompt_evaluated_to_draft=to_draft,
    )  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(rows: Sequence[TurnRow]) -> dict[str, Any]:
    """The figures for turns 2+ (rows of turn 1 are left out by the caller)."""

    def r(value: float | None, digits: int = 2) -> float | None:
        return None if value is None else round(value, digits)

    ok = [row for row in rows if not row.error]
    ttft = [row.ttft_s for row in ok if row.ttft_s is not None]
    turn = [row.turn_s for row in ok]
    done = [row.reply_done_s for row in ok if row.reply_done_s is not None]
    paired = [(row.ttft_s, row.server_ttft_s) for row in ok if row.ttft_s is not None and row.server_ttft_s]
    overhead = [ours - server for ours, server in paired]
    calls: Counter[str] = Counter()
    for row in ok:
        calls.update(row.calls)
    sent = [row.prompt_sent for row in ok if row.prompt_sent is not None]
    evaluated = [row.prompt_evaluated for row in ok if row.prompt_evaluated is not None]
    to_draft = [row.prompt_evaluated_to_draft for row in ok if row.prompt_evaluated_to_draft is not None]
    return {
        "turns": len(rows), "errors": len(rows) - len(ok),
        "ttft_p50_s": r(percentile(ttft, 50)), "ttft_p95_s": r(percentile(ttft, 95)),
        "turn_p50_s": r(percentile(turn, 50)), "turn_p95_s": r(percentile(turn, 95)),
        "reply_done_p50_s": r(percentile(done, 50)),
        "model_calls_per_turn": r(sum(calls.values()) / len(ok)) if ok else None,
        "model_calls_by_node_role": {k: round(v / len(ok), 2) for k, v in sorted(calls.items())} if ok else {},
        "prompt_tokens_sent_per_turn": r(statistics.mean(sent), 0) if sent else None,
        "prompt_tokens_evaluated_per_turn": r(statistics.mean(evaluated), 0) if evaluated else None,
        "prompt_tokens_evaluated_before_first_word_p50": r(percentile(to_draft, 50), 0) if to_draft else None,
        "prompt_tokens_evaluated_before_first_word_p95": r(percentile(to_draft, 95), 0) if to_draft else None,
        "server_ttft_p50_s": r(percentile([s for _, s in paired], 50)),
        "overhead_p50_s": r(percentile(overhead, 50)),
        "ttft_over_server_ttft_p50": r(percentile([o / s for o, s in paired], 50)),
        "overhead_share_of_ttft_p50": r(percentile([(o - s) / o for o, s in paired if o > 0], 50), 3),
    }  # fmt: skip


@contextmanager
def environment(stub: bool, home: str | None) -> Iterator[str]:
    """Offline env, a temporary PERSONAGRAPH_HOME (or the given one), and the stub server if asked."""
    with ExitStack() as stack:
        home = home or stack.enter_context(tempfile.TemporaryDirectory(prefix="personagraph-latency-"))
        env = {**OFFLINE_ENV, "PERSONAGRAPH_HOME": home}
        if stub:
            from personagraph.serving.stub_model import StubModelServer

            server = stack.enter_context(StubModelServer(first_token_delay_s=0.05, tokens_per_s=200))
            env |= server.env()
        os.environ.update(env)
        from personagraph.serving.settings import get_settings

        get_settings.cache_clear()
        yield home


def run(
    personas: Sequence[str],
    turns: int,
    stub: bool,
    home: str | None = None,
    think_s: float = 0.0,
    prewarm: str | None = None,
) -> dict[str, Any]:
    """Run the scripted sessions; returns {"summary", "by_persona", "rows", ...}."""
    if prewarm or stub:  # the stub stands in for the embedded server: warm it as that would be
        os.environ["CHAT_PREWARM"] = prewarm or "on"
    with environment(stub, home), ExitStack() as stack:
        from personagraph.accounts.identity import CLI_CALLER
        from personagraph.services.chat import ChatService
        from personagraph.services.prepare import prepare
        from personagraph.serving.local_model import resolve_model_file
        from personagraph.serving.local_server import ensure_local_server
        from personagraph.serving.models import endpoint_of, resolve_role
        from personagraph.serving.settings import get_settings

        prepare()  # classifiers and knowledge index: what `personagraph prepare` builds at setup
        base_url, model = endpoint_of("chat")  # starts the embedded server when no base URL is set
        local = resolve_role("chat").embedded
        log = ServerLog(ensure_local_server().service.log_path if local else None)  # type: ignore[union-attr]
        settings = get_settings()
        cache_model = None
        if stub:
            model_file, _ = resolve_model_file(settings.local_model, settings.model_cache_dir)
            cache_model = PromptCacheModel(model_file, settings.local_model_prompt_cache_mb > 0)
        probe = Probe()
        install_probe(probe)
        service = ChatService()
        router = ScriptedRouter(messages=iter(()))
        if stub:
            from personagraph.serving.models import use_models

            stack.enter_context(use_models({"router": router}))
        rows: list[TurnRow] = []
        for persona in personas:
            thread = uuid.uuid4().hex
            if cache_model is not None:  # a new session on a fresh server, as in the real runs
                cache_model.context, cache_model.saved = [], []
            for turn, (kind, message) in enumerate(SCRIPTS[persona][:turns], start=1):
                router.intent = kind
                if turn > 1:
                    time.sleep(think_s)  # the fan reads the reply and types the next message
                row = run_turn(
                    service, CLI_CALLER, probe, log, persona, thread, turn, kind, message, cache_model
                )
                print(json.dumps(row.__dict__, ensure_ascii=False), file=sys.stderr, flush=True)
                rows.append(row)
    counted = [row for row in rows if row.turn >= 2]
    return {
        "bench": "chat_latency", "model": model, "base_url": base_url if stub else "embedded" if local else base_url,
        "cpu_count": os.cpu_count(), "personas": list(personas), "turns_per_session": turns,
        "think_s": think_s, "prewarm": settings.chat_prewarm,
        "summary": summarise(counted),
        "by_persona": {p: summarise([row for row in counted if row.persona == p]) for p in personas},
        "rows": [row.__dict__ for row in rows],
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--personas", default=",".join(SCRIPTS), help="comma-separated persona ids")
    parser.add_argument("--turns", type=int, default=9, help="turns per session (the first is not counted)")
    parser.add_argument("--stub", action="store_true", help="use the stub model server (checks the bench)")
    parser.add_argument("--home", help="PERSONAGRAPH_HOME to use (default: a temporary folder)")
    parser.add_argument("--rows", action="store_true", help="include every turn in the output")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument(
        "--think-s", type=float, default=0.0,
        help="seconds between a reply and the next message (a fan reading and typing; default 0: back to back)",
    )  # fmt: skip
    parser.add_argument(
        "--prewarm", choices=["auto", "on", "off"],
        help="CHAT_PREWARM for the run (default: the setting; on with --stub, as for the embedded server)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    personas = [p.strip() for p in args.personas.split(",") if p.strip()]
    unknown = [p for p in personas if p not in SCRIPTS]
    if unknown:
        parser.error(f"--personas: no script for {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    if not 2 <= args.turns <= min(len(s) for s in SCRIPTS.values()):
        parser.error(f"--turns: must be 2..{min(len(s) for s in SCRIPTS.values())}")
    if args.think_s < 0:
        parser.error("--think-s: must be 0 or more")
    result = run(personas, args.turns, args.stub, args.home, args.think_s, args.prewarm)
    if args.out:
        Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if not args.rows:
        result.pop("rows")
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
