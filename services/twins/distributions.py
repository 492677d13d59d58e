"""Answer distributions for closed questions, read from the model's token log-probabilities.

A weak model writing one sampled answer gives nearly the same answer to every profile; its
probabilities over the allowed answers still move with the profile. For a choice, Likert or binary
question the prompt ends right before the answer (the reply's first token is the answer's label:
the option code when every code is one digit, else a letter), the server returns the top token
log-probabilities of that one token (`max_tokens=1`), and the probabilities of the allowed labels,
renormalised, are the twin's distribution. The stored answer is then picked by the run's policy
(twins/answer_policy.py: mode, median, mean or a seeded draw); the distribution is stored too.

The embedded llama-cpp-python server only returns log-probabilities with `logits_all`, which slows
every prompt; `serving.models.chat_model(top_logprobs=...)` therefore uses a second embedded server
for these calls, and ordinary chat keeps its own. vLLM and OpenAI-style servers return them as is.
Open and numeric questions have no small label set: they are asked as before (`ask_question`).
"""

from __future__ import annotations

import math
import string
import time
from collections.abc import Mapping, Sequence
from typing import Any

import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from personagraph.prompts import twins as prompts
from personagraph.services.twins.answering import AnswerRecord, _intro, ask_question, system_message
from personagraph.serving.models import before_model_call, chat_model, describe_failure
from personagraph.serving.settings import Role
from personagraph.serving.tracing import trace_scope
from personagraph.twins.answer_policy import Policy, draw_rng, pick
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import CHOICE_TYPES, Question, Survey

TOP_LOGPROBS = 20  # the most vLLM and OpenAI return by default; enough for up to 20 labels
MISSING_GAP = 1.0  # a label outside the top tokens gets this much less log-probability than the last one
MAX_LABELS = len(string.ascii_uppercase)


def has_distribution(q: Question) -> bool:
    """Whether the question's answers are a small label set read from one token."""
    return q.type in CHOICE_TYPES and bool(q.options) and len(q.codes) <= MAX_LABELS


def labels_of(q: Question) -> dict[str, int]:
    """label -> option code: the codes themselves when each is one digit (one token), else A, B, C..."""
    codes = q.codes
    if all(0 <= c <= 9 for c in codes):
        return {str(c): c for c in codes}
    return {string.ascii_uppercase[i]: c for i, c in enumerate(codes)}


def distribution_messages(
    respondent: Respondent, survey: Survey, q: Question, hint: str | None = None
) -> list[BaseMessage]:
    """The person first (a server's prefix cache reuses it across their questions), then the question."""
    labels = labels_of(q)
    by_code = {o.code: o.label for o in q.options or []}
    options = "; ".join(f"{label} = {by_code[code]}" for label, code in labels.items())
    question = q.text + (f"\n{prompts.POPULATION_HINT.format(distribution=hint)}" if hint else "")
    return [
        system_message(respondent),
        HumanMessage(
            content=prompts.ONE_QUESTION_LABEL.format(
                intro=_intro(survey), question=question, options=options, labels=", ".join(labels)
            )
        ),
    ]


def read_distribution(top: Sequence[Mapping[str, Any]], labels: Mapping[str, int]) -> dict[int, float] | None:
    """Probabilities over the codes from one token's top log-probabilities, or None if no label is there.

    Tokens are matched after stripping spaces (" 3" and "3" are the same answer) and their
    probabilities added; a label outside the top tokens gets less than the least likely one shown.
    """
    found: dict[int, float] = {}
    for entry in top:
        token = str(entry.get("token", "")).strip()
        if token in labels and isinstance(entry.get("logprob"), int | float):
            code = labels[token]
            found[code] = found.get(code, 0.0) + math.exp(float(entry["logprob"]))
    if not found:
        return None
    shown = [float(e["logprob"]) for e in top if isinstance(e.get("logprob"), int | float)]
    floor = math.exp(min(shown) - MISSING_GAP)
    mass = {code: found.get(code, floor) for code in labels.values()}
    total = sum(mass.values())
    return {code: p / total for code, p in mass.items()}


def first_token_top(reply: AIMessage) -> list[dict[str, Any]]:
    """The top log-probabilities of a reply's first token (OpenAI chat format), or [] if none came."""
    logprobs = reply.response_metadata.get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return []
    first = content[0]
    top = list(first.get("top_logprobs") or [])
    return top or [{"token": first.get("token"), "logprob": first.get("logprob")}]


def usage_of(reply: AIMessage) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens of a reply, where the server reported them."""
    usage = reply.usage_metadata
    if usage is None:
        return None, None
    return usage.get("input_tokens"), usage.get("output_tokens")


def ask_distribution(
    respondent: Respondent,
    survey: Survey,
    question: Question,
    *,
    role: Role = "twin",
    policy: Policy = "mode",
    seed: int = 0,
    hint: str | None = None,
    reason_chars: int = 0,
) -> AnswerRecord:
    """The twin's distribution over a closed question's answers and the answer the policy picks.

    Questions without a label set, and replies whose top tokens hold no allowed label, are asked
    with `ask_question` instead (mode `distribution_fallback`). Transport errors raise `ModelError`.
    """
    if not has_distribution(question):
        return ask_question(respondent, survey, question, role=role, reason_chars=reason_chars, hint=hint)
    labels = labels_of(question)
    model = chat_model(role, max_tokens=1, temperature=0.0, top_logprobs=TOP_LOGPROBS)
    started = time.perf_counter()
    try:
        with trace_scope("twin_survey"):
            before_model_call()
            reply = model.invoke(distribution_messages(respondent, survey, question, hint))
    except (openai.OpenAIError, OSError) as exc:
        raise describe_failure(role, exc) from exc
    message = reply if isinstance(reply, AIMessage) else AIMessage(content=str(reply.content))
    prompt_tokens, completion_tokens = usage_of(message)
    distribution = read_distribution(first_token_top(message), labels)
    if distribution is None:
        return ask_question(
            respondent, survey, question, role=role, reason_chars=reason_chars, hint=hint,
            mode="distribution_fallback",
        )  # fmt: skip
    value = pick(
        distribution, policy, ordinal=question.ordinal, rng=draw_rng(seed, respondent.id, question.id)
    )
    return AnswerRecord(
        person_id=respondent.id, question_id=question.id, status="ok", value=value, arm=question.condition_arm,
        mode=f"distribution:{policy}", seconds=round(time.perf_counter() - started, 3),
        distribution={str(c): round(p, 6) for c, p in distribution.items()},
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
    )  # fmt: skip
