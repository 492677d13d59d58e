"""Issue 23: a persona that knows who is who. The drift detectors (personas/drift.py) on the replies the
issue quotes, the output check that stops them before the fan sees them, and the graph regenerating
with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.nodes.output_checks import SentenceGate, TurnFacts, check_output, turn_facts
from personagraph.personas import drift
from personagraph.personas.drift import FanFact
from personagraph.personas.model import load_persona
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import use_models
from tests.fakes import scripted

YUNA = load_persona("stella_yuna")
HANEUL = load_persona("captain_haneul")


# --- the fan's facts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "facts"),
    [
        ("I'm Minji and my favourite song is Polaris!", {("name", "Minji"), ("favourite", "Polaris")}),
        ("Captain, call me Arin. I just joined the crew.", {("name", "Arin")}),
        ("Captain, it's me, Arin. Remember me?", {("name", "Arin")}),
        ("함장님, 제 고향은 부산이에요.", {("hometown", "부산")}),
        ("나 부산 출신이야.", {("hometown", "부산")}),
        ("Guess what, my birthday is on May 3!", {("birthday", "May 3")}),
        ("유나야 안녕! 내 이름은 서진이야.", {("name", "서진")}),
        ("우리 고양이 이름은 콩이야. 엄청 귀여워!", {("고양이 이름", "콩이")}),
        ("나는 스텔라에서 하은이를 제일 좋아해!", {("favourite", "하은")}),
        ("I live in Vancouver, so your concerts are far away.", {("hometown", "Vancouver")}),
        ("I'm so tired today", set()),
        ("What did you have for lunch?", set()),
    ],
)
def test_facts_the_fan_states(message: str, facts: set[tuple[str, str]]) -> None:
    assert {(f.kind, f.value) for f in drift.facts_from_text(message)} == facts


def test_profile_facts_and_mentioned_kinds() -> None:
    profile = {"name": "Minji", "birthday": "May 3", "facts": ["my hometown is Busan"], "nickname": None}
    assert {(f.kind, f.value) for f in drift.facts_from_profile(profile)} == {
        ("name", "Minji"),
        ("birthday", "May 3"),
        ("hometown", "Busan"),
    }
    assert drift.mentioned_kinds("Do you remember my birthday?") == [FanFact("birthday", "")]
    assert drift.mentioned_kinds("내 이름 기억나?") == [FanFact("name", "")]


FACTS = [
    FanFact("name", "Minji"),
    FanFact("favourite", "Polaris"),
    FanFact("name", "Arin"),
    FanFact("hometown", "부산"),
    FanFact("birthday", "May 3"),
]


@pytest.mark.parametrize(
    ("reply", "persona", "claimed"),
    [
        # The replies: the fan's facts as the persona's own.
        ("I'm Minji, and my favourite song is Polaris!", YUNA, {"Minji", "Polaris"}),
        ("Yes, I'm Arin.", HANEUL, {"Arin"}),
        ("내 고향은 부산이야. 그 바다 냄새는 아직도 잊히지 않는다, 신입.", HANEUL, {"부산"}),
        ("I remember that my birthday is on May 3", YUNA, {"May 3"}),
        # "네," is "yes", not "your" (the memory eval's probe reply).
        ("네, 내 고향은 부산이야!", HANEUL, {"부산"}),
        ("네 내 고향은 부산이야", HANEUL, {"부산"}),
        # Korean drops the subject: the persona's own birthplace (memory eval, mem-04).
        ("저는 Haneul Seo입니다. 부산에서 태어났고, Mars에 오래 머물렀어.", HANEUL, {"부산"}),
        ("부산 출신이야.", HANEUL, {"부산"}),
        # ... unless the ending speaks of the listener, or the persona only wishes.
        ("부산에서 왔구나! 멋지다.", HANEUL, set()),
        ("부산에 살지?", HANEUL, set()),
        ("부산에 살고 싶어!", HANEUL, set()),
        # Said to or about the fan, or a shared taste: not claims.
        ("Nice to meet you, Minji! Polaris is my favourite too ✨", YUNA, set()),
        ("Your birthday is May 3, I remember! 💛", YUNA, set()),
        ("네 고향은 부산이지, 신입.", HANEUL, set()),
        ("네, 네 고향은 부산이지!", HANEUL, set()),
        ("부산이라고 했잖아, 신입.", HANEUL, set()),
        ("Minji, I love that you like Polaris 💛", YUNA, set()),
    ],
)
def test_fan_fact_claims(reply: str, persona: Any, claimed: set[str]) -> None:
    assert {f.value for f in drift.fan_fact_claims(reply, FACTS, persona)} == claimed


def test_a_fact_without_its_value_is_still_the_fans() -> None:
    """The fan asked "do you remember my name / birthday?": answering with the persona's "my ..."."""
    asked = drift.mentioned_kinds("Captain, do you remember my name?")
    assert drift.fan_fact_claims("Yes, I'm Arin.", asked, HANEUL)
    assert not drift.fan_fact_claims("Of course, Arin. I'm Haneul Seo, your captain.", asked, HANEUL)
    # Other kinds without a value take nothing: the persona has a birthday and favourites of its own.
    birthday = drift.mentioned_kinds("Do you remember my birthday?")
    assert not drift.fan_fact_claims("Of course! My birthday is April 17, yours I forgot 💛", birthday, YUNA)
    # With the fan's date in the message ("It's May 3!"), saying that date as the persona's is a claim.
    dated = drift.facts_from_text("Do you remember my birthday? It's May 3!")
    assert drift.fan_fact_claims("Of course! I remember that my birthday is on May 3 💛", dated, YUNA)
    assert not drift.fan_fact_claims("Of course! Your birthday is May 3 💛", dated, YUNA)
    # Liking the fan's favourite member too is not taking it.
    haeun = drift.facts_from_text("나는 스텔라에서 하은이를 제일 좋아해!")
    assert not drift.fan_fact_claims(
        "나도 하은이 정말 좋아해! 내가 하은이를 좋아하는 이유가 많아.", haeun, YUNA
    )
    # The persona giving its own name while the fan asks about theirs takes nothing from the fan.
    name = drift.mentioned_kinds("What is my name? Please say it.")
    assert not drift.fan_fact_claims("Hi Minji! My name is Yuna.", name, YUNA)
    assert not drift.fan_fact_claims(
        "민지야! 내 이름은 유나야.", drift.mentioned_kinds("내 이름 기억나?"), YUNA
    )
    assert drift.fan_fact_claims("Hi! My name is Minji.", name, YUNA)


@pytest.mark.parametrize(
    ("reply", "expect", "persona", "attributed"),
    [
        ("Yes, I'm Arin.", ["Arin"], HANEUL, False),
        ("Of course I remember, Arin!", ["Arin"], HANEUL, True),
        ("내 고향은 부산이야.", ["부산"], HANEUL, False),
        ("부산이라고 했잖아, 신입.", ["부산"], HANEUL, True),
        ("I remember that my birthday is on May 3", ["May 3"], YUNA, False),
        ("Your birthday is May 3! 💛", ["May 3"], YUNA, True),
        ("물론 기억하지, 신입. 부산.", ["부산"], HANEUL, True),  # the reply addresses the fan
        ("서진아, 당연히 기억하지!", ["서진"], YUNA, True),
        ("네 생일은 5월 3일이잖아!", ["5월 3일"], YUNA, True),
        ("I remember Minji.", ["Minji"], YUNA, False),  # about someone, to no one
        ("Hmm, tell me again?", ["Minji"], YUNA, False),
        ("Hey Sunny! Thanks for asking.", ["Sunny"], YUNA, True),  # a greeting, then the fan's name
        ("Hey, I'm Sunny!", ["Sunny"], YUNA, False),
    ],
)
def test_attributed_mentions(reply: str, expect: list[str], persona: Any, attributed: bool) -> None:
    assert drift.attributed_mentions(reply, expect, persona) is attributed


# --- breaking character ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "persona", "lang", "category"),
    [
        ("I'm sorry, but I can't assist with that request.", HANEUL, "en", "assistant_refusal"),
        ("I'm sorry, but I can't answer this question.", YUNA, "en", "assistant_refusal"),  # memory eval
        ("죄송하지만 그 요청은 도와드릴 수 없습니다.", YUNA, "ko", "assistant_refusal"),
        (
            "I'm sorry, but I don't have any information about your exam. Can you tell me more?",
            HANEUL,
            "en",
            "assistant_refusal",
        ),
        ("죄송하지만 시험에 대한 정보가 없습니다.", HANEUL, "ko", "assistant_refusal"),
        (
            "I'm sorry for the confusion, but I cannot continue this conversation.",
            HANEUL,
            "en",
            "assistant_refusal",
        ),
        (
            "I'm unable to share classified information. Is there anything else I can help you with?",
            HANEUL,
            "en",
            "assistant_refusal",
        ),  # fmt: skip
        ("응, Captain Haneul Seo는 *Mireu* 시리즈의 캐릭터야.", HANEUL, "ko", "admits_fiction"),
        ("I'm just a character in a story, recruit.", HANEUL, "en", "admits_fiction"),
        ("저는 AI라서 고향이 없어요.", YUNA, "ko", "admits_fiction"),
        ("오늘은 재미있는 일들을 하루 пров시고 있어 ✨", YUNA, "ko", "mixed_script"),
        ("준비됐다. 벽 두 번 두드리고 간다. 모두 しっかり 붙잡아라, 신입.", HANEUL, "ko", "mixed_script"),
        ("오늘 정말 happy한 하루였어 ✨", YUNA, "ko", "mixed_script"),
        ("Hello Starlight! Today I practised all day.", YUNA, "ko", "wrong_language"),
        # Seen in the memory eval: Korean sentences in an English reply, a Latin-script language that
        # is not English.
        ("네, Arin. 저는 Captain Haneul Seo입니다.", HANEUL, "en", "mixed_script"),
        ("¡Hola, Arin! Soy la capitana de la nave y tengo muchas historias.", HANEUL, "en", "wrong_language"),
    ],
)
def test_breaks_a_fan_would_notice(reply: str, persona: Any, lang: str, category: str) -> None:
    found = drift.findings(reply, persona, lang, allowed=drift.persona_vocabulary(persona))
    assert [c for c, _ in found] == [category]


@pytest.mark.parametrize("persona", [YUNA, HANEUL])
def test_the_personas_own_lines_are_not_drift(persona: Any) -> None:
    """Refusal lines, greetings and signature expressions are the persona in character."""
    allowed = drift.persona_vocabulary(persona)
    for lang in ("ko", "en"):
        lines = [*persona.refusal_lines.get(lang, []), persona.greeting.get(lang, "")]
        for line in filter(None, lines):
            assert drift.findings(line, persona, lang, allowed=allowed) == [], line


def test_names_in_korean_are_not_mixed_scripts() -> None:
    allowed = drift.persona_vocabulary(YUNA)
    assert drift.mixed_scripts("오늘 STELLA 연습했어, Polaris 불렀지 ✨ MV도 찍었어!", "ko", allowed) == []
    assert drift.mixed_scripts("Polaris is my song ✨", "en", allowed) == []  # Latin is English here


def test_copied_context() -> None:
    document = (
        "Humans never understood the Ring, but they learned to copy it. Today there are 63 active gates: "
        "the original Neptune Ring and 62 human-built copies."
    )
    pasted = "Humans never understood the Ring, but they learned to copy it. Today there are 63 active gates."
    told = "There are 63 gates now, recruit, all copies of the old Ring."
    assert drift.copies_context(pasted, [document], "en") >= drift.COPY_MIN_WORDS["en"]
    assert drift.copies_context(told, [document], "en") == 0


@pytest.mark.parametrize(
    ("reply", "echoes", "repeated"),
    [
        # The memory eval's parrot: the fan's own sentence said back as the persona's.
        (
            "스텔라에서 하은이를 제일 좋아해요! 내 최애야 💫",
            ["스텔라에서 하은이를 제일 좋아해요! 내 최애야"],
            1,
        ),
        (
            "I just got back from the concert in Busan and I'm so tired!",
            ["I just got back from the concert in Busan and I'm so tired"],
            1,
        ),
        # The previous reply again, nearly word for word.
        (
            "Ready for tonight's show, Starlight? Let's go!",
            ["Ready for tonight's show, Starlight? Let's go!!"],
            1,
        ),
        # Short echoes answer a fan naturally; answering about the same thing is not repeating it.
        ("I love you too! 💫", ["I love you so much"], 0),
        ("나도 보고 싶어! 💕", ["보고 싶어 유나야"], 0),
        (
            "Busan must have been so much fun, tell me everything!",
            ["I just got back from the concert in Busan"],
            0,
        ),
        (
            "하은이가 최애구나! 하은이 요즘 춤 연습 정말 열심히 해 💫",
            ["스텔라에서 하은이를 제일 좋아해요!"],
            0,
        ),
    ],
)
def test_repeated_sentences(reply: str, echoes: list[str], repeated: int) -> None:
    assert len(drift.repeated_sentences(reply, echoes, YUNA)) == repeated
    categories = [c for c, _ in drift.findings(reply, YUNA, None, echoes=echoes)]
    assert ("repeats_message" in categories) == bool(repeated)


def test_wrong_language_waits_for_enough_letters_in_a_prefix() -> None:
    assert drift.findings("Polaris!", YUNA, "ko", final=False) == []
    assert [c for c, _ in drift.findings("Polaris!", YUNA, "ko")] == ["wrong_language"]
    found = drift.findings("Hi Starlight! I practised all day.", YUNA, "ko", final=False)
    assert [c for c, _ in found] == ["wrong_language"]


# --- the output check and the graph ---------------------------------------------------------------------


def test_check_output_reports_drift_with_the_turns_facts() -> None:
    facts = TurnFacts("en", (FanFact("name", "Minji"),), allowed=drift.persona_vocabulary(YUNA))
    problems = check_output("I'm Minji, nice to meet you! ✨", YUNA, "", facts)
    assert [p["category"] for p in problems] == ["claims_fan_fact"]
    assert "the fan's name (Minji) as your own" in problems[0]["reason"]
    # Without the turn's facts only the checks that need none run.
    assert check_output("I'm Minji, nice to meet you! ✨", YUNA) == []
    assert [
        p["category"] for p in check_output("I'm sorry, but I can't assist with that request.", YUNA)
    ] == ["assistant_refusal"]


def test_turn_facts_read_the_thread_and_profile() -> None:
    state: Any = {
        "messages": [
            HumanMessage(content="I'm Minji!"),
            AIMessage(content="Hi Minji!"),
            HumanMessage(content="Do you remember my birthday?"),
        ],  # fmt: skip
        "lang": "en",
        "retrieved": [{"text": "STELLA debuted with First Light.", "source": "k"}],
    }
    facts = turn_facts(state, YUNA, {"birthday": "May 3", "facts": ["my hometown is Busan"]})
    assert facts.lang == "en" and facts.documents == ("STELLA debuted with First Light.",)
    assert {(f.kind, f.value) for f in facts.fan_facts} == {
        ("name", "Minji"),
        ("birthday", "May 3"),
        ("hometown", "Busan"),
        ("birthday", ""),
    }
    assert {"stella", "polaris", "minji"} <= facts.allowed
    assert facts.echoes == ("Do you remember my birthday?", "Hi Minji!")


def test_the_gate_never_shows_an_english_sentence_in_a_korean_turn() -> None:
    written: list[dict[str, Any]] = []
    gate = SentenceGate(YUNA, "", written.append, facts=TurnFacts("ko"))
    for piece in ["Hi Starlight! ", "I practised all day today. ", "오늘 연습했어!"]:
        if not gate.feed(piece):
            break
    assert [w for w in written if "checked" in w] == []  # "Hi Starlight!" alone is too short to judge
    assert gate.problems[0]["category"] == "wrong_language"


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def smalltalk_router(messages: list[BaseMessage]) -> str:
    if "Extract facts" in str(messages[0].content):
        return "{}"
    return '{"intent": "smalltalk", "search_query": ""}'


def test_a_reply_taking_the_fans_name_is_regenerated_with_the_reason(service: ChatService) -> None:
    chat = scripted("I'm Minji, and I love Small Steps! 🌱", "Nice to meet you, Minji! 🌱")
    with use_models({"router": scripted(smalltalk_router), "chat": chat}):
        result = service.send(
            Caller("fan1"), validate_request(message="I'm Minji and I love Small Steps!", persona_id="tiny")
        )
    assert result.reply == "Nice to meet you, Minji! 🌱"
    # The draft also said the fan's message back word for word.
    assert [b["category"] for b in result.blocks] == ["claims_fan_fact", "repeats_message"]
    instruction = str(chat.calls[1]["messages"][-1].content)
    assert "Your previous draft was rejected: it says the fan's name (Minji) as your own" in instruction


def test_a_korean_message_after_english_turns_gets_a_korean_reply(service: ChatService) -> None:
    chat = scripted("We practised all day, Pebbler! 🌱", "Today I practised a lot, Pebbler! 🌱", "오늘 연습 많이 했어, 조약돌! 🌱")  # fmt: skip
    fan, thread = Caller("fan1"), "switch"
    with use_models({"router": scripted(smalltalk_router), "chat": chat}):
        service.send(
            fan, validate_request(message="What did you do today?", persona_id="tiny", thread_id=thread)
        )
        result = service.send(
            fan, validate_request(message="타이니 오늘 뭐 했어?", persona_id="tiny", thread_id=thread)
        )
    assert result.reply == "오늘 연습 많이 했어, 조약돌! 🌱"
    assert len(chat.calls) == 3  # the English draft stopped at its first sentence and redrafted
    per_turn = chat.calls[1]["messages"][-1]
    assert isinstance(per_turn, SystemMessage)
    assert "The fan's last message is in Korean (한국어): reply in Korean (한국어) only" in str(
        per_turn.content
    )


# --- the fan's statements in any words (seen in the memory eval) ------------------------------------------


@pytest.mark.parametrize(
    ("persona", "fan", "reply", "claimed"),
    [
        (YUNA, "나는 떡볶이를 제일 좋아해!", "안녕, 별빛! 제 가장 좋아하는 음식은 떡볶이입니다.", True),
        (HANEUL, "저 3월 14일에 조종사 자격시험 봐요.", "안녕! 내 시험 날짜는 3월 14일이야.", True),
        (HANEUL, "I only drink hot chocolate with cinnamon, never coffee.",
         "I only drink hot chocolate with cinnamon, never coffee.", True),
        (HANEUL, "I work as a nurse at a children's hospital.", "I work as a nurse at a children's hospital.", True),
        (YUNA, "나는 스텔라에서 하은이를 제일 좋아해! 내 최애야.", "네, 좋아해! 하은이가 제일 좋아해! 내 최애야.", True),
        # Said to the fan, agreeing, or only a little in common: not a claim.
        (HANEUL, "I work as a nurse at a children's hospital.", "You work as a nurse at a children's hospital, right?", False),
        (YUNA, "나는 떡볶이를 제일 좋아해!", "나도 떡볶이 좋아해! 같이 먹자.", False),
        (YUNA, "나는 떡볶이를 제일 좋아해!", "나는 오늘 떡볶이 먹었어.", False),
        (HANEUL, "I'm so tired from work today.", "I'm tired from practice today, recruit.", False),
        (YUNA, "I love Polaris, it's my favourite song!", "I love singing Polaris on stage!", False),
    ],
)  # fmt: skip
def test_a_reply_does_not_take_the_fans_statement(persona: Any, fan: str, reply: str, claimed: bool) -> None:
    statements = drift.fan_statements([fan], ignore=drift.persona_vocabulary(persona))
    found = [c for c, _ in drift.findings(reply, persona, fan_statements=statements)]
    assert ("claims_fan_fact" in found) is claimed, found


def test_profile_notes_are_the_fans_statements() -> None:
    """A note from an earlier session ("favourite food: tteokbokki") is the fan's without an "I"."""
    statements = drift.fan_statements([], notes=["Favourite food is tteokbokki with extra cheese"])
    reply = "My favourite food is tteokbokki, with extra cheese!"
    assert drift.statement_claims(reply, statements) == statements


def test_the_fans_recalled_messages_from_another_session_are_theirs() -> None:
    """Seen in the memory eval: in a new session the fan's exam date came back from the memory store
    and the reply gave it as the persona's own ("응, 나는 3월 14일에 조종사 자격시험을 봐.")."""
    state: Any = {
        "lang": "ko",
        "messages": [HumanMessage(content="함장님, 제 시험 날짜 기억하세요?")],
        "retrieved": [
            {"text": "저 3월 14일에 조종사 자격시험 봐요.", "source": "memory:1", "category": "fan_memory"}
        ],
    }
    facts = turn_facts(state, HANEUL)
    claimed = check_output("응, 나는 3월 14일에 조종사 자격시험을 봐.", HANEUL, "", facts)
    assert [p["category"] for p in claimed] == ["claims_fan_fact"]
    assert check_output("응, 네 시험은 3월 14일이잖아. 긴장하지 마, 신입.", HANEUL, "", facts) == []


@pytest.mark.parametrize(
    ("reply", "given"),
    [
        ("네, Yuna. Your name is Yuna.", "Yuna"),  # the memory eval and the memory test, to Minji
        ("Yes, I remember your name. It's Yuna.", "Yuna"),
        ("Yes, I remember your name. It’s Yuna.", "Yuna"),  # a curly apostrophe
        ("네 이름은 유나야!", "유나"),
        ("Your name's Yuna Kim, right?", "Yuna"),
        ("Your name is Minji! I'm Yuna.", ""),
        ("Is your name Yuna?", ""),  # asking is not telling
        ("Your name is Yunara? So pretty!", ""),  # another name
        # The memory eval (mem-05): the persona's own identity told to the fan.
        ("May 3rd is your birthday. You're Yuna, the leader of STELLA and the main vocalist.", "Yuna"),
        ("You are Yuna!", "Yuna"),
        ("You're Yuna's biggest fan, I know!", ""),
        ("Thank you, you're so sweet.", ""),
    ],
)
def test_the_persona_never_gives_the_fan_its_own_name(reply: str, given: str) -> None:
    minji = [FanFact("name", "Minji")]
    assert drift.persona_name_given_to_fan(reply, YUNA, minji) == given
    categories = [c for c, _ in drift.findings(reply, YUNA, None, fan_facts=minji)]
    assert ("names_fan_as_persona" in categories) == bool(given)
    if given.isascii():  # a fan who is called Yuna too is told their own name
        assert drift.persona_name_given_to_fan(reply, YUNA, [FanFact("name", "Yuna")]) == ""
    assert drift.persona_name_given_to_fan("Your name is Haneul.", HANEUL) == "Haneul"
