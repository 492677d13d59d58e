"""History windowing: the last N turns verbatim, older turns folded into a running summary."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage


def recent_start(messages: Sequence[AnyMessage], turns: int) -> int:
    """Index of the first message of the last `turns` turns (a turn starts at a human message)."""
    human_positions = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if len(human_positions) <= turns:
        return 0
    return human_positions[-turns]


def split_history(
    messages: Sequence[AnyMessage], turns: int, summarized_count: int = 0
) -> tuple[list[AnyMessage], list[AnyMessage]]:
    """(older messages not yet summarised, recent window)."""
    start = recent_start(messages, turns)
    return list(messages[summarized_count:start]), list(messages[start:])


def render(messages: Sequence[AnyMessage]) -> str:
    lines = []
    for m in messages:
        who = "Fan" if isinstance(m, HumanMessage) else "Me"
        lines.append(f"{who}: {m.content}")
    return "\n".join(lines)
