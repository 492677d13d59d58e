"""Chunking for the vector store and history windowing."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from personagraph.memory.embeddings import token_count
from personagraph.memory.history import recent_start, render, split_history
from personagraph.memory.vectors import CHUNK_TOKENS, chunk_text


def tokens(text: str) -> int:
    return token_count(text)


def test_short_text_is_one_chunk() -> None:
    text = "# Title\n\nYuna debuted in 2021.\n\nShe is the leader."
    assert chunk_text(text) == ["# Title\n\nYuna debuted in 2021.\n\nShe is the leader."]


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("  \n\n  ") == []


def test_long_paragraph_is_split_within_the_e5_limit_with_real_overlap() -> None:
    words = [f"w{i}" for i in range(1000)]
    chunks = chunk_text(" ".join(words), max_tokens=100, overlap=20)
    assert len(chunks) > 10
    assert all(tokens(c) <= 100 for c in chunks)
    for previous, following in zip(chunks, chunks[1:], strict=False):
        assert following.split()[0] in previous.split()[-20:]  # the next chunk repeats the end
    # Nothing lost: every word appears, in order, and the last chunk ends the text.
    assert set(" ".join(chunks).split()) == set(words)
    assert chunks[-1].split()[-1] == "w999"


def test_paragraphs_longer_than_the_overlap_still_overlap() -> None:
    """A splitter packing whole paragraphs carries none when every paragraph is longer than the
    overlap (the shipped knowledge files): the pieces are small enough that every cut overlaps."""
    paragraphs = [f"Paragraph {p} says: " + " ".join(["the band sang"] * 8) + "." for p in range(10)]
    text = "\n\n".join(paragraphs)
    assert all(30 < tokens(p) < 100 for p in paragraphs)
    chunks = chunk_text(text, max_tokens=100, overlap=30)
    assert len(chunks) > 3
    assert all(tokens(c) <= 100 for c in chunks)
    for previous, following in zip(chunks, chunks[1:], strict=False):
        assert following[:20] in previous
    assert all(chunk in text for chunk in chunks)  # cut out of the text: paragraph breaks kept
    assert any("\n\n" in chunk for chunk in chunks)


def test_sentences_are_not_cut_when_they_fit() -> None:
    sentences = [f"Sentence number {i} is about Yuna and the song Orbit." for i in range(40)]
    chunks = chunk_text(" ".join(sentences), max_tokens=80, overlap=20)
    assert all(c.endswith(".") for c in chunks)
    assert all(c.startswith("Sentence") for c in chunks)


def test_korean_text_is_chunked_by_e5_tokens() -> None:
    text = " ".join(["별빛이 쏟아지는 밤에 유나가 노래했다."] * 60)
    chunks = chunk_text(text, max_tokens=64, overlap=16)
    assert len(chunks) > 3
    assert all(tokens(c) <= 64 for c in chunks)


def test_shipped_knowledge_fits_the_e5_window() -> None:
    """The issue: 41 of 59 chunks were longer than e5's 512 tokens and embedded as window averages."""
    from personagraph.personas.index import knowledge_documents

    for persona in ("stella_yuna", "captain_haneul"):
        chunks = [c for doc in knowledge_documents(persona) for c in chunk_text(doc.text)]
        assert chunks and max(tokens(c) for c in chunks) <= CHUNK_TOKENS < 512


def test_chunking_is_part_of_the_index_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    from personagraph.personas import index

    before = index.fingerprint("stella_yuna")
    monkeypatch.setattr(index, "CHUNKING", index.CHUNKING + "/changed")
    assert index.fingerprint("stella_yuna") != before  # an upgrade that chunks differently re-indexes


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


def test_window_start_moves_in_steps_so_the_prompt_prefix_stays_put() -> None:
    # turns=6: the window holds 4-6 turns and its start moves three turns at a time.
    starts = [recent_start(turns(n), 6) for n in range(1, 13)]  # message index; 2 messages a turn
    assert starts[:6] == [0] * 6
    assert starts[6:] == [6, 6, 6, 12, 12, 12]  # turns 7-9 drop the first 3, turns 10-12 the first 6
    for n in range(7, 13):
        kept = n - starts[n - 1] // 2
        assert 4 <= kept <= 6


def test_render_labels_speakers() -> None:
    assert render(turns(1)) == "Fan: h0\nMe: a0"
