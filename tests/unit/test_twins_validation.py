"""Validation: the Twin-2K-500 accuracy against hand-worked numbers, companions, baselines, the eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evals.twins import run as run_eval
from personagraph.serving.models import use_models
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.respondents import load_user_personas
from personagraph.twins.surveys import load_survey, survey_from_data
from personagraph.twins.validation import (
    AnswersFileError,
    answer_accuracy,
    load_answers,
    pearson,
    population_baseline,
    population_hints,
    score,
    scored_values,
    transform,
    wasserstein1,
)
from tests.fakes import scripted
from tests.unit.twins_support import answer_bot, write_tiny_eval_files

DECILES = [6.0, 9.0, 14.0, 18.0, 20.0, 28.0, 40.0, 50.0, 53.0]
ITEMS = survey_from_data(
    {
        "items": [
            {"id": "lik", "paper_task": "t1", "answer_type": "likert", "question_text": "?", "scale_min": 1,
             "scale_max": 5, "accuracy_min": 1, "accuracy_max": 5,
             "options": [{"code": c, "label": str(c)} for c in range(1, 6)]},
            {"id": "bin", "paper_task": "t2", "answer_type": "binary_choice", "question_text": "?", "scale_min": 1,
             "scale_max": 2, "accuracy_min": 1, "accuracy_max": 2,
             "options": [{"code": 1, "label": "a"}, {"code": 2, "label": "b"}]},
            {"id": "pct", "paper_task": "t1", "answer_type": "slider_percent", "question_text": "?", "scale_min": 0,
             "scale_max": 100, "accuracy_min": 0, "accuracy_max": 100},
            {"id": "num", "paper_task": "t3", "answer_type": "numeric_open", "question_text": "?", "scale_min": 0,
             "scale_max": None, "accuracy_min": 1, "accuracy_max": 10,
             "accuracy_transform": {"type": "decile", "thresholds_upper_inclusive": DECILES}},
        ]
    }
).questions  # fmt: skip
LIK, BIN, PCT, NUM = ITEMS

TRUTH = {"A": {"lik": 4, "bin": 1, "pct": 30, "num": 20}, "B": {"lik": 1, "bin": 2, "num": 5}}
PRED = {"A": {"lik": 2, "bin": 1, "pct": 50, "num": 45}, "B": {"lik": 7, "bin": 2, "pct": 10, "num": 5}}


def test_decile_transform_is_upper_inclusive() -> None:
    assert [transform(NUM, v) for v in (0, 6, 6.5, 9, 20, 20.1, 50, 53, 54, 193)] == [
        1,
        1,
        2,
        2,
        5,
        6,
        8,
        9,
        10,
        10,
    ]
    assert transform(LIK, 3) == 3.0


def test_answer_accuracy_by_hand() -> None:
    assert answer_accuracy(LIK, 2, 4) == 0.5  # 1 - 2/4
    assert answer_accuracy(BIN, 1, 1) == 1.0 and answer_accuracy(BIN, 2, 1) == 0.0  # exact match
    assert answer_accuracy(PCT, 50, 30) == pytest.approx(0.8)  # 1 - 20/100
    assert answer_accuracy(NUM, 45, 20) == pytest.approx(1 - 3 / 9)  # deciles 8 vs 5, range 1-10
    assert answer_accuracy(LIK, 7, 1) == -0.5  # predictions are not clipped


def test_score_by_hand() -> None:
    result = score(ITEMS, scored_values(ITEMS, TRUTH), scored_values(ITEMS, PRED))
    items = result["items"]
    # Item accuracy: mean over people with both answers (B has no pct truth).
    assert items["lik"]["accuracy"] == 0.0  # (0.5 + -0.5) / 2
    assert items["bin"]["accuracy"] == 1.0
    assert items["pct"]["accuracy"] == 0.8 and items["pct"]["n"] == 1
    assert items["num"]["accuracy"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)
    acc = result["accuracy"]
    assert acc["item_mean"] == pytest.approx((0 + 1 + 0.8 + 0.83333) / 4, abs=1e-4)
    assert acc["answer_mean"] == pytest.approx((0.5 + 1 + 0.8 + 2 / 3 - 0.5 + 1 + 1) / 7, abs=1e-4)
    # Paper headline: A = mean(t1: (0.5+0.8)/2, t2: 1, t3: 2/3); B = mean(t1: -0.5, t2: 1, t3: 1).
    person_a = (0.65 + 1 + 2 / 3) / 3
    person_b = (-0.5 + 1 + 1) / 3
    assert acc["paper_headline"] == pytest.approx((person_a + person_b) / 2, abs=1e-4)
    # r per item across people: lik -1, bin 1, num 1 (deciles), pct undefined (one person).
    assert (items["lik"]["pearson_r"], items["bin"]["pearson_r"], items["num"]["pearson_r"]) == (
        -1.0,
        1.0,
        1.0,
    )
    assert items["pct"]["pearson_r"] is None
    assert result["pearson_r"] == {"mean": pytest.approx(1 / 3, abs=1e-4), "items_defined": 3}
    # Variance ratio twin/human: lik 6.25/2.25, bin 0.25/0.25, num 12.25/4; pct undefined.
    assert items["lik"]["variance_ratio"] == pytest.approx(6.25 / 2.25, abs=1e-4)
    assert items["num"]["variance_ratio"] == pytest.approx(12.25 / 4, abs=1e-4)
    assert result["variance_ratio"]["mean"] == pytest.approx((6.25 / 2.25 + 1 + 12.25 / 4) / 3, abs=1e-4)
    # Distance: W1 / range. lik: sorted pairs (1,2),(4,7) -> 2/4; bin equal; pct 20/100; num (1,1),(5,8) -> 1.5/9.
    assert result["distribution_distance"]["per_item"] == {
        "lik": 0.5, "bin": 0.0, "pct": 0.2, "num": pytest.approx(1.5 / 9, abs=1e-4),
    }  # fmt: skip


def test_tasks_not_scored_in_the_paper_stay_out_of_the_headline_only() -> None:
    extra = BIN.model_copy(update={"id": "bin2", "paper_task": "anchoring (not scored in paper)"})
    truth = {"A": {"bin": 1, "bin2": 1}}
    pred = {"A": {"bin": 1, "bin2": 2}}
    result = score([BIN, extra], truth, pred)
    assert result["accuracy"]["paper_headline"] == 1.0
    assert result["accuracy"]["item_mean"] == 0.5


def test_baselines_by_hand() -> None:
    reference = scored_values(ITEMS, {"C": {"lik": 3, "bin": 2}, "D": {"lik": 4, "bin": 2}, "E": {"bin": 1}})
    truth = scored_values(ITEMS, TRUTH)
    predictions = population_baseline(ITEMS, reference, truth)
    assert predictions["A"]["lik"] == 3.5 and predictions["A"]["bin"] == 2  # mean; mode for binary
    result = score(ITEMS, truth, predictions)
    assert result["items"]["lik"]["accuracy"] == pytest.approx((0.875 + 0.375) / 2)
    assert result["items"]["lik"]["pearson_r"] is None and result["items"]["lik"]["variance_ratio"] == 0.0
    uniform = score(ITEMS, truth, {}, uniform=True)
    # Likert 1-5 with truth 4: mean of 1-|u-4|/4 over u=1..5 = 1 - 7/20; truth 1: 1 - 10/20.
    assert uniform["items"]["lik"]["accuracy"] == pytest.approx((0.65 + 0.5) / 2)
    assert uniform["items"]["bin"]["accuracy"] == 0.5
    assert uniform["items"]["num"]["mean_pred"] == 5.5  # uniform over deciles 1-10
    assert uniform["pearson_r"]["mean"] == 0.0


def test_statistics_helpers() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1], [1, 2]) is None and pearson([1], [1]) is None
    assert wasserstein1([0, 1], [0, 1]) == 0.0
    assert wasserstein1([1, 1, 1, 2], [1, 2, 2, 2]) == pytest.approx(0.5)  # difference in proportions
    assert wasserstein1([1, 2], [1.5], wx=[1, 1], wy=[1]) == pytest.approx(0.5)
    assert math.isnan(wasserstein1([], [1]))


def test_real_answers_load_from_a_csv_and_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    path.write_text("twin_id,lik,other\n 7 ,4,x\n8,,y\n")
    assert load_answers(path, ["lik", "bin"]) == {"7": {"lik": 4.0}, "8": {}}  # empty = not asked
    with pytest.raises(AnswersFileError, match="file not found"):
        load_answers(tmp_path / "none.csv", ["lik"])
    with pytest.raises(AnswersFileError, match="none of the question ids are columns"):
        load_answers(path, ["bin"])
    (tmp_path / "no_id.csv").write_text("person,lik\n1,2\n")
    with pytest.raises(AnswersFileError, match="no 'twin_id' column"):
        load_answers(tmp_path / "no_id.csv", ["lik"])


def test_scoring_reproduces_the_published_baselines() -> None:
    """Against the real pack: our population-mean/mode and uniform figures equal baselines.csv per item."""
    pack = REPO_ROOT.parent / "shared" / "twin2k"
    if not (pack / "answers_wave1_3.csv").is_file():
        pytest.skip("the validation pack is not next to the repository")
    import pandas as pd

    from personagraph.twins.validation import load_answers

    survey = load_survey(REPO_ROOT / "data" / "twin2k" / "questions.json")
    truth = scored_values(
        survey.questions, load_answers(pack / "answers_wave1_3.csv", [q.id for q in survey.questions])
    )
    population = score(
        survey.questions, truth, population_baseline(survey.questions, truth, truth)
    )  # in-sample
    uniform = score(survey.questions, truth, {}, uniform=True)
    published = pd.read_csv(pack / "baselines.csv")
    for name, result in (
        ("population_mean", population),
        ("population_mode", population),
        ("uniform_random", uniform),
    ):
        rows = published[published["baseline"] == name]
        assert len(rows) > 0
        for row in rows.itertuples():
            assert result["items"][row.item_id]["accuracy"] == pytest.approx(row.accuracy, abs=1e-4)
    assert uniform["accuracy"]["item_mean"] == pytest.approx(0.583, abs=1e-3)


def test_eval_end_to_end_on_any_item_set(tmp_path: Path) -> None:
    questions, answers, personas = write_tiny_eval_files(tmp_path / "pack")
    survey = load_survey(questions)
    people = load_user_personas(personas).respondents
    log: list[tuple[str, str]] = []
    twin = scripted(answer_bot(survey, list(people), log=log))
    with use_models({"twin": twin}):
        out = run_eval(
            ["--questions", str(questions), "--answers", str(answers), "--persona-file", str(personas),
             "--personas", "6", "--seed", "3", "--mode", "per_person", "--no-progress",
             "--report-dir", str(tmp_path / "reports")]
        )  # fmt: skip
    assert out["people"] == 6 and out["coverage"] == 1.0 and len(twin.calls) == 6
    assert set(out["accuracy"]) == {"paper_headline", "item_mean", "answer_mean"}
    assert set(out["distribution_distance_per_item"]) == {"lik", "bin_a", "bin_b", "pct"}
    assert len(out["baselines"]) == 2
    # Each twin saw only the arm its person saw in the answers file.
    for person_id, question_id in log:
        if question_id.startswith("bin_"):
            arm_a = int(person_id) % 2 == 0
            assert question_id == ("bin_a" if arm_a else "bin_b")
    report = json.loads(Path(out["report"]).read_text())
    assert set(report["per_block"]["twins"]) == {"b1", "b2", "b3"}
    assert Path(out["report_md"]).read_text().startswith("# Twin validation")
    json.dumps(out)  # one JSON object


def test_eval_calibration_uses_only_people_not_evaluated(tmp_path: Path) -> None:
    questions, answers, personas = write_tiny_eval_files(tmp_path / "pack")
    # Evaluated people 1-3 all answered lik=5; nobody else did. Their answers must not reach the hints.
    lines = answers.read_text().splitlines()
    rows = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[1] = "5" if cells[0] in ("1", "2", "3") else "1"
        rows.append(",".join(cells))
    answers.write_text("\n".join(rows) + "\n")
    survey = load_survey(questions)
    people = list(load_user_personas(personas).respondents)
    twin = scripted(answer_bot(survey, people))
    with use_models({"twin": twin}):
        out = run_eval(
            ["--questions", str(questions), "--answers", str(answers), "--persona-file", str(personas),
             "--ids", "1,2,3", "--mode", "per_question", "--calibrate", "--no-progress",
             "--report-dir", str(tmp_path / "reports")]
        )  # fmt: skip
    prompts = [str(call["messages"][1].content) for call in twin.calls]
    lik_prompts = [p for p in prompts if "[lik]" in p]
    assert len(lik_prompts) == 3
    assert all("1: 100%, 2: 0%, 3: 0%, 4: 0%, 5: 0%" in p for p in lik_prompts)
    # The population baseline is fitted on the same non-evaluated people (all 1 on lik).
    population = next(iter(out["baselines"].values()))
    assert population["accuracy"]["item_mean"] is not None
    hints = population_hints(survey.questions, {"x": {"lik": 5.0}})
    assert hints == {}  # fewer than 20 reference answers: no hint


def test_eval_input_errors(tmp_path: Path) -> None:
    questions, answers, personas = write_tiny_eval_files(tmp_path / "pack")
    with pytest.raises(SystemExit):
        run_eval(["--questions", str(questions), "--answers", str(answers), "--personas", "0"])
    from evals.twins import EvalInputError

    with pytest.raises(EvalInputError, match="--answers: file not found"):
        run_eval(
            [
                "--questions",
                str(questions),
                "--answers",
                str(tmp_path / "none.csv"),
                "--persona-file",
                str(personas),
            ]
        )
