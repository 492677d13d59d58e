"""CRM request validation (names or indices; errors name the field and the allowed values) and the CLI's
exit code for an invalid value."""

from __future__ import annotations

import argparse
import json

import pytest

from personagraph.cli.crm import add_crm_parser
from personagraph.crm.inputs import CrmInputError, parse_request

BASE = {
    "persona": 0,
    "brand": "lumiere",
    "product": "lum-01",
    "stage_index": 1,
    "style_index": 2,
    "is_event": 1,
}


def test_indices_resolve() -> None:
    request = parse_request(BASE)
    assert request.model_dump() == {
        **BASE,
        "channel": "sms",
        "top_k": 3,
        "lang": "ko",
        "hook": 0,
        "catalog": "",
    }


def test_names_work_as_well_as_indices() -> None:
    request = parse_request({
        "persona": "Sensitive Skin", "brand": "Dewy Lab", "product": "세라마이드 배리어 크림".join(["듀이랩 ", ""]),
        "stage_index": "retention", "style_index": "질문형", "is_event": "yes", "channel": "KAKAO", "top_k": "5",
    })  # fmt: skip
    assert (request.persona, request.brand, request.product) == (1, "dewylab", "dew-01")
    assert (request.stage_index, request.style_index, request.is_event) == (2, 3, 1)
    assert (request.channel, request.top_k) == ("kakao", 5)


def test_csv_strings_are_accepted() -> None:
    raw = {k: str(v) for k, v in BASE.items()}
    assert parse_request(raw) == parse_request(BASE)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("persona", 7, "0 (Luxury Lover)"),
        ("persona", "Rich Person", "4 (Natural Beauty)"),
        ("brand", "Chanel", "lumiere (뤼미에르 아틀리에)"),
        ("product", "dew-01", "lum-01 ("),
        ("stage_index", 5, "4 (Referral)"),
        ("style_index", -1, "5 (Limited time)"),
        ("is_event", 2, "0, 1"),
        ("channel", "fax", "sms, lms, push, kakao, email"),
        ("top_k", 0, "1 to 10"),
        ("lang", "fr", "ko, en"),
        ("persona", None, "required"),
        ("colour", "red", "allowed fields"),
    ],
)
def test_an_invalid_value_names_the_field_and_the_allowed_values(
    field: str, value: object, allowed: str
) -> None:
    raw = {**BASE, field: value}
    with pytest.raises(CrmInputError) as info:
        parse_request(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert allowed in str(info.value)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="personagraph")
    add_crm_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_invalid_value_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["crm", "--persona", "9", "--brand", "lumiere", "--product", "lum-01", "--stage_index", "1",
                   "--style_index", "2", "--is_event", "1"])  # fmt: skip
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "--persona: 9 is out of range" in err and "0 (Luxury Lover)" in err


def test_cli_batch_needs_an_out_path(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["crm", "--batch_json", "rows.json"])
    assert args.func(args) == 2
    assert "--out_path" in capsys.readouterr().err


def test_cli_list_prints_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["crm", "--list"])
    assert args.func(args) == 0
    choices = json.loads(capsys.readouterr().out)
    assert len(choices["brands"]) >= 6 and "email" in choices["channels"]


def test_a_slot_filled_to_its_limit_ends_at_its_last_whole_word() -> None:
    """Constrained decoding cut headlines mid-word ("... 맞는 펩타" for 펩타이드) in the eval run."""
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.slots import slots_for, uncut_draft

    slots = slots_for(load_catalog().channels["push"], "ko")
    headline = "뤼미에르 아이 컨투어 크림: 건성, 중성, 복합성 피부 타입에 맞는 펩타"
    assert len(headline) == slots.headline_max
    draft = {"headline": headline, "points": [{"text": "펩타이드를 담았어요.", "evidence_ids": ["F1"]}],
             "call_to_action": "지금 확인해 보세요"}  # fmt: skip
    uncut = uncut_draft(draft, slots)
    # and without the words left hanging ("맞는", "타입에"): the phrase they start was cut
    assert uncut["headline"] == "뤼미에르 아이 컨투어 크림: 건성, 중성, 복합성 피부"
    sms = slots_for(load_catalog().channels["sms"], "ko")
    cut = "뤼미에르 르 세럼 앱솔뤼: 건성 피부를 위한 향과 보습"[: sms.headline_max]  # seen in the eval
    assert uncut_draft({**draft, "headline": cut}, sms)["headline"] == "뤼미에르 르 세럼 앱솔뤼: 건성"
    assert uncut["points"] == draft["points"] and uncut["call_to_action"] == "지금 확인해 보세요"
    cut_cta = "장벽 루틴 위크에서 구매하면 더 저렴한 가격을 얻을 수"[: slots.cta_max]
    assert uncut_draft({**draft, "call_to_action": cut_cta}, slots)["call_to_action"] == ""  # repair adds one


def test_an_sms_headline_gets_the_room_the_call_to_action_leaves() -> None:
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.slots import slots_for

    sms = slots_for(load_catalog().channels["sms"], "ko")
    assert sms.points == 0 and sms.headline_max + sms.cta_max + 2 == sms.budget
