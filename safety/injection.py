"""Instruction-like text inside data: sentences of a card, a document, a review, a profile or a note
that speak to the model (override its rules, give it a new role, ask for its prompt, dictate what
it must say) rather than state facts.

Untrusted text reaches prompts only as data (prompts/untrusted.py fences it); this detector is the
second line: every sentence it flags is replaced by `REMOVED_MARKER` before the data enters a prompt.

The rules are written for the general case, in English and Korean. What makes a sentence an
instruction to the model is its *address*, not its topic: an imperative or a second-person modal
("say ...", "you must reply ...", "지금부터 너는 ...", "...라고 말해라") aimed at the model's output,
rules or identity, or words that only make sense to a model ("system prompt", "previous
instructions", "developer mode"). Descriptions of a third person ("Yuna always says 'never give
up'"), product directions ("use twice daily", "ignore the smell, it works") and profiles ("follows
instructions at work carefully") are facts and pass unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

REMOVED_MARKER = "[removed: instruction-like text]"

# Invisible characters that can hide or split words: zero-width, bidi controls, Unicode tag letters.
_INVISIBLE = re.compile(
    r"[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "`": "'", "「": '"', "」": '"',
                         "『": '"', "』": '"', "《": '"', "》": '"'})  # fmt: skip
_SPACED_LETTERS = re.compile(r"(?<!\S)\w(?: \w){3,}(?!\S)")  # "i g n o r e" -> "ignore"
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normal_forms(text: str) -> tuple[str, str]:
    """(spaced, compact): lower-case NFKC text with one space between words, and the same without
    any space or punctuation (Korean rules read the compact form, where spacing does not matter)."""
    text = unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).translate(_QUOTES).lower()
    spaced = re.sub(r"\s+", " ", text).strip()
    spaced = _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), spaced)
    return spaced, _NON_WORD.sub("", spaced)


# --- English (spaced form) -----------------------------------------------------------------------

# Nouns that name a model's instructions in any context.
_STRONG_NOUN = (
    r"(?:instructions?|directives?|prompts?|system prompt|system message|guidelines|guardrails"
    r"|programming|safety rules|content polic(?:y|ies))"
)
# Nouns that name a model's instructions only with a qualifier that points at the prompt.
_WEAK_NOUN = (
    r"(?:rules|commands?|orders|constraints|restrictions|context|messages?|conversation|settings|text|limits)"
)
_PROMPT_QUAL = (
    r"(?:previous|prior|preceding|earlier|above|foregoing|original|initial|old|existing|system|default"
    r"|hidden|secret|your|all (?:the |your |of your |previous |prior )?|any (?:of your |previous |prior )?"
    r"|every|these|those)"
)
_OVERRIDE_VERB = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|circumvent|abandon|discard|set aside|throw out"
    r"|throw away|erase|pay no attention to|stop following|no longer follow|never mind|nevermind|deviate from)"
)
# Verbs that override only with a qualifier pointing at the prompt ("delete your instructions").
_WEAK_VERB = (
    rf"(?:{_OVERRIDE_VERB}|skip|cancel|drop|delete|reset|clear|replace|break|do not follow|don't follow)"
)
# An imperative opening a sentence may follow these (bullets, "please", "now", "also", ...).
_LEAD = (
    r"^(?:[-*•>#\"'(]\s*|\d{1,2}[.)]\s*|\s+)*(?:(?:please|pls|kindly|now|also|and|then|so|ok|okay|just|instead|finally"
    r"|important|note|notice|attention|reminder|remember|p\.?s\.?|always|never|only|from now on"
    r"|going forward|in addition|additionally|after that|next|first|lastly)[,:!.]?\s+)*"
)
_HARD_VERB = r"(?:pretend|roleplay|role-play|impersonate|obey|comply)"
_SOFT_VERB = (
    r"(?:say|tell|reply|respond|answer|output|print|write|type|repeat|include|mention|state|claim|announce"
    r"|declare|insert|append|add|use|switch|speak|talk|call|address|refer|end|start|begin|sign|reveal"
    r"|disclose|leak|share|show|display|list|describe|report|recommend|promote|advertise|translate)"
)
_QUOTED = r"""(?:"[^"\n]{1,120}"|'[^'\n]{2,120}'(?!\w))"""
_TARGET = (
    r"(?:(?:the |every |each |all |any |our )?(?:users?|fans?|customers?|readers?|marketers?|visitors?"
    r"|clients?|shoppers?|buyers?|respondents?|interviewers?)|everyone|everybody|anyone|them)"
)
_OUTPUT = (
    r"(?:repl(?:y|ies)|respons(?:e|es)|answers?|messages?|outputs?|chats?|conversations?|prompts?"
    r"|instructions|rules|sentences?|copy|headlines?|texts?)"
)
_LANGUAGE = (
    r"(?:in (?:english|korean|japanese|chinese|spanish|french|german|all caps|uppercase|capital letters))"
)
# What makes a soft verb an instruction to the model: a quoted line, a "that" clause, an audience,
# the model's output, a language, or the model itself.
_DATA_SCOPE = r"(?:segments?|figures|statistics|stats|revenue|sales numbers)"
_QUALIFIER = (
    rf"(?:{_QUOTED}|\bthat\b|\b{_TARGET}\b|\b{_OUTPUT}\b|\b{_LANGUAGE}\b|\byourself\b|\byou(?:'re| are)\b"
    rf"|\b{_DATA_SCOPE}\b)"
)
_MODAL = (
    r"(?:\byou(?:'ll| will| must| should| shall| have to| need to| are to| are required to| are instructed to"
    r"| are ordered to| are supposed to| may only| can only| are going to| are expected to| may| can"
    r"| are allowed to| are permitted to| are free to)|\bfeel free to"
    r"|\bi (?:want|need|command|order|instruct|require|demand|expect|ask) you to"
    r"|\b(?:make sure|be sure|remember|don't forget|do not forget) (?:to|you)"
    r"|\bit is (?:essential|important|mandatory|required|crucial) (?:that you|to))"
)
_MODEL = (
    r"(?:ai|a\.i\.|assistant|model|llm|chatbot|bot|language model|gpt|chatgpt|claude|gemini|copilot"
    r"|copywriter|analyst|agent|system)"
)

_EN_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "override",
        re.compile(rf"\b{_OVERRIDE_VERB}\b(?: \w+){{0,2}}? (?:{_PROMPT_QUAL} ?)*(?:\w+ )?{_STRONG_NOUN}\b"),
    ),
    (
        "override",
        re.compile(
            rf"\b{_WEAK_VERB}\b(?: \w+){{0,2}}? {_PROMPT_QUAL} ?(?:\w+ )?(?:{_WEAK_NOUN}|{_STRONG_NOUN})\b"
        ),
    ),
    (
        "override",
        re.compile(
            rf"\b{_OVERRIDE_VERB} (?:everything|anything|all|what(?:ever)?)(?: (?:that|you|were|was|have|has|been"
            r"|is|are|told|said|written|given|stated|mentioned))* (?:above|before|earlier|previously|so far"
            r"|until now|prior to this|you were told|you have been told|in your prompt)\b"
        ),
    ),  # fmt: skip
    (
        "new_rules",
        re.compile(
            r"(?:^|\b(?:your|these are your|here (?:are|is) (?:your|the)|the following (?:are|is)(?: your)?) )"
            r"(?:new|updated|real|actual|true|revised|additional|secret|hidden|overriding|override|latest) "
            rf"(?:{_STRONG_NOUN}|{_WEAK_NOUN}|task|tasks|role|identity|objective|mission|goal|job)\b"
            r"(?: (?:is|are|follow|:)|\s*:|$)"
        ),
    ),  # fmt: skip
    (
        "new_rules",
        re.compile(
            r"\b(?:new|updated|real|actual|secret|hidden) (?:instructions|system prompt|directives|guidelines)\b"
        ),
    ),
    (
        "model_words",
        re.compile(
            r"\b(?:system prompt|system message|initial prompt|hidden prompt|original prompt|pre-?prompt|prompt injection"
            r"|developer mode|dev mode|dan mode|god mode|debug mode|admin mode|jailbreak\w*|do anything now"
            r"|unfiltered mode|no restrictions mode|(?:previous|prior|above|original|earlier) instructions)\b"
        ),
    ),  # fmt: skip
    (
        "reveal_prompt",
        re.compile(
            r"\b(?:reveal|print|output|repeat|show|display|leak|dump|recite|disclose|tell|give|share|send|write out"
            r"|spell out|list|copy|paste|echo|translate|summari[sz]e|quote|expose)\b(?: me| us| the user| everyone)?"
            r"(?: \w+){0,3}? (?:your|the (?:system|hidden|secret|initial|original|safety|above|previous|full|exact"
            r"|complete|entire)) (?:\w+ )?(?:instructions|prompt|directives|guidelines|configuration|config|rules"
            r"|context|settings|memory|memories)\b"
        ),
    ),  # fmt: skip
    (
        "reveal_prompt",
        re.compile(
            r"\b(?:everything|all|the text|the words|whatever|what(?:ever)? (?:is|was)) (?:written |said |stated )?"
            r"(?:above|before this|in your (?:prompt|instructions|context|memory|system))\b.{0,40}\b(?:repeat|print"
            r"|output|reveal|show|copy|tell|say)\b|\b(?:repeat|print|output|reveal|show|copy) (?:everything|all"
            r"|the text|the words|whatever) (?:written |said )?(?:above|before this|verbatim)"
        ),
    ),  # fmt: skip
    (
        "other_users",
        re.compile(
            r"\b(?:other|another|previous|all|every|different) (?:fans?|users?|customers?|members?|accounts?"
            r"|respondents?|people|persons?|segments?)(?:'s|'|s')? (?:private |personal |secret )?(?:messages|memor(?:y|ies)"
            r"|data|profiles?|conversations?|chats?|names|info(?:rmation)?|details|secrets|phone numbers|addresses"
            r"|e-?mails|history|notes|figures|numbers|stats|statistics|revenue)\b"
        ),
    ),  # fmt: skip
    (
        "identity",
        re.compile(
            r"\byou are (?:now|no longer)\b(?! (?:entering|reading|looking|watching|listening|at|in (?:the|a|an|my|our"
            r"|her|his|their|\w+'s) (?!\w+ mode)))"
        ),
    ),  # fmt: skip
    (
        "identity",
        re.compile(
            r"\bfrom (?:now|this (?:moment|point)|here) on\b,? (?:you|your|always|never|only|reply|respond|answer"
            r"|say|speak|act|call|end|start|begin|use|refer|address|write|talk|behave|ignore|pretend|forget|stop)\b"
        ),
    ),
    (
        "identity",
        re.compile(
            rf"(?:\b(?:pretend|imagine) (?:that )?you(?:'re| are)\b|{_MODAL} (?:now )?(?:pretend|act as|roleplay"
            r"|role-play|play the role|behave as|become|impersonate)\b|\byou(?:'re| are) (?:just |really |actually "
            r"|only |secretly )?(?:an? )?(?:ai|a\.i\.|bot|chatbot|language model|llm|computer program|program"
            r"|assistant|machine)\b)"
        ),
    ),  # fmt: skip
    (
        "identity",
        re.compile(
            r"\b(?:break (?:out of )?character|drop (?:the|your) (?:act|persona|character|role))\b"
            r"|\b(?:admit|confess|reveal|say|state|tell (?:them|the \w+|everyone)) (?:that )?you(?:'re| are) (?:an? )?"
            r"(?:ai|a\.i\.|bot|chatbot|language model|llm|program|machine|assistant)\b"
        ),
    ),  # fmt: skip
    (
        "identity",
        re.compile(
            rf"(?:{_LEAD}|{_MODAL} (?:now |also |just )*)stop (?:being|acting|pretending|playing|roleplaying|role-playing)\b"
            r"(?! (?:so|such|too|very|mean|silly|shy|lazy|late|rude)\b)"
        ),
    ),
    (
        "authority",
        re.compile(
            r"\b(?:(?:as|this is|message from|note from|speaking as) (?:the|your)|(?:i am|i'm) your) (?:developer|developers"
            r"|admin|administrator|system administrator|sysadmin|operator|system|creator|programmer|moderator"
            r"|owner of this (?:bot|ai|app|assistant|chatbot))\b"
        ),
    ),  # fmt: skip
    (
        "authority",
        re.compile(
            r"\b(?:system|admin|administrator|developer|operator|root) (?:override|notice|instructions?|command"
            r"|directive|prompt|message|mode|access|privileges?)\b|^(?:system|admin|developer|operator|assistant"
            r"|ai)\s*:"
        ),
    ),  # fmt: skip
    (
        "addressing_model",
        re.compile(
            r"\b(?:note|message|instructions?|reminder|attention|memo|p\.?s\.?|warning|important) (?:to|for) "
            rf"(?:the |any |all |you,? (?:the )?)?{_MODEL}s?\b"
        ),
    ),  # fmt: skip
    (
        "addressing_model",
        re.compile(
            rf"^(?:[-*•>\s]*)(?:hey|hi|hello|dear|attention|psst|ok|okay|listen|yo),? {_MODEL}\b"
            rf"|\b(?:if|when|whenever) you(?:'re| are) (?:an? |the )?{_MODEL}\b"
            rf"|\b(?:any|every|the|all) {_MODEL}s? (?:reading|processing|summari[sz]ing|seeing|parsing) this\b"
        ),
    ),
    (
        "conditional",
        re.compile(
            r"\b(?:when(?:ever)?|if|once|after) (?:you(?:'re| are)? |someone |anyone |somebody |a (?:fan|user|customer"
            r"|person|marketer|reader) |the (?:fan|user|customer|marketer|reader) |they )?(?:is |are )?(?:asked"
            r"|asks|ask|answering|responding|replying|summari[sz]ing|writing|generating|reading this|read this|see"
            r" this|process(?:ing)? this|talk(?:ing)? to)\b[^,;]{0,80}[,;] ?(?:please |then |always |just |only "
            rf"|you (?:must |should |will |have to |need to )?)?(?:{_SOFT_VERB}|{_HARD_VERB}|ignore|forget"
            r"|swear|curse|insult|refuse)\b"
        ),
    ),  # fmt: skip
    ("imperative", re.compile(rf"{_LEAD}(?:{_HARD_VERB})\b")),
    # (a verb followed by a colon is a field label: "start: 2024-02-17")
    (
        "imperative",
        re.compile(rf"{_LEAD}(?:do not |don't |never )?{_SOFT_VERB}\b(?![\"']?\s*:).{{0,100}}?{_QUALIFIER}"),
    ),
    (
        "modal",
        re.compile(
            rf"{_MODAL} (?:always |never |only |now |also |not |just )*(?:{_HARD_VERB}|reply|respond|answer"
            r"|output|print|reveal|disclose|ignore|disregard|forget|swear|curse|insult)\b"
        ),
    ),  # fmt: skip
    (
        "modal",
        re.compile(
            rf"{_MODAL} (?:always |never |only |now |also |not |just )*{_SOFT_VERB}\b.{{0,100}}?{_QUALIFIER}"
        ),
    ),
    (
        "output_slot",
        re.compile(
            rf"\b{_SOFT_VERB}\b.{{0,80}}\b(?:in|to|at the (?:end|start|beginning) of|into|with) (?:your|every|each"
            r"|all|any) (?:next |future |following )?(?:repl(?:y|ies)|respons(?:e|es)|answers?|outputs?)\b"
        ),
    ),
    (
        "output_slot",
        re.compile(
            r"\b(?:end|start|begin|finish|sign off|close|prefix|suffix|conclude)\w* (?:\w+ ){0,2}(?:every|each|all"
            r"|your|any) (?:\w+ )?(?:repl(?:y|ies)|respons(?:e|es)|answers?|outputs?)\b"
        ),
    ),  # fmt: skip
    (
        "swearing",
        re.compile(
            rf"(?:{_LEAD}|{_MODAL} (?:always |also |now )*)(?:swear|curse|cuss)(?: (?:at|in|every|when|more|a lot"
            r"|constantly|like|out|them|the))|\b(?:use|add|include|insert|with) (?:\w+ ){0,2}(?:profanity|profanities"
            r"|swear ?words|curse ?words|cuss ?words|bad words|vulgar \w+|obscenit(?:y|ies)|slurs|expletives)\b"
            r"|\binsult (?:the|every|each|all|them|him|her|users?|fans?|customers?)\b"
            r"|(?:^|\s)(?:욕|욕설|비속어|쌍욕|육두문자)(?:을|를|도)?\s?(?:섞어|넣어|사용해|써|해라|하라|하세요|해줘|퍼부어|하기)"
        ),
    ),  # fmt: skip
    (
        "instead",
        re.compile(
            r"\binstead\b,? (?:of \w+(?: \w+)?,? )?(?:you (?:must |should |will )?)?(?:answer|talk|write|describe"
            r"|report|focus|discuss|respond|reply|say|tell|output|print|give|show|list|use)\b"
        ),
    ),  # fmt: skip
]

# --- Korean (compact form: no spaces, no punctuation) -------------------------------------------------

_K_IMP = (
    r"(?:해라|하라|해줘|해주라|해주세요|해주십시오|하세요|하십시오|하시오|할것|해야해|해야한다|해야합니다|하도록해"
    r"|하도록하|해야돼|합시다|하자|해야함)"
)
_K_SAY = r"(?:말|답|대답|응답|출력|안내|전달|언급|포함|추가|명시|강조|홍보|소개|공개|복창|낭독|답변|작성|기재|표기)"
_K_WRITE = r"(?:써|적어|붙여|넣어|외쳐|밝혀|털어놔|알려|보여|말해)(?:라|줘|주라|주세요|주십시오)"
_K_SECOND = r"(?:너는|넌|너도|당신은|당신도|네가|니가|너의|네|당신의|너한테|당신에게|너에게)"
_K_TARGET = (
    r"(?:고객(?:님)?(?:들)?에게|사용자(?:들)?에게|유저(?:들)?에게|팬(?:들)?에게|모두에게|사람들에게|독자(?:들)?에게"
    r"|답변(?:에|마다|끝에|마지막에)|대답(?:에|마다|할때마다)|응답(?:에|마다)|메시지(?:에|마다)|문장(?:마다|끝에)"
    r"|모든(?:답변|대답|응답|메시지|문장)|매(?:답변|대답|응답|메시지))"
)
_K_PROMPT_NOUN = r"(?:지시|지시사항|지시문|명령|명령어|지침|프롬프트|가이드라인|시스템메시지|시스템메세지|설정|규칙|규정|내용|대화)"
_K_QUAL = (
    r"(?:이전|앞|위|기존|원래|모든|앞서|상기|지금까지|이제까지|위쪽|위에|앞에|이전에|기본|초기|원본|위의|앞의|이전의"
    r"|너의|네|당신의|받은|주어진|입력된|설정된)"
)
_K_IGNORE = r"(?:무시|잊어|잊고|잊으|삭제|취소|버려|버리|초기화|리셋|무효|따르지마|따르지말|따르지않)"

_KO_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "override",
        re.compile(
            rf"{_K_QUAL}(?:의|에서|에)?(?:받은|주어진|말한|나온|작성된|설정된|입력된)?(?:모든|전부)?"
            rf"{_K_PROMPT_NOUN}(?:들|사항)?(?:은|는|을|를|이|가|도)?(?:모두|전부|다|싹|완전히)?{_K_IGNORE}"
        ),
    ),
    (
        "override",
        re.compile(
            r"(?:지시|지시사항|지시문|명령어|지침|프롬프트|가이드라인|시스템메시지)(?:들)?(?:은|는|을|를)?"
            r"(?:모두|전부|다)?(?:무시|잊)(?:해|하고|하라|하세요|해라|해줘|하십시오|할것|어|고|으세요)"
        ),
    ),
    (
        "model_words",
        re.compile(
            r"시스템(?:프롬프트|메시지|메세지|지시|명령|설정값)|(?:초기|원본|숨겨진|숨은|내부|비밀|원래)(?:프롬프트|지시문?|지침|시스템)"
            r"|(?<!폰)(?<!휴대폰)(?<!안드로이드)(?<!크롬)(?<!설정)개발자모드|관리자모드|디버그모드|탈옥(?:모드|해|시켜|프롬프트)"
            r"|프롬프트인젝션|제한없는모드|무제한모드"
        ),
    ),  # fmt: skip
    (
        "reveal_prompt",
        re.compile(
            r"(?:프롬프트|지시사항|지시문|지침|(?:너의|네|당신의|숨겨진|시스템|초기|원래|받은|주어진|비밀|내부)(?:설정|규칙|명령어?))"
            r"(?:을|를|전체|전부|그대로)*(?:보여|알려|출력|공개|말해|적어|써|복사"
            r"|노출|유출|읊어|나열)"
        ),
    ),  # fmt: skip
    (
        "new_rules",
        re.compile(r"^(?:새로운|새|변경된|진짜|실제|추가)(?:규칙|지시|지시사항|지침|명령|임무|프롬프트)"),
    ),
    (
        "new_rules",
        re.compile(
            r"(?:새로운|새|변경된|진짜|실제|추가)(?:규칙|지시|지시사항|지침|명령|역할|임무|설정|프롬프트)(?:은|는|을|를)?(?:다음|아래|이렇|따르|:|$)"
        ),
    ),
    (
        "identity",
        re.compile(
            rf"(?:지금부터|이제부터|앞으로|오늘부터|이순간부터|이제|지금)(?:는)?{_K_SECOND}|{_K_SECOND}(?:이제|지금부터|이제부터|앞으로|더이상)"
        ),
    ),
    (
        "identity",
        re.compile(
            r"(?:역할|캐릭터|페르소나|설정)(?:을|를)?(?:바꿔|바꾸|변경|버려|버리고|버리라|벗어나|깨|그만|잊어)|연기(?:를)?그만|역할극(?:을)?그만"
            r"|(?:ai|인공지능|챗봇|언어모델|봇|프로그램|로봇|기계)(?:이라고|라고|임을|인걸|인것을|이란걸|이라는걸|이라는것을)(?:밝혀|인정"
            r"|고백|말해|털어놔|자백|알려)"
        ),
    ),  # fmt: skip
    (
        "imperative",
        re.compile(rf"(?:['\"].{{1,80}}['\"]|라고|이라고|다고|하고만)(?:만)?(?:{_K_SAY}{_K_IMP}|{_K_WRITE})"),
    ),
    ("imperative", re.compile(rf"{_K_TARGET}.{{0,60}}(?:{_K_SAY}{_K_IMP}|{_K_WRITE})")),
    ("imperative", re.compile(rf"^{_K_SECOND}.{{0,60}}(?:{_K_SAY}{_K_IMP}|{_K_WRITE})")),
    ("imperative", re.compile(r"(?:출력|복창|낭독)(?:해|하)(?:라|줘|주세요|주십시오|세요|십시오|시오)?$")),
    (
        "authority",
        re.compile(
            r"(?:개발자|관리자|운영자|시스템|어드민|제작자)(?:로서|으로서|의명령|의지시|명령|지시|권한|공지|메시지|메세지|오버라이드)"
        ),
    ),
    (
        "addressing_model",
        re.compile(
            r"(?:이글을읽는|이문서를읽는|이걸읽는|이것을읽는|이를읽는)(?:ai|인공지능|챗봇|어시스턴트|언어모델|gpt|챗gpt|모델|봇)"
            r"|^(?:ai|인공지능|챗봇|어시스턴트|언어모델|gpt|챗gpt|모델|봇)(?:에게|님|야|씨|는|가)?(?:주의|참고|알림|명령|지시|전달|중요)"
        ),
    ),
    (
        "other_users",
        re.compile(
            r"(?:다른|모든|이전|타)(?:팬|사용자|유저|고객|회원|사람|응답자|세그먼트|고객군|그룹)(?:들)?(?:의|이|가)?(?:대화|메시지|기억|정보"
            r"|개인정보|프로필|이름|전화번호|주소|비밀|데이터|수치|통계|매출)(?:도|까지|를|을)?(?:알려|보여|말해|출력|공개|공유|포함|언급"
            r"|비교|적어)"
        ),
    ),  # fmt: skip
    ("other_scope", re.compile(rf"(?:세그먼트|고객군).{{0,30}}(?:{_K_SAY}(?:{_K_IMP}|해$)|{_K_WRITE})")),
    (
        "conditional",
        re.compile(
            rf"(?:물어보면|물으면|질문하면|질문을받으면|물어볼때|답할때|대답할때|답변할때|응답할때|요약할때|작성할때|이글을읽으면)"
            rf".{{0,60}}(?:{_K_SAY}{_K_IMP}|{_K_WRITE}|무시해|무시하라)"
        ),
    ),  # fmt: skip
]

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)]|[a-z][.)])\s+", re.IGNORECASE)


@dataclass(frozen=True)
class InjectionHit:
    """A sentence of the data that reads as an instruction to the model, and the rule that said so."""

    rule: str
    sentence: str


def sentence_rules(sentence: str) -> list[str]:
    """Names of the rules that flag one sentence (empty: it reads as data)."""
    spaced, compact = normal_forms(sentence)
    if not spaced:
        return []
    found = [name for name, pattern in _EN_RULES if pattern.search(spaced)]
    found += [name for name, pattern in _KO_RULES if pattern.search(compact)]
    return list(dict.fromkeys(found))


def _segments(text: str) -> list[str]:
    """The text cut after sentence ends and at line breaks, separators kept: "".join(...) == text."""
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [p for p in parts if p]


def find_instructions(text: str) -> list[InjectionHit]:
    """Every sentence of the text that reads as an instruction to the model."""
    return [
        InjectionHit(rule=rules[0], sentence=segment.strip())
        for segment in _segments(text)
        if (rules := sentence_rules(segment))
    ]


def is_instruction_like(text: str) -> bool:
    return bool(find_instructions(text))


@dataclass(frozen=True)
class Scrubbed:
    text: str
    removed: list[InjectionHit]


def scrub_instructions(text: str, marker: str = REMOVED_MARKER) -> Scrubbed:
    """The text with every instruction-like sentence replaced by `marker` (the rest unchanged).

    A flagged sentence that ends in a colon ("New rules:", "지시사항:") opens a list: the list items
    that follow it (lines starting with "-", "*", "1." ...) are removed with it, whole.
    """
    out: list[str] = []
    removed: list[InjectionHit] = []
    under_flagged = False  # inside the list that a flagged "...:" line opened
    for segment in _segments(text):
        body = segment.strip()
        line_start = not out or out[-1].endswith("\n")
        if line_start:
            under_flagged = under_flagged and bool(_LIST_ITEM.match(segment))
        if not body:
            out.append(segment)
            continue
        rules = ["list_under_instruction"] if under_flagged else sentence_rules(segment)
        if not rules:
            out.append(segment)
            continue
        removed.append(InjectionHit(rule=rules[0], sentence=body))
        out.append(_replace(segment, marker))
        under_flagged = under_flagged or body.endswith((":", "："))
    return Scrubbed(text="".join(out), removed=removed)


def _replace(segment: str, marker: str) -> str:
    """The marker in place of the segment's words, its surrounding whitespace kept."""
    lead = segment[: len(segment) - len(segment.lstrip())]
    trail = segment[len(segment.rstrip()) :]
    return f"{lead}{marker}{trail}"
