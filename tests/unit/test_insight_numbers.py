"""The numeric check reads figures in many formats and catches made-up ones."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.insight.numbers import check_numbers, parse_numbers

RESULTS = {
    "segment_stats[vip]": {
        "customers": 1234, "share_of_revenue_pct": 37.46, "avg_order_value_krw": 352300,
        "avg_recency_days": 8.2, "revenue_krw": 1_520_000_000,
    },
    "trend[vip]": {"months": [{"month": "2026-03", "orders": 410}], "revenue_change_pct": -12.3},
}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "value", "percent"),
    [("1,234", 1234, False), ("1.2k", 1200, False), ("12.3%", 12.3, True), ("35만원", 350000, False),
     ("3.5만 원", 35000, False), ("₩1.52M", 1_520_000, False), ("15억", 1.5e9, False), ("45일", 45, False)],
)  # fmt: skip
def test_parse_formats(text: str, value: float, percent: bool) -> None:
    (number,) = parse_numbers(f"about {text} here")
    assert number.value == pytest.approx(value)
    assert number.percent is percent


def test_identifiers_and_dates_are_not_numbers() -> None:
    assert parse_numbers("customer C00012 uses SPF50 sunscreen; see 2026-03") == []


@pytest.mark.parametrize(
    "answer",
    [
        "VIP has 1,234 customers and 37.5% of revenue.",
        "VIP는 약 1,200명이며 매출의 37%를 차지합니다.",
        "Average order value is ₩352,300 (about 35만원), last order 8.2 days ago.",
        "Revenue fell 12.3% in 2026-03 to 410 orders; total revenue 15.2억원.",
        "3 ideas: 1. gifts 2. early access",
        "Each order is about KRW352,300.",
    ],
)
def test_supported_answers_pass(answer: str) -> None:
    check = check_numbers(answer, RESULTS)
    assert check.ok, check.unsupported


@pytest.mark.parametrize(
    ("answer", "bad"),
    [
        ("VIP has 1,234 customers and 42.7% of revenue.", "42.7%"),
        ("VIP customers spend 58만원 per order.", "58만원"),
        ("VIP has 1,000 customers.", "1,000"),  # rounding further than 5% is not a match
        ("Orders rose in 2026-05.", "2026-05"),
        ("1,234 customers is 1234% of plan.", "1234%"),  # a count is not a percentage
    ],
)
def test_made_up_figure_is_caught(answer: str, bad: str) -> None:
    check = check_numbers(answer, RESULTS)
    assert not check.ok
    assert bad in check.unsupported


def test_numbers_from_the_question_are_allowed() -> None:
    assert check_numbers("Here are the top 25 products.", RESULTS, question="show the top 25 products").ok
    assert not check_numbers("Here are the top 25 products.", RESULTS, question="show the top products").ok


OVERVIEW = {"segment_overview": {"customers": 1411, "segments": [
    {"segment": "vip", "customers": 237, "share_of_customers_pct": 4.7, "share_of_revenue_pct": 35.3},
    {"segment": "loyal", "customers": 637, "share_of_customers_pct": 12.7, "share_of_revenue_pct": 19.6},
    {"segment": "new", "customers": 537, "share_of_customers_pct": 10.7, "share_of_revenue_pct": 1.5},
]}}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        # Seen in the insight bench: every number exists, two belong to other segments.
        ("VIP (537 customers) and Loyal (637 customers) are the largest.", ["537 (not a figure of vip)"]),
        (
            "신규 고객은 637명, 충성 고객은 537명입니다.",
            ["637 (not a figure of new)", "537 (not a figure of loyal)"],
        ),
        ("- **VIP**: 237 (4.7%)\n- **Loyal**: 637 (12.7%)\n- **New**: 537 (10.7%)", []),
        # Seen in the insight bench: a heading line owns the list under it, until a blank line.
        (
            "신규 고객과 충성 고객을 비교해보자.\n\n**New Segment:**\n- Customers: 637명 (12.7%)",
            ["637 (not a figure of new)", "12.7% (not a figure of new)"],
        ),
        ("VIP:\n- Customers: 237\n- Share: 4.7%\n\nLoyal:\n- Customers: 637\n\n- 537 new customers", []),
        # A total after a segment's name is a figure of no segment: fine anywhere.
        ("VIP customers are 237 of 1,411 customers, 35.3% of revenue; new customers only 1.5%.", []),
    ],
)
def test_a_number_belongs_to_the_segment_it_follows(answer: str, wrong: list[str]) -> None:
    assert check_numbers(answer, OVERVIEW).unsupported == wrong


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        # Seen in the insight bench: 12.7% is the loyal segment's share of customers.
        ("Loyal customers have an average spend of about 12.7% of their revenue.",
         ["12.7% (not a share of revenue)"]),
        ("Loyal customers are 12.7% of customers and bring 19.6% of total revenue.", []),
        ("Loyal customers are 19.6% of customers.", ["19.6% (not a share of customers)"]),
        ("충성 고객은 전체 고객의 12.7%이며 매출의 19.6%를 차지합니다.", []),
        ("충성 고객의 매출 비중은 12.7%입니다.", ["12.7% (not a share of 매출)"]),
        ("충성 고객 비중 12.7%, 매출 비중 19.6%.", []),
        # A measure inside the owner's span still needs the owner's figure.
        ("New customers bring 35.3% of revenue.", ["35.3% (not a figure of new)"]),
        # No measure named: any percentage figure of the segment, as before.
        ("- **Loyal**: 637 (12.7%), 19.6%", []),
    ],
)  # fmt: skip
def test_a_share_is_a_share_of_what_it_says(answer: str, wrong: list[str]) -> None:
    assert check_numbers(answer, OVERVIEW).unsupported == wrong


@pytest.mark.parametrize(
    ("answer", "ok"),
    [("Revenue fell 12.3% last month.", True), ("매출은 -12.3% 감소했습니다.", True),
     ("VIP revenue is 37.5% of sales.", True), ("VIP customers are 37.5% of orders.", False)],
)  # fmt: skip
def test_changes_and_sales_shares_match_their_measures(answer: str, ok: bool) -> None:
    assert check_numbers(answer, RESULTS).ok is ok


def test_a_list_marker_is_not_a_checked_sentence() -> None:
    """Seen in the insight bench: "1." alone was kept as the checked part of an answer whose first
    list item gave the loyal segment's count to new customers."""
    from personagraph.nodes.insight import checked_prefix

    answer = "신규 고객과 충성 고객을 비교해보자.\n\n1. **New Segment:**\n- Customers: 637명 (12.7%)"
    assert checked_prefix(answer, OVERVIEW, "신규 고객과 충성 고객을 비교해줘", ["new", "loyal"]) == (
        "신규 고객과 충성 고객을 비교해보자."
    )
    total = "There are 1,411 customers in all.\n2. New customers are 537."
    assert checked_prefix(total, OVERVIEW, "", ["new"]) == total


@pytest.mark.parametrize(
    ("answer", "bad"),
    [
        # A currency code against the number hid it from the check (a letter before a number marked
        # an identifier): the bench showed "KRW30,974,03" unchecked.
        ("Each order is about KRW999,000.", "KRW999,000"),
        # Digits grouped other than by thousands read as a wrong figure, even when the digits are right.
        ("Each order is about KRW35,23,00.", "KRW35,23,00 (digits grouped wrongly)"),
        ("VIP has 12,34 customers.", "12,34 (digits grouped wrongly)"),
    ],
)
def test_a_number_written_against_a_currency_or_grouped_wrongly_is_checked(answer: str, bad: str) -> None:
    check = check_numbers(answer, RESULTS)
    assert bad in check.unsupported, check


COMPARISON: dict[str, Any] = {
    "compare_segments": {
        "segments": [
            {"segment": "vip", "customers": 500, "avg_spend_per_customer_krw": 300000, "avg_recency_days": 20.0,
             "share_of_revenue_pct": 40.0},
            {"segment": "at_risk", "customers": 800, "avg_spend_per_customer_krw": 100000, "avg_recency_days": 95.5,
             "share_of_revenue_pct": 10.0},
        ],
        "first_vs_second": {"avg_spend_ratio": 3.0, "recency_difference_days": -75.5},
    }
}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        ("VIP customers spend 200% more than at-risk customers, who spend 67% less.", []),
        ("이탈 위험 고객의 1인당 지출은 VIP 고객의 0.33배입니다.", []),
        ("이탈 위험 고객은 VIP 고객보다 평균 75.5일 더 오래 주문하지 않았습니다.", []),
        ("VIP customers spend 200,000 won more per customer than at-risk customers.", []),
        ("VIP 고객의 평균 지출은 이탈 위험 고객의 3.5배입니다.", ["3.5"]),  # computed wrongly
        ("VIP customers spend 150% more than at-risk customers.", ["150%"]),
    ],
)
def test_a_comparison_may_compute_ratios_and_differences_but_not_wrongly(
    answer: str, wrong: list[str]
) -> None:
    """The bench's VIP / at-risk answers computed ratios; the check knew only the tool's own ratios."""
    assert check_numbers(answer, COMPARISON).unsupported == wrong


def test_computed_figures_are_only_those_of_a_comparison() -> None:
    two_results = {"segment_stats[vip]": COMPARISON["compare_segments"]["segments"][0],
                   "segment_stats[at_risk]": COMPARISON["compare_segments"]["segments"][1]}  # fmt: skip
    assert check_numbers(
        "VIP customers spend 200% more than at-risk customers.", two_results
    ).unsupported == ["200%"]


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        # From the bench: VIP's revenue share written after "than at-risk ones" is still VIP's.
        ("VIP customers spend more than at-risk ones and have a higher share of the revenue (40%).", []),
        ("VIP 고객은 이탈 위험 고객보다 매출 비중이 40%로 높습니다.", []),
        ("VIP customers spend more compared with at-risk customers, with 500 customers.", []),
        # Named as a subject, at-risk takes the figures after it as before.
        (
            "VIP customers lead, and at-risk customers hold 40% of revenue.",
            ["40% (not a figure of at_risk)"],
        ),
        ("VIP customers spend more than at-risk ones, with 800 customers.", ["800 (not a figure of vip)"]),
    ],
)
def test_the_standard_of_a_comparison_does_not_take_the_figures_after_it(
    answer: str, wrong: list[str]
) -> None:
    assert check_numbers(answer, COMPARISON).unsupported == wrong


NEW_AND_DORMANT = {"compare_segments": {"first_vs_second": {}, "segments": [
    {"segment": "new", "avg_recency_days": 22.0, "customers": 537},
    {"segment": "dormant", "avg_recency_days": 476.4, "customers": 1142},
]}}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        # From the bench: "They" is the new customers of the sentence before; 476.4 is dormant's.
        ("New customers spend more than dormant customers. They also have a longer recency (476.4 days).",
         ["476.4 (not a figure of new)"]),
        ("신규 고객은 자주 삽니다. 이들은 평균 476.4일 전에 샀습니다.", ["476.4 (not a figure of new)"]),
        ("New customers spend more.\nThey have 476.4 days.", ["476.4 (not a figure of new)"]),
        ("New customers spend more. They last ordered 22.0 days ago.", []),
        # Two segments before it: "They" is both, so no single owner.
        ("New and dormant customers differ. They have 476.4 and 22 days.", []),
        ("New customers spend more. Overall, 476.4 days pass for the other group.", []),
    ],
)  # fmt: skip
def test_a_pronoun_subject_is_the_segment_of_the_sentence_before(answer: str, wrong: list[str]) -> None:
    assert check_numbers(answer, NEW_AND_DORMANT).unsupported == wrong
