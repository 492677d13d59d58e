"""Service methods with hostile callers, ids, profiles and questions: the chat service (requests,
history, threads, stop, regenerate, profiles, forget, card import), the twin run store (open, info,
cancel, delete with hostile run ids), selections and uploads, the CRM service and the insight
service. Each call returns, or raises the project's error naming the field (a ValueError subclass
or an AccessError); and another account's data, and every file outside the caller's own folders,
stays as it was.

Callers include ids that are prefixes or extensions of the other account's id ("bo", "bob2",
"bob.x", "BOB"): store namespaces and folders must match ids exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from personagraph.accounts.identity import AccessError, Caller
from personagraph.insight.questions import InvalidQuestionError
from personagraph.services.chat import ChatRequest, ChatService, validate_request
from personagraph.services.crm import CrmService
from personagraph.services.insight import InsightService
from personagraph.services.twins import selections
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.store import cancel_run, delete_run, open_run, run_info, visible_runs
from personagraph.services.twins.surveys import create_survey_run
from personagraph.serving.models import use_models
from personagraph.serving.safe_paths import SAFE_ID, PathOutsideError
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.respondents import Selection, load_twin2k
from personagraph.twins.surveys import load_survey
from tests.fuzz.inputs import CARD, CRM_REQUEST, CRM_VALUES, card_payloads, png_cards
from tests.fuzz.strategies import (
    assert_clear,
    examples,
    hostile_ids,
    hostile_numbers,
    hostile_text,
    json_values,
    mutated,
    to_json_bytes,
)
from tests.fuzz.support import CrmGraphStub, fake_models, insight_service

pytestmark = pytest.mark.timeout(180)
BOB = Caller("bob")
# Ids close to bob's: prefixes, extensions, case and separators.
NEAR_BOB = ["bo", "b", "bob2", "bob.x", "bob@x", "BOB", "Bob", "bob-", "bob_", "bob%2E", "bob%", "bob*", "b?b"]  # fmt: skip
# ValueError subclasses name the field (InvalidRequestError, CardError, ...); a path outside the
# caller's folders is a PathOutsideError (a PermissionError, 403 over HTTP).
CLEAR = (ValueError, AccessError, PathOutsideError)


def callers() -> st.SearchStrategy[Caller]:
    return st.builds(
        Caller, hostile_ids([*NEAR_BOB, "alice", "local"]), st.sampled_from(["user", "user", "admin"])
    )


def user_callers() -> st.SearchStrategy[Caller]:
    """Callers who are not admins (an admin may legitimately manage bob's runs and cards)."""
    return st.builds(Caller, hostile_ids([*NEAR_BOB, "alice", "local"]))


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """The result, or None after a clear error; anything else fails the test."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the assertion says what escaped
        assert_clear(exc, CLEAR)
        if isinstance(exc, ValueError):
            assert ": " in str(exc), f"{type(exc).__name__} names no field: {exc}"
            assert not isinstance(exc, UnicodeError), f"{type(exc).__name__}: {exc}"
            assert not isinstance(exc, UnicodeError), f"{type(exc).__name__}: {exc}"
        return None


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal"))
    }


# --- chat ---------------------------------------------------------------------------------------------


@pytest.fixture
def chat(isolated_home: Path, no_classifier: None) -> Iterator[ChatService]:
    """The chat service on the app's own SQLite persistence, with bob's thread, profile and card."""
    with use_models(fake_models()):
        service = ChatService()
        service.send(BOB, validate_request(message="I'm Bob from Busan", thread_id="bob-thread"))
        service.update_profile(BOB, "stella_yuna", {"name": "Bob", "facts": ["lives in Busan"]})
        card = {**CARD, "data": {**CARD["data"], "name": "Bob Card"}}
        service.import_card(BOB, json.dumps(card).encode(), persona_id="bobs_card")
        yield service


def bob_chat(service: ChatService, home: Path) -> dict[str, Any]:
    return {
        "history": [(m.id, m.content) for m in service.history(BOB, "bob-thread")],
        "threads": service.threads(BOB),
        "profile": service.get_profile(BOB, "stella_yuna"),
        "memories": service.memories(BOB, "stella_yuna"),
        "personas": service.personas(BOB),
        "card": service.export_card(BOB, "bobs_card"),
        "card files": digest(home / "personas" / "bobs_card"),
    }


PROFILE = {
    "name": "Alice",
    "nickname": "Al",
    "birthday": "05-01",
    "favourite_member": "Yuna",
    "facts": ["tea"],
}


@settings(max_examples=examples(40))
@given(st.data())
def test_chat_service(chat: ChatService, isolated_home: Path, data: st.DataObject) -> None:
    before = bob_chat(chat, isolated_home)
    caller = data.draw(user_callers(), label="caller")
    ids = ["bob-thread", "t1", *NEAR_BOB]
    thread = data.draw(hostile_ids(ids), label="thread")
    persona = data.draw(hostile_ids(["stella_yuna", "bobs_card", "captain_haneul"]), label="persona")
    fields = data.draw(mutated({"message": "hi", "thread_id": thread, "persona_id": persona},
                               st.one_of(hostile_text(ids), json_values())), label="request")  # fmt: skip
    request = call(validate_request, **fields)
    assert request is None or isinstance(request, ChatRequest)
    action = data.draw(st.sampled_from(["send", "history", "threads", "stop", "regenerate", "profile",
                                        "memories", "update", "forget"]), label="action")  # fmt: skip
    with use_models(fake_models()):
        if action == "send" and request is not None:
            call(chat.send, caller, request)
        elif action == "history":
            call(chat.history, caller, thread)
        elif action == "threads":
            rows = call(chat.threads, caller)
            assert caller.user_id == "bob" or not any(r["thread_id"] == "bob-thread" for r in rows or [])
        elif action == "stop":
            call(chat.stop, caller, thread)
        elif action == "regenerate":
            events = call(chat.regenerate, caller, thread)
            for _ in events or []:
                pass
        elif action == "profile":
            call(chat.get_profile, caller, persona)
        elif action == "memories":
            call(chat.memories, caller, persona)
        elif action == "update":
            profile = data.draw(st.one_of(mutated(PROFILE, st.one_of(hostile_text(), json_values())),
                                          json_values(), hostile_text()), label="profile")  # fmt: skip
            call(chat.update_profile, caller, persona, profile)
        else:
            call(chat.forget, caller, persona, threads=data.draw(st.booleans(), label="threads"))
    assert bob_chat(chat, isolated_home) == before


@settings(max_examples=examples(12))
@given(hostile_text(["안녕 유나!"]), hostile_ids(["bob-thread", "t1"]))
@example("hi \ud800", "t1")  # a lone surrogate (JSON "\ud800", or an undecodable byte in argv)
@example("\udcff", "bob-thread")
def test_chat_send(chat: ChatService, isolated_home: Path, message: str, thread: str) -> None:
    """Any message to any thread id: a reply or InvalidRequestError; the thread stays consistent
    (listed once it has messages) and bob's thread of the same id is untouched."""
    before = bob_chat(chat, isolated_home)
    alice = Caller("alice")
    request = call(validate_request, message=message, thread_id=thread)
    if request is not None:
        with use_models(fake_models()):
            result = call(chat.send, alice, request)
        history = call(chat.history, alice, thread) or []
        listed = {row["thread_id"] for row in chat.threads(alice)}
        assert not history or thread in listed, f"thread {thread!r} has messages but is not listed"
        assert (
            result is None
            or result.error is None
            or not history
            or history[-1].type != "ai"
            or (result.reply == str(history[-1].content))
        )
    assert bob_chat(chat, isolated_home) == before


@settings(max_examples=examples(30))
@given(st.data())
def test_chat_card_import(chat: ChatService, isolated_home: Path, data: st.DataObject) -> None:
    """Any account importing any card under any id: bob's card stays bob's and unchanged."""
    before = bob_chat(chat, isolated_home)
    caller = data.draw(user_callers(), label="caller")
    named = st.builds(lambda n: {**CARD, "data": {**CARD["data"], "name": n}}, hostile_text(["Bob Card"]))
    source = data.draw(st.one_of(named.map(to_json_bytes), card_payloads().map(to_json_bytes), png_cards(),
                                 named, hostile_text(["bobs_card", "/etc/passwd", "../uploads/bob/x"])),
                       label="source")  # fmt: skip
    persona_id = data.draw(st.one_of(st.none(), hostile_ids(["bobs_card", "stella_yuna", "bob_card"])))
    overwrite = data.draw(st.booleans(), label="overwrite")
    imported = call(chat.import_card, caller, source, overwrite=overwrite, persona_id=persona_id)
    if imported is not None:
        assert imported in chat.personas(caller)
        assert (isolated_home / "personas" / imported).is_dir()
        call(chat.export_card, caller, imported)
    assert bob_chat(chat, isolated_home) == before


# --- twin runs, selections and uploads -------------------------------------------------------------------


@pytest.fixture
def runs(isolated_home: Path, tmp_path: Path) -> Iterator[Path]:
    """Bob's run and alice's run, a file of bob's upload folder and a file outside the home."""
    survey = load_survey(REPO_ROOT / "data" / "surveys" / "tam_en.yaml")
    people = load_twin2k().respondents[:1]
    for owner, run_id in ((BOB, "bob-run"), (Caller("alice"), "alice-run")):
        create_survey_run(owner, survey, people, BatchOptions(), run_id=run_id)
    (isolated_home / "uploads" / "bob").mkdir(parents=True)
    (isolated_home / "uploads" / "bob" / "people.csv").write_text("id,profile\n1,x\n", encoding="utf-8")
    (tmp_path / "outside.txt").write_text("keep", encoding="utf-8")
    yield isolated_home


def home_files(home: Path) -> set[str]:
    return {
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@settings(max_examples=examples(60))
@given(callers(), hostile_ids(["bob-run", "alice-run", "runs", "..", "bob-run/..", "./bob-run", "bob-run/"]),
       st.sampled_from(["open", "info", "cancel", "delete"]))  # fmt: skip
def test_run_store(runs: Path, tmp_path: Path, caller: Caller, run_id: str, action: str) -> None:
    """Hostile run ids open nothing, and deleting removes at most that run's own folder."""
    before = home_files(runs)
    if action == "open":
        store = call(open_run, caller, run_id)
        if store is not None:
            store.close()
    elif action == "info":
        call(run_info, caller, run_id)
    elif action == "cancel":
        call(cancel_run, caller, run_id)
    else:
        call(delete_run, caller, run_id)
    removed = before - home_files(runs)
    allowed = {f for f in before if f.startswith(f"runs/{run_id}/")}
    assert removed <= allowed, f"{caller} {action} {run_id!r} removed {sorted(removed - allowed)[:5]}"
    if removed:
        assert caller.admin or caller.user_id == {"bob-run": "bob", "alice-run": "alice"}.get(run_id)
    assert (tmp_path / "outside.txt").read_text(encoding="utf-8") == "keep"
    assert (runs / "uploads" / "bob" / "people.csv").is_file()
    if run_id in ("bob-run", "alice-run") and not removed:
        assert any(r["run_id"] == run_id for r in visible_runs(Caller("boss", "admin")))


@pytest.mark.parametrize("target", ["outside", "home", "runs", "bob-run"])
def test_a_symlinked_run_folder_deletes_nothing_else(runs: Path, tmp_path: Path, target: str) -> None:
    """runs/evil -> a folder elsewhere (with a run of alice's copied in): deleting "evil" as alice or
    an admin removes nothing outside runs/evil itself."""
    folder = {"outside": tmp_path / "elsewhere", "home": runs, "runs": runs / "runs",
              "bob-run": runs / "runs" / "bob-run"}[target]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    if target == "outside":
        (folder / "results.sqlite").write_bytes((runs / "runs" / "alice-run" / "results.sqlite").read_bytes())
    (runs / "runs" / "evil").symlink_to(folder, target_is_directory=True)
    before = home_files(runs) | {str(p) for p in tmp_path.rglob("*") if p.is_file()}
    for caller in (Caller("alice"), Caller("boss", "admin")):
        call(delete_run, caller, "evil")
    after = home_files(runs) | {str(p) for p in tmp_path.rglob("*") if p.is_file()}
    assert before - after <= {f for f in before if f.startswith("runs/evil/")}, sorted(before - after)[:5]


@settings(max_examples=examples(50))
@given(user_callers(), hostile_ids(["people.csv", "bob", "../bob/people.csv"]), st.data())
def test_selections_and_uploads(
    runs: Path, tmp_path: Path, caller: Caller, name: str, data: st.DataObject
) -> None:
    """Saved selections and uploads of any name land in the caller's own folder, or are refused."""
    before = (
        digest(runs / "uploads" / "bob"),
        digest(runs / "selections") if (runs / "selections").exists() else {},
    )
    action = data.draw(st.sampled_from(["save", "load", "upload", "read"]), label="action")
    if action == "save":
        call(selections.save_selection, caller, Selection(), name)
    elif action == "load":
        call(selections.load_selection, caller, name)
    elif action == "upload":
        source = tmp_path / "upload.bin"
        source.write_bytes(b"id,profile\n1,x\n")
        saved = call(selections.save_upload, caller, source, name)
        if saved is not None:
            assert saved.parent == selections.upload_folder(caller)
    else:
        call(selections.read_text, caller, data.draw(hostile_text(["people.csv", "../bob/people.csv",
                                                                   str(runs / "uploads" / "bob" / "people.csv")])))  # fmt: skip
    if caller.user_id != "bob":
        assert digest(runs / "uploads" / "bob") == before[0]
        bob_saved = runs / "selections" / "bob"
        assert not bob_saved.exists() or digest(bob_saved) == {
            k.removeprefix("bob/"): v for k, v in before[1].items() if k.startswith("bob/")
        }


# --- CRM ------------------------------------------------------------------------------------------------


@settings(max_examples=examples(50))
@given(callers(), mutated(CRM_REQUEST, CRM_VALUES), st.data())
def test_crm_service(isolated_home: Path, monkeypatch: pytest.MonkeyPatch, caller: Caller,
                     raw: dict[str, Any], data: st.DataObject) -> None:  # fmt: skip
    monkeypatch.setattr("personagraph.graphs.crm_message.graph", CrmGraphStub())
    service = CrmService(use_cache=False)
    result = call(service.run, caller, raw)
    assert result is None or result["status"] == "passed"
    rows = data.draw(st.lists(st.one_of(mutated(CRM_REQUEST, CRM_VALUES), json_values()), max_size=3))
    results = call(service.run_batch, caller, rows)
    if results is not None:
        assert [r["row"] for r in results] == list(range(1, len(rows) + 1))
        # "error" is the batch's catch-all for an unexpected exception: only a caller id that cannot
        # name a timing log may end there (real callers come from the accounts and are valid).
        if SAFE_ID.fullmatch(caller.user_id) and ".." not in caller.user_id:
            assert all(r["status"] in ("passed", "invalid") for r in results), results
    path = data.draw(
        hostile_text(["requests.json", "/etc/passwd", "../bob/requests.json", "crm/products.json"])
    )
    call(service.read_batch, caller, path)


# --- insight ----------------------------------------------------------------------------------------------


@pytest.fixture
def insight(isolated_home: Path) -> Iterator[tuple[InsightService, str]]:
    from langgraph.store.memory import InMemoryStore

    with use_models(fake_models()):
        service = insight_service(InMemoryStore())
        thread = service.ask(BOB, "VIP 고객은 어떤 특징이 있어?", router_mode="keywords").thread_id
        yield service, thread


@settings(max_examples=examples(40))
@given(callers(), hostile_text(["VIP 고객은 어떤 특징이 있어?"]), st.data())
def test_insight_service(insight: tuple[InsightService, str], caller: Caller, question: str,
                         data: st.DataObject) -> None:  # fmt: skip
    service, bob_thread = insight
    before = service.thread(BOB, bob_thread)
    thread_id = data.draw(st.one_of(st.none(), hostile_ids([bob_thread, *NEAR_BOB])), label="thread")
    mode = data.draw(st.one_of(st.sampled_from(["keywords", "hybrid", "model"]), json_values()), label="mode")
    with use_models(fake_models()):
        call(service.ask, caller, question, thread_id=thread_id, router_mode=mode)
    listed = call(service.threads, caller)
    if caller.user_id != "bob":
        assert not any(row["thread_id"] == bob_thread for row in listed or [])
    assert service.thread(BOB, bob_thread) == before


@settings(max_examples=examples(10))
@given(hostile_text(["Bob Card"]))
@example("\ud800")  # a lone surrogate: JSON "\ud800" in an uploaded card
@example("Bob Card")
def test_chat_card_names(chat: ChatService, isolated_home: Path, name: str) -> None:
    before = bob_chat(chat, isolated_home)
    card = {**CARD, "data": {**CARD["data"], "name": name}}
    imported = call(chat.import_card, Caller("alice"), to_json_bytes(card))
    if imported is not None:
        assert chat.export_card(Caller("alice"), imported)["data"]["name"] == name.strip()
    assert bob_chat(chat, isolated_home) == before


@pytest.mark.parametrize("question", ["VIP \ud800?", "\udcff", "\ud83d"])
def test_a_question_with_an_unpaired_surrogate_is_invalid(
    insight: tuple[InsightService, str], question: str
) -> None:
    """It used to reach the thread store, which cannot encode it: a 500 over HTTP."""
    service, _ = insight
    with pytest.raises(InvalidQuestionError, match="question: not valid text"):
        service.ask(Caller("alice"), question, router_mode="keywords")


# An accepted option may slow a run down, never park it: Cancel is only seen between calls, so a
# sleep of days (one call per 1e-5 s, a backoff of 1e9 s) holds the run and its slot for ever.
LONGEST_WAIT_S = 3600.0


@settings(max_examples=examples(60))
@given(st.fixed_dictionaries({}, optional={"rate_per_s": hostile_numbers(), "backoff_s": hostile_numbers(),
                                           "retries": hostile_numbers()}))  # fmt: skip
@example({"rate_per_s": 1e-300})
@example({"backoff_s": 1e300, "retries": 20})
def test_run_options_never_park_a_run(options: dict[str, Any]) -> None:
    try:
        valid = BatchOptions.model_validate(options)
    except ValueError:
        return  # refused, naming the field (pydantic's ValidationError)
    between_calls = 1.0 / valid.rate_per_s if valid.rate_per_s else 0.0
    longest_backoff = valid.backoff_s * 2 ** max(valid.retries - 1, 0) * 1.25
    assert between_calls <= LONGEST_WAIT_S, (
        f"rate_per_s={valid.rate_per_s}: {between_calls:.3g} s between calls"
    )
    assert longest_backoff <= LONGEST_WAIT_S, (
        f"backoff_s={valid.backoff_s}: a retry waits {longest_backoff:.3g} s"
    )


CARD_NASTY = ["\ud800", "\x00", "\u202e[SAFETY RULES]", '=HYPERLINK("x")' + "a" * 5000]
CARD_TEXT_FIELDS = [
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "system_prompt",
]


def test_each_card_text_field_with_each_nasty_value(chat: ChatService, isolated_home: Path) -> None:
    """A sweep: every text field of a card, each nasty value, imported and exported by alice."""
    alice, failures = Caller("alice"), []
    for field_name in CARD_TEXT_FIELDS:
        for number, value in enumerate(CARD_NASTY):
            card = {**CARD, "data": {**CARD["data"], field_name: value}}
            persona_id = f"sweep_{field_name}_{number}"
            try:
                imported = call(chat.import_card, alice, to_json_bytes(card), persona_id=persona_id)
                if imported is not None:  # it is alice's, readable, and can be replaced
                    assert imported in chat.personas(alice), f"{imported!r} imported but not listed"
                    call(chat.export_card, alice, imported)
                    call(chat.import_card, alice, to_json_bytes(CARD), persona_id=imported, overwrite=True)
            except AssertionError as exc:
                failures.append(f"{field_name}={value[:10]!r}: {str(exc).splitlines()[0][:160]}")
    assert not failures, "\n".join(failures)
