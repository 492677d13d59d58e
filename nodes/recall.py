"""Recall: a fan asking what they told the persona is answered from the notes about the fan.

"Do you remember my name?" asked of the 1.5B drafter came back as the persona's own biography, as the
fan's fact claimed as the persona's ("부산에서 태어났고" to a fan from Busan) or as a neutral line when
every draft failed a check. Finding one fact in a short list of notes is a much easier task for a small
model than keeping whose fact is whose in character, so a recall question first asks the memory role
for the fact in the fan's own words (structured output). The answer is used only when it is grounded:
a few words found in those words; its sentence only when it tells them to the fan as the fan's (else a
template). The reply then goes through the same output checks as any draft; anything else goes on to
the draft as before.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from personagraph.memory.fan_memory import read_profile
from personagraph.nodes.context import ChatContext
from personagraph.nodes.routing import asks_about_the_fan
from personagraph.nodes.safety import last_human, last_human_text
from personagraph.nodes.state import ConversationState
from personagraph.personas import drift
from personagraph.personas.model import Persona, load_persona
from personagraph.personas.speech_style import ends_open
from personagraph.prompts import persona_chat as prompts
from personagraph.prompts import untrusted
from personagraph.serving.language import detect_language, korean_morphemes, language_drift
from personagraph.serving.models import StructuredOutputError, structured

# A fact is a few words ("Bori", "May 3", "hot chocolate with cinnamon").
ANSWER_MAX_WORDS = 5
# The fan's earlier messages of this thread given as notes (the memory store has the other threads').
NOTE_MESSAGES = 12


class RecalledFact(BaseModel):
    """What the notes say about the fan's question."""

    found: bool = Field(description="True only when the notes say what the fan asks about.")
    answer: str = Field(default="", max_length=120, description="The answering words, copied from the notes.")
    sentence: str = Field(default="", max_length=300, description="One sentence telling the fan, as theirs.")


def notes_about_the_fan(state: ConversationState) -> list[str]:
    """The fan's own words: the memories retrieved for this turn and the fan's earlier messages in this
    thread (not the question itself), each once. Not the extracted profile: the 1.5B extraction wrote
    `favourite_member: 스템라` (the group, misspelt) for "나는 스텔라에서 하은이를 제일 좋아해!", and the
    recall answered from it."""
    question = last_human(state)
    said = [
        str(m.content)
        for m in state.get("messages", [])
        if isinstance(m, HumanMessage) and m is not question and (question is None or m.id != question.id)
    ][-NOTE_MESSAGES:]
    recalled = [
        str(d.get("text", "")) for d in state.get("retrieved") or [] if d.get("category") == "fan_memory"
    ]
    return list(dict.fromkeys(n.strip() for n in [*recalled, *said] if n.strip()))


def recall(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Answer a recall question from the notes about the fan, or leave the turn to the draft."""
    ctx = runtime.context
    notes = notes_about_the_fan(state)
    if not notes:
        return {}
    persona = load_persona(ctx.persona_id)
    lang = "ko" if state.get("lang") == "ko" else "en"
    question = last_human_text(state)
    body = untrusted.data_block("\n".join(f"- {' '.join(n.split())}" for n in notes), "fan notes")
    messages = [
        SystemMessage(
            content=prompts.RECALL_SYSTEM.format(
                name=untrusted.one_line(persona.name, 100), language_name=prompts.LANGUAGE_NAMES[lang]
            )
            + "\n"
            + untrusted.DATA_RULE
        ),
        HumanMessage(content=prompts.RECALL_QUESTION.format(notes=body, question=question)),
    ]
    try:
        fact = structured(ctx.memory_role, RecalledFact, messages, max_tokens=120)
    except StructuredOutputError:
        return {}  # no usable answer: the draft answers from the same notes (a server that is down raises)
    profile = read_profile(runtime.store, ctx.user_id, ctx.persona_id) if runtime.store is not None else {}
    reply = recalled_reply(fact, notes, persona, lang, fan_names(profile), question)
    return {"draft": reply} if reply else {}


def recalled_reply(
    fact: RecalledFact, notes: list[str], persona: Persona, lang: str, names: list[str], question: str = ""
) -> str | None:
    """The reply for a grounded answer (the opener, then the fact told as the fan's), else None."""
    answer = fact_of(" ".join(fact.answer.split()).strip(" .,!?\"'~"))
    if not fact.found or not answer or not _within(answer, "\n".join(notes)):
        return None
    if len(answer.split()) > ANSWER_MAX_WORDS or drift.speaks_of_self(answer) or _is_clause(answer):
        return None  # the fan's sentence ("제 고향은 부산이에요", "배우고 있어"), not the fact it holds
    sentence = " ".join(fact.sentence.split())
    told = (
        # Korean always takes the template: the 1.5B's Korean sentences came back broken ("네 콩이야는
        # 이름") where its English ones read well ("Your dog's name is Bori, he's a little shiba.").
        lang == "en"
        and _within(answer, sentence)
        # A statement to the fan: "Captain, do you remember Arin?" echoes the question instead.
        and not re.search(r"[?？]", sentence)
        and drift.speaks_to_the_fan(sentence)
        # "Your favorite song is Lighthouse, I play it every morning": the fan's habit as the persona's.
        and not drift.speaks_of_self(sentence)
        # "Your dog's name is Bori, Captain.": the fan called by the persona's name or title.
        and not drift.names_persona(sentence, persona)
        and not any(drift.mentions(sentence, word) for word in vocatives(question))
        and detect_language(sentence) == lang
        and not language_drift(sentence, lang)
        and drift.attributed_mentions(sentence, [answer], persona, names)
    )
    if not told:
        sentence = template_sentence(answer, lang)
    return f"{prompts.RECALL_OPENERS[lang]} {sentence}"


_LEADING_VOCATIVE = re.compile(r"^\s*([^\s,.!?]{1,20}(?:\s[^\s,.!?]{1,20})?)\s*,")
_TRAILING_VOCATIVE = re.compile(r",\s*([^\s,.!?]{1,20}(?:\s[^\s,.!?]{1,20})?)\s*[?？!.~]*\s*$")


def vocatives(question: str) -> list[str]:
    """What the fan calls the persona at the start or end of the question ("Captain, ...", "...,
    Captain?", "함장님, ...")."""
    return [
        m.group(1) for m in (_LEADING_VOCATIVE.search(question), _TRAILING_VOCATIVE.search(question)) if m
    ]


# The fan's sentence around the fact: "내 생일은 10월 9일이야", "My birthday is November 14", "모찌예요".
_TOPIC = re.compile(
    r"^(?:(?:내|제|나의|저의)\s.*?(?:은|는)|my\s.*?\s(?:is|are))\s+(?P<fact>.+)$", re.IGNORECASE
)
_COPULA_END = re.compile(r"(?<=[가-힣A-Za-z0-9])(?:이에요|예요|이야|입니다|이다|이요)$")


def fact_of(answer: str) -> str:
    """The fact an answer holds when the model copied the fan's sentence around it (else the answer)."""
    topic = _TOPIC.match(answer)
    fact = topic.group("fact") if topic else answer
    return _COPULA_END.sub("", fact.strip(" .,!?~")).strip() or answer


def _is_clause(answer: str) -> bool:
    """A Korean answer that ends a clause (a final ending: "배우고 있어" for "what am I learning?")."""
    return bool(re.search(r"[가-힣]", answer)) and any(t.tag == "EF" for t in korean_morphemes(answer))


def template_sentence(answer: str, lang: str) -> str:
    if lang == "ko":
        quoted = f"{answer}라고" if _takes_ra(answer) else f"{answer}이라고"
        return prompts.RECALL_TEMPLATES["ko"].format(answer=answer).replace(f"{answer}(이)라고", quoted)
    return prompts.RECALL_TEMPLATES["en"].format(answer=answer)


def fan_names(profile: dict[str, Any]) -> list[str]:
    return [str(profile[key]) for key in ("name", "nickname") if profile.get(key)]


def wants_recall(state: ConversationState) -> bool:
    """A personal turn whose message asks what the fan told the persona."""
    return state.get("intent") == "personal" and asks_about_the_fan(last_human_text(state))


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


_ORDINAL = re.compile(r"(?<=\d)(?:st|nd|rd|th)\b")


def _compact(text: str) -> str:
    """Case, spacing, punctuation and English ordinal endings ignored ("May 3rd" = "May 3")."""
    return _NON_WORD.sub("", _ORDINAL.sub("", unicodedata.normalize("NFKC", text).casefold()))


def _within(part: str, text: str) -> bool:
    """`part` occurs in `text` as `_compact` reads them ("5월3일" = "5월 3일")."""
    compact = _compact(part)
    return bool(compact) and compact in _compact(text)


def _takes_ra(answer: str) -> bool:
    """ "라고" after anything but a Hangul syllable with a final consonant (then "이라고")."""
    return not ("가" <= answer[-1] <= "힣") or ends_open(answer)
