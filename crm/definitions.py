"""Personas (Who), AARRR stages (Why) and style templates (How) of a CRM message.

Channels (Where) and their limits are data: data/crm/channels.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    index: int
    name: str
    name_ko: str
    concerns: str  # Korean: what reviews should speak to (the review search query)
    sensitivities: str  # what the message must not do for this persona


@dataclass(frozen=True)
class Stage:
    index: int
    name: str
    name_ko: str
    objective: str
    target_state: str


@dataclass(frozen=True)
class Style:
    index: int
    name: str
    name_ko: str
    instruction: str


PERSONAS: tuple[Persona, ...] = (
    Persona(0, "Luxury Lover", "럭셔리 러버",
            "고급스러운 사용감, 향, 패키지, 선물, 프리미엄 원료, 비싸도 만족",
            "가격 할인만 앞세우지 말고 경험과 품격을 말한다"),
    Persona(1, "Sensitive Skin", "민감 피부",
            "민감한 피부, 자극 없이 순한, 진정, 붉어짐, 따가움 없음, 무향",
            "피부 질환을 단정하거나 치료를 약속하지 않는다"),
    Persona(2, "Budget Seeker", "알뜰 소비자",
            "가성비, 가격 대비 용량, 세일, 쟁여두기, 부담 없는 가격",
            "형편이나 소득을 언급하지 않는다"),
    Persona(3, "Trend Follower", "트렌드 팔로워",
            "요즘 유행, 신상, 발색, 사진에 예쁜, 인기, 친구 추천",
            "근거 없는 1위나 인기 순위를 말하지 않는다"),
    Persona(4, "Natural Beauty", "내추럴 뷰티",
            "자연 유래 성분, 식물, 순한 성분, 재활용 용기, 환경",
            "근거 없는 무첨가나 친환경 인증을 말하지 않는다"),
)  # fmt: skip

STAGES: tuple[Stage, ...] = (
    Stage(0, "Acquisition", "획득", "Introduce the brand and product to someone who does not know it yet.",
          "The customer visits the product page for the first time."),
    Stage(1, "Activation", "활성화", "Help a new customer get a good first experience with the product.",
          "The customer makes a first purchase or completes a first use."),
    Stage(2, "Retention", "유지", "Bring an existing customer back to keep using the product.",
          "The customer repurchases or keeps the routine going."),
    Stage(3, "Revenue", "수익", "Encourage a higher-value purchase (a full size, a set, an add-on).",
          "The customer buys more or a higher-value option."),
    Stage(4, "Referral", "추천", "Invite a satisfied customer to recommend the product to friends.",
          "The customer shares the product or invites a friend."),
)  # fmt: skip

STYLES: tuple[Style, ...] = (
    Style(0, "Informative", "정보형",
          "Lead with what the product is and its key facts (ingredients, volume, price); clear and calm."),
    Style(1, "Emotional story", "감성 스토리",
          "Open with a small everyday moment the customer recognises, then bring in the product."),
    Style(2, "Benefit first", "혜택 강조",
          "Put the single most relevant benefit (or the event's offer) in the first sentence."),
    Style(3, "Question hook", "질문형",
          "Open with a short question about the customer's concern, then answer it with the product."),
    Style(4, "Social proof", "후기 활용",
          "Quote or paraphrase what reviewers said (only what the reviews say), then invite to try."),
    Style(5, "Limited time", "기간 한정",
          "Stress the event's dates or terms when there is an event; without one, a gentle reminder."),
)  # fmt: skip

PERSONA_BY_NAME = {p.name.lower(): p for p in PERSONAS} | {p.name_ko: p for p in PERSONAS}
STAGE_BY_NAME = {s.name.lower(): s for s in STAGES} | {s.name_ko: s for s in STAGES}
STYLE_BY_NAME = {s.name.lower(): s for s in STYLES} | {s.name_ko: s for s in STYLES}

# Hooks: how a variant opens, within the asked style (`--variants K` drafts K of them, in this order).
HOOKS: tuple[Style, ...] = (
    Style(0, "As asked", "기본", "Open as the style asks."),
    Style(1, "Question", "질문", "Open with a short question to the reader, then answer it."),
    Style(2, "Key fact", "핵심 정보", "Open with the single most concrete fact (the product, its key ingredient or the offer)."),
    Style(3, "Moment", "장면", "Open with a short everyday moment, then bring in the product."),
    Style(4, "Invitation", "초대", "Open by inviting the reader, warmly and directly, to try the product."),
)  # fmt: skip
