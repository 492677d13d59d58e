"""What one chat turn cost: seconds per graph node and token usage per model call.

`TurnRecorder` is a LangChain callback handler passed in one turn's run config, so it sees that
turn's runs only (the process-wide metrics observer in serving/metrics.py sees all of them and keeps
totals). Node seconds are wall time in the node, measured in the node's own thread; a streaming
node (draft) also counts the time its reader took to take each sentence.

Token usage is what the model server reported. The embedded llama-cpp-python server reports none
for a streamed reply: there, `output_tokens` is the number of streamed chunks (one token each on
that server) and `input_tokens` is None, with `reported: false`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from personagraph.serving.metrics import reported_usage


@dataclass
class _Call:
    node: str
    role: str
    started: float
    chunks: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    reported: bool = False


class TurnRecorder(BaseCallbackHandler):
    """Collects one turn's node timings and model usage; read with `timings()` and `usage()`."""

    run_inline = True  # in the node's thread: the clock starts and stops where the work is
    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self._root: UUID | None = None
        self._open_nodes: dict[UUID, tuple[str, float]] = {}
        self._nodes: dict[str, float] = {}
        self._open_calls: dict[UUID, _Call] = {}
        self._calls: list[_Call] = []
        self._lock = threading.Lock()

    # -- nodes

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or "")
        with self._lock:
            if parent_run_id is None and self._root is None:
                self._root = run_id  # the graph run
            elif parent_run_id == self._root and (metadata or {}).get("langgraph_node") == name:
                self._open_nodes[run_id] = (name, time.perf_counter())

    def _node_end(self, run_id: UUID) -> None:
        with self._lock:
            opened = self._open_nodes.pop(run_id, None)
            if opened is not None:
                name, start = opened
                self._nodes[name] = self._nodes.get(name, 0.0) + time.perf_counter() - start

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._node_end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._node_end(run_id)

    # -- model calls

    def _call_start(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        meta = metadata or {}
        call = _Call(str(meta.get("langgraph_node") or ""), str(meta.get("role") or ""), time.perf_counter())
        with self._lock:
            self._open_calls[run_id] = call

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._call_start(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._call_start(run_id, metadata)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            call = self._open_calls.get(run_id)
            if call is not None and token:
                call.chunks += 1
                if call.first_token_s is None:
                    call.first_token_s = time.perf_counter() - call.started

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            call = self._open_calls.pop(run_id, None)
            if call is None:
                return
            call.seconds = time.perf_counter() - call.started
            tokens_in, tokens_out = reported_usage(response)
            call.reported = tokens_out is not None
            call.input_tokens = tokens_in
            call.output_tokens = tokens_out if tokens_out is not None else call.chunks
            self._calls.append(call)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._open_calls.pop(run_id, None)

    # -- reading

    def timings(self, first_token_s: float | None = None) -> dict[str, Any]:
        """{"total_s", "first_token_s" (first checked text shown), "nodes": {node: seconds}}."""
        with self._lock:
            nodes = {name: round(seconds, 4) for name, seconds in self._nodes.items()}
        return {
            "total_s": round(time.perf_counter() - self.started, 4),
            "first_token_s": None if first_token_s is None else round(first_token_s, 4),
            "nodes": nodes,
        }

    def usage(self) -> dict[str, Any]:
        """{"input_tokens", "output_tokens", "model_calls", "calls": [per call]}; a total is None
        when a server did not report its part."""
        with self._lock:
            calls = list(self._calls)
        inputs = [c.input_tokens for c in calls]
        return {
            "input_tokens": None if any(n is None for n in inputs) else sum(n or 0 for n in inputs),
            "output_tokens": sum(c.output_tokens or 0 for c in calls),
            "model_calls": len(calls),
            "calls": [
                {
                    "node": c.node,
                    "role": c.role,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "reported": c.reported,
                    "seconds": round(c.seconds, 4),
                    "first_token_s": None if c.first_token_s is None else round(c.first_token_s, 4),
                }
                for c in calls
            ],
        }
