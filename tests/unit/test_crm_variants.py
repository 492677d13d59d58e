"""Variants (checked and ranked), concurrent resumable batches, the CSV and legacy exports, and a run on
an imported catalog, through the real graph with scripted models over the tiny catalog."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from personagraph.accounts.identity import CLI_CALLER, Caller
from personagraph.crm.catalog import load_catalog
from personagraph.crm.inputs import CrmInputError
from personagraph.services.crm import CrmService, write_results
from personagraph.serving.models import use_models
from tests.fakes import scripted
from tests.unit.test_crm_graph import BAD, DRAFT, GOOD, REQUEST, tiny, tiny_dirs  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("tiny")  # CRM_DATA_DIR = the tiny catalog, its index built once
MINA = Caller("mina")
TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "crm" / "templates"


def test_variants_are_all_checked_and_ranked_passed_first() -> None:
    stylist = scripted(BAD, BAD, GOOD)  # hook 0 fails (after its one rewrite), hook 1 passes
    service = CrmService(use_cache=False)
    service.context.max_refine_rounds = 1
    with use_models({"drafter": scripted(DRAFT), "stylist": stylist}):
        result = service.run_variants(MINA, REQUEST, 2)
    variants = result["variants"]
    assert [v["rank"] for v in variants] == [1, 2] and [v["hook_index"] for v in variants] == [1, 0]
    assert variants[0]["status"] == "passed" and variants[1]["status"] == "failed" and variants[1]["reasons"]
    assert result["status"] == "passed" and result["message"] == GOOD == variants[0]["message"]
    assert 0.0 <= variants[0]["brand_score"] <= 1.0
    # The hook reached the stylist's voice guide.
    assert "Opening of this variant" in " ".join(str(m.content) for m in stylist.calls[2]["messages"])
    with pytest.raises(CrmInputError, match="variants: 9 is not allowed; allowed: an integer from 1 to 5"):
        service.run_variants(MINA, REQUEST, 9)


def test_csv_export_has_one_row_per_variant_and_legacy_keeps_the_old_shape(tmp_path: Path) -> None:
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        result = CrmService(use_cache=False).run_variants(MINA, REQUEST, 3)
    out = tmp_path / "variants.csv"
    write_results([{"row": 1, **result}], out)
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert [r["variant"] for r in rows] == ["1", "2", "3"] and all(r["message"] == GOOD for r in rows)
    assert {r["brand"] for r in rows} == {"dewylab"} and rows[0]["status"] == "passed"
    legacy = tmp_path / "legacy.json"
    write_results([{"row": 1, **result}], legacy, "legacy")
    old = json.loads(legacy.read_text(encoding="utf-8"))[0]
    assert old["exaone"]["result_raw"] == GOOD and old["qwen"]["draft"].startswith(DRAFT["headline"])
    assert old["stage_kr"] == "활성화" and old["style_templates"]["name"] == "혜택 강조"
    assert old["selected_event"]["id"] == "dew-duo" and set(old["timing"]) == {
        "load",
        "rag",
        "qwen",
        "exaone",
        "total",
    }


def test_a_concurrent_batch_keeps_row_order_reports_a_bad_row_and_resumes() -> None:
    rows: list[dict[str, Any]] = [REQUEST, {**REQUEST, "brand": "nope"}, {**REQUEST, "channel": "kakao"}]
    seen: list[int] = []
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        results = CrmService(use_cache=False).run_batch(
            MINA, rows, concurrency=3, on_result=lambda r: seen.append(r["row"])
        )
        again = CrmService(use_cache=False).run_batch(MINA, rows, skip={1, 2})
    assert [r["row"] for r in results] == [1, 2, 3] and sorted(seen) == [1, 2, 3]
    assert [r["status"] for r in results] == ["passed", "invalid", "passed"] and results[1][
        "field"
    ] == "brand"
    assert [r["row"] for r in again] == [3]


def test_cli_batch_resumes_from_its_partial_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from personagraph.cli.main import main

    batch = tmp_path / "rows.jsonl"
    batch.write_text(
        "".join(json.dumps(r) + "\n" for r in [REQUEST, {**REQUEST, "channel": "kakao"}]), encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial.jsonl"
    partial.write_text(
        json.dumps({"row": 1, "status": "passed", "message": "earlier"}) + "\n", encoding="utf-8"
    )
    with use_models({"drafter": scripted(DRAFT), "stylist": scripted(GOOD)}):
        code = main(["crm", "--batch_json", str(batch), "--out_path", str(out), "--resume", "--concurrency", "2",
                     "--disable_cache"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["resumed"] == 1 and summary["rows"] == 2
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (
        [r["row"] for r in written] == [1, 2] and written[0]["message"] == "earlier" and not partial.exists()
    )


def test_a_message_on_an_imported_catalog() -> None:
    from personagraph.crm.importer import import_catalog

    import_catalog("myshop", brands=TEMPLATES / "brands.csv", products=TEMPLATES / "products.csv",
                   reviews=TEMPLATES / "reviews.csv", promotions=TEMPLATES / "promotions.csv")  # fmt: skip
    draft = {"headline": "하루결 수분 크림", "points": [{"text": "50ml 25,000원", "evidence_ids": ["F1"]}],
             "call_to_action": "지금 만나 보세요"}  # fmt: skip
    message = "하루결 수분 크림 50ml 25,000원, 20% 할인 중이에요. 지금 만나 보세요."
    request = {"persona": 1, "brand": "haru", "product": "haru-01", "stage_index": 0, "style_index": 0,
               "is_event": 1, "channel": "sms", "catalog": "myshop"}  # fmt: skip
    with use_models({"drafter": scripted(draft), "stylist": scripted(message)}):
        result = CrmService(use_cache=False).run(CLI_CALLER, request)
    assert result["status"] == "passed", result.get("reasons") or result.get("error")
    assert result["brand"]["name"] == "하루결" and result["event"]["id"] == "haru-winter"
    assert any("하루결 수분 크림" in e["text"] for e in result["evidence"] if e["kind"] == "product")
    assert "haru" not in load_catalog().brands  # outside the run, the default catalog again
