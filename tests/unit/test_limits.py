"""Limits on untrusted input (issue 16): each is a setting, and each refusal names the field and the
setting. Cards (file size, decompressed PNG text, field lengths), surveys and guides (size, YAML
aliases, counts, text lengths), uploads, respondent rows, CRM batches and fields, interview replies,
twin runs at once, request bodies and sign-in throttling."""

from __future__ import annotations

import base64
import json
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personagraph.accounts.identity import Caller, LimitReachedError
from personagraph.accounts.store import AccountStore, SignInThrottle, sign_in_client
from personagraph.api.limits import BodyLimitMiddleware, SignInClientMiddleware, body_limit
from personagraph.crm.inputs import CrmInputError, parse_request
from personagraph.personas.cards import CardError, load_card
from personagraph.services.crm import BatchFileError, CrmService, load_rows, parse_rows
from personagraph.services.twins import selections
from personagraph.services.twins.interviews import InterviewSession
from personagraph.services.twins.store import (
    RunError,
    check_run_capacity,
    claim_run,
    create_run_store,
    release_run,
)
from personagraph.serving.safe_yaml import NoAliasSafeLoader, UserDataError, load_yaml
from personagraph.serving.settings import get_settings
from personagraph.twins.guides import GuideError, guide_from_text, load_guide
from personagraph.twins.respondents import RespondentError, load_user_personas
from personagraph.twins.surveys import SurveyError, load_survey, survey_from_data, survey_from_text

MINA, JOON = Caller("mina"), Caller("joon")


@pytest.fixture
def limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set limits (as environment variables) in a home of the test's own: `limits(CARD_MAX_BYTES=2048)`."""
    monkeypatch.setenv("PERSONAGRAPH_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()

    def set_limits(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield set_limits
    get_settings.cache_clear()


# --- character cards ---------------------------------------------------------------------------------


def _card(**data: Any) -> dict[str, Any]:
    base = {"name": "Mira", "description": "A baker.", "personality": "warm", "scenario": "",
            "first_mes": "Hi!", "mes_example": ""}  # fmt: skip
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {**base, **data}}


def _png(kind: bytes, body: bytes) -> bytes:
    def chunk(name: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + name + payload + struct.pack(">I", zlib.crc32(name + payload))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(kind, body)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))  # fmt: skip


def _bomb(mib: int) -> bytes:
    """A small zlib stream that inflates to `mib` MiB of base64-looking text (made 1 MiB at a time)."""
    packer, block = zlib.compressobj(9), b"A" * (1024 * 1024)
    return b"".join(packer.compress(block) for _ in range(mib)) + packer.flush()


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_a_compressed_png_card_never_inflates_past_its_limit(limits: Any, kind: bytes) -> None:
    limits(CARD_MAX_TEXT_BYTES=64 * 1024)
    compressed = _bomb(64)  # ~65 kB that would become 64 MiB
    assert len(compressed) < 100_000
    body = b"chara\x00\x00" + compressed if kind == b"zTXt" else b"chara\x00\x01\x00\x00\x00" + compressed
    tracemalloc.start()
    try:
        with pytest.raises(CardError, match=r"^card: .*CARD_MAX_TEXT_BYTES"):
            load_card(_png(kind, body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"decompressing took {peak} bytes"


def test_a_small_compressed_card_still_loads_and_a_truncated_one_is_refused(limits: Any) -> None:
    text = base64.b64encode(json.dumps(_card()).encode())
    assert load_card(_png(b"zTXt", b"chara\x00\x00" + zlib.compress(text))).data.name == "Mira"
    with pytest.raises(CardError, match="truncated"):
        load_card(_png(b"zTXt", b"chara\x00\x00" + zlib.compress(text)[:-8]))


def test_card_file_size_is_a_setting(limits: Any, tmp_path: Path) -> None:
    raw = json.dumps(_card(description="x" * 5000)).encode()
    limits(CARD_MAX_BYTES=4096)
    with pytest.raises(CardError, match=r"^card: file is \d+ bytes; the maximum is 4096 \(CARD_MAX_BYTES\)"):
        load_card(raw)
    path = tmp_path / "big.json"
    path.write_bytes(raw)
    with pytest.raises(CardError, match="CARD_MAX_BYTES"):
        load_card(path)


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        (_card(description="x" * 2001), r"^data\.description: is 2001 characters; the maximum is 2000 \(CARD_MAX_FIELD_CHARS\)"),
        (_card(character_book={"entries": [{"keys": ["k"], "content": "y" * 2001}]}),
         r"^data\.character_book\.entries\[0\]\.content: is 2001 characters"),
        (_card(tags=["t"] * 11), r"^data\.tags: has 11 items; the maximum is 10 \(CARD_MAX_ITEMS\)"),
        (_card(extensions={"x": {"y": "z" * 2001}}), r"^data\.extensions\.x\.y: is 2001 characters"),
    ],
)  # fmt: skip
def test_card_fields_are_capped_naming_the_field(limits: Any, card: dict[str, Any], expected: str) -> None:
    limits(CARD_MAX_FIELD_CHARS=2000, CARD_MAX_ITEMS=10)
    with pytest.raises(CardError, match=expected):
        load_card(card)


def test_deeply_nested_cards_are_clear_errors(limits: Any) -> None:
    nested: Any = "leaf"
    for _ in range(50):
        nested = {"n": nested}
    with pytest.raises(CardError, match="nested more than"):
        load_card(_card(extensions=nested))
    with pytest.raises(CardError, match="nested"):
        load_card(b"[" * 100_000 + b"]" * 100_000)


# --- surveys and guides ------------------------------------------------------------------------------

LAUGHS = """\
id: laughs
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
questions:
  - {id: q1, type: open, text: hi}
meta: [*c, *c, *c]
"""


def test_yaml_anchors_and_aliases_are_refused_before_anything_expands(limits: Any, tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    with pytest.raises(SurveyError, match=r"^survey: not valid YAML: anchors and aliases"):
        load_survey(path)
    with pytest.raises(SurveyError, match="anchors and aliases"):
        survey_from_text(LAUGHS)
    guide = "questions: &q [{id: q1, text: hi}]\nmore: *q\n"
    with pytest.raises(GuideError, match=r"^guide: not valid YAML: anchors and aliases"):
        guide_from_text(guide)
    (tmp_path / "g.yaml").write_text(guide)
    with pytest.raises(GuideError, match="anchors and aliases"):
        load_guide(tmp_path / "g.yaml")


def test_the_app_survey_box_refuses_aliases_too(limits: Any) -> None:
    from personagraph.ui.twins_tab import guide_from_text as ui_guide
    from personagraph.ui.twins_tab import survey_from_text as ui_survey

    with pytest.raises(SurveyError, match="anchors and aliases"):
        ui_survey(LAUGHS)
    with pytest.raises(GuideError, match="anchors and aliases"):
        ui_guide("x: &a 1\nquestions: [{id: q1, text: *a}]\n")


def test_the_loader_is_safe_and_depth_limited() -> None:
    with pytest.raises(UserDataError, match="could not determine a constructor"):
        load_yaml("!!python/object/apply:os.system [echo hi]", "survey")
    with pytest.raises(UserDataError, match="nested more than"):
        load_yaml("[" * 5000 + "]" * 5000, "survey")
    assert issubclass(NoAliasSafeLoader, __import__("yaml").SafeLoader)
    assert load_yaml("questions: [{id: q1, text: '&not an anchor *or alias'}]", "survey")


def test_survey_files_and_text_over_the_size_limit(limits: Any, tmp_path: Path) -> None:
    limits(SURVEY_MAX_BYTES=2048)
    text = "questions:\n" + "".join(
        f"  - {{id: q{i}, type: open, text: question number {i}}}\n" for i in range(80)
    )
    path = tmp_path / "big.yaml"
    path.write_text(text)
    with pytest.raises(
        SurveyError, match=r"^survey: big\.yaml is \d+ bytes; the maximum is 2048 \(SURVEY_MAX_BYTES\)"
    ):
        load_survey(path)
    with pytest.raises(SurveyError, match=r"^survey: is \d+ bytes; the maximum is 2048 \(SURVEY_MAX_BYTES\)"):
        survey_from_text(text)
    with pytest.raises(GuideError, match="SURVEY_MAX_BYTES"):
        guide_from_text(text)


def test_survey_counts_and_texts_are_capped(limits: Any) -> None:
    limits(SURVEY_MAX_QUESTIONS=3, QUESTION_MAX_CHARS=100, QUESTION_MAX_OPTIONS=7)
    many = [{"id": f"q{i}", "type": "open", "text": "hi"} for i in range(4)]
    with pytest.raises(
        SurveyError, match=r"'questions': 4 questions; the maximum is 3 \(SURVEY_MAX_QUESTIONS\)"
    ):
        survey_from_data({"questions": many})
    with pytest.raises(SurveyError, match=r"SURVEY_MAX_QUESTIONS"):
        survey_from_data({"items": [{"id": f"i{i}"} for i in range(4)]})
    with pytest.raises(
        SurveyError, match=r"^question 'q1' field 'text': is 101 characters.*QUESTION_MAX_CHARS"
    ):
        survey_from_data({"questions": [{"id": "q1", "type": "open", "text": "x" * 101}]})
    with pytest.raises(SurveyError, match=r"field 'options\[1\]\.label': is 101 characters"):
        survey_from_data(
            {"questions": [{"id": "q1", "type": "single_choice", "text": "t", "options": ["a", "b" * 101]}]}
        )
    with pytest.raises(SurveyError, match=r"^question 'q1' field 'points': 10000 options; the maximum is 7"):
        survey_from_data({"questions": [{"id": "q1", "type": "likert", "text": "t", "points": 10_000}]})
    with pytest.raises(
        SurveyError, match=r"field 'options': 8 options; the maximum is 7 \(QUESTION_MAX_OPTIONS\)"
    ):
        survey_from_data(
            {"questions": [{"id": "q1", "type": "single_choice", "text": "t", "options": list("abcdefgh")}]}
        )
    with pytest.raises(GuideError, match=r"^question 'q1' field 'text': is 101 characters"):
        guide_from_text("questions: [{id: q1, text: " + "x" * 101 + "}]")
    # A huge range is refused before a single option is made.
    with pytest.raises(SurveyError, match="QUESTION_MAX_OPTIONS"):
        survey_from_data(
            {"questions": [{"id": "q1", "type": "likert", "text": "t", "min": 0, "max": 10**12}]}
        )


# --- uploads and respondent files ----------------------------------------------------------------------


def test_uploads_over_the_limit_are_refused_naming_the_setting(limits: Any, tmp_path: Path) -> None:
    limits(UPLOAD_MAX_BYTES=1024, SURVEY_MAX_BYTES=1024)
    big = tmp_path / "people.csv"
    big.write_text("id,profile\n" + "1,x\n" * 600)
    with pytest.raises(
        selections.UploadTooLargeError, match=r"^respondents_file: .*1024 bytes \(UPLOAD_MAX_BYTES\)"
    ):
        selections.save_upload(MINA, big, field="respondents_file")
    survey = tmp_path / "s.yaml"
    survey.write_text("questions: []\n# " + "x" * 1100 + "\n")
    limits(UPLOAD_MAX_BYTES=100_000)
    with pytest.raises(
        selections.UploadTooLargeError, match=r"^file: s\.yaml is \d+ bytes.*SURVEY_MAX_BYTES"
    ):
        selections.read_upload_text(MINA, survey)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_respondent_files_have_a_row_cap(limits: Any, tmp_path: Path, suffix: str) -> None:
    limits(RESPONDENTS_MAX_ROWS=10)
    rows = [{"id": str(i), "profile": f"person {i}"} for i in range(11)]
    path = tmp_path / f"people{suffix}"
    if suffix == ".csv":
        path.write_text("id,profile\n" + "".join(f"{r['id']},{r['profile']}\n" for r in rows))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows))
    with pytest.raises(
        RespondentError, match=r"more than 10 rows; the maximum is 10 \(RESPONDENTS_MAX_ROWS\)"
    ):
        load_user_personas(path)
    limits(RESPONDENTS_MAX_ROWS=11)
    assert len(load_user_personas(path, source="again")) == 11


def test_unreadable_respondent_files_are_clear_errors(limits: Any, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RespondentError, match="nested too deeply"):
        load_user_personas(path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "profile": "x"}\n{not json\n')
    with pytest.raises(RespondentError, match=r"^broken\.jsonl: cannot be read as jsonl"):
        load_user_personas(broken)


# --- CRM ------------------------------------------------------------------------------------------------

ROW = {"persona": 0, "brand": "dewylab", "product": "dew-01", "stage_index": 0, "style_index": 0}


def test_crm_batches_have_a_row_cap(limits: Any, tmp_path: Path) -> None:
    limits(CRM_BATCH_MAX_ROWS=3)
    csv_text = "persona,brand,product,stage_index,style_index\n" + "0,dewylab,dew-01,0,0\n" * 4
    with pytest.raises(
        BatchFileError, match=r"^rows: the batch has 4 rows; the maximum is 3 \(CRM_BATCH_MAX_ROWS\)"
    ):
        parse_rows(csv_text, "b.csv")
    with pytest.raises(BatchFileError, match="CRM_BATCH_MAX_ROWS"):
        parse_rows("\n".join(json.dumps(ROW) for _ in range(4)), "b.jsonl")
    with pytest.raises(BatchFileError, match="CRM_BATCH_MAX_ROWS"):
        parse_rows(json.dumps([ROW] * 4), "b.json")
    assert len(parse_rows(json.dumps([ROW] * 3), "b.json")) == 3

    service = CrmService(use_cache=False)
    ran: list[Any] = []

    def run(caller: Caller, raw: Any) -> dict[str, Any]:
        ran.append(raw)
        return {"status": "passed"}

    service.run = run  # type: ignore[method-assign]
    with pytest.raises(BatchFileError, match="CRM_BATCH_MAX_ROWS"):
        service.run_batch(MINA, [ROW] * 4)
    assert ran == []  # refused before any row ran
    limits(UPLOAD_MAX_BYTES=1024)
    big = tmp_path / "big.csv"
    big.write_text(csv_text * 40)
    with pytest.raises(BatchFileError, match=r"UPLOAD_MAX_BYTES"):
        load_rows(big)


def test_crm_fields_are_capped_before_lookup(limits: Any) -> None:
    limits(CRM_FIELD_MAX_CHARS=50)
    with pytest.raises(
        CrmInputError, match=r"^brand: is 5000 characters; the maximum is 50 \(CRM_FIELD_MAX_CHARS\)"
    ) as err:
        parse_request({**ROW, "brand": "b" * 5000})
    assert err.value.field == "brand"
    with pytest.raises(CrmInputError, match=r"^product: must be a number or a short text"):
        parse_request({**ROW, "product": ["dew-01"] * 1000})
    extra = parse_rows("persona,brand\n0,dewylab,surplus\n", "b.csv")
    with pytest.raises(CrmInputError, match=r"^row: has more values than the header has columns"):
        parse_request(extra[0])


# --- interviews and runs -------------------------------------------------------------------------------


def test_interview_follow_ups_have_a_length_limit(limits: Any) -> None:
    limits(INTERVIEW_MAX_MESSAGE_CHARS=100)
    session = InterviewSession(MINA, InMemorySaver())
    with pytest.raises(
        RunError, match=r"^text: is 101 characters; the maximum is 100 \(INTERVIEW_MAX_MESSAGE_CHARS\)"
    ):
        session.reply("interview-0123", "x" * 101)


def _claimable(caller: Caller, run_id: str) -> Any:
    return create_run_store(caller, "survey", run_id, survey_id="s", options={}, selection=None, source="t")


def test_runs_at_once_are_capped_per_account_and_per_server(limits: Any) -> None:
    limits(RUNS_MAX_ACTIVE_PER_ACCOUNT=2, RUNS_MAX_ACTIVE=3)
    stores = {
        name: _claimable(MINA if name.startswith("m") else JOON, name)
        for name in ("m1", "m2", "m3", "j1", "j2")
    }
    try:
        claim_run(stores["m1"])
        claim_run(stores["m2"])
        with pytest.raises(
            LimitReachedError, match=r"^runs: at most 2 running per account \(RUNS_MAX_ACTIVE_PER_ACCOUNT\)"
        ) as err:
            claim_run(stores["m3"])
        assert err.value.status == 429
        with pytest.raises(LimitReachedError, match="per account"):
            check_run_capacity(MINA)
        claim_run(stores["j1"])  # another account still may
        with pytest.raises(
            LimitReachedError, match=r"^runs: at most 3 running at once on this server \(RUNS_MAX_ACTIVE\)"
        ):
            claim_run(stores["j2"])
        release_run(stores["m1"], "done")
        claim_run(stores["m3"])  # a finished run frees its place
    finally:
        for store in stores.values():
            release_run(store, "stopped")
            store.close()


# --- request bodies and sign-in --------------------------------------------------------------------------


def _echo_app(**kwargs: Any) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body()), "client": sign_in_client.get()})

    routes = [Route(path, echo, methods=["POST"]) for path in ("/api/x", "/gradio_api/queue/join",
                                                               "/gradio_api/upload", "/login")]  # fmt: skip
    app = Starlette(routes=routes)
    return SignInClientMiddleware(BodyLimitMiddleware(app))  # type: ignore[return-value]


def test_request_bodies_are_capped_for_the_api_and_the_app(limits: Any) -> None:
    limits(API_MAX_JSON_BYTES=2048, CARD_MAX_BYTES=4096)
    client = TestClient(_echo_app())
    for path in ("/api/x", "/gradio_api/queue/join", "/login"):
        refused = client.post(path, content=b"x" * 3000)
        assert refused.status_code == 413, path
        assert refused.json() == {"error": {"status": 413, "field": "body",
                                            "reason": "the request is larger than 2048 bytes (API_MAX_JSON_BYTES)"}}  # fmt: skip
        assert client.post(path, content=b"x" * 2000).json()["size"] == 2000
    # Gradio's file route keeps Gradio's own limit (its max_file_size, UPLOAD_MAX_BYTES).
    assert body_limit("/gradio_api/upload") is None
    assert client.post("/gradio_api/upload", content=b"x" * 3000).json()["size"] == 3000
    assert body_limit("/api/personas/import") == 4096 + 64 * 1024
    # A run's pilot answers are an upload (UPLOAD_MAX_BYTES a file), not a JSON body.
    uploads = get_settings().upload_max_bytes * 4 + 64 * 1024
    assert body_limit("/api/twins/runs/r1/calibrate") == uploads
    assert (
        body_limit("/api/twins/runs/r1/cancel") == 2048
        and body_limit("/api/twins/runs/a/b/calibrate") == 2048
    )


def test_the_login_form_knows_the_client_address(limits: Any) -> None:
    client = TestClient(_echo_app())
    assert client.post("/login", content=b"u=1").json()["client"] == "testclient"
    assert client.post("/api/x", content=b"{}").json()["client"] == ""


def test_sign_in_throttle_numbers_are_settings(limits: Any, tmp_path: Path) -> None:
    limits(SIGNIN_MAX_FAILURES=2, SIGNIN_LOCKOUT_S=7, SIGNIN_MAX_LOCKOUT_S=60)
    accounts = AccountStore(path=tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    try:
        throttle = accounts.throttle
        assert (throttle.max_failures, throttle.base_lockout_s, throttle.max_lockout_s) == (2, 7, 60)
    finally:
        accounts.close()


def test_login_form_failures_count_per_client_address(limits: Any, tmp_path: Path) -> None:
    now = [0.0]
    throttle = SignInThrottle(max_failures=3, base_lockout_s=30, clock=lambda: now[0])
    accounts = AccountStore(path=tmp_path / "accounts.sqlite", throttle=throttle, bcrypt_rounds=4)
    try:
        accounts.add("mina", "mina-password")
        token = sign_in_client.set("203.0.113.9")
        try:
            for user in ("a", "b", "c"):  # a different account each time: only the address links them
                assert not accounts.gradio_auth(user, "wrong")
            assert not accounts.gradio_auth("mina", "mina-password")  # the address waits
        finally:
            sign_in_client.reset(token)
        assert accounts.gradio_auth("mina", "mina-password")  # from another address: fine
    finally:
        accounts.close()


def test_the_throttle_forgets_unlocked_keys_past_its_cap() -> None:
    throttle = SignInThrottle(max_failures=3, max_tracked=100)
    for n in range(1000):
        throttle.failed(f"user:{n}")
    assert throttle.tracked() <= 101
