"""Whether a fan's message asks what the persona remembers about them ("Do you remember my name?",
"내 생일 기억나?", "What's my favourite song?"): such a turn gets a reminder to answer from the fan's
notes, as the fan's own facts (a small model otherwise repeats them as its own: "I'm Minji")."""

from __future__ import annotations

import re

_EN = re.compile(
    r"\b(?:remember|recall|forgot|forget|forgotten)\b"
    r"|\b(?:what|when|where|who|which)(?:'s|\s+is|\s+was|\s+are|\s+were)\s+my\b"
    r"|\bdo you (?:still )?know (?:my|what i|where i|when i|who i|which)\b"
    r"|\bwhat did i (?:say|tell|mention)\b|\bwho am i\b|\bmy name\?",
    re.IGNORECASE,
)
_KO = re.compile(
    r"기억|까먹|잊었|잊어버|잊지"
    r"|내가\s*(?:뭐|누구|어디|언제|무슨)\S*\s*(?:\S+\s*)?(?:했|라고|말했|얘기했)"
    r"|(?:^|\s)(?:내|제)\s+(?:\S+\s+){0,2}\S*?(?:뭐|뭔지|무엇|언제|어디|누구)(?:였|야|지|게|더라|인지|예요|에요|일까)"
    r"|(?:나|저)\s*누군지|내\s*이름\s*(?:알아|알지|아니|알고)"
)


def asks_to_recall(message: str) -> bool:
    """Whether the message asks the persona to recall something the fan told about themselves."""
    return bool(_EN.search(message) or _KO.search(message))
