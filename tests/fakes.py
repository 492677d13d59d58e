"""Scripted fake chat models for unit tests (subclass GenericFakeChatModel so bind() and streaming work)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Reply = str | dict[str, Any] | Exception | Callable[[list[BaseMessage]], str]


class ScriptedChatModel(GenericFakeChatModel):
    """Answers from a script, one entry per call (the last entry repeats).

    An entry is a string, a dict (sent as JSON), an exception (raised) or a function of the
    messages. Every call's messages and keyword arguments are recorded in `calls`.
    """

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    script: list[Any] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index = min(len(self.calls), len(self.script) - 1)
        self.calls.append({"messages": messages, "kwargs": kwargs})
        entry = self.script[index]
        if isinstance(entry, Exception):
            raise entry
        if callable(entry):
            entry = entry(messages)
        text = json.dumps(entry, ensure_ascii=False) if isinstance(entry, dict) else str(entry)
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=text, id=f"run-{next(_ids)}"))]
        )


_ids = itertools.count()


def scripted(*entries: Reply) -> ScriptedChatModel:
    return ScriptedChatModel(script=list(entries))
