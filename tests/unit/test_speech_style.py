"""personas/speech_style: Korean replies brought to the persona's speech level by their endings (Kiwi)."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.personas.rules import speech_levels
from personagraph.personas.speech_style import conform_speech_level, convert
from tests.unit.test_persona_rules import make_persona


@pytest.mark.parametrize(
    ("polite", "plain"),
    [
        ("오늘 정말 좋았습니다. 다음에 또 와요!", "오늘 정말 좋았어. 다음에 또 와!"),
        ("제가 좋아하는 노래예요. 저도 좋아해요!", "내가 좋아하는 노래야. 나도 좋아해!"),
        ("제일 기억에 남는 도시는 서울입니다.", "제일 기억에 남는 도시는 서울이야."),
        ("네, 맞아요! 어려웠지만 재밌었어요 ㅎㅎ", "응, 맞아! 어려웠지만 재밌었어 ㅎㅎ"),
        ("정말요? 저도요!", "정말? 나도!"),
        ("하셨어요? 잘 자요 🌙", "했어? 잘 자 🌙"),
        ("알려 드릴게요~ 기다려 주세요", "알려 줄게~ 기다려 줘"),
        ("그렇죠? 그게 제 꿈이에요.", "그렇지? 그게 내 꿈이야."),
        ("아니에요, 괜찮아요.", "아니야, 괜찮아."),
        ("안녕하세요! 언제든지 말씀해 주세요.", "안녕! 언제든지 말해 줘."),
        ("함께 가 봅시다!", "함께 가 보자!"),
        ("어려웠습니다", "어려웠어"),  # irregular conjugation re-joined by Kiwi
        ("도움이 될 것입니다.", "도움이 될 거야."),
    ],
)
def test_polite_endings_become_plain(polite: str, plain: str) -> None:
    assert convert(polite, "banmal") == plain


@pytest.mark.parametrize(
    ("plain", "polite"),
    [
        ("오늘 정말 좋았어. 다음에 또 와!", "오늘 정말 좋았어요. 다음에 또 와요!"),
        ("나도 그 노래 좋아해", "저도 그 노래 좋아해요"),
        ("응, 가수야!", "네, 가수예요!"),
        ("서울이야", "서울이에요"),
        ("그렇지? 너무 예쁘다.", "그렇죠? 너무 예뻐요."),
        ("내일 연락할게", "내일 연락할게요"),
        ("같이 가자~", "같이 가요~"),
    ],
)
def test_plain_endings_become_polite(plain: str, polite: str) -> None:
    assert convert(plain, "jondaemal") == polite


def test_words_mid_sentence_and_other_text_are_kept() -> None:
    text = '"First Light"는 2021년 3월 17일에 나온 첫 싱글입니다 ✨ Shine on!'
    assert convert(text, "banmal") == '"First Light"는 2021년 3월 17일에 나온 첫 싱글이야 ✨ Shine on!'
    assert convert("Hello there!", "banmal") == "Hello there!"


def test_thanks_keep_their_level_when_the_reply_is_within_the_persona_level() -> None:
    yuna = make_persona(banmal_ratio=0.7)  # 반말, 존댓말 for thanks and apologies
    reply = "오늘 와 줘서 고마워요. 다음 콘서트에서 만나요! 꼭 와요."
    fitted = conform_speech_level(reply, yuna, "ko")
    assert fitted == "오늘 와 줘서 고마워요. 다음 콘서트에서 만나! 꼭 와."
    assert speech_levels(fitted) == (1, 1)  # "만나" is not classified; 0.5 is within 0.7 +- 0.5


def test_thanks_change_too_when_needed_to_reach_the_level() -> None:
    yuna = make_persona(banmal_ratio=0.9)
    reply = "고마워요. 정말 감사해요."
    assert conform_speech_level(reply, yuna, "ko") == "고마워. 정말 감사해."


@pytest.mark.parametrize(
    ("text", "lang", "ratio"),
    [
        ("오늘 정말 좋았어. 고마워요!", "ko", 0.7),  # within tolerance: left as written
        ("I loved it, thank you!", "en", 0.7),
        ("별빛! ✨", "ko", 0.7),  # no classified sentence
        ("오늘 정말 좋았어요.", "ko", 0.2),  # a 존댓말 persona
    ],
)
def test_replies_on_level_are_not_touched(text: str, lang: str, ratio: float) -> None:
    assert conform_speech_level(text, make_persona(banmal_ratio=ratio), lang) == text


def test_a_polite_persona_gets_polite_endings() -> None:
    butler = make_persona(banmal_ratio=0.1)
    assert conform_speech_level("알았어. 바로 준비할게!", butler, "ko") == "알았어요. 바로 준비할게요!"


def test_output_safety_fixes_the_level_without_a_rewrite(
    make_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.nodes import safety
    from personagraph.nodes.safety import output_safety
    from personagraph.personas.model import load_persona
    from tests.unit.test_nodes_safety import draft_state

    tiny = load_persona("tiny")
    mostly_plain = tiny.model_copy(update={"speech": tiny.speech.model_copy(update={"banmal_ratio": 0.9})})
    monkeypatch.setattr(safety, "load_persona", lambda persona_id: mostly_plain)
    update: Any = output_safety(
        draft_state("반갑습니다, 조약돌! 오늘 연습 정말 좋았어요 🌱", lang="ko"), make_runtime()
    )
    assert update["draft"] == "반가워, 조약돌! 오늘 연습 정말 좋았어 🌱"
    assert update["revision_reason"] == "" and "style_original" not in update  # no second model call
    (block,) = update["blocks"]
    assert block["category"] == "speech_level_adjusted" and block["safe"] is True
