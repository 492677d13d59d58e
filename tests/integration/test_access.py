"""Who may do what, on the real server (`personagraph app`: API + Gradio on one port, the stub model
server: authorization does not depend on what a model writes, and the stub answers at once).

Three accounts made with `personagraph accounts add`: alice and bob (users) and boss (an admin).
Alice's data carries canaries (a chat message, a profile name, a card, a survey question, an insight
question). Then:

- every HTTP route (read from the API's routers at test time) is called by nobody, bob, boss and
  alice with alice's ids: each answer is one the route's rule allows, and no canary of alice's
  reaches bob (nor boss, where the data is private to alice);
- every Gradio event handler (read from the running app's /config, by fn_index, private ones too)
  is called through /gradio_api/queue/join the same way: nobody gets 401; bob and boss never see
  alice's private canaries, also when bob reuses alice's browser session id;
- the README's curl examples run as a script against the server.

A route or handler without a rule here fails the test: a new one must say who may call it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from personagraph.api.app import PUBLIC_ROUTES, ROUTERS
from personagraph.serving.stub_model import StubModelServer
from tests.integration.conftest import BIN, REPO_ROOT, running_app

pytestmark = pytest.mark.integration
PASSWORD = "access test password 비밀"
TIMEOUT_S = 300.0
CALLERS = ("nobody", "bob", "boss", "alice")

# Alice's private data: none of it may reach bob or boss.
MESSAGE_CANARY = "Kestrelquill"  # in alice's chat message
PROFILE_CANARY = "Marigoldfen"  # alice's profile nickname
CARD_CANARY = "Zorbrindle Quay"  # the name of alice's imported card (its id: zorbrindle_quay)
INSIGHT_CANARY = "Quillothar"  # in alice's insight question
PRIVATE = (MESSAGE_CANARY, PROFILE_CANARY, INSIGHT_CANARY)
# Alice's survey run and card: boss (an admin) may read them, bob may not.
RUN_CANARY = "Vellumbright"  # in the question of alice's survey
ADMIN_VISIBLE = (RUN_CANARY, CARD_CANARY)
RUN_ID = "alice-run"
THREAD_ID = "alice-thread"  # the Gradio test sends to this name as bob too (his own thread of that name)
ONLY_ALICE = "alice-only"  # a thread name nobody else uses: the HTTP test's 404 checks
OK = frozenset({200, 201, 202})


@dataclass
class Server:
    url: str
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)  # caller -> bearer token
    ids: dict[str, str] = field(default_factory=dict)  # alice's objects: card, insight thread

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"} if caller in self.tokens else {}


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(BIN / "personagraph"), *args], input=stdin, text=True, env={**os.environ, **env},
        capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _survey() -> dict[str, Any]:
    return {
        "id": "access_check",
        "title": "Access check",
        "questions": [
            {
                "id": "q1",
                "type": "likert",
                "points": 5,
                "text": f"I enjoy {RUN_CANARY} mornings.",
                "labels": {1: "Strongly disagree", 5: "Strongly agree"},
            },  # fmt: skip
        ],
    }


def _ensure_profile(server: Server) -> None:
    profile = {"profile": {"nickname": PROFILE_CANARY}}
    saved = httpx.put(
        f"{server.url}/api/chat/profile/stella_yuna",
        headers=server.headers("alice"),
        json=profile,
        timeout=30,
    )
    assert saved.status_code == 200, saved.text


def _ensure_run(server: Server) -> None:
    """Alice's finished survey run (made again if a test deleted it)."""
    url, alice = server.url, server.headers("alice")
    if httpx.get(f"{url}/api/twins/runs/{RUN_ID}", headers=alice, timeout=30).status_code == 404:
        run = {"kind": "survey", "survey": _survey(), "select": ["random:1:1"], "run_id": RUN_ID}
        started = httpx.post(f"{url}/api/twins/runs", headers=alice, json=run, timeout=60)
        assert started.status_code == 202, started.text
    deadline = time.monotonic() + TIMEOUT_S
    while httpx.get(f"{url}/api/twins/runs/{RUN_ID}", headers=alice, timeout=30).json().get("active"):
        assert time.monotonic() < deadline, "alice's survey run did not finish"
        time.sleep(1)


def _seed(server: Server) -> None:
    """Alice's chat thread, profile, card, survey run, CRM batch and insight thread (the canaries in
    those that hold text)."""
    url, alice = server.url, server.headers("alice")
    for thread_id in (THREAD_ID, ONLY_ALICE):
        sent = httpx.post(
            f"{url}/api/chat/send", headers=alice, timeout=TIMEOUT_S,
            json={"message": f"My secret word is {MESSAGE_CANARY}.", "thread_id": thread_id},
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
    _ensure_profile(server)
    card = json.loads((REPO_ROOT / "data" / "cards" / "example_card_v2.json").read_text(encoding="utf-8"))
    card["data"]["name"] = CARD_CANARY
    imported = httpx.post(
        f"{url}/api/personas/import", headers=alice, timeout=60,
        files={"file": ("card.json", json.dumps(card).encode(), "application/json")},
    )  # fmt: skip
    assert imported.status_code == 201, imported.text
    server.ids["card"] = imported.json()["persona_id"]
    _ensure_run(server)
    batch = httpx.post(f"{url}/api/crm/batches", headers=alice, json={"rows": [CRM_ROW]}, timeout=60)
    assert batch.status_code == 202, batch.text
    server.ids["crm_batch"] = batch.json()["batch_id"]
    deadline = time.monotonic() + TIMEOUT_S
    while httpx.get(f"{url}/api/crm/batches/{server.ids['crm_batch']}", headers=alice, timeout=30).json()[
        "state"
    ] in ("created", "running"):
        assert time.monotonic() < deadline, "alice's CRM batch did not finish"
        time.sleep(1)
    asked = httpx.post(
        f"{url}/api/insight/ask", headers=alice, timeout=TIMEOUT_S,
        json={"question": f"VIP 고객은 어떤 특징이 있어? ({INSIGHT_CANARY})", "router_mode": "keywords"},
    )  # fmt: skip
    assert asked.status_code == 200, asked.text
    server.ids["insight_thread"] = asked.json()["thread_id"]


@pytest.fixture(scope="module")
def stub_model() -> Iterator[StubModelServer]:
    with StubModelServer(first_token_delay_s=0.0, tokens_per_s=0.0, reply_tokens=12) as stub:
        yield stub


@pytest.fixture(scope="module")
def server(
    stub_model: StubModelServer, shared_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The app in a home of its own (its accounts, cards and runs must not meet the other tests'),
    with the knowledge index copied from the shared home so that it is built once per session."""
    env = {**stub_model.env(), "LLM_MAX_TOKENS": "64", "PERSONAGRAPH_HOME": str(shared_home)}
    _cli(env, "prepare")
    home = tmp_path_factory.mktemp("access-home")
    shutil.copytree(shared_home / "chroma", home / "chroma")
    env["PERSONAGRAPH_HOME"] = str(home)
    _cli(env, "prepare")  # a no-op but for anything the copy lacks
    for user, role in (("alice", "user"), ("bob", "user"), ("boss", "admin")):
        _cli(env, "accounts", "add", user, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
    log = home / "app.log"
    with running_app(["--host", "127.0.0.1"], env, log) as url:
        srv = Server(url.rstrip("/"), env)
        for user in ("alice", "bob", "boss"):
            signed = httpx.post(
                f"{srv.url}/api/session", json={"user_id": user, "password": PASSWORD}, timeout=60
            )
            assert signed.status_code == 201, signed.text
            srv.tokens[user] = signed.json()["token"]
        _seed(srv)
        yield srv


# --- Gradio event handlers -----------------------------------------------------------------------

# Every handler by api_name (private ones too), with the canaries alice's own call must show.
# The shared rule for all of them: nobody gets 401 at /queue/join; bob never sees alice's data,
# boss only her runs and cards; handlers take the caller from the signed-in session, never a field.
GRADIO_SEES: dict[str, tuple[str, ...]] = {
    "send": (), "send_1": (), "after_turn": (), "after_turn_1": (), "after_turn_2": (), "regenerate": (),
    "stop": (), "new_session": (), "start_session": (PROFILE_CANARY,), "regreet": (),
    "load_thread": (MESSAGE_CANARY,), "profile_view": (PROFILE_CANARY,), "import_card": (),
    "update_profile": (), "forget": (), "on_load": (CARD_CANARY,),
    "after_turn_3": (), "edit": (), "switch_branch": (), "rate": (), "show_persona": (), "show_persona_1": (),
    "thread_tools": (), "thread_tools_1": (), "thread_tools_2": (), "thread_tools_3": (), "thread_tools_4": (),
    "thread_tools_5": (),
    "on_attribute": (), "do_add_filter": (), "do_add_sample": (), "do_clear": (), "do_people_upload": (),
    "count_respondents": (), "do_save": (), "do_saved_list": (), "do_pick_saved": (), "do_read_template": (),
    "do_read_upload": (), "check_survey": (), "run_survey": (), "cancel_survey": (), "do_read_template_1": (),
    "do_read_upload_1": (), "run_interviews": (), "start_interview": (), "interview_reply": (),
    "do_clear_followup": (), "do_reply": (), "do_clear_followup_1": (), "do_next": (), "do_end": (),
    "list_runs": (), "do_refresh": (), "show_run": (RUN_CANARY,), "do_question": (), "do_question_1": (),
    "export_run": (), "cancel_run": (), "delete_run": (), "validate_run": (), "calibrate_run": (),
    "do_editor_load": (), "do_editor_action": (), "do_editor_apply": (),
    "insight_refresh": (), "set_live": (), "insight_ask": (), "ask": (), "insight_new_thread": (),
    "insight_import_orders": (), "insight_accept_drift": (),
    "open_insight": (), "on_brand": (), "crm_generate": (), "crm_batch": (), "crm_import_catalog": (),
    "on_catalog": (),
}  # fmt: skip
# Handlers and routes that run model turns, where an admin has no more rights than another user (an
# admin cannot read other accounts' chats, CRM logs or insight threads): of bob and boss, only bob calls
# them, which saves minutes of model time; boss still calls every other one.
MODEL_TURN_HANDLERS = frozenset(
    {"send", "send_1", "regenerate", "edit", "crm_generate", "crm_batch", "insight_ask", "ask"}
)
MODEL_TURN_ROUTES = frozenset({"chat_send", "chat_edit", "crm_message", "crm_batch", "crm_batch_start"})
# Handlers that change or delete alice's things run last, and for alice after the others.
GRADIO_DESTRUCTIVE = ("update_profile", "forget", "delete_run")
# Inputs by component label: alice's ids where a handler takes one, small sizes where it runs a model.
LABEL_VALUES: dict[str, Any] = {
    "": "hello", "Thread id": THREAD_ID, "Continue a session": THREAD_ID, "Run": RUN_ID,
    "Selection": "random:1:1", "Resume run id (optional)": RUN_ID, "Follow-ups per question": 0,
    "Random sample size": 1, "Save as": "access-sel", "Your saved selections": "access-sel",
    "Chat": [], "Persona": "stella_yuna",
}  # fmt: skip


class GradioSession:
    """One browser session of the app over HTTP: /login, /config and /gradio_api/queue/join|data."""

    def __init__(self, url: str, user: str | None):
        self.client = httpx.Client(base_url=url, timeout=TIMEOUT_S)
        self.session_hash = uuid.uuid4().hex[:11]
        if user is not None:
            login = self.client.post("/login", data={"username": user, "password": PASSWORD})
            assert login.status_code == 200, login.text

    def call(self, fn_index: int, data: list[Any], session_hash: str | None = None) -> tuple[int, str]:
        """(HTTP status of the join, everything the event sent back as text)."""
        session = session_hash or self.session_hash
        body = {
            "data": data,
            "fn_index": fn_index,
            "session_hash": session,
            "event_data": None,
            "trigger_id": None,
        }
        joined = self.client.post("/gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return joined.status_code, joined.text
        lines: list[str] = []
        with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if '"process_completed"' in line or '"close_stream"' in line or '"unexpected_error"' in line:
                    break
        return 200, "\n".join(lines)


def _inputs(config: dict[str, Any], dependency: dict[str, Any]) -> list[Any]:
    components = {c["id"]: c for c in config["components"]}
    data: list[Any] = []
    for component_id in dependency["inputs"]:
        component = components[component_id]
        props = component.get("props", {})
        label = props.get("label") or ""
        if component["type"] in ("state", "file"):
            data.append(None)
        elif label in LABEL_VALUES and component["type"] != "code":
            data.append(LABEL_VALUES[label])
        else:
            data.append(props.get("value"))
    return data


def test_every_gradio_handler_answers_each_caller_as_designed(server: Server) -> None:
    sessions = {user: GradioSession(server.url, user) for user in ("alice", "bob", "boss")}
    config = sessions["alice"].client.get("/config").json()
    dependencies = config["dependencies"]
    names = [d.get("api_name") for d in dependencies]
    missing = sorted(str(n) for n in set(names) - set(GRADIO_SEES))
    assert not missing, f"Gradio handlers without an authorization rule: {missing}"
    assert sorted(set(GRADIO_SEES) - set(names)) == [], "rules for handlers that do not exist"
    nobody = GradioSession(server.url, None)
    assert nobody.client.get("/config").status_code == 401
    problems: list[str] = []
    ordered = [d for d in dependencies if d["api_name"] not in GRADIO_DESTRUCTIVE] + [
        d for d in dependencies if d["api_name"] in GRADIO_DESTRUCTIVE
    ]
    for dependency in ordered:
        name, fn_index = dependency["api_name"], dependency["id"]
        data = _inputs(config, dependency)
        status, _ = nobody.call(fn_index, data)
        if status != 401:
            problems.append(f"{name} (fn_index {fn_index}) as nobody: {status}, not 401")
        for caller in ("bob", "boss", "alice"):
            if caller == "boss" and name in MODEL_TURN_HANDLERS:
                continue
            status, text = sessions[caller].call(fn_index, data)
            where = f"{name} (fn_index {fn_index}) as {caller}"
            if status != 200:
                problems.append(f"{where}: join answered {status}")
            leaked = leaks(text, caller)
            if leaked:
                problems.append(f"{where} shows alice's {leaked}")
            if caller == "alice":
                missed = [c for c in GRADIO_SEES[name] if c not in text]
                if missed:
                    problems.append(f"{where} does not show alice's own {missed}: {text[-300:]}")
        if any(c["id"] in dependency["inputs"] and c["type"] == "state" for c in config["components"]):
            # bob reuses alice's browser session id: her session state must not become his
            status, text = sessions["bob"].call(fn_index, data, session_hash=sessions["alice"].session_hash)
            leaked = leaks(text, "bob")
            if leaked:
                problems.append(f"{name} as bob in alice's session shows alice's {leaked}")
    assert not problems, "\n".join(problems)


# --- the README's curl examples --------------------------------------------------------------------


def readme_api_script() -> str:
    """The README's bash blocks between 'These examples run in CI' and the next section, as one script."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("These examples run in CI")
    end = text.index("\n## ", start)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S)
    return "\n".join(blocks)


def test_readme_curl_examples_run_against_the_server(server: Server, tmp_path: Path) -> None:
    script = readme_api_script()
    for group in (
        "/health",
        "/api/session",
        "/api/chat/",
        "/api/personas",
        "/api/twins/",
        "/api/crm/",
        "/api/insight/",
    ):
        assert f"$BASE{group}" in script or f'"$BASE{group}' in script, f"no README example for {group}"
    mina_token = _cli(server.env, "accounts", "add", "mina", "--password-stdin", stdin=PASSWORD + "\n")
    assert "mina" in mina_token
    token = _cli(server.env, "accounts", "token", "mina", "--name", "readme").splitlines()[0]
    admin = _cli(server.env, "accounts", "token", "boss", "--name", "readme").splitlines()[0]
    port = server.url.rsplit(":", 1)[1]
    script = script.replace("http://127.0.0.1:7860", f"http://127.0.0.1:{port}")
    (tmp_path / "data").symlink_to(REPO_ROOT / "data")
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "TOKEN": token, "ADMIN_TOKEN": admin, "PASSWORD": PASSWORD}, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert '"final"' in done.stdout or "event: final" in done.stdout  # the streamed turn ended
    assert (tmp_path / "tam-demo.csv").stat().st_size > 0 and (tmp_path / "seren.json").is_file()


# --- HTTP routes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How to call a route with alice's ids, and the statuses each caller may get.

    `sees`: canaries alice's own call must show (proves the canary check can fail).
    `files`: send alice's card as the upload `file`, or as the upload of the field named here.
    """

    path: dict[str, str] = field(default_factory=dict)
    body: Callable[[Server], dict[str, Any]] | None = None
    files: bool | str = False
    allowed: dict[str, frozenset[int]] = field(default_factory=dict)
    sees: tuple[str, ...] = ()
    destructive: bool = False


def _ok(**overrides: frozenset[int]) -> dict[str, frozenset[int]]:
    """Signed-in callers get OK, nobody 401, unless overridden."""
    return {"nobody": frozenset({401}), "bob": OK, "boss": OK, "alice": OK, **overrides}


NOT_YOURS = frozenset({404})
ORDER = {
    "order_id": "access-o1", "customer_id": "C00001", "items": [{"sku": "SK02", "qty": 1, "price": 32000}],
    "amount": 32000, "channel": "app", "ts": 1764900000,
}  # fmt: skip
CRM_ROW = {
    "persona": 0,
    "brand": "lumiere",
    "product": "lum-01",
    "stage_index": 1,
    "style_index": 2,
    "is_event": 1,
}
HTTP_RULES: dict[str, Rule] = {
    "health": Rule(allowed={c: OK for c in CALLERS}),
    "ready": Rule(allowed={c: OK for c in CALLERS}),
    "metrics": Rule(allowed={c: OK for c in CALLERS}),
    # Signing in needs a password, not a token: a wrong one is 401 for everyone.
    "session_sign_in": Rule(
        body=lambda s: {"user_id": "no-such-account", "password": "wrong password"},
        allowed={c: frozenset({401}) for c in CALLERS},
    ),
    "session_me": Rule(allowed=_ok()),
    "tokens_create": Rule(body=lambda s: {"name": f"t{uuid.uuid4().hex[:8]}"}, allowed=_ok()),
    "tokens_list": Rule(allowed=_ok()),
    # bob and boss revoke "their" token named like alice's: none such (404); alice's stays.
    "tokens_revoke": Rule(path={"name": "laptop"}, allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS, alice=OK)),
    "chat_send": Rule(  # each caller's own thread of that name: bob's is not alice's
        body=lambda s: {"message": "hello", "thread_id": "same-name"}, allowed=_ok()
    ),
    "chat_regenerate": Rule(path={"thread_id": ONLY_ALICE}, allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS)),
    "chat_stop": Rule(path={"thread_id": ONLY_ALICE}, allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS)),
    # Edit, branches and ratings of alice's thread: 404 for the others before any message id is read
    # (alice herself names a message or branch her thread does not have: 404 too, nothing changes).
    "chat_edit": Rule(
        path={"thread_id": ONLY_ALICE},
        body=lambda s: {"message_id": "no-such-message", "message": "hello again"},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS, alice=NOT_YOURS),
    ),
    "chat_branches": Rule(path={"thread_id": ONLY_ALICE}, allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS)),
    "chat_switch_branch": Rule(
        path={"thread_id": ONLY_ALICE, "branch_id": "no-such-branch"},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS, alice=NOT_YOURS),
    ),
    "chat_feedback": Rule(
        path={"thread_id": ONLY_ALICE},
        body=lambda s: {"message_id": "no-such-reply", "rating": "up"},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS, alice=NOT_YOURS),
    ),
    "chat_feedback_export": Rule(allowed=_ok()),
    "chat_threads": Rule(allowed=_ok()),
    "chat_history": Rule(
        path={"thread_id": ONLY_ALICE}, allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS), sees=(MESSAGE_CANARY,)
    ),
    "chat_profile": Rule(path={"persona_id": "stella_yuna"}, allowed=_ok(), sees=(PROFILE_CANARY,)),
    "chat_profile_update": Rule(
        path={"persona_id": "stella_yuna"},
        body=lambda s: {"profile": {"nickname": "someone"}},
        allowed=_ok(),
        destructive=True,
    ),  # fmt: skip
    "chat_forget": Rule(path={"persona_id": "stella_yuna"}, allowed=_ok(), destructive=True),
    "personas_list": Rule(allowed=_ok(), sees=("<card>",)),
    # bob imports first; boss (who sees every card) is then told the id is taken
    "personas_import": Rule(files=True, allowed=_ok(boss=OK | {409})),
    "personas_export_card": Rule(
        path={"persona_id": "<card>"}, allowed=_ok(bob=NOT_YOURS), sees=(CARD_CANARY,)
    ),
    "twins_start_run": Rule(
        body=lambda s: {"kind": "survey", "survey": _survey(), "select": ["random:1:2"], "run_id": RUN_ID},
        allowed=_ok(
            bob=frozenset({404, 409}), boss=frozenset({409}), alice=frozenset({409})
        ),  # the id is taken
    ),
    "twins_runs": Rule(allowed=_ok()),
    "twins_run": Rule(path={"run_id": RUN_ID}, allowed=_ok(bob=NOT_YOURS)),
    "twins_results": Rule(path={"run_id": RUN_ID}, allowed=_ok(bob=NOT_YOURS), sees=(RUN_CANARY,)),
    "twins_export": Rule(
        path={"run_id": RUN_ID, "fmt": "json"},
        allowed=_ok(bob=NOT_YOURS),
        sees=(RUN_CANARY,),
    ),  # fmt: skip
    # A card is no pilot answers CSV: 400 naming pilot_file for those who may calibrate alice's run.
    "twins_calibrate": Rule(
        path={"run_id": RUN_ID},
        files="pilot_file",
        allowed=_ok(bob=NOT_YOURS, boss=frozenset({400}), alice=frozenset({400})),
    ),
    "twins_cancel": Rule(  # a finished run has nothing to cancel: 409 is as good as 200
        path={"run_id": RUN_ID}, allowed=_ok(bob=NOT_YOURS, boss=OK | {409}, alice=OK | {409})
    ),
    "twins_delete": Rule(
        path={"run_id": RUN_ID}, allowed=_ok(bob=NOT_YOURS, boss=OK, alice=NOT_YOURS), destructive=True
    ),  # boss (an admin) deletes it first; then it is gone for alice
    "crm_message": Rule(body=lambda s: CRM_ROW, allowed=_ok()),
    "crm_batch": Rule(body=lambda s: {"rows": [CRM_ROW]}, allowed=_ok()),
    "crm_batch_start": Rule(body=lambda s: {"rows": [CRM_ROW]}, allowed=_ok()),
    "crm_batch_info": Rule(
        path={"batch_id": "<crm_batch>"}, allowed=_ok(bob=NOT_YOURS), sees=("<crm_batch>",)
    ),
    "crm_batch_cancel": Rule(  # her seeded batch is finished: 409 is as good as 200
        path={"batch_id": "<crm_batch>"}, allowed=_ok(bob=NOT_YOURS, boss=OK | {409}, alice=OK | {409})
    ),
    "crm_catalogs": Rule(allowed=_ok()),
    # A catalog is the shop's: admins only (boss's upload, a card, is no catalog: 400 names the field).
    "crm_catalog_import": Rule(
        files=True, allowed=_ok(bob=frozenset({403}), alice=frozenset({403}), boss=frozenset({400}))
    ),
    "insight_ask": Rule(
        body=lambda s: {"question": "and in English?", "thread_id": s.ids["insight_thread"]},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS),
    ),
    "insight_ask_stream": Rule(
        body=lambda s: {"question": "and in English?", "thread_id": s.ids["insight_thread"]},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS),
    ),
    "insight_datasets": Rule(allowed=_ok()),
    "insight_orders_template": Rule(allowed=_ok()),
    # Importing orders changes the shop's data: admins only (boss's upload, a card, is no order export).
    "insight_import_orders": Rule(
        files=True, allowed=_ok(bob=frozenset({403}), alice=frozenset({403}), boss=frozenset({400}))
    ),
    "insight_threads": Rule(allowed=_ok(), sees=(INSIGHT_CANARY,)),
    "insight_thread": Rule(
        path={"thread_id": "<insight_thread>"},
        allowed=_ok(bob=NOT_YOURS, boss=NOT_YOURS),
        sees=(INSIGHT_CANARY,),
    ),
    "insight_segments": Rule(allowed=_ok()),
    "insight_status": Rule(allowed=_ok()),
    # Orders are the shop's shared data: admins only. Without a configured Redis the server has no
    # live stream and answers 503 even to an admin.
    "insight_order": Rule(
        body=lambda s: ORDER,
        allowed=_ok(bob=frozenset({403}), alice=frozenset({403}), boss=frozenset({202, 503})),
    ),
    # Swapping the segment model is an admin's decision; without a live Redis there is none (503).
    "insight_accept_drift": Rule(
        allowed=_ok(bob=frozenset({403}), alice=frozenset({403}), boss=frozenset({404, 503}))
    ),
    "session_sign_out": Rule(allowed=_ok(), destructive=True),
}


def _routes() -> list[APIRoute]:
    return [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


def _call(server: Server, route: APIRoute, rule: Rule, caller: str) -> httpx.Response:
    values = {k: server.ids[v[1:-1]] if v.startswith("<") else v for k, v in rule.path.items()}
    path = route.path.format(**values)
    method = sorted((route.methods or set()) - {"HEAD"})[0]
    kwargs: dict[str, Any] = {"headers": server.headers(caller), "timeout": TIMEOUT_S}
    if rule.body is not None:
        kwargs["json"] = rule.body(server)
    if rule.files:
        card = (REPO_ROOT / "data" / "cards" / "example_card_v2.json").read_bytes()
        name = rule.files if isinstance(rule.files, str) else "file"
        kwargs["files"] = {name: ("card.json", card, "application/json")}
    return httpx.request(method, server.url + path, **kwargs)


def leaks(body: str, caller: str) -> list[str]:
    """Alice's canaries in what `caller` was shown (admins may see her runs and cards)."""
    if caller == "alice":
        return []
    canaries = PRIVATE if caller == "boss" else PRIVATE + ADMIN_VISIBLE
    return [c for c in canaries if c in body]


def test_every_http_route_answers_each_caller_as_designed(server: Server) -> None:
    _ensure_profile(server)  # the Gradio test's own "forget" and "delete run" calls removed them
    _ensure_run(server)
    routes = _routes()
    names = [route.name for route in routes]
    assert len(names) == len(set(names)), "route names must be unique"
    missing = sorted(set(names) - set(HTTP_RULES))
    assert not missing, f"routes without an authorization rule: {missing}"
    assert sorted(set(HTTP_RULES) - set(names)) == [], "rules for routes that do not exist"
    assert {n for n, r in HTTP_RULES.items() if "nobody" in r.allowed and OK & r.allowed["nobody"]} == set(
        PUBLIC_ROUTES
    ) - {"session_sign_in"}
    # alice's named token, which bob and boss try to revoke
    created = httpx.post(f"{server.url}/api/tokens", headers=server.headers("alice"), json={"name": "laptop"})
    assert created.status_code == 201, created.text
    problems: list[str] = []
    alice_profile = httpx.get(
        f"{server.url}/api/chat/profile/stella_yuna", headers=server.headers("alice")
    ).json()
    assert PROFILE_CANARY in json.dumps(alice_profile, ensure_ascii=False)
    ordered = [r for r in routes if not HTTP_RULES[r.name].destructive] + [
        r for r in routes if HTTP_RULES[r.name].destructive
    ]
    for route in ordered:
        rule = HTTP_RULES[route.name]
        # Destructive routes: the others first, alice last (her data must survive their calls).
        for caller in CALLERS:
            if route.name == "session_sign_out" and caller != "nobody":
                continue  # checked below
            if caller == "boss" and route.name in MODEL_TURN_ROUTES:
                continue
            if caller == "alice" and route.name in ("chat_profile_update", "chat_forget"):
                # bob's and boss's calls changed only their own profile: alice's is as it was
                mine = httpx.get(
                    f"{server.url}/api/chat/profile/stella_yuna", headers=server.headers("alice")
                )
                if alice_profile != mine.json():
                    problems.append(f"{route.name}: another caller changed alice's profile: {mine.text}")
            response = _call(server, route, rule, caller)
            where = f"{route.name} as {caller}: {response.status_code}"
            if response.status_code not in rule.allowed[caller]:
                problems.append(f"{where}, allowed {sorted(rule.allowed[caller])}: {response.text[:200]}")
            leaked = leaks(response.text, caller)
            if caller == "bob" and "<card>" not in rule.path.values() and server.ids["card"] in response.text:
                leaked.append(server.ids["card"])  # her card's id, where bob did not name it himself
            if leaked:
                problems.append(f"{where} shows alice's {leaked}")
            if caller == "alice" and response.status_code in OK:
                wanted = [server.ids[c[1:-1]] if c.startswith("<") else c for c in rule.sees]
                missed = [c for c in wanted if c not in response.text]
                if missed:
                    problems.append(f"{where} does not show alice's own {missed}")
            if response.status_code >= 400:
                error = response.json().get("error", {})
                if not {"status", "field", "reason"} <= set(error):
                    problems.append(f"{where}: error without status/field/reason: {response.text[:200]}")
        alice_profile = httpx.get(
            f"{server.url}/api/chat/profile/stella_yuna", headers=server.headers("alice")
        ).json()
    assert not problems, "\n".join(problems)
    for caller in ("bob", "boss", "alice"):
        response = httpx.delete(f"{server.url}/api/session", headers=server.headers(caller))
        assert response.status_code in OK, response.text
        again = httpx.get(f"{server.url}/api/me", headers=server.headers(caller))
        assert again.status_code == 401, again.text  # the sign-in token is revoked
