"""A first answer written from the gathered figures alone, in Korean or English, shown at once.

The model's narrative takes seconds to tens of seconds on a CPU; the figures are ready in well under
a second. So an answer starts with this text: one short paragraph per segment (or customer) with
its exact figures, copied from the tool results as they are (only formatted), so it passes the
same numeric check as a model's answer. It names only the segments the figures are about.

    text = template_answer("segment_profile", "ko", tool_results)
"""

from __future__ import annotations

from typing import Any

from personagraph.insight.segments import label

HEADER = {"en": "From the data (exact figures):", "ko": "데이터 기준 (정확한 수치):"}
NO_FIGURES = {"en": "No figures were found for this question.", "ko": "이 질문에 해당하는 수치가 없습니다."}


def _num(value: Any) -> str:
    """1234567 -> 1,234,567; 12.3 -> 12.3 (as the figure is: rounding happened in the stats)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{float(value):,}"


def _products(result: Any, lang: str, n: int = 3) -> str:
    rows = result.get("products", []) if isinstance(result, dict) else []
    key = "name_ko" if lang == "ko" else "name_en"
    return ", ".join(str(p.get(key) or p.get("sku")) for p in rows[:n])


def _main_channel(stats: dict[str, Any]) -> str:
    mix = stats.get("channel_mix_pct") or {}
    if not mix:
        return ""
    channel, share = max(mix.items(), key=lambda kv: kv[1])
    return f"{channel} {_num(share)}%"


def segment_line(stats: dict[str, Any], lang: str, products: str = "") -> str:
    """One segment's size, value, frequency, order value, recency, main channel and top products."""
    name = label(str(stats.get("segment", "")), lang)
    channel = _main_channel(stats)
    if lang == "ko":
        text = (
            f"**{name}**: {_num(stats['customers'])}명(전체 고객의 {_num(stats['share_of_customers_pct'])}%), "
            f"매출 비중 {_num(stats['share_of_revenue_pct'])}%, 1인당 평균 {_num(stats['avg_orders_per_customer'])}회 "
            f"주문, 평균 주문금액 {_num(stats['avg_order_value_krw'])}원, 마지막 주문 후 평균 "
            f"{_num(stats['avg_recency_days'])}일."
        )
        text += f" 주 채널: {channel}." if channel else ""
        return text + (f" 인기 상품: {products}." if products else "")
    text = (
        f"**{name}**: {_num(stats['customers'])} customers ({_num(stats['share_of_customers_pct'])}% of customers), "
        f"{_num(stats['share_of_revenue_pct'])}% of revenue; {_num(stats['avg_orders_per_customer'])} orders per "
        f"customer, average order {_num(stats['avg_order_value_krw'])} KRW; last order "
        f"{_num(stats['avg_recency_days'])} days ago on average."
    )
    text += f" Main channel: {channel}." if channel else ""
    return text + (f" Top products: {products}." if products else "")


def _trend_line(result: Any, lang: str) -> str:
    if not isinstance(result, dict) or "revenue_change_pct" not in result:
        return ""
    change, month = result["revenue_change_pct"], result["last_full_month"]
    sign = "+" if change > 0 else ""
    if lang == "ko":
        return f"{month} 매출은 전월 대비 {sign}{_num(change)}%."
    return f"Revenue in {month}: {sign}{_num(change)}% on the month before."


def _overview(result: dict[str, Any], lang: str) -> list[str]:
    head = (
        f"고객 {_num(result['customers'])}명, 총매출 {_num(result['revenue_krw'])}원."
        if lang == "ko"
        else f"{_num(result['customers'])} customers, {_num(result['revenue_krw'])} KRW revenue in all."
    )
    lines = [head]
    for s in result.get("segments", []):
        name = label(str(s["segment"]), lang)
        if lang == "ko":
            lines.append(f"- **{name}**: {_num(s['customers'])}명({_num(s['share_of_customers_pct'])}%), 매출 비중 "
                         f"{_num(s['share_of_revenue_pct'])}%, 1인당 {_num(s['avg_spend_per_customer_krw'])}원")  # fmt: skip
        else:
            lines.append(f"- **{name}**: {_num(s['customers'])} ({_num(s['share_of_customers_pct'])}%), "
                         f"{_num(s['share_of_revenue_pct'])}% of revenue, "
                         f"{_num(s['avg_spend_per_customer_krw'])} KRW per customer")  # fmt: skip
    return lines


# What a comparison sets side by side: (figure, English name, Korean name with its topic particle).
COMPARED = (
    ("avg_spend_per_customer_krw", "spend per customer", "1인당 구매액은"),
    ("avg_orders_per_customer", "orders per customer", "1인당 주문 횟수는"),
    ("avg_order_value_krw", "average order value", "평균 주문금액은"),
    ("customers", "", "고객 수는"),
)


def _amount(ratio: float) -> str:
    return f"{ratio:.2f}".rstrip("0").rstrip(".")


def _ratio_sentence(measure: tuple[str, str, str], big: str, small: str, ratio: float, lang: str) -> str:
    """One figure of two segments as a sentence whose subject is the larger one ("New 대비 Loyal 21.11배"
    was read backwards by the 1.5B model, "신규 고객은 충성 고객 대비 21.11배"): in times from 2 up, in
    percent below it ("0.05x" read as nothing); both are figures the numeric check derives."""
    key, en, ko = measure  # an entry of COMPARED
    percent = round((ratio - 1) * 100)
    if lang == "ko":
        more = "많습니다" if key in ("customers", "avg_orders_per_customer") else "높습니다"
        if ratio >= 2:
            return f"{big}의 {ko} {small}의 {_amount(ratio)}배입니다."
        if percent == 0:
            return f"{big}와 {small}의 {ko.removesuffix('은').removesuffix('는')} 비슷합니다."
        return f"{big}의 {ko} {small}보다 {percent}% {more}."
    if key == "customers":
        if ratio >= 2:
            return f"{big} has {_amount(ratio)} times as many customers as {small}."
        if percent == 0:
            return f"{big} and {small} have about as many customers."
        return f"{big} has {percent}% more customers than {small}."
    verb, more = ("are", "more") if key == "avg_orders_per_customer" else ("is", "higher")
    if ratio >= 2:
        return f"{big}'s {en} {verb} {_amount(ratio)} times {small}'s."
    if percent == 0:
        return f"{big} and {small} have about the same {en}."
    return f"{big}'s {en} {verb} {percent}% {more} than {small}'s."


def comparison_sentences(result: dict[str, Any], lang: str) -> list[str]:
    """The first two compared segments side by side in sentences, the larger one the subject, the
    other named after it: what the answer prompt shows instead of `first_vs_second` (whose key names
    the model copied into its prose, "an avg_orders_ratio of 3.37") and what the template answer
    says. Recency as each segment's own days since its last order, each after its segment's name."""
    rows = [r for r in result.get("segments") or [] if isinstance(r, dict)]
    if len(rows) < 2:
        return []
    a, b = rows[0], rows[1]
    name = {id(r): label(str(r.get("segment", "")), lang) for r in (a, b)}
    lines = []
    for measure in COMPARED:
        x, y = a.get(measure[0]), b.get(measure[0])
        if not isinstance(x, int | float) or not isinstance(y, int | float) or min(x, y) <= 0:
            continue
        big, small = (a, b) if x >= y else (b, a)
        lines.append(_ratio_sentence(measure, name[id(big)], name[id(small)], max(x, y) / min(x, y), lang))
    x, y = a.get("avg_recency_days"), b.get("avg_recency_days")
    if isinstance(x, int | float) and isinstance(y, int | float) and x != y:
        recent = name[id(a if x < y else b)]
        lines.append(
            f"마지막 주문 후 평균 경과일: {name[id(a)]} {_num(x)}일, {name[id(b)]} {_num(y)}일 (더 최근에 산 쪽: {recent})."
            if lang == "ko"
            else f"Days since the last order, on average: {name[id(a)]} customers {_num(x)}, {name[id(b)]} customers {_num(y)} "
            f"({recent} bought more recently)."
        )
    return lines


def _comparison(result: dict[str, Any], lang: str) -> list[str]:
    lines = [f"- {segment_line(s, lang)}" for s in result.get("segments", [])]
    return lines + comparison_sentences(result, lang)


def _customer(result: dict[str, Any], lang: str) -> str:
    cid = result.get("customer_id", "?")
    if result.get("error"):
        return f"{cid}: 찾을 수 없는 고객입니다." if lang == "ko" else f"{cid}: no such customer."
    name = label(str(result.get("segment", "")), lang)
    favourites = ", ".join(
        str(p["name_ko" if lang == "ko" else "name_en"]) for p in result.get("favourite_products", [])
    )
    if lang == "ko":
        text = (f"**{cid}** ({name}): 주문 {_num(result['orders'])}회, 누적 {_num(result['spend_krw'])}원, 마지막 주문 "
                f"{result['last_order_date']}({_num(result['recency_days'])}일 전).")  # fmt: skip
        return text + (f" 자주 산 상품: {favourites}." if favourites else "")
    text = (f"**{cid}** ({name}): {_num(result['orders'])} orders, {_num(result['spend_krw'])} KRW in all, last order "
            f"{result['last_order_date']} ({_num(result['recency_days'])} days ago).")  # fmt: skip
    return text + (f" Favourite products: {favourites}." if favourites else "")


def template_answer(intent: str, lang: str, tool_results: dict[str, Any]) -> str:
    """The figures of the tool results as a short answer ("" when there are none: refusals, questions
    back). Results that are errors (outside the scope) are left out."""
    lang = "ko" if lang == "ko" else "en"
    lines: list[str] = []
    for name, result in tool_results.items():
        if not isinstance(result, dict) or result.get("error") and not name.startswith("customer_lookup"):
            continue
        if name == "segment_overview":
            lines += _overview(result, lang)
        elif name == "compare_segments":
            lines += _comparison(result, lang)
        elif name.startswith("customer_lookup"):
            lines.append(_customer(result, lang))
        elif name.startswith("segment_stats["):
            segment = name[len("segment_stats[") : -1]
            line = segment_line(result, lang, _products(tool_results.get(f"top_products[{segment}]"), lang))
            trend = _trend_line(tool_results.get(f"trend[{segment}]"), lang)
            lines.append(f"{line} {trend}".strip())
    if not lines:
        return ""
    return HEADER[lang] + "\n\n" + "\n".join(lines)
