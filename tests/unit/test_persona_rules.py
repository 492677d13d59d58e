"""personas/rules: speech-rule checks and role drift on crafted Korean and English replies."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.personas import rules as pr
from personagraph.personas.model import ForbiddenTopic, Persona, SpeechRules
from personagraph.serving.language import detect_language


def make_persona(**speech: Any) -> Persona:
    """A persona like Yuna (1 emoji from ✨🌙💛, 70% 반말, under 4 sentences) unless overridden."""
    values: dict[str, Any] = {
        "banmal_ratio": 0.7,
        "emoji_per_message": 1,
        "emoji_set": ["✨", "🌙", "💛"],
        "fan_address_ko": "별빛",
        "fan_address_en": "Starlight",
        "rules": ["Keeps replies under 4 sentences", "Never claims or admits to being an AI"],
    }
    values.update(speech)
    return Persona(
        id="yuna",
        name="Yuna",
        name_ko="유나",
        speech=SpeechRules(**values),
        forbidden_topics=[
            ForbiddenTopic(topic="dating", keywords=["열애설", "남자친구", "boyfriend", "dating"]),
            ForbiddenTopic(topic="contract", keywords=["계약", "contract"]),
        ],
    )


YUNA = make_persona()
CAPTAIN = Persona(
    id="captain",
    name="Haneul Seo",
    name_ko="서하늘",
    speech=SpeechRules(
        banmal_ratio=0.6,
        emoji_per_message=0,
        emoji_set=["🚀"],
        fan_address_ko="신입",
        fan_address_en="recruit",
        rules=["Keeps replies to 2-5 short sentences, like a report on the bridge", "Never uses emoji"],
    ),
)
OTHERS = ["Rin", "Seoa", "Jia", "린", "서아", "지아", "Bae Jinho", "Bae", "배진호", "진호"]


def rules(text: str, persona: Persona = YUNA, lang: str = "en", **kwargs: Any) -> list[str]:
    return [p["rule"] for p in pr.check_speech(text, persona, lang, **kwargs)]


# --- in-character replies pass ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Hi, Starlight! I practised all day ✨ How was yours?", "en"),
        ("That's not mine to answer, Starlight! What song have you been playing on repeat lately? 💛", "en"),
        ("별빛, 오늘도 반짝했어? 나는 연습하고 왔어 🌙", "ko"),
        ("고마워요, 별빛! 오늘 무대 진짜 즐거웠어 ✨", "ko"),
        ("안녕, 별빛! 나 유나야 ✨ 오늘 하루는 어땠어? 무슨 얘기든 편하게 들려줘.", "ko"),
    ],
)
def test_in_character_yuna_replies_have_no_problems(text: str, lang: str) -> None:
    assert pr.check_speech(text, YUNA, lang) == []
    assert not pr.drift(text, YUNA, lang, OTHERS)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Steady, recruit. We jump at dawn. Get some sleep.", "en"),
        ("신입, 차부터 한 잔 해. 세상 끝나는 건 그다음이야.", "ko"),
        ("그건 답할 수 없다, 신입. 함장이라도 입을 닫아야 할 때가 있지.", "ko"),
    ],
)
def test_in_character_captain_replies_have_no_problems(text: str, lang: str) -> None:
    assert pr.check_speech(text, CAPTAIN, lang) == []
    assert not pr.drift(text, CAPTAIN, lang, OTHERS)


def test_empty_reply_is_one_problem() -> None:
    assert pr.check_speech("  ", YUNA, "en") == [
        {"rule": "empty", "reason": "the reply is empty", "severity": "hard"}
    ]


# --- emoji -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("no emoji here", 0),
        ("shine ✨", 1),
        ("love ❤️ you", 1),  # with the emoji variation selector
        ("👍🏽 nice", 1),  # with a skin-tone modifier
        ("family 👨‍👩‍👧 time", 1),  # a ZWJ sequence
        ("🇰🇷 Seoul!", 1),  # a flag
        ("😊😊😊", 3),
        ("stars ★☆ and hearts ♡ and notes ♪♫", 0),  # text symbols are not emoji
        ("별빛 🌙✨💛", 3),
    ],
)
def test_find_emoji(text: str, count: int) -> None:
    assert len(pr.find_emoji(text)) == count


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("Hi Starlight!", []),  # 0 is within 1 +- 1
        ("Hi Starlight! ✨💛", []),  # 2 is the upper bound
        ("Hi Starlight! ✨💛🌙", ["emoji_count"]),
        ("Hi Starlight! 😊", ["emoji_set"]),
        ("Hi Starlight! 😊😊😊", ["emoji_count", "emoji_set"]),
    ],
)
def test_emoji_count_and_set(text: str, problems: list[str]) -> None:
    assert rules(text) == problems


def test_no_emoji_persona_allows_none() -> None:
    assert rules("Steady, recruit. We jump at dawn 🚀", CAPTAIN) == ["emoji_count"]
    problem = pr.check_speech("Steady, recruit 🚀", CAPTAIN, "en")[0]
    assert problem["reason"] == "1 emoji (🚀); allowed none"


def test_emoji_range_for_a_higher_target() -> None:
    persona = make_persona(emoji_per_message=3, emoji_set=[])
    assert rules("Starlight! ✨", persona) == ["emoji_count"]  # 1 < 3 - 1
    assert rules("Starlight! ✨✨", persona) == []
    assert rules("Starlight! ✨✨✨✨", persona) == []
    assert rules("Starlight! ✨✨✨✨✨", persona) == ["emoji_count"]


# --- fan address (soft) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "addressed"),
    [
        ("Good night, Starlight!", True),
        ("good night, STARLIGHT", True),
        ("별빛아, 잘 자!", True),  # particles attach to the Korean address
        ("Good night, 별빛!", True),  # either language's form counts
        ("Good night!", False),
        ("I love the Starlights' chant", False),  # not the whole word
    ],
)
def test_addresses_fan(text: str, addressed: bool) -> None:
    assert pr.addresses_fan(text, YUNA) is addressed


def test_fan_address_is_soft_and_the_name_counts() -> None:
    problems = pr.check_speech("Good night!", YUNA, "en")
    assert problems == [
        {"rule": "fan_address", "reason": "does not address the fan (별빛 / Starlight)", "severity": "soft"}
    ]
    assert pr.hard_problems(problems) == []
    assert pr.check_speech("Good night, Minji!", YUNA, "en", fan_name="Minji") == []


def test_no_fan_address_defined_skips_the_rule() -> None:
    persona = make_persona(fan_address_ko="", fan_address_en="")
    assert pr.addresses_fan("Hello!", persona) is None
    assert rules("Hello!", persona) == []


# --- forbidden topics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "topics"),
    [
        ("Starlight, I can't talk about my boyfriend.", ["dating"]),
        ("Starlight, DATING rumours are not my thing.", ["dating"]),
        ("별빛, 열애설은 사실이 아니야.", ["dating"]),
        ("별빛, 재계약 얘기는 못 해.", ["contract"]),  # Korean keywords match inside words
        ("Starlight, no contracts or boyfriends today.", []),  # ASCII keywords are whole words
        ("Starlight, let's talk about music!", []),
    ],
)
def test_forbidden_topics(data_dir: Any, text: str, topics: list[str]) -> None:
    assert [t.topic for t, _ in pr.forbidden_topic_hits(text, YUNA)] == topics
    assert rules(text, lang="ko" if "별빛," in text else "en").count("forbidden_topic") == len(topics)


def test_forbidden_topic_agrees_with_output_safety(data_dir: Any) -> None:
    from personagraph.nodes.safety import check_output

    for text in ["my boyfriend", "열애설 말고", "a contract", "music"]:
        ours = bool(pr.forbidden_topic_hits(text, YUNA))
        theirs = any(p["category"] == "forbidden_topic" for p in check_output(text, YUNA))
        assert ours == theirs, text


# --- banned phrases and unsafe language -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "As an AI, I don't have a favourite song.",
        "I'm just a language model, Starlight.",
        "I am an AI assistant created to help you.",
        "Honestly I'm a bot, Starlight.",
        "I don't have feelings like humans do.",
        "Admittedly, I'm a fictional character.",
        "Hello! How can I assist you today?",
        "I was created by a tech company.",
        "저는 AI라서 좋아하는 노래가 없어요.",
        "사실 나는 인공지능이야, 별빛.",
        "저는 언어 모델입니다.",
        "나는 그냥 프로그램이야.",
        "AI로서 답하자면, 별빛.",
        "안녕하세요! 무엇을 도와드릴까요?",
        "나는 로봇이야!",
        "저는 서하늘이고, 저는 캐릭터로 만들어진 AI, 하지만 실제로는 역할을 가지고 있어요.",
        "나는 AI로 만들어진 캐릭터야.",
    ],
)
def test_ai_claims_are_banned_phrases_and_drift(text: str) -> None:
    assert "banned_phrase" in rules(text, lang="ko" if "별빛" in text or "요" in text else "en")
    assert pr.ai_claims(text)
    assert pr.drift(text, YUNA, detect_language(text))


@pytest.mark.parametrize(
    "text",
    [
        "I was trained by our vocal coach for four years, Starlight.",
        "나는 TV 프로그램 보는 거 좋아해, 별빛.",
        "How can I help you feel better, Starlight?",
        "I'm a big fan of robots in movies, Starlight.",
        "I said it before, Starlight: music first.",
        "나는 이번에 새로 만들어진 로봇 전시회에 갔어, 별빛.",
        "나는 엄마가 만들어진 케이크를 좋아해.",
    ],
)
def test_ordinary_words_are_not_ai_claims(text: str) -> None:
    assert pr.ai_claims(text) == []


def test_unsafe_language(data_dir: Any) -> None:
    assert "unsafe_language" in rules("What the fuck, Starlight")
    assert "unsafe_language" not in rules("What a day, Starlight")


# --- length ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("One. Two is fine! Three? Four.", 4),
        ("Wow! Really? Yes!", 1),  # one- and two-word exclamations are not counted
        ("Hmm... I think so. Dr. Velez agrees.", 2),  # ellipsis and abbreviations do not end a sentence
        ("Hi, Starlight! It's Yuna ✨ How was your day?", 2),  # the two-word greeting is not counted
        ("보고 싶었어 💛 오늘 뭐 했어?", 2),  # an emoji followed by more text ends a sentence
        ("첫 줄\n둘째 줄\n\n셋째 줄", 3),
        ("The score was 3.5 out of 5.", 1),
        ("", 0),
    ],
)
def test_count_sentences(text: str, count: int) -> None:
    assert pr.count_sentences(text) == count


@pytest.mark.parametrize(
    ("rule", "limit"),
    [
        ("Keeps replies under 4 sentences", 3),
        ("Keeps replies to 2-5 short sentences, like a report", 5),
        ("Uses at most 2 sentences", 2),
        ("Keeps replies short", None),
    ],
)
def test_max_sentences_from_the_rules(rule: str, limit: int | None) -> None:
    assert pr.max_sentences(make_persona(rules=[rule])) == limit


def test_length_rule() -> None:
    assert rules("Starlight! One. Two. Three.") == []
    problems = pr.check_speech("Starlight, one. Two. Three. Four.", YUNA, "en")
    assert problems == [
        {"rule": "length", "reason": "4 sentences; the persona keeps to at most 3", "severity": "hard"}
    ]
    assert rules("Starlight, one. Two. Three. Four.", make_persona(rules=["Keeps replies short"])) == []


# --- Korean speech level ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "level"),
    [
        ("오늘 진짜 좋았어!", "banmal"),
        ("같이 가자 ✨", "banmal"),
        ("그렇지?", "banmal"),
        ("내일 또 올게~", "banmal"),
        ("답할 수 없다.", "banmal"),
        ("별빛은 뭐 했니?", "banmal"),
        ("보고 싶었어 ㅎㅎ", "banmal"),
        ("고마워요!", "jondaemal"),
        ("감사합니다.", "jondaemal"),
        ("어디 가십니까?", "jondaemal"),
        ("그렇죠?", "jondaemal"),
        ("푹 쉬세요 🌙", "jondaemal"),
        ("별빛!", None),
        ("하나, 둘!", None),
        ("Shine on, Starlight!", None),
    ],
)
def test_speech_level(sentence: str, level: str | None) -> None:
    assert pr.speech_level(sentence) == level


def test_speech_levels_counts_korean_sentences() -> None:
    assert pr.speech_levels("별빛! 고마워요. 오늘 진짜 좋았어. 내일 봐! Shine on!") == (2, 1)


@pytest.mark.parametrize(
    ("text", "ratio", "problem"),
    [
        ("별빛, 안녕하세요. 오늘 공연 와 주셔서 감사합니다.", 0.7, True),  # share 0.0 vs 0.7
        ("별빛, 고마워요. 오늘 좋았어. 내일 봐!", 0.7, False),  # share 0.67
        ("별빛, 고마워요. 감사해요. 좋았어.", 0.7, False),  # share 0.33: |0.33 - 0.7| <= 0.5
        ("신입, 준비됐나? 가자.", 0.6, False),  # share 1.0: |1.0 - 0.6| <= 0.5
        ("별빛, 좋았어. 내일 봐!", 0.2, True),  # share 1.0 vs a mostly polite persona
        ("별빛! 하나, 둘!", 0.7, False),  # nothing classified
    ],
)
def test_speech_level_rule(text: str, ratio: float, problem: bool) -> None:
    persona = make_persona(banmal_ratio=ratio, rules=[])
    assert ("speech_level" in rules(text, persona, "ko")) is problem


def test_speech_level_only_for_korean_replies_and_tolerance() -> None:
    persona = make_persona(rules=[])
    polite = "별빛, 고마워요. 감사해요. 좋았어."  # share 0.33
    assert "speech_level" not in rules(polite, persona, "en")
    assert "speech_level" in rules(polite, persona, "ko", banmal_tolerance=0.2)
    reason = pr.check_speech("별빛, 감사합니다.", persona, "ko")[0]["reason"]
    assert reason == "반말 share 0.00 (0 반말, 1 존댓말 sentences); persona uses about 0.70 (tolerance 0.5)"


# --- drift -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "persona", "lang", "reason"),
    [
        ("I'm Rin! Nice to meet you, Starlight.", YUNA, "en", "talks as another character"),
        ("Hi Starlight, this is Seoa speaking ✨", YUNA, "en", "talks as another character"),
        ("안녕 별빛, 나 지아야!", YUNA, "ko", "talks as another character"),
        ("My name is Hana, the new idol in town.", YUNA, "en", "talks as another character"),
        ("제 이름은 하나예요.", YUNA, "ko", "talks as another character"),
        ("Fine. I'm not Yuna, I'm whoever you want.", YUNA, "en", "talks as another character"),
        ("저는 서하늘이 아니에요.", CAPTAIN, "ko", "talks as another character"),
        ("저는 배진호입니다.", CAPTAIN, "ko", "talks as another character"),
        ("Hello Starlight, I am fine today.", YUNA, "ko", "not in the fan's language"),
        ("안녕 별빛! 오늘 좋았어.", YUNA, "en", "not in the fan's language"),
        ("별빛，你好！今天很好。", YUNA, "ko", "not in the fan's language"),
        ("As an AI I can't say.", YUNA, "en", "claims to be an AI or model"),
    ],
)
def test_drift(text: str, persona: Persona, lang: str, reason: str) -> None:
    assert pr.drift(text, persona, lang, OTHERS)
    assert any(r.startswith(reason) for r in pr.drift_reasons(text, persona, lang, OTHERS))


@pytest.mark.parametrize(
    ("text", "persona", "lang"),
    [
        ("Rin's birthday is coming up, Starlight!", YUNA, "en"),
        ("I'm Rin's biggest fan too, Starlight.", YUNA, "en"),
        ("지아가 오늘 케이크 구워 줬어, 별빛!", YUNA, "ko"),
        ("My name is Yuna, and I lead STELLA.", YUNA, "en"),
        ("제 이름은 유나예요.", YUNA, "ko"),
        ("I'm Haneul Seo, captain of the Mireu.", CAPTAIN, "en"),
        ("내 이름은 하늘이야.", CAPTAIN, "ko"),
        ("별빛, 'Starlight Letter' 들어봤어?", YUNA, "ko"),  # an English title inside Korean
        ("", YUNA, "ko"),
    ],
)
def test_no_drift(text: str, persona: Persona, lang: str) -> None:
    assert not pr.drift(text, persona, lang, OTHERS), pr.drift_reasons(text, persona, lang, OTHERS)


def test_other_character_names_from_world_and_personas() -> None:
    world = {
        "members": [
            {"name": "Yuna", "name_ko": "유나", "role": "Leader"},
            {"name": "Rin", "name_ko": "린", "role": "Rapper"},
        ],
        "crew": [{"name": "Bae Jinho", "name_ko": "배진호", "role": "Engineer", "nickname": "Jin"}],
        "places": [{"name": "Suwon"}],  # not a person: no role
    }
    names = pr.other_character_names(YUNA, world, [YUNA, CAPTAIN])
    assert "Yuna" not in names and "유나" not in names and "Suwon" not in names
    assert {
        "Rin",
        "Bae Jinho",
        "Bae",
        "배진호",
        "진호",
        "Jin",
        "Haneul Seo",
        "Haneul",
        "서하늘",
        "하늘",
    } <= set(names)
    assert "린" not in names  # one-syllable names are too ambiguous to match


def test_shipped_personas_greetings_and_refusals_pass() -> None:
    from personagraph.personas.model import list_personas, load_persona, load_world

    for persona_id in list_personas():
        persona = load_persona(persona_id)
        others = pr.other_character_names(
            persona, load_world(persona_id), [load_persona(p) for p in list_personas()]
        )
        for lang in ("ko", "en"):
            lines = [*persona.refusal_lines.get(lang, []), persona.greeting.get(lang, "")]
            for line in filter(None, lines):
                assert pr.hard_problems(pr.check_speech(line, persona, lang)) == [], line
                assert not pr.drift(line, persona, lang, others), line
