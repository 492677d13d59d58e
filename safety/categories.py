"""The input-safety categories that name harm to others or crime, and the persona's answer to them.

Kept apart from the classifier so the refusal path (nodes/safety.py) and the evals can name them
without loading scikit-learn.
"""

from __future__ import annotations

from typing import Literal, get_args

# Help with hurting people or breaking the law: threats and plans to hurt someone (violence),
# making or getting weapons and explosives (weapons), getting, making or selling illegal drugs
# (drugs), scams, fake tickets or goods and stolen payment data (fraud), and other crime such as
# stalking, hacking an account, theft, arson or vandalism (crime).
CRIME_CATEGORIES = ("violence", "weapons", "drugs", "fraud", "crime")
# Every category the input check can name (the classifier's labels, the judge's answers), "safe" first.
SafetyCategory = Literal[
    "safe", "profanity", "sexual", "hate", "self_harm", "personal_data", "jailbreak", "role_break",
    "violence", "weapons", "drugs", "fraud", "crime",
]  # fmt: skip
CATEGORIES: tuple[SafetyCategory, ...] = get_args(SafetyCategory)

# The refusal for these categories: a firm no, whatever the persona, and where to turn if someone
# is in danger. `{address}` is how the persona addresses the fan.
CRIME_REFUSAL = {
    "ko": "{address}, 누군가를 다치게 하거나 법을 어기는 일은 내가 도와줄 수 없어. "
    "혹시 지금 누군가 위험하다면 바로 112(경찰)나 119에 연락해 줘. 우리 다른 얘기 하자.",
    "en": "{address}, I can't help with anything that could hurt someone or break the law. "
    "If anyone is in danger right now, please contact the police or your local emergency number "
    "(112 in Korea, 911 in the US). Let's talk about something else.",
}
