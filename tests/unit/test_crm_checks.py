"""The CRM output checks on crafted messages: grounding, claims, length, personalisation, citations."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.crm.catalog import Catalog, load_catalog, product_fact_texts, promotion_text
from personagraph.crm.checks import (
    check_citations,
    check_grounding,
    check_length,
    check_subject,
    extract_numeric_facts,
    find_claims,
    find_personal,
    run_checks,
    subject_terms,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def evidence(catalog: Catalog) -> list[dict[str, Any]]:
    """Evidence for Dewy Lab's ceramide cream (60ml, 28,000원) with its 25% promotion (11-01 .. 11-14)."""
    product = catalog.products["dew-01"]
    items: list[dict[str, Any]] = [
        {"id": f"F{i}", "kind": "product", "text": text}
        for i, text in enumerate(product_fact_texts(catalog, product).values(), start=1)
    ]
    promotion = catalog.promotion_for(product)
    assert promotion is not None and promotion.discount_percent == 25
    items.append({"id": "E1", "kind": "event", "text": promotion_text(promotion)})
    items.append({"id": "R1", "kind": "review", "text": "2주 써 보니 건조함이 덜해요. 정말 좋아요."})
    items.append({"id": "T1", "kind": "tone", "text": "다른 제품 레티놀 세럼 34,000원, 99% 만족"})
    return items


def unsupported(message: str, evidence: list[dict[str, Any]], catalog: Catalog) -> list[str]:
    return [u["text"] for u in check_grounding(message, evidence, catalog)["unsupported"]]


def test_a_price_not_in_the_data_is_caught(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    assert unsupported("세라마이드 배리어 크림, 지금 29,000원!", evidence, catalog) == ["29,000원"]
    assert unsupported("Only ₩29,000 today", evidence, catalog) == ["₩29,000"]
    assert unsupported("단돈 2만 9천원", evidence, catalog) == ["2만 9천원"]


def test_the_correct_price_in_any_format_passes(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    for text in ("정가 28,000원", "28000원", "2만 8천원", "2.8만원", "₩28,000", "28,000 won"):
        result = check_grounding(f"세라마이드 크림 {text}", evidence, catalog)
        assert result["passed"], text
        assert [f["evidence_ids"] for f in result["supported"] if f["kind"] == "price"] == [["F1"]]


def test_a_price_after_the_events_discount_is_grounded(
    evidence: list[dict[str, Any]], catalog: Catalog
) -> None:
    assert unsupported("25% 할인된 21,000원", evidence, catalog) == []
    assert unsupported("20% 할인된 22,400원", evidence, catalog) == ["20%", "22,400원"]


def test_discounts_dates_and_volumes(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    ok = "11월 1일부터 11/14까지 2026-11-14 마감, 25% 할인, 60ml 크림"
    assert unsupported(ok, evidence, catalog) == []
    bad = "12월 25일까지 30% 세일, 100ml 대용량"
    assert unsupported(bad, evidence, catalog) == ["12월 25일", "30%", "100ml"]
    assert unsupported("Nov 14 deadline, Dec 24 too", evidence, catalog) == ["Dec 24"]


def test_ingredients_must_be_in_the_product_facts(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    assert unsupported("세라마이드와 판테놀, squalane 보습", evidence, catalog) == []
    # Retinol is only in a tone exemplar of another product: tone never grounds a fact.
    assert unsupported("레티놀과 세라마이드", evidence, catalog) == ["레티놀"]
    assert unsupported("with Retinol", evidence, catalog) == ["Retinol"]


def test_plain_numbers_may_come_from_reviews_but_not_from_tone(
    evidence: list[dict[str, Any]], catalog: Catalog
) -> None:
    assert unsupported("2주 만에 촉촉해요", evidence, catalog) == []
    assert unsupported("99% 만족", evidence, catalog) == ["99%"]


def test_extraction_counts_each_span_once() -> None:
    facts = extract_numeric_facts("2026.11.01~11/14, 3만 5천원, 1+1, 5매")
    assert [(f.kind, f.value) for f in facts] == [
        ("date", "2026-11-1"), ("date", "11-14"), ("price", "35000"), ("number", "1"), ("number", "1"),
        ("volume", "5매"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("아토피 치료에 좋은 크림", "medical"),
        ("피부 재생 효과", "medical"),
        ("This cream cures acne", "medical"),
        ("부작용 없는 크림", "absolute"),
        ("guaranteed results", "absolute"),
        ("판매 1위 크림", "superlative"),
        ("No.1 serum", "superlative"),
        ("최고의 보습", "superlative"),
        ("the best cream ever", "superlative"),
    ],
)
def test_forbidden_claims_are_caught(text: str, category: str) -> None:
    assert category in {c["category"] for c in find_claims(text)}


def test_allowed_wording_passes_the_claim_check() -> None:
    assert find_claims("촉촉한 보습과 진정 케어, 매일 편안하게. Treat yourself tonight.") == []


def test_a_superlative_the_evidence_states_is_allowed() -> None:
    assert find_claims("올리브 어워드 1위 크림", evidence_text="2026 올리브 어워드 1위 수상") == []


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("임신 중이신 고객님께", "health"),
        ("35세 고객님을 위한", "age"),
        ("30대 여성 고객님", "age"),
        ("월급날 기념", "finances"),
        ("현재 위치 근처 매장", "tracking"),
        ("As a 35 years old woman", "age"),
        ("Based on your browsing history", "tracking"),
    ],
)
def test_over_personalisation_is_caught(text: str, category: str) -> None:
    assert category in {p["category"] for p in find_personal(text)}


def test_ordinary_personal_address_passes() -> None:
    assert find_personal("민감한 피부로 고민이라면, 고객님의 루틴에 편안함을 더해 보세요.") == []


def test_sms_limit_counts_euc_kr_bytes(catalog: Catalog) -> None:
    sms = catalog.channels["sms"]
    assert check_length("가" * 45, "sms", sms)["passed"]
    over = check_length("가" * 46, "sms", sms)
    assert not over["passed"] and over["value"] == 92 and over["limit"] == 90
    assert check_length("a" * 90, "sms", sms)["passed"]
    assert check_length("✨" * 23, "sms", sms)["value"] == 92  # not in EUC-KR: 4 bytes each


def test_push_title_line_has_its_own_limit(catalog: Catalog) -> None:
    push = catalog.channels["push"]
    assert check_length("짧은 제목\n본문", "push", push)["passed"]
    assert not check_length("가" * 41 + "\n본문", "push", push)["passed"]


def test_citations_must_name_known_evidence() -> None:
    draft = {"points": [{"text": "a", "evidence_ids": ["F1", "X9"]}, {"text": "b", "evidence_ids": []}]}
    result = check_citations(draft, ["F1", "R1"])
    assert result == {"passed": False, "unknown_ids": ["X9"], "uncited_points": 1}
    assert check_citations({"points": [{"text": "a", "evidence_ids": ["[F1]"]}]}, ["F1"])["passed"]


def test_run_checks_passes_a_good_message_and_explains_a_bad_one(
    evidence: list[dict[str, Any]], catalog: Catalog
) -> None:
    good = run_checks(
        "장벽 크림 60ml 28,000원, 11/14까지 25% 할인! 지금 만나 보세요.",
        evidence=evidence,
        catalog=catalog,
        channel="sms",
    )
    assert good["passed"] and good["reasons"] == []
    bad = run_checks(
        "35세 고객님, 아토피 치료 최고 크림 29,000원 " + "정말 " * 30,
        evidence=evidence,
        catalog=catalog,
        channel="sms",
    )
    assert not bad["passed"]
    text = " | ".join(bad["reasons"])
    for word in ("grounding", "29,000원", "claims", "치료", "length", "personalisation", "35세"):
        assert word in text
    english = run_checks("Ceramide cream", evidence=evidence, catalog=catalog, channel="kakao", lang="ko")
    assert not english["checks"]["language"]["passed"]


def test_a_message_repeating_its_rules_fails(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    """The 1.5B stylist ended a push message with a line of its rules, and it passed every check."""
    from personagraph.prompts.crm import INSTRUCTIONS

    good = "장벽 크림 60ml 28,000원, 11/14까지 25% 할인! 지금 만나 보세요."
    copied = good + "\n- Keep every fact of the text exactly (numbers, prices, dates, ingredients, names)."
    for message, passed in ((good, True), (copied, False)):
        report = run_checks(
            message, evidence=evidence, catalog=catalog, channel="push", instructions=INSTRUCTIONS
        )
        assert report["checks"]["instructions"]["passed"] is passed, message
    assert any(r.startswith("instructions:") for r in report["reasons"])


def test_the_message_must_name_what_it_promotes(evidence: list[dict[str, Any]], catalog: Catalog) -> None:
    terms = subject_terms(catalog, "dew-01")
    for text in (
        "듀이랩 신상 소식!",
        "세라마이드 배리어 크림 어때요?",
        "Ceramide Barrier Cream is back",
        "장벽 크림",
    ):
        assert check_subject(text, terms)["passed"], text
    assert not check_subject("오늘 하루도 화이팅", terms)["passed"]
    report = run_checks(
        "오늘 하루도 화이팅", evidence=evidence, catalog=catalog, channel="sms", subject=terms
    )
    assert not report["passed"] and any(r.startswith("subject:") for r in report["reasons"])
