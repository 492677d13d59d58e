"""Comparative claims the figures contradict fail; true ones, and what the check cannot read, pass."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pytest

from personagraph.insight import facts
from personagraph.insight.comparisons import borrowed_descriptions, wrong_comparisons
from personagraph.insight.stats import known_segments
from personagraph.insight.template_answer import comparison_sentences, template_answer
from tests.unit.insight_support import small_snapshot


def comparison(**segments: dict[str, float]) -> dict[str, Any]:
    rows = [{"segment": name, **figures} for name, figures in segments.items()]
    return {"compare_segments": {"first_vs_second": {}, "segments": rows}}


NEW_DORMANT = comparison(
    new={"customers": 537, "avg_spend_per_customer_krw": 146724, "avg_orders_per_customer": 3.2,
         "avg_order_value_krw": 45178, "avg_recency_days": 22.0},
    dormant={"customers": 1142, "avg_spend_per_customer_krw": 134000, "avg_orders_per_customer": 4.1,
             "avg_order_value_krw": 33000, "avg_recency_days": 498.4},
)  # fmt: skip
NEW_LOYAL = comparison(
    new={"customers": 537, "avg_spend_per_customer_krw": 146724, "avg_orders_per_customer": 3.2},
    loyal={"customers": 637, "avg_spend_per_customer_krw": 3097403, "avg_orders_per_customer": 42.2},
)
VIP_AT_RISK = comparison(
    vip={"customers": 237, "avg_spend_per_customer_krw": 11379599, "avg_orders_per_customer": 84.0,
         "avg_recency_days": 5.0},
    at_risk={"customers": 662, "avg_spend_per_customer_krw": 1584216, "avg_orders_per_customer": 24.9,
             "avg_recency_days": 191.4},
)  # fmt: skip


@pytest.mark.parametrize(
    ("results", "answer"),
    [
        # From the insight bench, each passing every other check.
        (
            NEW_DORMANT,
            "New (신규 고객) has more customers and higher spend per customer than Dormant (휴면 고객).",
        ),
        (
            NEW_DORMANT,
            "New customers spend more on average and order more frequently than dormant customers.",
        ),
        (NEW_LOYAL, "첫째, 구매액에 대해선 신규 고객은 충성 고객 대비 21.11배 높습니다."),
        (NEW_LOYAL, "신규 고객은 충성 고객보다 더 자주 구매합니다."),
        (VIP_AT_RISK, "At-risk customers spend more than VIP customers."),
        (VIP_AT_RISK, "VIP customers order less often than at-risk customers."),
        (VIP_AT_RISK, "At-risk customers bought more recently than VIP customers."),
        (VIP_AT_RISK, "이탈 위험 고객은 VIP보다 구매액이 높습니다."),
    ],
)
def test_a_comparison_the_figures_contradict_fails(results: dict[str, Any], answer: str) -> None:
    assert wrong_comparisons(answer, results)


@pytest.mark.parametrize(
    ("results", "answer"),
    [
        (NEW_DORMANT, "New customers spend 9% more per customer than dormant customers."),
        (NEW_DORMANT, "Dormant has 2.13 times as many customers as New customers."),
        (
            NEW_DORMANT,
            "New customers have fewer customers than dormant ones and bought more recently than them.",
        ),
        (NEW_LOYAL, "충성 고객은 신규 고객보다 주문 횟수가 많습니다."),
        (NEW_LOYAL, "신규 고객은 충성 고객보다 구매액이 적고 효과적인 전략이 필요합니다."),
        (VIP_AT_RISK, "VIP customers spend 7.18 times as much per customer compared to At-risk ones."),
        (VIP_AT_RISK, "VIP customers are more valuable than at-risk customers."),  # no measure named
        (VIP_AT_RISK, "이탈 위험 고객은 VIP보다 고객 수가 많지만 구매액은 낮습니다."),
        (VIP_AT_RISK, "VIP customers spend more. At-risk customers spend less."),  # no standard named
    ],
)
def test_a_true_or_unreadable_comparison_passes(results: dict[str, Any], answer: str) -> None:
    assert wrong_comparisons(answer, results) == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_side_by_side_lines_and_template_answers_never_fail(lang: str) -> None:
    """What the prompt shows and the template says is true by construction: the check must agree on
    every pair of segments."""
    snap = small_snapshot()
    segments = known_segments(snap)
    for a, b in permutations(segments, 2):
        results = {"compare_segments": facts.compare_segments(snap, [a, b], [a, b])}
        text = " ".join(comparison_sentences(results["compare_segments"], lang))
        assert wrong_comparisons(text, results) == [], (a, b, text)
        assert wrong_comparisons(template_answer("segment_comparison", lang, results), results) == []


@pytest.mark.parametrize(
    ("answer", "borrowed"),
    [
        # From the bench (passed every other check): at-risk's treatment given to VIP and VIP's to at-risk.
        ("VIP와 이탈 위험 고객의 차이점을 볼 수 있습니다. VIP는 개인화 리마인드와 재구매 혜택으로 되찾는다. "
         "반면에 이탈 위험 고객들은 과도한 할인은 피한다.", ["at_risk", "vip"]),
        ("At-risk customers should get early access, gifts and premium lines.", ["vip"]),
        ("VIP customers buy often. They are best won back with personal reminders and replenishment offers.",
         ["at_risk"]),
        # Each segment with its own description, or words any description may use: nothing borrowed.
        ("VIP 세그먼트는 선공개·사은품·프리미엄 라인으로 관리하고 과도한 할인을 피합니다. 이탈 위험 세그먼트는 "
         "예전엔 자주 구매했지만 몇 달째 구매가 없는 이탈 위험 고객입니다.", []),
        ("Loyal customers bought recently; new customers bought recently too.", []),
    ],
)  # fmt: skip
def test_a_segment_given_another_segments_description_fails(answer: str, borrowed: list[str]) -> None:
    found = borrowed_descriptions(answer)
    assert [item.rsplit("(", 1)[1].split(":")[0] for item in found] == borrowed
