"""The insight answer grammars on a real llama.cpp server (issue 21): each is accepted and the reply
holds to it. Prose is one paragraph with no markdown or HTML; a message has lines but none starting
as markup. The prompt asks for the opposite, so a grammar that were not applied would show."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from personagraph.prompts import insight as prompts
from personagraph.serving.models import invoke_text

pytestmark = pytest.mark.integration

ASK_FOR_MARKDOWN = [
    SystemMessage(content="You write Markdown: headings, bold labels and bullet lists on separate lines."),
    HumanMessage(content="List three facts about VIP customers as a bulleted list with a bold heading."),
]


def test_prose_answers_are_one_paragraph_without_markup(real_model_env: dict[str, str]) -> None:
    reply = invoke_text("drafter", ASK_FOR_MARKDOWN, max_tokens=48, grammar=prompts.PROSE_GRAMMAR)
    text = str(reply.content)
    assert text.strip() and not re.search(r"[\n*#|<>]", text), text


def test_message_lines_never_start_as_markup(real_model_env: dict[str, str]) -> None:
    reply = invoke_text("drafter", ASK_FOR_MARKDOWN, max_tokens=48, grammar=prompts.MESSAGE_GRAMMAR)
    text = str(reply.content)
    assert text.strip() and not re.search(r"[*#|<>]", text), text
    assert not any(line[:1] in {"-", " ", ">"} for line in text.split("\n") if line), text
