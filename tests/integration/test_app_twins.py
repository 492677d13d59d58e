"""The twin tabs of the real app, signed in: selection, a survey run on the real model, results, and
what another account may not see or do (someone else's run is not found; paths stay in their folders)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from personagraph.accounts.store import AccountStore
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.processes import free_port
from tests.integration.conftest import running_app
from tests.integration.test_app import BIN

pytestmark = pytest.mark.integration
ACCOUNTS = {
    "AUTH_USER_ID": "mina",
    "AUTH_USER_PW": "mina-pw",
    "AUTH_ADMIN_ID": "boss",
    "AUTH_ADMIN_PW": "boss-pw",
}
TINY_SURVEY = """
id: tiny
title: Tiny survey
language: en
questions:
  - id: like_coffee
    type: likert
    text: I enjoy drinking coffee.
    points: 5
    labels: {1: Strongly disagree, 3: Neutral, 5: Strongly agree}
  - id: pet
    type: single_choice
    text: Which pet would you rather have?
    options: [Cat, Dog]
"""


@pytest.fixture(scope="module")
def signed_in_app(model_server: LocalModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One signed-in app for the module (starting the app is the slow part)."""
    tmp_path = tmp_path_factory.mktemp("signed-in-app")
    # A second user account in the app's database (besides the AUTH_* pairs from the environment).
    AccountStore(path=tmp_path / "home" / "accounts.sqlite", bcrypt_rounds=4).add("joon", "joon-password")
    real_model_env = {
        "LLM_BASE_URL": model_server.base_url, "LLM_API_KEY": model_server.api_key,
        "LLM_MODEL": model_server.alias, "LLM_BACKEND": "llamacpp",
        "LLM_MAX_TOKENS": "96",
    }  # fmt: skip
    env = {
        **real_model_env, **ACCOUNTS, "PERSONAGRAPH_HOME": str(tmp_path / "home"),
        "INSIGHT_CUSTOMERS": "400", "INSIGHT_ORDERS": "6000",  # a small live demo: fast on 2 cores
    }  # fmt: skip
    with running_app(["--host", "0.0.0.0"], env, tmp_path / "app.log") as url:
        yield url


def test_open_mode_refuses_a_public_address() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    done = subprocess.run([str(BIN / "personagraph"), "app", "--host", "0.0.0.0", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "--host 0.0.0.0" in done.stderr and "AUTH_USER_ID" in done.stderr


def test_survey_run_results_and_roles(signed_in_app: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any refusal: the app needs a sign-in
        Client(signed_in_app, verbose=False).predict("random:2:1", api_name="/count_respondents")
    user = Client(signed_in_app, auth=("mina", "mina-pw"), verbose=False)
    admin = Client(signed_in_app, auth=("boss", "boss-pw"), verbose=False)

    text, table = user.predict("random:2:1\nwhere:sex=Female|Male", api_name="/count_respondents")
    assert "**2 respondents**" in text and len(table["data"]) == 2
    bad, _ = user.predict("random:lots", api_name="/count_respondents")
    assert bad.startswith("⚠️") and "random" in bad

    assert "2 questions" in user.predict(TINY_SURVEY, api_name="/check_survey")
    assert user.predict("questions: [", api_name="/check_survey").startswith("⚠️")

    job = user.submit(TINY_SURVEY, "random:1:7", "per_question", 1, 0, "", api_name="/run_survey")
    updates = list(job)
    status = job.outputs()[-1][0]
    assert updates and "Run `" in status, status
    run_id = status.split("Run `", 1)[1].split("`", 1)[0]
    assert "✅ Done" in status and "2/2 answers stored" in status, status  # grammar-constrained: always valid

    mine = user.predict(api_name="/list_runs")
    assert run_id in str(mine)
    summary, table, question, plot = user.predict(run_id, api_name="/show_run")
    assert "coverage **100.0%**" in summary and len(table["data"]) == 2
    files, note = user.predict(run_id, api_name="/export_run")
    assert {Path(f).suffix for f in files} >= {".json", ".csv", ".xlsx"}, note

    # Another account: the run does not exist for them, and server paths are refused.
    joon = Client(signed_in_app, auth=("joon", "joon-password"), verbose=False)
    assert run_id not in str(joon.predict(api_name="/list_runs"))
    shown, *_ = joon.predict(run_id, api_name="/show_run")
    assert shown.startswith("⚠️") and "no run" in shown and "coverage" not in shown, shown
    files, note = joon.predict(run_id, api_name="/export_run")
    assert not files and note.startswith("⚠️"), note
    assert joon.predict(run_id, api_name="/cancel_run").startswith("⚠️")
    refused, _ = joon.predict(run_id, api_name="/delete_run")
    assert refused.startswith("⚠️") and "no run" in refused
    for spec in ("source:/etc/passwd", "file:../../x.json", "hf:/tmp"):
        text, _ = joon.predict(spec, api_name="/count_respondents")
        assert text.startswith("⚠️") and "files must be in your upload folder" in text, text

    assert run_id in str(admin.predict(api_name="/list_runs"))  # admins see every run
    deleted, _ = admin.predict(run_id, api_name="/delete_run")
    assert deleted.startswith("Deleted")
    assert run_id not in str(user.predict(api_name="/list_runs"))


def _applied(status: str) -> int:
    """The "live orders applied: N" count of the insight status line."""
    found = re.search(r"live orders applied: ([\d,]+)", status)
    assert found, status
    return int(found.group(1).replace(",", ""))


def test_insight_tab_goes_live_and_answers_from_the_figures(signed_in_app: str) -> None:
    admin = Client(signed_in_app, auth=("boss", "boss-pw"), verbose=False)
    status, sizes, scatter, _ = admin.predict(api_name="/insight_refresh")  # starts the in-process demo
    assert "in-process demo Redis" in status, status
    first = _applied(status)
    assert "**Live stream:** consumer demo: running" in status, status
    import time

    # Orders arrive at the customers' own rates on the simulated clock (one simulated hour a second):
    # on this small test history, about one every second or two.
    deadline = time.monotonic() + 60
    while True:
        time.sleep(2.0)
        status, *_ = admin.predict(api_name="/insight_refresh")
        if _applied(status) > first or time.monotonic() > deadline:
            break
    assert _applied(status) > first, status

    history, figures, box = admin.predict(
        "What are our VIP customers like?", [], "keywords", api_name="/insight_ask"
    )
    details = json.loads(figures)
    assert box == "" and history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
    assert details["intent"] == "segment_profile" and [s.lower() for s in details["scope"]["segments"]] == [
        "vip"
    ], details
    out, *_ = admin.predict("오늘 날씨 어때?", [], "keywords", api_name="/insight_ask")
    assert out[-1]["role"] == "assistant"


def test_crm_tab_rejects_bad_requests_by_field(signed_in_app: str, tmp_path: Path) -> None:
    from gradio_client import handle_file

    user = Client(signed_in_app, auth=("mina", "mina-pw"), verbose=False)
    message, _, checks, _, result, _variants = user.predict(
        0, "dewylab", "lum-01", 0, 0, False, "sms", 3, "ko", True, api_name="/crm_generate"
    )  # a product of another brand
    assert message == "" and result["status"] == "invalid"
    assert result["error"].startswith("product:") and "allowed: dew-01" in result["error"], result
    bad_rows = tmp_path / "requests.csv"
    bad_rows.write_text(
        "persona,brand,product,stage_index,style_index,is_event,channel\n9,x,y,0,0,0,sms\n0,x,y,7,0,0,fax\n",
        encoding="utf-8",
    )
    table, download, status = user.predict(handle_file(str(bad_rows)), True, api_name="/crm_batch")
    rows = table["data"]
    assert [r[1] for r in rows] == ["invalid", "invalid"] and "persona" in rows[0][3], rows
    assert download and "2 rows" in status


ONE_QUESTION_GUIDE = """
id: tiny_guide
title: Tiny interview
language: en
questions:
  - id: coffee
    text: How do you take your coffee?
"""


def test_interactive_interview_through_the_app(signed_in_app: str) -> None:
    user = Client(signed_in_app, auth=("mina", "mina-pw"), verbose=False)
    _, table = user.predict("random:1:3", api_name="/count_respondents")
    person = str(table["data"][0][0])
    # The session's interview state stays on the server (gr.State): the client sends only text.
    chat, status, files = user.predict(
        ONE_QUESTION_GUIDE, person, 0, "random:1:3", api_name="/start_interview"
    )
    assert (
        chat[0]["role"] == "user" and "coffee" in str(chat[0]["content"]) and chat[1]["role"] == "assistant"
    )
    assert "Next question" in status, status
    chat, status, files = user.predict("Why that way?", api_name="/interview_reply")
    assert len(chat) == 4 and "Why that way?" in str(chat[2]["content"])  # your follow-up, answered
    chat, status, files = user.predict("/end", api_name="/interview_reply")
    assert "finished" in status and {Path(f).suffix for f in files} == {".md", ".json"}
    _, bad, _ = user.predict(ONE_QUESTION_GUIDE, "no-such-id", 0, "random:1:3", api_name="/start_interview")
    assert bad.startswith("⚠️") and "respondent id" in bad
