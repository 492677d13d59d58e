"""Twin answer distributions from token log-probabilities, answer policies, context-fitted chunks,
pilot calibration and the eval's zero-shot + calibrated report (issue 19)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from evals.twins import run as run_eval
from personagraph.services.twins import context_fit
from personagraph.services.twins.distributions import (
    ask_distribution,
    distribution_messages,
    labels_of,
    read_distribution,
)
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.store import open_run
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import use_models
from personagraph.twins.answer_policy import draw_rng, pick
from personagraph.twins.calibration import Calibrator
from personagraph.twins.respondents import Respondent, load_user_personas
from personagraph.twins.surveys import load_survey, survey_from_data
from tests.unit.twins_support import LOCAL, TINY_ITEMS, write_tiny_eval_files

SURVEY = survey_from_data(TINY_ITEMS)
LIKERT = SURVEY.question("lik")


def top(**probs: float) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": math.log(p)} for t, p in probs.items()]


class LogprobTwin(GenericFakeChatModel):
    """A twin server stand-in: label prompts get one token with top log-probabilities (which lean to
    the high codes for profiles that say "likes coffee"); other prompts get a valid JSON answer."""

    messages: Any = Field(default_factory=lambda: iter(()))
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    no_labels: bool = False

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(messages)
        text = "\n".join(str(m.content) for m in messages)
        if "Reply with the label" in text:
            high = "likes coffee" in text
            entries = top(**({"2": 0.6, " 1": 0.1, "5": 0.2} if high else {"1": 0.7, "2": 0.2, "x": 0.1}))
            if self.no_labels:
                entries = top(I=0.9, The=0.1)
            token = entries[0]["token"]
            message = AIMessage(
                content=token,
                response_metadata={
                    "logprobs": {"content": [{"token": token, "logprob": -0.1, "top_logprobs": entries}]}
                },
                usage_metadata={"input_tokens": 120, "output_tokens": 1, "total_tokens": 121},
            )
        else:
            message = AIMessage(content=json.dumps({"answer": 40}))
        return ChatResult(generations=[ChatGeneration(message=message)])


# --- reading distributions and picking answers ---------------------------------------------------


def test_read_distribution_adds_spaced_tokens_and_floors_missing_labels() -> None:
    dist = read_distribution(top(**{"3": 0.5, " 3": 0.1, "1": 0.2, "x": 0.05}), labels_of(LIKERT))
    assert dist is not None and set(dist) == {1, 2, 3, 4, 5}
    assert sum(dist.values()) == pytest.approx(1.0)
    assert dist[3] > dist[1] > dist[2] == dist[4] == dist[5] > 0
    assert read_distribution(top(I=0.9), labels_of(LIKERT)) is None


def test_labels_are_letters_when_a_code_is_not_one_digit() -> None:
    q = survey_from_data({"questions": [{"id": "q", "type": "single_choice", "text": "Pick",
                                          "options": [{"code": c, "label": f"o{c}"} for c in (1, 10, 11)]}]}).questions[0]  # fmt: skip
    assert labels_of(q) == {"A": 1, "B": 10, "C": 11}
    messages = distribution_messages(Respondent(id="1", profile="P"), SURVEY, q)
    assert "A = o1; B = o10; C = o11" in str(messages[1].content)


def test_policies_pick_mode_median_mean_and_a_repeatable_draw() -> None:
    dist = {1: 0.4, 2: 0.05, 3: 0.04, 4: 0.21, 5: 0.3}
    assert pick(dist, "mode") == 1
    assert pick(dist, "median") == 4
    assert pick(dist, "mean") == pytest.approx(0.4 + 0.1 + 0.12 + 0.84 + 1.5)
    assert pick(dist, "mean", ordinal=False) == 1  # nominal codes have no expected value
    draws = [pick(dist, "draw", rng=draw_rng(7, "p1", f"q{i}")) for i in range(200)]
    assert draws == [pick(dist, "draw", rng=draw_rng(7, "p1", f"q{i}")) for i in range(200)]
    assert 0.3 < draws.count(1) / 200 < 0.5


def test_ask_distribution_stores_the_distribution_usage_and_the_policy_answer() -> None:
    twin = LogprobTwin()
    person = Respondent(id="7", profile="Respondent 7 likes coffee.")
    with use_models({"twin": twin}):
        record = ask_distribution(person, SURVEY, LIKERT, policy="mode")
        fallback = ask_distribution(person, SURVEY, SURVEY.question("pct"))
    assert record.status == "ok" and record.value == 2 and record.mode == "distribution:mode"
    assert record.distribution is not None and record.distribution["2"] == pytest.approx(
        0.6 / (0.9 + 2 * 0.1 / math.e), abs=1e-4
    )
    assert (record.prompt_tokens, record.completion_tokens) == (120, 1)
    # The profile comes first (a server's prefix cache reuses it across the person's questions).
    assert "likes coffee" in str(twin.calls[0][0].content)
    assert fallback.value == 40 and fallback.distribution is None  # a slider is asked as before


def test_no_allowed_label_among_the_top_tokens_falls_back_to_a_written_answer() -> None:
    twin = LogprobTwin(no_labels=True)
    with use_models({"twin": twin}):
        record = ask_distribution(Respondent(id="1", profile="P"), SURVEY, LIKERT)
    assert record.mode == "distribution_fallback" and record.distribution is None


def test_distribution_run_stores_distributions_with_the_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONAGRAPH_HOME", str(tmp_path))
    people = [
        Respondent(id=str(i), profile=f"Respondent {i} likes {'coffee' if i % 2 else 'tea'}.")
        for i in range(4)
    ]
    options = BatchOptions(mode="distribution", answer_policy="median", concurrency=2)
    with use_models({"twin": LogprobTwin()}):
        run = create_survey_run(LOCAL, SURVEY, people, options, run_id="dist-run")
        summary = run_survey(LOCAL, run.run_id, progress=False)
    assert summary.ok == run.expected and summary.failed == 0
    with open_run(LOCAL, run.run_id) as store:
        answers = {(a.person_id, a.question_id): a for a in store.answers()}
    lik = answers[("1", "lik")]
    assert lik.distribution is not None and lik.prompt_tokens == 120 and lik.mode == "distribution:median"
    assert answers[("0", "pct")].distribution is None and answers[("0", "pct")].value == 40


# --- questionnaires of any length -----------------------------------------------------------------


def test_chunks_fit_the_context_and_a_question_too_long_is_named() -> None:
    questions = [q for q in SURVEY.questions] * 10
    count = context_fit.fallback_count
    chunks = context_fit.plan_chunks(
        questions, fixed_text="x" * 500, question_text=lambda q: q.text * 4, answer_tokens=lambda q: 20,
        context=600, count=count,
    )  # fmt: skip
    assert [q for c in chunks for q in c] == questions and len(chunks) > 1
    budget = 600 / (1 + context_fit.SAFETY_MARGIN) - count("x" * 500) - context_fit.TEMPLATE_TOKENS
    assert all(sum(count(q.text * 4) + 20 for q in c) <= budget for c in chunks)
    capped = context_fit.plan_chunks(
        questions, fixed_text="", question_text=lambda q: q.text, answer_tokens=lambda q: 1, context=10**6,
        count=count, most=7,
    )  # fmt: skip
    assert max(len(c) for c in capped) == 7
    with pytest.raises(context_fit.QuestionTooLongError, match="question lik: .* context of 300"):
        context_fit.plan_chunks(
            questions, fixed_text="x" * 600, question_text=lambda q: q.text, answer_tokens=lambda q: 5,
            context=300, count=count,
        )  # fmt: skip


def test_context_size_and_token_counts_come_from_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_get(url: str, **kwargs: Any) -> httpx.Response:
        if url.endswith("/v1/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "max_model_len": 32768}]})
        return httpx.Response(404)

    monkeypatch.setattr(context_fit.httpx, "get", fake_get)
    context_fit._remote_context.cache_clear()
    assert context_fit._remote_context("http://vllm:8000/v1", "m", "k") == 32768

    def fake_props(url: str, **kwargs: Any) -> httpx.Response:
        if url.endswith("/props"):
            return httpx.Response(200, json={"default_generation_settings": {"n_ctx": 8192}})
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    monkeypatch.setattr(context_fit.httpx, "get", fake_props)
    assert context_fit._remote_context("http://llama:8080/v1", "m", "k") == 8192
    monkeypatch.setattr(context_fit.httpx, "get", lambda url, **kw: httpx.Response(500))
    assert context_fit._remote_context("http://other/v1", "m", "k") == context_fit.FALLBACK_CONTEXT


# --- calibration from a pilot ---------------------------------------------------------------------


def _pilot(n: int, seed: int = 0) -> tuple[list[Respondent], dict[str, dict[str, float]]]:
    rng = random.Random(seed)
    people, answers = [], {}
    for i in range(n):
        score = rng.uniform(0, 10)
        group = rng.choice(["Liberal", "Conservative"])
        people.append(Respondent(id=f"p{i}", profile="x", attributes={"score": score, "views": group}))
        lik = 5 if group == "Liberal" and rng.random() < 0.8 else 1 if rng.random() < 0.8 else 3
        answers[f"p{i}"] = {"lik": float(lik), "pct": float(round(score * 9 + rng.gauss(0, 5)))}
    return people, answers


def test_calibration_learns_from_persona_features_on_the_pilot_only() -> None:
    people, answers = _pilot(120)
    calibrator = Calibrator(SURVEY.questions).fit(people, answers)
    report = calibrator.report()
    assert report["lik"]["kind"] == "model" and report["pct"]["kind"] == "model"
    assert report["lik"]["cv"]["log_loss_model"] < report["lik"]["cv"]["log_loss_prior"]
    liberal = Respondent(id="new1", profile="x", attributes={"score": 9.0, "views": "Liberal"})
    conservative = Respondent(id="new2", profile="x", attributes={"score": 1.0, "views": "Conservative"})
    d_lib, d_con = (
        calibrator.predict_distribution(LIKERT, liberal),
        calibrator.predict_distribution(LIKERT, conservative),
    )
    assert d_lib is not None and d_con is not None and d_lib[5] > 0.5 and d_con[1] > 0.5
    assert set(d_lib) == {1, 2, 3, 4, 5} and d_lib[2] > 0  # a code nobody in the pilot chose keeps some mass
    pct = SURVEY.question("pct")
    assert (calibrator.predict_value(pct, liberal) or 0) > (
        calibrator.predict_value(pct, conservative) or 0
    ) + 30


def test_a_small_pilot_answers_from_its_distribution() -> None:
    people, answers = _pilot(8)
    calibrator = Calibrator(SURVEY.questions).fit(people, answers)
    assert calibrator.report()["lik"]["kind"] == "prior"
    dist = calibrator.predict_distribution(LIKERT, people[0])
    assert dist is not None and sum(dist.values()) == pytest.approx(1.0)


# --- the eval: zero-shot and calibrated in one command --------------------------------------------


def test_eval_distribution_mode_with_a_pilot_reports_both_modes_with_intervals(tmp_path: Path) -> None:
    questions, answers, personas = write_tiny_eval_files(tmp_path / "pack", n_people=60)
    with use_models({"twin": LogprobTwin()}):
        out = run_eval(
            ["--questions", str(questions), "--answers", str(answers), "--persona-file", str(personas),
             "--personas", "8", "--seed", "2", "--mode", "distribution", "--pilot-share", "0.5",
             "--bootstrap", "30", "--no-progress", "--report-dir", str(tmp_path / "reports")]
        )  # fmt: skip
    assert out["result_mode"] == "zero-shot" and out["people"] == 8 and out["coverage"] == 1.0
    assert set(out["ci95"]) == {"paper_headline", "item_mean", "pearson_r"}
    low, high = out["ci95"]["item_mean"]
    assert low is not None and high is not None and low <= out["accuracy"]["item_mean"] <= high
    calibrated = out["calibrated"]
    assert (
        calibrated["result_mode"] == "calibrated" and calibrated["pilot_people"] == 26
    )  # half of the 52 others
    assert calibrated["coverage"] == 1.0 and "ci95" in calibrated
    for baseline in out["baselines"].values():
        assert "ci95" in baseline
    assert "twins (calibrated)" in Path(out["report_md"]).read_text()
    json.dumps(out)


def test_pilot_is_never_an_evaluated_person(tmp_path: Path) -> None:
    from evals.twins import draw_pilot

    _, _, personas = write_tiny_eval_files(tmp_path / "pack", n_people=40)
    pool = load_user_personas(personas)
    evaluated = {"1", "2", "3"}
    pilot = draw_pilot(pool, [p.id for p in pool.respondents if p.id not in evaluated], 0.25, seed=1)
    assert len(pilot) == round(0.25 * 37) and not {p.id for p in pilot} & evaluated
    assert [p.id for p in pilot] == [
        p.id
        for p in draw_pilot(pool, [p.id for p in pool.respondents if p.id not in evaluated], 0.25, seed=1)
    ]
    assert load_survey(tmp_path / "pack" / "questions.json").questions  # the pack is readable


# --- --rate counts model calls; one retry layer -------------------------------------------------------


def test_rate_gate_runs_before_every_model_request_and_sdk_retries_are_off() -> None:
    from personagraph.services.twins.executor import RateLimiter, call_with_retries
    from personagraph.serving import models

    gates: list[int | None] = []

    class CountingLimiter(RateLimiter):
        def acquire(self) -> None:
            gates.append(models._sdk_retries.get())

    twin = LogprobTwin()
    person = Respondent(id="1", profile="P")

    def unit() -> list[Any]:  # one unit, three model calls
        return [ask_distribution(person, SURVEY, q) for q in SURVEY.questions[:2]] + [
            ask_distribution(person, SURVEY, SURVEY.question("pct"))
        ]

    with use_models({"twin": twin}):
        call_with_retries(unit, retries=0, backoff_s=0, limiter=CountingLimiter(None))
    assert len(twin.calls) == 3 and gates == [0, 0, 0]  # a gate per request; the SDK does not retry
    assert models._before_call.get() is None and models._sdk_retries.get() is None  # reset after


def test_run_summary_has_usage_cost_and_the_twins_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.services.twins.analysis import summarize
    from personagraph.services.twins.exports import export_all
    from personagraph.serving.settings import get_settings

    monkeypatch.setenv("PERSONAGRAPH_HOME", str(tmp_path))
    monkeypatch.setenv("TWIN_PRICE_PROMPT_PER_MILLION", "2.0")
    get_settings.cache_clear()
    try:
        people = [Respondent(id=str(i), profile=f"Respondent {i} likes coffee.") for i in range(3)]
        with use_models({"twin": LogprobTwin()}):
            run = create_survey_run(
                LOCAL, SURVEY, people, BatchOptions(mode="distribution"), run_id="usage-run"
            )
            run_survey(LOCAL, run.run_id, progress=False)
        summary = summarize(LOCAL, run.run_id)
        lik = next(q for q in summary["questions"] if q["question_id"] == "lik")
        assert lik["twin_distribution"]["2 L2"] == pytest.approx(0.6 / (0.9 + 2 * 0.1 / math.e), abs=1e-3)
        closed = sum(1 for p in people for q in SURVEY.questions_for(run_arms(run.run_id, p.id)) if q.options)
        assert summary["usage"]["prompt"] == 120 * closed and summary["result_mode"] == "zero-shot"
        assert summary["usage"]["estimated_cost"] == pytest.approx(120 * closed * 2.0 / 1e6)
        files = export_all(LOCAL, run.run_id, tmp_path / "out")
        csv_text = Path(files["csv"]).read_text()
        assert "distribution,prompt_tokens,completion_tokens" in csv_text.splitlines()[0]
    finally:
        get_settings.cache_clear()


def run_arms(run_id: str, person_id: str) -> dict[str, str]:
    with open_run(LOCAL, run_id) as store:
        return store.arms().get(person_id, {})
