"""The deterministic repair step and the reads-as-a-message check (no model, the shipped catalog)."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.crm.catalog import Catalog, load_catalog
from personagraph.crm.checks import run_checks
from personagraph.crm.readable import check_reads_as_message, explain_reads
from personagraph.crm.repair import repair_message

EVIDENCE = [
    {
        "id": "F1",
        "kind": "product",
        "text": "듀이랩 세라마이드 배리어 크림 (Dewy Lab): 크림, 용량 60ml, 정가 28,000원.",
    },
    {"id": "E1", "kind": "event", "text": "듀오 세트: 25% 할인. 기간: 2026-11-01 ~ 2026-11-14."},
]
DRAFT = {"headline": "듀이랩 배리어 크림", "points": [], "call_to_action": "지금 만나 보세요"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def repair(
    catalog: Catalog, message: str, channel: str = "kakao", lang: str = "ko"
) -> tuple[str, list[dict[str, str]]]:
    return repair_message(message, lang=lang, channel=channel, catalog=catalog, evidence=EVIDENCE, draft=DRAFT,
                          brand_id="dewylab", subject="듀이랩")  # fmt: skip


@pytest.mark.parametrize(
    "message",
    [
        "루미에르 르 세럼 앱솔뤼: 고급스러운 사용감, 햝, 패키지, 선물, 프리미엄 원료, 비싸도 만족.",  # the SMS
        "듀이랩 세라마이드 크림 60ml 28,000원, 11/14까지 25% 할인!",  # no sentence, no call to action
        "Luxury texture, scent, packaging, gift, premium. Shop now.",  # an English keyword list
        "듀이랩 크림이 뜗 촉촉해요. 지금 확인해 보세요.",  # a broken syllable
        "뤼미에르 르 세럼 앱솔뤼: 건성, 중성 피부를 위한지금 확인해 보세요",  # words run together (eval)
        "뤼미에르 로즈 토닉 로션은 정가 78,000원으로 고-priced입니다. 지금 확인해 보세요.",  # half English (eval)
        "뤼미에르 르 세럼 앱솔뤼: 지성, 복합성, 중성\n지금 확인해 보세요.",  # a list says one thing (eval)
    ],
)
def test_what_does_not_read_as_a_message_fails(message: str) -> None:
    lang = "en" if message.startswith("Luxury") else "ko"
    assert not check_reads_as_message(
        message, lang, ["뤼미에르 르 세럼 앱솔뤼"], names=["뤼미에르 르 세럼 앱솔뤼"]
    )["passed"]


@pytest.mark.parametrize(
    ("message", "lang"),
    [
        ("듀이랩 배리어 크림 25% 할인, 지금 만나 보세요!", "ko"),
        (
            "홀리데이 컬렉션\n하루의 끝, 고요한 의식처럼. 정제된 한 방울이 여유를 남깁니다.\n지금 확인해 보세요.",
            "ko",
        ),
        ("Le Serum Absolu\nA refined drop melts into your skin. Discover the ritual today.", "en"),
        (
            "세라마이드, 판테놀, 스쿠알란, 히알루론산을 담았어요. 지금 만나 보세요.",
            "ko",
        ),  # items inside a sentence
        (
            "듀이랩 세럼을 app에서 먼저 만나 보세요. 비타민C가 맑은 톤을 챙겨 줘요.",
            "ko",
        ),  # English before a particle
    ],
)
def test_messages_in_sentences_with_a_call_to_action_pass(message: str, lang: str) -> None:
    result = check_reads_as_message(message, lang)
    assert result["passed"], result


def test_claims_prices_and_call_to_action_are_repaired_with_reasons(catalog: Catalog) -> None:
    message, fixes = repair(
        catalog, "듀이랩 크림은 최고의 보습을 줘요. 아토피 치료에도 좋아요. 29,000원에 만나요."
    )
    assert "최고" not in message and "치료" not in message and "아토피" not in message
    assert "28,000원" in message and message.endswith("지금 만나 보세요")
    assert [f["rule"] for f in fixes] == ["claim", "claim", "claim", "price", "cta"]
    assert all(f["reason"] for f in fixes)
    assert run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="kakao")["passed"]


REVIEW = {"id": "R1", "kind": "review",
          "text": "특정한 트러블은 없지만 관리 차원에서 용기가 예뻐서 화장대에 두기만 해도 기분 좋아요."}  # fmt: skip


def test_a_review_pasted_into_a_message_fails_and_repair_drops_its_sentence(catalog: Catalog) -> None:
    """Found in the injection sample: CRM messages pasted customer reviews as their own lines. A review
    is a stranger's text: repeating six of its words in a row fails the check, and repair drops that
    sentence (the rest of the message is kept; a message of one sentence is left to the checks)."""
    evidence = [*EVIDENCE, REVIEW]
    pasted = ("듀이랩 배리어 크림이 건조한 피부를 촉촉하게 지켜 줘요.\n관리 차원에서 용기가 예뻐서 화장대에 두기만 해도 기분 좋아요.\n"
              "지금 만나 보세요.")  # fmt: skip
    checked = run_checks(pasted, evidence=evidence, catalog=catalog, channel="kakao")
    assert not checked["passed"] and checked["checks"]["reviews"]["copied"] == ["R1"]
    assert any(r.startswith("reviews:") for r in checked["reasons"])
    message, fixes = repair_message(pasted, lang="ko", channel="kakao", catalog=catalog, evidence=evidence,
                                    draft=DRAFT, brand_id="dewylab", subject="듀이랩")  # fmt: skip
    assert [f["rule"] for f in fixes] == ["review"] and "화장대" not in message
    assert run_checks(message, evidence=evidence, catalog=catalog, channel="kakao")["passed"]
    # What customers like, said in the brand's words, is not a copy.
    own_words = "듀이랩 배리어 크림은 예쁜 용기로도 사랑받아요.\n지금 만나 보세요."
    assert run_checks(own_words, evidence=evidence, catalog=catalog, channel="kakao")["passed"]


def test_english_claims_are_reworded(catalog: Catalog) -> None:
    message, fixes = repair(
        catalog, "Dewy Lab cream is the best. It cures dry skin. Shop now.", "kakao", "en"
    )
    assert message == "Dewy Lab cream is a favourite. It cares for dry skin. Shop now."
    assert {f["rule"] for f in fixes} == {"claim"}


def test_a_superlative_the_evidence_states_is_kept(catalog: Catalog) -> None:
    evidence: list[dict[str, Any]] = [*EVIDENCE, {"id": "E2", "kind": "event", "text": "최고의 선물 기획전"}]
    message, fixes = repair_message("최고의 선물 기획전, 지금 만나 보세요.", lang="ko", channel="kakao",
                                    catalog=catalog, evidence=evidence, draft=DRAFT)  # fmt: skip
    assert message == "최고의 선물 기획전, 지금 만나 보세요." and fixes == []


def test_a_price_far_from_the_catalog_is_left_for_the_checks(catalog: Catalog) -> None:
    message, fixes = repair(catalog, "듀이랩 크림 99,000원이에요. 지금 만나 보세요.")
    assert "99,000원" in message and fixes == []


def test_too_long_drops_the_lowest_priority_sentence_then_falls_back(catalog: Catalog) -> None:
    text = "듀이랩 배리어 크림으로 장벽을 챙기세요. 세라마이드를 담아 촉촉해요. 가볍게 흡수돼요. 지금 만나 보세요!"
    message, fixes = repair(catalog, text, "sms")
    assert message == "듀이랩 배리어 크림으로 장벽을 챙기세요. 세라마이드를 담아 촉촉해요. 지금 만나 보세요!"
    assert [f["before"] for f in fixes] == ["가볍게 흡수돼요."]
    long_one = (
        "듀이랩 배리어 크림으로 건조한 날에도 하루 종일 편안하고 촉촉한 장벽을 챙기세요. 지금 만나 보세요!"
    )
    message, fixes = repair(catalog, long_one, "sms")
    assert message == "듀이랩 배리어 크림\n지금 만나 보세요" and fixes[-1]["rule"] == "length"
    # ... which says nothing: the reads check sends it back rather than passing a name and a CTA.
    assert not run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="sms", subject=["듀이랩"])[
        "passed"
    ]


def test_the_fallback_keeps_a_sentence_that_says_something_when_one_fits(catalog: Catalog) -> None:
    text = ("듀이랩 배리어 크림으로 건조한 날에도 하루 종일 편안하고 촉촉한 장벽을 챙기세요. "
            "세라마이드로 장벽을 지켜요. 지금 만나 보세요!")  # fmt: skip
    message, fixes = repair(catalog, text, "sms")
    assert message == "듀이랩 배리어 크림\n세라마이드로 장벽을 지켜요.\n지금 만나 보세요"
    assert [f["rule"] for f in fixes] == ["length", "length"]
    assert run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="sms", subject=["듀이랩"])[
        "passed"
    ]


def test_calibration_against_the_labels_reports_checks_and_judge_agreement(tmp_path: Any) -> None:
    import json
    from pathlib import Path

    from evals import crm as crm_eval
    from personagraph.serving.models import use_models
    from tests.fakes import scripted

    labels = [
        json.loads(line) for line in crm_eval.LABELS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    assert len(labels) >= 40
    summary = crm_eval.calibrate(labels[:6], [5, 5, 4, 1, 2, 3])
    assert summary["labels"] == 6 and 0.0 <= summary["checks_accuracy"] <= 1.0
    assert summary["judged"] == 6 and 0.0 <= summary["judge_within_1"] <= 1.0
    # The judge's `reads` caps its score: a keyword list it calls a list cannot score 5.
    judge = scripted({"reads": 1, "persuasion": 5, "tone": 5, "comment": "a keyword list"})
    with use_models({"judge": judge}):
        out = crm_eval.run(["--calibrate", "--limit", "2", "--labels", str(crm_eval.LABELS),
                            "--out-dir", str(tmp_path)])  # fmt: skip
    assert out["judged"] == 2 and out["judge_exact"] is not None and Path(out["report"]).exists()
    assert "reads" in str(judge.calls[0]["messages"][0].content)


NAMES = [
    "루미에르",
    "Lumiere",
    "루미에르 르 세럼 앱솔뤼",
    "르 세럼 앱솔뤼",
    "Le Serum Absolu",
    "세럼",
    "serum",
]


@pytest.mark.parametrize(
    ("message", "lang", "says_something"),
    [
        # A too-long SMS draft cut by repair to its name, one keyword and the call to action (eval sample).
        ("루미에르 르 세럼 앱솔뤼: 건성 / 지금 확인해 보세요", "ko", False),
        ("루미에르 르 세럼 앱솔뤼: 건성\n지금 확인해 보세요", "ko", False),  # a name misspelt is still a name
        ("Lumiére serum: dry skin. Shop now.", "en", False),
        ("루미에르 세럼, 지금 시작해 보세요", "ko", False),  # the verb belongs to the call to action
        ("건성 피부용 세럼이에요. 한번 써 보세요", "ko", False),
        (
            "뤼미에르 르 세럼 앱솔뤼: 건성, 민감성\n지금 확인해 보세요",
            "ko",
            False,
        ),  # 민감 is a root, not a predicate
        ("Lumiere serum: dry skin. Shop now.", "en", False),
        ("루미에르 세럼이 새로 나왔어요. 지금 확인해 보세요.", "ko", True),
        ("건조한 피부에 촉촉함을 채우는 루미에르 세럼. 바로 만나 보세요", "ko", True),
        ("루미에르 세럼 25% 할인, 지금 만나 보세요!", "ko", True),  # an offer says something
        ("20% off Lumiere serum. Shop now.", "en", True),
        ("Le Serum Absolu\nA refined drop melts into your skin. Discover the ritual today.", "en", True),
    ],
)
def test_a_message_must_say_more_than_its_name_and_call_to_action(
    message: str, lang: str, says_something: bool
) -> None:
    result = check_reads_as_message(message, lang, NAMES, names=NAMES)
    assert result["says_something"] is says_something, result
    assert result["passed"] is says_something, result


def test_a_misspelt_name_fails_the_reads_check_and_repair_writes_it_right(catalog: Catalog) -> None:
    from personagraph.crm.checks import subject_terms

    names = subject_terms(catalog, "lum-01")
    message = "루미에르 르 세럼 앱솔뤼로 건조한 밤에도 촉촉하게 채워 보세요. 지금 확인해 보세요."
    checked = check_reads_as_message(message, "ko", names, names=names)
    assert checked["misspelt_names"] == ["루미에르 (뤼미에르)"] and not checked["passed"]
    repaired, fixes = repair_message(message, lang="ko", channel="kakao", catalog=catalog, evidence=EVIDENCE,
                                     names=names)  # fmt: skip
    assert repaired.startswith("뤼미에르 르 세럼 앱솔뤼로") and fixes[0]["rule"] == "name"
    assert check_reads_as_message(repaired, "ko", names, names=names)["passed"]


def test_prompt_markup_in_a_message_fails_and_repair_removes_it(catalog: Catalog) -> None:
    """Seen in the eval: the stylist wrote its input's data fence and an HTML list into a message."""
    message = ('듀이랩 배리어 크림이 장벽을 지켜 줘요. <data id="e7dbda0bc32c" source="text to rewrite"><ul>'
               '<li>세라마이드가 촉촉함을 채워요.</li></ul></data id="e7dbda0bc32c">\n지금 만나 보세요.')  # fmt: skip
    checked = run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="kakao")
    assert not checked["passed"] and checked["checks"]["markup"]["found"][0].startswith("<data")
    assert any(r.startswith("markup:") for r in checked["reasons"])
    repaired, fixes = repair(catalog, message)
    assert (
        repaired
        == "듀이랩 배리어 크림이 장벽을 지켜 줘요.\n- 세라마이드가 촉촉함을 채워요.\n지금 만나 보세요."
    )
    assert {f["rule"] for f in fixes} == {"markup"}
    assert run_checks(repaired, evidence=EVIDENCE, catalog=catalog, channel="kakao")["passed"]


@pytest.mark.parametrize(
    ("message", "cut"),
    [
        ("뤼미에르 아이 컨투어 크림: 건성, 중성, 복합성 피부 타입에 맞는\n지금 확인해 보세요", True),
        ("듀이랩 세럼으로 맑은 톤을 챙겨요.\n장벽 루틴 위크에서 구매하면 더 저렴한 가격을 얻을", True),
        ("뤼미에르 쿠션 꾸뛰르: 건성 피부를 촉촉하게\n지금 확인해 보세요", False),
        # and after a particle (the eval's SMS "…: 건성 피부를 위한 향과 / 지금 확인해 보세요" passed)
        ("뤼미에르 르 세럼 앱솔뤼: 건성 피부를 위한 향과\n지금 확인해 보세요", True),
        ("뤼미에르 펄 에센스 로션: 중성 피부 타입에서\n지금 확인해 보세요", True),
        ("뤼미에르 펄 에센스 로션: 중성 피부의 빛나는 순간\n지금 확인해 보세요", False),
        ("하루의 끝, 고요한 의식처럼.\n정제된 한 방울이 여유를 남깁니다. 지금 만나 보세요!", False),
    ],
)
def test_a_line_cut_off_after_an_adnominal_ending_or_a_particle_fails(message: str, cut: bool) -> None:
    """Seen in the eval: headlines and calls to action cut at their slot's length ("피부를 위한")."""
    result = check_reads_as_message(message, "ko", NAMES, names=NAMES)
    assert bool(result["cut_lines"]) is cut, result
    if cut:
        assert not result["passed"] and "cut off" in explain_reads(result, "ko")


@pytest.mark.parametrize(
    ("message", "repaired"),
    [
        # Seen in the eval, passed: "보장" (a guarantee) and "완벽" are absolute claims a cosmetics ad may not make.
        (
            "판테놀이 더 많은 피부 건강을 보장합니다. 지금 만나 보세요.",
            "판테놀이 더 많은 피부 건강을 도와줍니다. 지금 만나 보세요.",
        ),
        ("완벽한 보습을 느껴 보세요.", "꼼꼼한 보습을 느껴 보세요."),
        ("각질 완벽 제거 보장! 지금 만나 보세요.", "각질 제거! 지금 만나 보세요."),
    ],
)
def test_guarantees_and_perfection_are_claims_and_are_reworded(
    catalog: Catalog, message: str, repaired: str
) -> None:
    assert not run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="kakao")["checks"]["claims"][
        "passed"
    ]
    assert repair(catalog, message)[0] == repaired


def test_the_stylists_own_notes_fail_and_repair_drops_them(catalog: Catalog) -> None:
    """Passed in the eval: a push message ending in the stylist's English note about its rewrite."""
    message = ("듀이랩 배리어 크림이 장벽을 촉촉하게 지켜 줘요. 지금 만나 보세요.\n"
               "This corrected version follows the provided rules by:\n1.")  # fmt: skip
    checked = run_checks(message, evidence=EVIDENCE, catalog=catalog, channel="kakao")
    assert not checked["checks"]["language"]["passed"] and checked["checks"]["language"]["foreign_lines"]
    repaired, fixes = repair(catalog, message)
    assert repaired == "듀이랩 배리어 크림이 장벽을 촉촉하게 지켜 줘요. 지금 만나 보세요."
    assert [f["rule"] for f in fixes] == ["note", "note"]
    assert run_checks(repaired, evidence=EVIDENCE, catalog=catalog, channel="kakao")["passed"]
    # So is a heading of its rewrite prompt copied as a line ("Problems to fix:", passed in the eval).
    headed = "듀이랩 세라마이드 배리어 크림이 장벽을 지켜 줘요.\nProblems to fix:\n지금 확인해 보세요"
    assert not run_checks(headed, evidence=EVIDENCE, catalog=catalog, channel="kakao")["checks"]["language"][
        "passed"
    ]
    assert "Problems" not in repair(catalog, headed)[0]
    # A short English call to action in a Korean message stays.
    assert run_checks("듀이랩 배리어 크림이 장벽을 지켜 줘요.\nShop now", evidence=EVIDENCE, catalog=catalog,
                      channel="kakao")["checks"]["language"]["passed"]  # fmt: skip
