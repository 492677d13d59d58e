"""Words for segments, customer ids and intents in Korean and English (pre-router, leakage check)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INTENTS = (
    "summary", "segment_profile", "strategy", "message_drafting", "customer_lookup", "segment_comparison",
    "out_of_scope",
)  # fmt: skip

SEGMENT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "vip": ("vip", "vips", "vvip", "브이아이피", "브이브이아이피", "최우수 고객", "최상위 고객", "우수 고객", "큰손", "top spenders",
            "big spenders", "best customers", "top customers", "high-value", "high value", "whales", "탑티어", "top tier",
            "top-tier", "최상위", "상위 고객", "헤비 구매", "power buyers", "heavy spenders", "highest spenders",
            "premium customers", "프리미엄 고객"),
    "loyal": ("loyal", "loyalists", "repeat customers", "repeat buyers", "충성 고객", "충성고객", "충성", "단골",
              "로열 ", "로열,", "로열고객", "로열이", "로열과", "로열하고", "찐팬", "단골손님", "재구매 고객", "재구매고객",
              "frequent buyers", "loyal fans"),  # 로열 but not 로열티 (loyalty)
    "new": ("new customer", "new customers", "new segment", "new buyers", "newcomers", "first-time buyers",
            "new and", "new or", "new vs", "new versus",
            "recently acquired", "new signups", "신규 고객", "신규고객", "신규", "첫 구매", "첫구매", "신규 가입",
            "first-timers", "first timers", "newbies", "뉴비", "막 가입한", "새로 가입한", "새로 온", "just signed up",
            "just joined"),
    "at_risk": ("at-risk", "at risk", "churn risk", "churn-risk", "risk of churn", "about to churn", "likely to churn",
                "churning", "이탈 위험", "이탈위험", "떠날 것 같은", "앳리스크", "앳 리스크", "이탈 가능", "이탈 우려", "이탈할", "이탈하려는", "떠나려는",
                "이탈각", "이탈 조짐", "이탈 직전", "이탈 징후", "slipping away", "drifting away", "lapsing", "on the verge of churning"),
    "dormant": ("dormant", "inactive", "lapsed", "도먼트", "sleeping customers", "휴면 고객", "휴면고객", "휴면", "잠든 고객",
                "잠자는 고객", "비활성", "잠수", "장기 미구매", "장기미구매", "발길 끊", "ghosted", "gone quiet", "gone cold",
                "long-lost"),
    "regular": ("regular customers", "regular segment", "regulars", "average customers", "mid-tier", "레귤러", "일반 고객", "일반고객",
                "보통 고객", "보통고객", "중간층", "middle tier", "mid tier", "steady customers", "steady buyers",
                "꾸준히 사는", "꾸준한 고객", "regular vs", "regular versus", "regular and", "regular or",
                "vs regular", "versus regular", "and regular", "or regular"),  # "loyal vs regular", as "new vs"
    "occasional": ("occasional", "infrequent", "sporadic", "오케이저널", "간헐 구매", "간헐", "가끔 사는", "가끔 구매",
                   "뜨내기", "어쩌다 사는", "어쩌다 한 번", "가끔 오는", "once in a while", "now and then", "비정기"),
}  # fmt: skip

CUSTOMER_ID = re.compile(r"(?<![A-Za-z0-9])([Cc]\d{5}|N[0-9a-f]{8}-\d{6})(?![A-Za-z0-9])")

_INTENT_WORDS: dict[str, tuple[str, ...]] = {
    "message_drafting": ("write", "draft", "message", "copy", "push notification", "sms", "e-mail", "email",
                         "subject line", "headline", "문구", "메시지", "카피", "작성", "써줘", "써 줘", "문자", "푸시",
                         "이메일", "알림톡"),
    "segment_comparison": ("compare", "comparison", " vs", "versus", "difference between", "differences", "differ",
                           "side by side", "비교", "차이", "달라", "다른 점", "다른점", "대비", "보다 더", "와 비교",
                           "과 비교"),
    "strategy": ("strategy", "strategies", "how should we", "how can we", "how do we", "what should we", "ideas",
                 "plan", "campaign", "win back", "win them back", "retain", "retention", "reactivate", "grow",
                 "increase", "upsell", "전략", "어떻게", "방안", "아이디어", "캠페인", "늘리", "높이", "되살리", "유지",
                 "재활성", "활성화", "잡으려면", "붙잡", "방법", "promotion", "promo", "recommend", "tactic", "action plan",
                 "what to do", "프로모션", "효과적", "추천", "대응", "해야"),
    "summary": ("overview", "summary", "summarize", "summarise", "all segments", "overall", "each segment",
                "every segment", "segment sizes", "segments do we have", "customer base", "요약", "전체", "개요",
                "현황", "각 세그먼트", "세그먼트별", "모든 세그먼트", "세그먼트 구성"),
    "segment_profile": ("like", "who are", "profile", "describe", "tell me about", "what do", "buy", "products",
                        "trend", "spend", "how many", "how often", "channel", "특징", "어떤", "누구", "프로필",
                        "알려줘", "사는", "구매", "상품", "제품", "추이", "트렌드", "얼마", "몇 명", "채널", "성향"),
}  # fmt: skip

DOMAIN_WORDS = (
    "customer", "segment", "sales", "revenue", "order", "buy", "purchase", "product", "campaign", "marketing",
    "churn", "retention", "message", "spend", "shopper", "client", "rfm", "basket",
    "고객", "세그먼트", "매출", "주문", "구매", "상품", "제품", "캠페인", "마케팅", "이탈", "메시지", "문구", "소비", "회원",
)  # fmt: skip


# Other companies and their customers: a question about them is not about our data ("올리브영 VIP는
# 뭘 사?"), though ours may be compared with them ("how do we stop VIPs drifting to competitors?").
OTHER_COMPANIES = (
    "competitor", "rival", "other brands", "other companies", "other retailers", "industry average",
    "amazon", "sephora", "ulta", "walmart", "costco", "shein", "temu", "aliexpress", "glossier", "zara", "uniqlo",
    "olive young", "coupang", "musinsa", "kurly", "starbucks", "nike", "adidas",
    "경쟁사", "경쟁 업체", "경쟁업체", "타사", "다른 회사", "다른 브랜드", "다른 쇼핑몰", "업계 평균", "올리브영", "쿠팡", "무신사",
    "컬리", "지그재그", "에이블리", "11번가", "지마켓", "g마켓", "옥션", "신세계", "롯데", "현대백화점", "이마트", "홈플러스", "다이소",
    "스타벅스", "세포라", "아마존", "알리익스프레스", "테무", "쉬인", "나이키", "아디다스", "시코르", "아모레", "이니스프리",
)  # fmt: skip


def _position(text: str, phrase: str) -> int | None:
    """Where a phrase first occurs; English phrases only as whole words ("new" not in "renew"), plural
    included ("regular segment" in "regular segments")."""
    if re.fullmatch(r"[ -~]+", phrase) and phrase[:1].isalnum():
        m = re.search(rf"(?<![A-Za-z]){re.escape(phrase)}(?:e?s)?(?![A-Za-z])", text)
        return m.start() if m else None
    i = text.find(phrase)
    return i if i >= 0 else None


def _has(text: str, phrase: str) -> bool:
    return _position(text, phrase.strip() if phrase.strip()[:1].isalnum() else phrase) is not None


def find_segments(text: str) -> list[str]:
    """Segment ids named in a text, in order of first mention."""
    lowered = text.lower()
    found: list[tuple[int, str]] = []
    for segment, words in SEGMENT_SYNONYMS.items():
        positions = [p for w in words if (p := _position(lowered, w)) is not None]
        if positions:
            found.append((min(positions), segment))
    return [s for _, s in sorted(found)]


def find_customers(text: str) -> list[str]:
    out: list[str] = []
    for m in CUSTOMER_ID.finditer(text):
        cid = m.group(1)
        cid = cid.upper() if cid[0] in "cC" else cid
        if cid not in out:
            out.append(cid)
    return out


@dataclass
class KeywordGuess:
    intent: str
    confident: bool
    segments: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    boundary: str | None = None  # "customers close to / about to become <segment>" (issue 21)


# Boundary customers (issue 21): "VIP에 가까운 충성 고객", "customers about to become at-risk". A Korean
# cue follows the segment it points to ("VIP에 가까운"), an English one precedes it ("close to VIP").
BOUNDARY_CUES_AFTER = (
    "에 가까운", "에 근접한", "에 가까워지는", "에 가까워진", "이 될 것 같은", "가 될 것 같은", "이 되기 직전", "가 되기 직전",
    "로 넘어가기 직전", "으로 넘어가기 직전", "로 넘어갈", "으로 넘어갈", "로 넘어가려는", "으로 넘어가려는", "이 될 수 있는",
    "가 될 수 있는", "이 될 만한", "가 될 만한", "이 될락 말락", "가 될락 말락", "경계에 있는", "경계에 걸친", "경계선",
    "문턱", "승격 직전", "승급 직전", "으로 빠지기 직전", "로 빠지기 직전", "이 되려는", "가 되려는", "으로 전환될", "로 전환될", "이 될 ", "가 될 ",
)  # fmt: skip
BOUNDARY_CUES_BEFORE = (
    "close to", "closest to", "near", "nearly", "almost", "about to become", "about to turn", "about to slip into",
    "on the verge of becoming", "on the edge of", "on the brink of becoming", "on the cusp of", "could become",
    "likely to become", "borderline", "tipping into", "edging toward", "edging towards", "bordering on",
    "one step from", "one step away from", "sliding into", "slipping into", "at risk of becoming", "verging on",
)  # fmt: skip
# What may stand between a segment word and a Korean cue: "이탈 위험군이 될" has 군 in between.
_KO_GAP = re.compile(r"^(?:\s*(?:고객|고객군|군|세그먼트|층|그룹|등급))?\s*$")


def _segment_mentions(lowered: str) -> list[tuple[int, int, str]]:
    """(start, end, segment) of every segment word in a lowered text."""
    out = []
    for segment, words in SEGMENT_SYNONYMS.items():
        for w in words:
            phrase = w.strip() if w.strip()[:1].isalnum() else w
            if re.fullmatch(r"[ -~]+", phrase) and phrase[:1].isalnum():
                pattern = rf"(?<![A-Za-z]){re.escape(phrase)}(?:e?s)?(?![A-Za-z])"
            else:
                pattern = re.escape(phrase)
            out += [(m.start(), m.end(), segment) for m in re.finditer(pattern, lowered)]
    return out


def find_boundary(text: str) -> str | None:
    """The segment a question's customers are close to ("VIP에 가까운 충성 고객" -> "vip", "customers about
    to become at-risk" -> "at_risk"), or None when it asks about no boundary."""
    lowered = text.lower()
    mentions = _segment_mentions(lowered)
    for cue in BOUNDARY_CUES_AFTER:
        for m in re.finditer(re.escape(cue), lowered):
            before = [
                (s, e, seg)
                for s, e, seg in mentions
                if e <= m.start() and _KO_GAP.match(lowered[e : m.start()])
            ]
            if before:
                return max(before)[2]
    for cue in BOUNDARY_CUES_BEFORE:
        for m in re.finditer(rf"(?<![a-z]){re.escape(cue)}(?![a-z])", lowered):
            after = [(s, e, seg) for s, e, seg in mentions if m.end() <= s <= m.end() + 12]
            if after:
                return min(after)[2]
    return None


def intent_cues(question: str) -> dict[str, bool]:
    """Which intents' cue words occur in a question."""
    text = question.lower()
    return {intent: any(_has(text, w) for w in words) for intent, words in _INTENT_WORDS.items()}


def names_other_company(question: str) -> bool:
    """Whether the question names another company, a competitor or an industry figure."""
    text = question.lower()
    return any(_has(text, w) for w in OTHER_COMPANIES)


def has_domain_words(question: str) -> bool:
    """Whether the question uses words of our data (customers, orders, ...), as prefixes."""
    text = question.lower()
    return any(re.search(rf"(?<![A-Za-z]){re.escape(w)}", text) for w in DOMAIN_WORDS)


def keyword_intent(question: str) -> KeywordGuess:
    """A deterministic guess of intent and named scope; `confident` when the cues are unambiguous.

    A boundary question ("loyal customers close to VIP") keeps its group's segments first and the
    segment they are close to last, as a profile (or strategy / message) of those customers."""
    segments, customers = find_segments(question), find_customers(question)
    domain = bool(segments or customers) or has_domain_words(question)
    toward = None if customers else find_boundary(question)
    if toward is not None:
        cues = intent_cues(question)
        intent = ("message_drafting" if cues["message_drafting"] else "strategy" if cues["strategy"]
                  else "segment_profile")  # fmt: skip
        scope = [s for s in segments if s != toward] + [toward]
        return KeywordGuess(intent, True, scope, [], boundary=toward)
    return guess_intent(segments, customers, intent_cues(question), domain)


def guess_intent(
    segments: list[str], customers: list[str], cues: dict[str, bool], domain: bool
) -> KeywordGuess:
    """`keyword_intent` from what the words found (the classifier's features reuse the same parts)."""
    if customers:
        return KeywordGuess("customer_lookup", True, segments, customers)
    if not domain:
        return KeywordGuess("out_of_scope", not any(cues.values()), segments, customers)
    if cues["message_drafting"] and segments:
        return KeywordGuess("message_drafting", True, segments, customers)
    if len(segments) >= 2 and (cues["segment_comparison"] or not cues["strategy"]):
        return KeywordGuess("segment_comparison", True, segments, customers)
    if cues["segment_comparison"] and segments:
        return KeywordGuess("segment_comparison", False, segments, customers)
    if cues["strategy"] and segments:
        return KeywordGuess("strategy", len(segments) == 1, segments, customers)
    if cues["summary"] and not segments:
        return KeywordGuess("summary", True, segments, customers)
    if segments:
        return KeywordGuess("segment_profile", len(segments) == 1, segments, customers)
    if cues["message_drafting"]:
        return KeywordGuess("message_drafting", False, segments, customers)
    if cues["strategy"]:
        return KeywordGuess("strategy", False, segments, customers)
    return KeywordGuess("summary", False, segments, customers)


# Stricter phrases for finding which segments an answer talks about (leakage check): plain words
# such as "loyal" or "new" are common in answers about any segment, so they need a noun after them.
ANSWER_MENTIONS: dict[str, tuple[str, ...]] = {
    "vip": ("vip", "vips", "브이아이피"),
    "loyal": ("loyal customers", "loyal segment", "loyal group", "loyal buyers", "충성 고객", "충성고객"),
    "new": ("new customers", "new segment", "new customer segment", "new buyers", "신규 고객", "신규고객"),
    "at_risk": ("at-risk", "at risk customers", "at risk segment", "이탈 위험", "이탈위험"),
    "dormant": ("dormant", "휴면 고객", "휴면고객", "휴면 세그먼트"),
    "regular": ("regular customers", "regular segment", "일반 고객", "일반고객"),
    "occasional": ("occasional customers", "occasional segment", "간헐 구매"),
}


def mentioned_segments(text: str) -> list[str]:
    """Segments an answer mentions by name (see ANSWER_MENTIONS)."""
    lowered = text.lower()
    return [
        s for s, words in ANSWER_MENTIONS.items() if any(_position(lowered, w) is not None for w in words)
    ]
