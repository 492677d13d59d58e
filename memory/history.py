"""History windowing: the last N turns verbatim, older turns folded into a running summary."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage


def recent_start(messages: Sequence[AnyMessage], turns: int) -> int:
    """Index of the first message of the recent window: at most `turns` turns (a turn starts at a
    human message). The window's start moves in steps of half the window (at least one turn), not
    every turn: the recent turns open the draft prompt after the stable system prompt, so a start
    that moved every turn would make the model server re-read the whole conversation each turn
    once it is longer than the window; in steps it keeps between `turns - step + 1` and `turns`."""
    human_positions = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if len(human_positions) <= turns:
        return 0
    step = max(1, turns // 2)
    dropped = -(-(len(human_positions) - turns) // step) * step  # a whole number of steps
    return human_positions[dropped]


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
