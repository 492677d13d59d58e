"""Chunking for the vector store and history windowing."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from personagraph.memory.history import recent_start, render, split_history
from personagraph.memory.vectors import chunk_text

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def test_short_text_is_one_chunk() -> None:
    text = "# Title\n\nYuna debuted in 2021.\n\nShe is the leader."
    assert chunk_text(text) == ["# Title\n\nYuna debuted in 2021.\n\nShe is the leader."]


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("  \n\n  ") == []


def test_long_paragraph_is_split_with_overlap_and_within_limit() -> None:
    words = [f"w{i}" for i in range(1000)]
    chunks = chunk_text(" ".join(words), max_tokens=100, overlap=20)
    assert len(chunks) > 10
    assert all(tokens(c) <= 100 for c in chunks)
    for previous, following in zip(chunks, chunks[1:], strict=False):
        assert previous.split()[-20:] == following.split()[:20]  # 20 words repeated
    # Nothing lost: every word appears, the last chunk ends the text.
    assert set(" ".join(chunks).split()) == set(words)
    assert chunks[-1].split()[-1] == "w999"


def test_paragraphs_are_grouped_up_to_the_limit() -> None:
    paragraphs = [" ".join(f"p{p}w{i}" for i in range(30)) for p in range(10)]
    chunks = chunk_text("\n\n".join(paragraphs), max_tokens=100, overlap=10)
    assert len(chunks) > 1
    assert all(tokens(c) <= 100 for c in chunks)
    # Paragraphs are never cut when they fit: every chunk is whole paragraphs.
    for chunk in chunks:
        assert all(part in paragraphs for part in chunk.split("\n\n"))
    assert {part for c in chunks for part in c.split("\n\n")} == set(paragraphs)


def test_short_previous_paragraph_is_carried_as_overlap() -> None:
    short = "Short heading line."
    body_a = " ".join(f"a{i}" for i in range(60))
    body_b = " ".join(f"b{i}" for i in range(60))
    chunks = chunk_text(f"{body_a}\n\n{short}\n\n{body_b}", max_tokens=100, overlap=10)
    assert chunks == [f"{body_a}\n\n{short}", f"{short}\n\n{body_b}"]


def test_carried_overlap_never_pushes_a_chunk_over_the_limit() -> None:
    tail = " ".join(f"t{i}" for i in range(30))  # short enough to be carried (<= overlap)
    big = " ".join(f"b{i}" for i in range(90))  # fits alone, but not together with the tail
    chunks = chunk_text(f"{tail}\n\n{big}", max_tokens=100, overlap=40)
    assert all(tokens(c) <= 100 for c in chunks), [tokens(c) for c in chunks]
    assert chunks[-1].endswith("b89")


def test_korean_text_is_chunked_by_words() -> None:
    text = " ".join(["별빛"] * 300)
    chunks = chunk_text(text, max_tokens=64, overlap=8)
    assert all(tokens(c) <= 64 for c in chunks)
    assert sum(tokens(c) for c in chunks) > 300


def test_overlap_must_be_smaller_than_limit() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", max_tokens=10, overlap=10)


def turns(n: int) -> list:
    messages: list = []
    for i in range(n):
        messages += [HumanMessage(content=f"h{i}"), AIMessage(content=f"a{i}")]
    return messages


def contents(messages) -> list[str]:
    return [m.content for m in messages]


def test_split_history_keeps_last_turns_verbatim() -> None:
    older, recent = split_history(turns(5), turns=2)
    assert contents(older) == ["h0", "a0", "h1", "a1", "h2", "a2"]
    assert contents(recent) == ["h3", "a3", "h4", "a4"]


def test_split_history_short_conversation_has_nothing_older() -> None:
    older, recent = split_history(turns(2), turns=2)
    assert older == []
    assert contents(recent) == ["h0", "a0", "h1", "a1"]


def test_split_history_skips_already_summarised_messages() -> None:
    older, recent = split_history(turns(5), turns=2, summarized_count=4)
    assert contents(older) == ["h2", "a2"]
    assert contents(recent) == ["h3", "a3", "h4", "a4"]
    older, _ = split_history(turns(5), turns=2, summarized_count=6)
    assert older == []


def test_split_history_turn_starts_at_human_message() -> None:
    messages = [AIMessage(content="greeting"), *turns(2), HumanMessage(content="h2")]
    assert recent_start(messages, 1) == 5
    older, recent = split_history(messages, turns=1)
    assert contents(older) == ["greeting", "h0", "a0", "h1", "a1"]
    assert contents(recent) == ["h2"]


def test_render_labels_speakers() -> None:
    assert render(turns(1)) == "Fan: h0\nMe: a0"
