"""Output checks on any text a reader may see, and the gate that releases streamed text through them.

`check_output` is the one implementation of the per-text checks (unsafe language, forbidden topics,
personal data, role breaks, system-prompt leaks, and what a fan would notice: the wrong language, the
fan's facts claimed as the persona's, assistant refusals, admitting to be an AI or a character, mixed
scripts, copied documents: personas/drift.py): output_safety judges whole drafts with it, and the
`SentenceGate` judges every prefix of a draft while the model writes it. `TurnFacts` carries what
those drift checks need to know about the turn (`turn_facts` builds it once per node).

Only checked text reaches a reader. The draft streams through a `SentenceGate`, which releases it
sentence by sentence as custom stream events, each sentence only after `check_output` passed on the
whole text up to it; `show` is the one way a node changes what the reader sees:

    {"checked": "..."}   text appended to what the reader sees
    {"reset": True}      what the reader sees is withdrawn (a replacement follows)
    {"writing": n}       progress only (n characters drafted, not yet released): no text

`state["shown"]` is what the reader sees of the turn's reply so far, so the next node can extend it
or replace it; after the turn it equals the published reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import StreamWriter

from personagraph.nodes.state import ConversationState
from personagraph.personas import drift
from personagraph.personas.model import Persona, load_world
from personagraph.personas.rules import count_sentences, forbidden_topic_hits, max_sentences
from personagraph.prompts import untrusted
from personagraph.safety.rules import leaks_prompt, unsafe_language

_PHONE = re.compile(r"(?:\+?\d{1,3}[-.\s]?)?(?:0\d{1,2}|\(\d{2,3}\))[-.\s]?\d{3,4}[-.\s]?\d{4}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_RRN = re.compile(r"\b\d{6}-?[1-4]\d{6}\b")
_ROLE_BREAK_OUT = re.compile(
    r"\b(?:as an ai|i am an ai|i'm an ai|language model|large language model|i am a bot|openai|chatgpt)\b"
    r"|(?:저는|나는)\s*(?:ai|인공지능|언어\s*모델|챗봇)",
    re.IGNORECASE,
)
_PROMPT_MARKERS = re.compile(r"\[(?:PERSONA|SAFETY RULES|CONTEXT|CONVERSATION SO FAR|ABOUT THIS FAN)\]")


# Fan messages read for the fan's facts (the newest; older ones are in the stored profile by then).
FACT_MESSAGES = 20


@dataclass(frozen=True)
class TurnFacts:
    """What the drift checks know about a turn: the language of the fan's current message, the fan's
    facts (profile and messages), the retrieved documents, the Latin names a Korean reply may use, and
    what the reply must not repeat (the fan's message and the persona's previous reply); the fan's
    statements about themselves in any words (`drift.fan_statements`)."""

    lang: str | None = None
    fan_facts: tuple[drift.FanFact, ...] = ()
    fan_statements: tuple[drift.FanStatement, ...] = ()
    documents: tuple[str, ...] = ()
    allowed: frozenset[str] = field(default_factory=frozenset)
    echoes: tuple[str, ...] = ()


def turn_facts(
    state: ConversationState, persona: Persona, profile: dict[str, Any] | None = None
) -> TurnFacts:
    """The turn's facts for the drift checks, from the state (messages, retrieved documents) and the
    fan's stored profile."""
    said = [str(m.content) for m in state.get("messages", []) if isinstance(m, HumanMessage)]
    said = said[-FACT_MESSAGES:]
    # The fan's own earlier messages recalled from the memory store (another session's "저 3월 14일에
    # 시험 봐요") are theirs as much as this thread's.
    recalled = [
        str(d.get("text", "")) for d in state.get("retrieved") or [] if d.get("category") == "fan_memory"
    ]
    facts = drift.facts_from_profile(profile or {})
    for text in [*recalled, *said]:
        facts += drift.facts_from_text(text)
    if said:  # "do you remember my birthday?": a reply must not answer with "my birthday is ..."
        facts += drift.mentioned_kinds(said[-1])
    documents = tuple(str(doc.get("text", "")) for doc in state.get("retrieved") or [])
    persona_words = drift.persona_vocabulary(persona, load_world(persona.id))
    statements = drift.fan_statements([*recalled, *said], (profile or {}).get("facts") or [], persona_words)
    allowed = (
        persona_words
        | drift.vocabulary(*said)
        | drift.vocabulary(*documents, *(str(v) for v in (profile or {}).values()), names_only=True)
    )
    return TurnFacts(state.get("lang"), tuple(facts), tuple(statements), documents, allowed, _echoes(state))


def _echoes(state: ConversationState) -> tuple[str, ...]:
    """The fan's current message and the persona's reply before it: what a reply must not parrot."""
    messages = state.get("messages", [])
    last_fan = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None
    )
    if last_fan is None:
        return ()
    previous = next((m for m in reversed(messages[:last_fan]) if isinstance(m, AIMessage)), None)
    texts = [str(messages[last_fan].content)]
    if previous is not None:
        texts.append(str(previous.content))
    return tuple(texts)


def check_output(
    text: str,
    persona: Persona,
    system_prompt: str = "",
    facts: TurnFacts | None = None,
    *,
    final: bool = True,
) -> list[dict[str, str]]:
    """Problems with a draft: unsafe language, forbidden topics, personal data, role breaks, prompt
    leaks, and drift (personas/drift.py; the language, the fan's facts and copied documents only with
    the turn's `facts`). `final` False for a streamed prefix (its language is judged once it is long
    enough to tell)."""
    problems: list[dict[str, str]] = []
    if not text.strip():
        problems.append({"category": "empty", "reason": "the reply is empty"})
    for hit in unsafe_language(text):
        problems.append({"category": hit.category, "reason": f"contains {hit.matched!r}"})
    for topic, keyword in forbidden_topic_hits(text, persona):
        problems.append({"category": "forbidden_topic", "reason": f"mentions {topic.topic} ({keyword})"})
    if _PHONE.search(text) or _EMAIL.search(text) or _RRN.search(text):
        problems.append(
            {"category": "personal_data", "reason": "contains a phone number, e-mail or ID number"}
        )
    if _ROLE_BREAK_OUT.search(text):
        problems.append({"category": "role_break", "reason": "says it is an AI or a model"})
    if _PROMPT_MARKERS.search(text) or untrusted.prompt_markup(text) or leaks_prompt(text, system_prompt):
        problems.append({"category": "prompt_leak", "reason": "repeats the system prompt"})
    facts = facts or TurnFacts()
    found = drift.findings(
        text,
        persona,
        facts.lang,
        fan_facts=facts.fan_facts,
        fan_statements=facts.fan_statements,
        documents=facts.documents,
        allowed=facts.allowed,
        echoes=facts.echoes,
        final=final,
    )
    for category, reason in found:
        if category == "admits_fiction" and any(p["category"] == "role_break" for p in problems):
            continue  # the same words, already reported as a role break
        problems.append({"category": category, "reason": reason})
    return problems


# --- releasing checked text -----------------------------------------------------------------------

# A label the small model puts before its reply ("[STARLIGHT]", "[ABOUT THIS FAN]"): a prompt
# section's or a speaker's name, not part of the answer. Dropped from the start of a draft; the rest
# is checked as the reply.
_LEADING_LABEL = re.compile(r"^\[[^\[\]\n<>]{1,40}\](?=\s)\s*")
# Where a sentence ends while the model is still writing: closing punctuation (or an emoji) with the
# whitespace after it already written, or the end of a line. The cut goes before the whitespace, so
# the released text never ends in a space the final (stripped) reply would not have.
_SENTENCE_END = re.compile(
    r"(?:[.!?…。！？~]+|[\u2600-\u27bf\U0001f300-\U0001faff]+)[\"'”’)\]]*(?=\s)|\S(?=\n)"
)


def show(write: StreamWriter, shown: str, text: str) -> str:
    """Make the reader see `text` (already checked): its new part when it extends what they see,
    else a reset and all of it. Returns what the reader sees now."""
    if text == shown:
        return text
    if text.startswith(shown):
        write({"checked": text[len(shown) :]})
    else:
        write({"reset": True})
        if text:
            write({"checked": text})
    return text


class SentenceGate:
    """Releases a reply while the model writes it, one sentence at a time, each only after
    `check_output` passed on the whole text up to its end. The first failing sentence closes the
    gate: nothing more is released, and `finish()` returns the failing text for output_safety
    (which reaches the same verdict on it: same function, same text).
    """

    def __init__(
        self,
        persona: Persona,
        system_prompt: str,
        write: StreamWriter,
        shown: str = "",
        hold: bool = False,
        facts: TurnFacts | None = None,
    ):
        self.persona = persona
        self.system_prompt = system_prompt
        self.facts = facts
        self.write = write
        self.shown = shown  # what the reader sees now (an earlier attempt's text until this one releases)
        # Check but show nothing: a style rewrite replaces the safe reply the reader already sees
        # only once output_safety accepts it (respond shows it then).
        self.hold = hold
        self.text = ""  # what the model wrote so far, without leading whitespace
        self.released = ""  # this attempt's checked prefix
        self.problems: list[dict[str, str]] = []
        self._failed = ""
        # The persona's sentence limit ends the reply: a small model rambles past it, and a reply
        # cut at the limit is better (and sooner) than a rejected one written again.
        self.limit = max_sentences(persona)
        self.complete = False  # the limit was reached: the reply is the released text

    @property
    def open(self) -> bool:
        return not self.problems

    def feed(self, piece: str) -> bool:
        """Add what the model wrote; release each sentence it completed. False once the gate closed
        (stop reading the model)."""
        if not self.open or self.complete:
            return False
        start = len(self.released)
        self.text = (self.text + piece).lstrip()
        if not self.released:
            self.text = _LEADING_LABEL.sub("", self.text)
        self.write({"writing": len(self.text)})  # progress, no text: lets a reader stop the turn
        for end in _SENTENCE_END.finditer(self.text, start):
            prefix = self.text[: end.end()]
            if self._past_limit(prefix):  # the reply ends before this sentence
                self.complete = True
                return False
            if not self._release(prefix):  # stop at the first failure
                return False
            if self.limit is not None and count_sentences(self.released) >= self.limit:
                self.complete = True  # as long as the persona's replies get: stop reading the model
                return False
        return True

    def _past_limit(self, prefix: str) -> bool:
        """Would `prefix` pass the persona's sentence limit (with some reply already released)?"""
        return self.limit is not None and bool(self.released) and count_sentences(prefix) > self.limit

    def finish(self) -> str:
        """The draft: the whole reply (its last sentence released if it passes), the released
        sentences when the persona's sentence limit ended it, or, when the gate closed, the text up
        to the sentence that failed."""
        if self.open and not self.complete:
            if self._past_limit(self.text.strip()):
                self.complete = True
            else:
                self._release(self.text.strip(), final=True)
        if self.complete:
            return self.released.strip()
        return self._failed or self.text.strip()

    def _release(self, prefix: str, final: bool = False) -> bool:
        if not final and self.facts and drift.language_undecided(prefix, self.facts.lang):
            return True  # too short to judge its language and not yet in the fan's: wait for more
        problems = check_output(prefix, self.persona, self.system_prompt, self.facts, final=final)
        if problems:
            self.problems, self._failed = problems, prefix
            return False
        self.released = prefix
        if not self.hold:
            self.shown = show(self.write, self.shown, prefix)
        return True
