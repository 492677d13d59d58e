"""The crm_message graph with fake models over a small copy of the catalog (real Chroma, real embeddings):
the refine loop, model errors, the result JSON, the service cache (shared) and timing logs (per account),
batches and where their files may be, the CLI, the evaluation and the UI helpers. Also checks the shipped
catalog's size."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personagraph.accounts.identity import CLI_CALLER, Caller
from personagraph.crm.catalog import load_catalog
from personagraph.graphs.crm_message import CrmContext, graph
from personagraph.services.crm import CrmService
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.safe_paths import PathOutsideError
from tests.fakes import scripted

REPO_DATA = Path(__file__).resolve().parents[2] / "data" / "crm"
KEEP = {"dew-01", "dew-02", "lum-01"}
REQUEST = {"persona": 1, "brand": "dewylab", "product": "dew-01", "stage_index": 1, "style_index": 2,
           "is_event": 1, "channel": "sms"}  # fmt: skip
DRAFT = {
    "headline": "세라마이드 배리어 크림",
    "points": [{"text": "세라마이드와 판테놀을 담은 60ml 크림, 28,000원", "evidence_ids": ["F1", "F2"]},
               {"text": "11월 14일까지 세트 25% 할인", "evidence_ids": ["E1"]}],
    "call_to_action": "지금 만나 보세요",
}  # fmt: skip
GOOD = "듀이랩 세라마이드 크림 60ml 28,000원, 11/14까지 25% 할인! 지금 만나 보세요."
BAD = "세라마이드 크림 99,000원이에요. 지금 만나 보세요."  # a price repair cannot fix
MINA = Caller("mina")
JUN = Caller("jun")


def make_tiny_catalog(folder: Path) -> Path:
    """A copy of data/crm with three products and their reviews (fast to index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("brands.yaml", "ingredients.yaml", "channels.yaml", "promotions.json"):
        shutil.copy(REPO_DATA / name, folder / name)
    products = [
        p for p in json.loads((REPO_DATA / "products.json").read_text(encoding="utf-8")) if p["id"] in KEEP
    ]
    (folder / "products.json").write_text(json.dumps(products, ensure_ascii=False), encoding="utf-8")
    reviews = [line for line in (REPO_DATA / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
               if json.loads(line)["product_id"] in KEEP]  # fmt: skip
    (folder / "reviews.jsonl").write_text("\n".join(reviews) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from personagraph.memory.vectors import chroma_client
    from personagraph.serving.settings import Settings

    root = tmp_path_factory.mktemp("crm")
    return make_tiny_catalog(root / "data"), chroma_client(Settings(personagraph_home=root / "home"))


@pytest.fixture
def tiny(tiny_dirs: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Iterator[Path]:
    """CRM_DATA_DIR = the tiny catalog; one Chroma client for this module, so the index is built once."""
    data, client = tiny_dirs
    monkeypatch.setenv("CRM_DATA_DIR", str(data))
    monkeypatch.setattr("personagraph.nodes.crm.vector_client", lambda: client)
    load_catalog.cache_clear()  # type: ignore[attr-defined]
    yield isolated_home
    load_catalog.cache_clear()  # type: ignore[attr-defined]


def run_graph(request: dict[str, Any], **context: Any) -> dict[str, Any]:
    return graph.invoke(request, context=CrmContext(**context))["result"]  # type: ignore[call-overload]


def test_shipped_catalog_has_the_promised_size() -> None:
    catalog = load_catalog(REPO_DATA)
    assert len(catalog.brands) >= 6 and len(catalog.products) >= 60 and len(catalog.reviews) >= 600
    assert all(any("가" <= ch <= "힣" for ch in r.text) for r in catalog.reviews)
    assert {r.rating for r in catalog.reviews} == {1, 2, 3, 4, 5}
    assert len({r.text for r in catalog.reviews}) == len(catalog.reviews)
    for product in catalog.products.values():
        assert catalog.promotion_for(product) is not None, product.id
        assert all(i in catalog.ingredients for i in product.key_ingredients)
    for brand in catalog.brands.values():
        assert brand.words_used and brand.words_avoided and len(brand.copy_examples) >= 5


def test_a_grounded_message_passes_first_time(tiny: Path) -> None:
    drafter, stylist = scripted(DRAFT), scripted(GOOD)
    with use_models({"drafter": drafter, "stylist": stylist}):
        result = run_graph(REQUEST)
    assert result["status"] == "passed" and result["message"] == GOOD and result["rounds"] == 1
    assert result["stage"]["name"] == "Activation" and result["stage"]["objective"]
    assert result["style"]["name"] == "Benefit first" and result["event"]["id"] == "dew-duo"
    kinds = {e["kind"] for e in result["evidence"]}
    assert kinds == {"product", "review", "tone", "event"}
    assert sum(e["kind"] == "review" for e in result["evidence"]) == 3
    assert all(e["text"] for e in result["evidence"])
    assert {e["id"] for e in result["evidence"] if e["cited"]} == {"F1", "F2", "E1"}
    assert set(result["timings"]) == {"load", "retrieval", "draft", "refine", "repair", "checks", "total"}
    assert result["attempts"][0]["repairs"] == [] and result["attempts"][0]["stylist_message"] == GOOD
    assert result["checks"]["citations"]["passed"]
    # The stylist saw the brand's voice, the exemplars and the channel limit, not the evidence ids.
    prompt = " ".join(str(m.content) for m in stylist.calls[0]["messages"])
    assert "듀이랩" in prompt and "90 bytes" in prompt and "[F1]" not in prompt


def test_without_event_no_promotion_is_retrieved(tiny: Path) -> None:
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted("세라마이드 크림 60ml 28,000원")}):
        result = run_graph({**REQUEST, "is_event": 0})
    assert result["event"] is None and "E1" not in {e["id"] for e in result["evidence"]}
    assert result["status"] == "passed"


def test_a_failing_message_goes_back_with_the_reasons_and_then_passes(tiny: Path) -> None:
    stylist = scripted(BAD, GOOD)
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        result = run_graph(REQUEST)
    assert result["status"] == "passed" and result["rounds"] == 2
    assert [a["passed"] for a in result["attempts"]] == [False, True]
    feedback = str(stylist.calls[1]["messages"][-1].content)
    assert "99,000원" in feedback and BAD in feedback


def test_the_repair_step_fixes_claims_prices_and_the_call_to_action_with_reasons(tiny: Path) -> None:
    written = "듀이랩 세라마이드 크림 29,000원, 아토피 치료에 최고예요."
    stylist = scripted(written)
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        result = run_graph(REQUEST)
    assert result["status"] == "passed" and result["rounds"] == 1 and len(stylist.calls) == 1
    attempt = result["attempts"][0]
    assert attempt["stylist_message"] == written and attempt["message"] == result["message"]
    rules = {fix["rule"] for fix in attempt["repairs"]}
    assert {"claim", "price", "cta"} <= rules and all(fix["reason"] for fix in attempt["repairs"])
    assert (
        "28,000원" in result["message"]
        and "최고" not in result["message"]
        and "치료" not in result["message"]
    )
    assert result["message"].endswith("지금 만나 보세요")
    # The checks are the same without the repair: the stylist's own text fails them.
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(written)}):
        plain = run_graph(REQUEST, repair=False, max_refine_rounds=0)
    assert plain["status"] == "failed" and plain["message"] == written
    assert any(r.startswith("claims") for r in plain["reasons"]) and any(
        r.startswith("reads") for r in plain["reasons"]
    )


def test_the_refine_loop_ends_after_max_rounds_marked_failed(tiny: Path) -> None:
    stylist = scripted(BAD)
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        result = run_graph(REQUEST, max_refine_rounds=2)
    assert result["status"] == "failed" and result["rounds"] == 3 and len(stylist.calls) == 3
    assert result["message"] == BAD and any("grounding" in r for r in result["reasons"])
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(BAD)}):
        assert run_graph(REQUEST, max_refine_rounds=0)["rounds"] == 1


def test_model_errors_give_a_clear_error_not_a_crash(tiny: Path) -> None:
    down = ModelUnavailableError("model server for role 'drafter' at http://x is unreachable")
    with use_models({"drafter": scripted(down), "stylist": scripted(GOOD)}):
        result = run_graph(REQUEST)
    assert result["status"] == "error" and "unreachable" in result["error"]
    with use_models({"drafter": scripted("not json"), "stylist": scripted(GOOD)}):
        result = run_graph(REQUEST)
    assert result["status"] == "error" and "CrmDraft" in result["error"]
    stylist_down = ModelUnavailableError("model server for role 'stylist' is unreachable")
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(stylist_down)}):
        result = run_graph(REQUEST)
    assert result["status"] == "error" and "stylist" in result["error"] and result["draft"] == DRAFT


def test_invalid_input_ends_the_graph_with_the_field(tiny: Path) -> None:
    result = graph.invoke({**REQUEST, "channel": "fax"}, context=CrmContext())  # type: ignore[call-overload]
    assert result["status"] == "invalid" and result["error"].startswith("channel:")


def test_service_caches_on_inputs_and_model_and_logs_timings(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stylist = scripted(GOOD)
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        first = CrmService().run(MINA, REQUEST)
        second = CrmService().run(MINA, REQUEST)
        assert not first["cached"] and second["cached"] and len(stylist.calls) == 1
        CrmService(use_cache=False).run(MINA, REQUEST)
        assert len(stylist.calls) == 2
        monkeypatch.setenv("LLM_STYLIST_MODEL", "stylist-lora-v2")
        from personagraph.serving.settings import get_settings

        get_settings.cache_clear()
        assert not CrmService().run(MINA, REQUEST)["cached"]  # another model: another key
    log = (tiny / "crm" / "timings" / "mina.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(log) == 3
    average = CrmService(use_cache=False)._log(MINA, "k", {"timings": {"total": 0.0}})
    assert set(average) >= {"total", "retrieval", "refine"}


def test_the_cache_is_shared_but_run_logs_are_per_account(tiny: Path) -> None:
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        mine = CrmService().run(MINA, REQUEST)
        theirs = CrmService().run(JUN, REQUEST)
    assert not mine["cached"] and theirs["cached"]  # the same catalog request: nothing of Mina's in it
    assert mine["message"] == theirs["message"] == GOOD
    assert mine["timing_average"] and theirs["timing_average"] == {}  # Jun has run nothing himself
    cached = json.loads((tiny / "crm" / "cache" / f"{mine['cache_key']}.json").read_text(encoding="utf-8"))
    assert "timing_average" not in cached
    assert not (tiny / "crm" / "timings" / "jun.jsonl").exists()
    assert len((tiny / "crm" / "timings" / "mina.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_a_batch_file_must_be_in_the_callers_folders_unless_local(tiny: Path, tmp_path: Path) -> None:
    from personagraph.serving.settings import get_settings

    service = CrmService()
    outside = tmp_path / "elsewhere" / "rows.json"
    outside.parent.mkdir()
    outside.write_text(json.dumps([REQUEST]), encoding="utf-8")
    for path in (outside, str(outside), "../jun/rows.json", tmp_path / "missing.json", "/etc/passwd"):
        with pytest.raises(PathOutsideError, match="batch_file"):
            service.read_batch(MINA, path)
    assert service.read_batch(CLI_CALLER, outside) == [REQUEST]  # the terminal operator names any file
    mine = get_settings().uploads_dir / "mina"
    mine.mkdir(parents=True)
    (mine / "rows.json").write_text(json.dumps([REQUEST]), encoding="utf-8")
    assert service.read_batch(MINA, "rows.json") == [REQUEST]  # relative: in the upload folder
    assert service.read_batch(MINA, mine / "rows.json") == [REQUEST]
    with pytest.raises(PathOutsideError):
        service.read_batch(JUN, mine / "rows.json")  # another account's upload
    shipped = get_settings().data_dir / "crm" / "brands.yaml"
    with pytest.raises(ValueError, match="brands.yaml"):  # shipped data is readable (not a batch file)
        service.read_batch(MINA, shipped)


def test_batch_with_a_bad_row_reports_it_and_completes_the_others(tiny: Path, tmp_path: Path) -> None:
    rows = [REQUEST, {**REQUEST, "persona": 9}, {**REQUEST, "product": "lum-01", "brand": "lumiere"}]
    batch = tmp_path / "rows.json"
    batch.write_text(json.dumps(rows), encoding="utf-8")
    out = tmp_path / "out.json"
    from personagraph.cli.crm import add_crm_parser

    parser = argparse.ArgumentParser()
    add_crm_parser(parser.add_subparsers())
    args = parser.parse_args(["crm", "--batch_json", str(batch), "--out_path", str(out), "--disable_cache"])
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        assert args.func(args) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert [r["row"] for r in results] == [1, 2, 3]
    assert results[0]["status"] == "passed"
    assert results[1]["status"] == "invalid" and results[1]["field"] == "persona"
    assert results[2]["status"] in ("passed", "failed") and results[2]["product"]["id"] == "lum-01"


def test_cli_single_run_prints_the_result_json(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from personagraph.cli.crm import add_crm_parser

    parser = argparse.ArgumentParser()
    add_crm_parser(parser.add_subparsers())
    args = parser.parse_args(["crm", "--persona", "1", "--brand", "dewylab", "--product", "dew-01",
                              "--stage_index", "1", "--style_index", "2", "--is_event", "1"])  # fmt: skip
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "passed" and result["request"]["channel"] == "sms"


def test_eval_reports_rates_worst_cases_and_preference_pairs(tiny: Path, tmp_path: Path) -> None:
    from evals import crm as crm_eval

    dataset = tmp_path / "inputs.jsonl"
    rows = [REQUEST, {**REQUEST, "channel": "kakao", "style_index": 4}, {**REQUEST, "persona": 9}]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    models = {"drafter": scripted(DRAFT), "stylist": scripted(BAD, GOOD),
              "judge": scripted({"reads": 5, "persuasion": 4, "tone": 3, "comment": "ok"})}  # fmt: skip
    with use_models(models):
        summary = crm_eval.run(["--dataset", str(dataset), "--out-dir", str(tmp_path / "reports")])
    assert summary["n"] == 3 and summary["valid_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["grounded_rate"] == 1.0 and summary["length_ok_rate"] == 1.0
    assert summary["judge_mean"] == 3.5 and 0.0 <= summary["brand_id_accuracy"] <= 1.0
    assert summary["unexplained_failures"] == []
    report = json.loads(Path(summary["report"]).read_text(encoding="utf-8"))
    assert report["worst_cases"][0]["status"] == "invalid" and report["worst_cases"][0]["reasons"]
    pairs = [
        json.loads(line) for line in Path(summary["preferences"]).read_text(encoding="utf-8").splitlines()
    ]
    assert pairs and pairs[0]["chosen"] == GOOD and pairs[0]["rejected"] == BAD


def test_brand_classifier_tells_brands_apart_on_their_own_voice() -> None:
    from evals.crm import brand_classifier

    model = brand_classifier()
    assert model.predict(["득템 찬스! 가성비 꿀템 쟁여두기"])[0] == "pocketglow"
    assert model.predict(["고요한 의식처럼, 정제된 품격의 아틀리에"])[0] == "lumiere"


def test_ui_highlights_facts_with_their_evidence_and_runs_a_batch(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradio as gr

    from personagraph.accounts.store import AccountStore
    from personagraph.ui.crm_tab import build_crm_tab, generate, highlight, run_batch_file

    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(BAD)}):
        message, marked, checks, evidence, result, variants = generate(
            MINA, 1, "dewylab", "dew-01", 1, 2, True, "sms", 3, "ko", True
        )
    assert message == BAD and "❌ grounding" in checks and evidence and variants == ""
    assert ("99,000원", "UNSUPPORTED") in marked and ("세라마이드", "E1+F1+F2+F3+F4") in marked
    assert "".join(text for text, _ in marked) == BAD
    assert highlight({"message": "plain"}) == [("plain", None)]
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # where Gradio keeps uploads
    csv_file = tmp_path / "gradio" / "abc123" / "rows.csv"
    csv_file.parent.mkdir(parents=True)
    csv_file.write_text("persona,brand,product,stage_index,style_index,is_event,channel\n"
                        "1,dewylab,dew-01,1,2,1,sms\n9,dewylab,dew-01,1,2,1,sms\n", encoding="utf-8")  # fmt: skip
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        table, download, status = run_batch_file(MINA, str(csv_file), True)
    assert [row[1] for row in table] == ["passed", "invalid"] and "persona" in table[1][3]
    assert download and json.loads(Path(download).read_text(encoding="utf-8"))[0]["status"] == "passed"
    assert status == "2 rows: invalid 1, passed 1"
    outside = tmp_path / "rows.csv"
    outside.write_text(csv_file.read_text(encoding="utf-8"), encoding="utf-8")
    table, download, status = run_batch_file(MINA, str(outside), True)  # not an upload: not read
    assert table == [] and download is None and status.startswith("error: file:")
    with gr.Blocks():
        build_crm_tab(AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4))


def test_tone_refine_is_a_generic_node() -> None:
    from dataclasses import dataclass

    from langgraph.runtime import Runtime

    from personagraph.nodes.tone import tone_refine

    @dataclass
    class AnyContext:
        stylist_role: str = "stylist"

    stylist = scripted('Here is the rewritten text:\n"안녕하세요, 편안한 하루 보내세요"')
    with use_models({"stylist": stylist}):
        out = tone_refine(
            {"tone_text": "hello", "tone_guide": "calm", "tone_lang": "ko"}, Runtime(context=AnyContext())
        )
        again = tone_refine(
            {"tone_text": "hello", "tone_output": "bad", "tone_feedback": ["too long"], "tone_rounds": 1},
            Runtime(context=AnyContext()),
        )
    assert out["tone_output"] == "안녕하세요, 편안한 하루 보내세요" and out["tone_rounds"] == 1
    assert again["tone_rounds"] == 2 and "too long" in str(stylist.calls[1]["messages"][-1].content)
    with use_models({"stylist": scripted(ModelUnavailableError("stylist down"))}):
        failed = tone_refine({"tone_text": "hello"}, Runtime(context=AnyContext()))
    assert failed["tone_error"] == "stylist down" and "tone_output" not in failed


def test_short_channels_get_fewer_draft_points() -> None:
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.slots import draft_model, slots_for
    from personagraph.nodes.crm import render_draft

    channels = load_catalog().channels
    assert slots_for(channels["sms"]).points == 0 and slots_for(channels["push"]).points == 1
    assert slots_for(channels["email"]).points == 3 and slots_for(channels["sms"], "en").points == 1
    # The lengths are in the drafter's JSON schema (constrained decoding keeps to them).
    schema = draft_model(slots_for(channels["sms"])).model_json_schema()
    assert schema["properties"]["headline"]["maxLength"] == slots_for(channels["sms"]).headline_max <= 30
    assert schema["properties"]["call_to_action"]["maxLength"] <= 15
    draft = {"headline": "H", "points": [{"text": "a"}, {"text": "b"}], "call_to_action": "C"}
    assert render_draft(draft, 0) == "H\nC" and render_draft(draft) == "H\n- a\n- b\nC"


def test_eval_stops_at_max_minutes_and_resumes_where_it_stopped(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as real_time

    from evals import crm as crm_eval

    class Clock:  # 40 s pass per reading: row 1 starts at 40 s, row 2 would start at 80 s
        now = 0.0
        strftime = staticmethod(real_time.strftime)

        @classmethod
        def time(cls) -> float:
            cls.now += 40
            return cls.now

    dataset = tmp_path / "inputs.jsonl"
    rows = [REQUEST, {**REQUEST, "channel": "kakao"}, {**REQUEST, "style_index": 4}]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["--dataset", str(dataset), "--out-dir", str(tmp_path / "reports"), "--no-judge"]
    monkeypatch.setattr(crm_eval, "time", Clock)
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        stopped = crm_eval.run([*argv, "--max-minutes", "1"])
    assert stopped["complete"] is False and stopped["rows_done"] == 1 and stopped["rows"] == 3
    assert len(Path(stopped["partial"]).read_text(encoding="utf-8").splitlines()) == 1
    monkeypatch.setattr(crm_eval, "time", real_time)
    stylist = scripted(GOOD)
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        summary = crm_eval.run(argv)
    assert summary["complete"] is True and summary["resumed_rows"] == 1 and summary["n"] == 3
    assert summary["message_seconds_p50"] is not None and not Path(stopped["partial"]).exists()
    report = json.loads(Path(summary["report"]).read_text(encoding="utf-8"))
    assert [r["row"] for r in report["results"]] == [1, 2, 3]


def test_rescore_reads_an_earlier_runs_messages_under_todays_checks(tmp_path: Path) -> None:
    from evals import crm as crm_eval

    request = {**REQUEST, "lang": "ko"}
    results = [
        {"row": 1, "status": "passed", "request": request, "message": "듀이랩 세라마이드 배리어 크림: 건성, 민감성\n지금 확인해 보세요"},
        {"row": 2, "status": "passed", "request": request, "message": "듀이랩 배리어 크림이 장벽을 촉촉하게 지켜요. 지금 만나 보세요."},
    ]  # fmt: skip
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    summary = crm_eval.run(["--rescore", str(partial)])
    assert summary["rescored"] == 2 and summary["passed_then"] == 2 and summary["passed_now"] == 1
    assert [r["row"] for r in summary["newly_failing"]] == [1]
    assert any(r.startswith("reads:") for r in summary["newly_failing"][0]["reasons"])


def test_a_stopped_batch_does_not_run_its_remaining_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch stopped while it waits (SIGTERM's SystemExit, Ctrl-C, a result that cannot be written)
    ran every remaining row before stopping: leaving the thread pool waited for all of them."""
    import threading
    import time

    from personagraph.services.crm import CrmService

    started: list[int] = []

    def run_row(caller: Any, row: Any, number: int, variants: int) -> dict[str, Any]:
        started.append(number)
        time.sleep(0.05)
        return {"row": number, "status": "passed"}

    service = CrmService(use_cache=False)
    monkeypatch.setattr(service, "run_row", run_row)

    def keep(result: dict[str, Any]) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        service.run_batch(MINA, [REQUEST] * 20, concurrency=2, on_result=keep)
    assert len(started) <= 4 and started[:2] == [1, 2]
