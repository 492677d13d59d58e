"""`personagraph` commands, run in-process through `cli.main.main`, with hostile arguments, files and
stdin: every run ends with exit code 0, or 1/2 and an `error: ...` line (argparse's usage errors
are exit 2), never a traceback. Commands that start servers or run for ever (app, serve-model,
redis, insight consume/load/report, prepare, index) are left to the integration tests.

The terminal operator is the local admin, so commands may change any account (that is their job);
what is checked across accounts here is that the operator's chat never touches another account's
thread. Model roles are fakes, the CRM graph a stand-in, and the insight history small.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personagraph.accounts import store as store_module
from personagraph.accounts.identity import Caller
from personagraph.cli import main as cli
from personagraph.insight.settings import get_insight_settings
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import use_models
from tests.fuzz.inputs import (
    CARD,
    CRM_REQUEST,
    GUIDE,
    TAM,
    batch_files,
    card_payloads,
    png_cards,
    questionnaire_texts,
    respondent_files,
    select_specs,
)
from tests.fuzz.strategies import examples, hostile_ids, hostile_numbers, hostile_text, mutated, to_json_bytes
from tests.fuzz.support import CrmGraphStub, fake_models, insight_source

pytestmark = pytest.mark.timeout(180)
_files = itertools.count()
# Arguments as a shell hands them over: any text, including undecodable bytes (\udc80-\udcff).
SHELL_JUNK = ["\udcff", "\udc80abc", "--", "-", "--help=x", "-h x", "--select", "=", "''", '""']


@pytest.fixture
def cli_env(isolated_home: Path, no_classifier: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Cheap password hashes, fake models, a stand-in CRM graph, a small insight history."""
    original = store_module.hash_password
    monkeypatch.setattr(store_module, "hash_password", lambda password, rounds=12: original(password, 4))
    monkeypatch.setattr(cli, "_exit_on_sigterm", lambda: None)  # leave pytest's SIGTERM handler alone
    monkeypatch.setattr("personagraph.graphs.crm_message.graph", CrmGraphStub())
    source = insight_source()  # `insight ask` reads a small fixed customer base, not a new history
    monkeypatch.setattr("personagraph.services.insight.configured_source", lambda url=None: source)
    monkeypatch.setenv("INSIGHT_CUSTOMERS", "200")
    monkeypatch.setenv("INSIGHT_ORDERS", "2000")
    get_insight_settings.cache_clear()
    with use_models(fake_models()):
        yield isolated_home
    get_insight_settings.cache_clear()


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
        stdin: str = "") -> tuple[int, str, str]:  # fmt: skip
    """(exit code, stdout, stderr) of one command; argparse's SystemExit is an exit code too."""
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code: Any = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), f"{argv!r}: exit code {code!r}\n{err[-500:]}"
    if code:
        assert err.strip(), f"{argv!r}: exit {code} without a message"
    assert "Traceback" not in err, f"{argv!r}: {err[-800:]}"
    return code, out, err


def new_file(folder: Path, suffix: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"in{next(_files)}{suffix}"
    path.write_bytes(content)
    return path


def arg_text(extra: list[str] | None = None) -> st.SearchStrategy[str]:
    return st.one_of(hostile_text([*SHELL_JUNK, *(extra or [])]), hostile_numbers().map(str))


# --- accounts -------------------------------------------------------------------------------------------


@st.composite
def accounts_argv(draw: st.DrawFn) -> tuple[list[str], str]:
    user = draw(hostile_ids(["alice", "bob", "boss", "local", "AUTH"]))
    name = draw(hostile_ids(["api", "session", "laptop"]))
    action = draw(st.sampled_from(["add", "list", "remove", "passwd", "token", "revoke", "bogus"]))
    argv = ["accounts", action]
    if action in ("add", "remove", "passwd", "token", "revoke"):
        argv.append(user)
    if action in ("add", "passwd"):
        argv.append("--password-stdin")
        if action == "add" and draw(st.booleans()):
            argv += ["--role", draw(st.sampled_from(["user", "admin", "root", ""]))]
    if action == "token":
        argv += ["--name", name]
        if draw(st.booleans()):
            argv += ["--hours", draw(arg_text())]
    if action == "revoke":
        argv.append(name)
    password = draw(st.one_of(st.just("a long enough password"), hostile_text(["", "short"])))
    return argv, password + "\n"


@settings(max_examples=examples(60))
@given(accounts_argv())
def test_accounts(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                  case: tuple[list[str], str]) -> None:  # fmt: skip
    argv, stdin = case
    run(monkeypatch, capsys, argv, stdin)


# --- chat, cards ------------------------------------------------------------------------------------


@settings(max_examples=examples(15))
@given(arg_text(), hostile_ids(["bob-thread", "t1"]), hostile_ids(["stella_yuna", "captain_haneul"]))
def test_chat(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              message: str, thread: str, persona: str) -> None:  # fmt: skip
    """The operator's chat (user `local`) with any thread id never touches bob's thread of that id."""
    service = ChatService()
    bob = Caller("bob")
    if not any(t["thread_id"] == "bob-thread" for t in service.threads(bob)):
        service.send(bob, validate_request(message="I'm Bob", thread_id="bob-thread"))
    before = [(m.id, m.content) for m in service.history(bob, "bob-thread")]
    run(monkeypatch, capsys, ["chat", "--message", message, "--thread", thread, "--persona", persona])
    assert [(m.id, m.content) for m in ChatService().history(bob, "bob-thread")] == before


@pytest.mark.parametrize("message", ["\udcff", "hi \udc80there"])
def test_chat_with_undecodable_bytes(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], message: str
) -> None:
    """A message with bytes that are not UTF-8 (Python hands them over as \udc80-\udcff)."""
    code, _, err = run(monkeypatch, capsys, ["chat", "--message", message, "--thread", "t-bytes"])
    assert code in (0, 2), err


@st.composite
def card_files(draw: st.DrawFn, folder: Path) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.sampled_from(["/", "/etc", "/dev/null", "/proc/self/mem", "/nonexistent/card.json",
                                     "", "\x00", "a\x00b", "\udcff", "~", "-", "--id"]))  # fmt: skip
    if kind == 1:
        return str(new_file(folder, ".png", draw(png_cards())))
    if kind == 2:
        named = {**CARD, "data": {**CARD["data"], "name": draw(hostile_text())}}
        return str(new_file(folder, ".json", to_json_bytes(named)))
    return str(
        new_file(folder, draw(st.sampled_from([".json", ".png", ""])), to_json_bytes(draw(card_payloads())))
    )


@settings(max_examples=examples(40))
@given(st.data())
def test_import_and_export_card(cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], data: st.DataObject) -> None:  # fmt: skip
    argv = ["import-card", data.draw(card_files(tmp_path / "cards"), label="file")]
    if data.draw(st.booleans(), label="with id"):
        argv += ["--id", data.draw(hostile_ids(["stella_yuna", "seren_moss"]), label="id")]
    argv += data.draw(st.lists(st.sampled_from(["--overwrite", "--public"]), unique=True), label="flags")
    code, out, _ = run(monkeypatch, capsys, argv)
    persona = (
        out.strip() if code == 0 else data.draw(hostile_ids(["stella_yuna", "seren_moss"]), label="export")
    )
    export = ["export-card", persona]
    if data.draw(st.booleans(), label="with out"):
        name = data.draw(st.one_of(hostile_text(), st.sampled_from(["x.json", "missing/dir/x.json", ""])))
        export += ["--out", str(tmp_path / "exports" / name) if name else name]
    code, out, _ = run(monkeypatch, capsys, export)
    if code == 0 and "--out" not in export:
        json.loads(out)


def test_export_card_to_a_missing_folder_is_an_error(
    cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        monkeypatch, capsys, ["export-card", "stella_yuna", "--out", str(tmp_path / "no/x.json")]
    )
    assert code == 2 and "--out" in err


def test_import_card_from_an_unreadable_file_is_an_error(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, ["import-card", "/proc/self/mem"])  # a regular file; reads fail
    assert code == 2 and "error: " in err


# --- digital twins ------------------------------------------------------------------------------------


@settings(max_examples=examples(40))
@given(select_specs(), st.sampled_from(["survey", "interview"]))
def test_twins_count(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                     specs: list[str], command: str) -> None:  # fmt: skip
    argv = [command, "--count"]
    for spec in specs:
        argv += ["--select", spec]
    run(monkeypatch, capsys, argv)


NUMBER_FLAGS = [
    "--concurrency",
    "--rate",
    "--retries",
    "--reason-chars",
    "--seed",
    "--max-followups",
    "--mode",
]


@settings(max_examples=examples(20))
@given(st.data())
def test_twins_runs(cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str], data: st.DataObject) -> None:  # fmt: skip
    """A survey or interview from a hostile file, with hostile options and run ids, for one respondent."""
    command = data.draw(st.sampled_from(["survey", "interview"]), label="command")
    base = TAM if command == "survey" else GUIDE
    suffix = data.draw(st.sampled_from([".yaml", ".json", ".txt"]), label="suffix")
    text = data.draw(questionnaire_texts(base), label="file")
    path = new_file(tmp_path / "in", suffix, text.encode("utf-8", "surrogatepass"))
    argv = [command, "--survey" if command == "survey" else "--guide", str(path), "--select", "random:1:1",
            "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    for flag in data.draw(st.lists(st.sampled_from(NUMBER_FLAGS), max_size=2, unique=True), label="flags"):
        value = data.draw(st.one_of(arg_text(), st.sampled_from(["1", "2", "0", "per_person"])), label=flag)
        if (
            command == "survey"
            and flag == "--max-followups"
            or command == "interview"
            and flag in ("--mode", "--seed", "--reason-chars")
        ):
            continue
        if flag == "--rate" and _is_tiny_rate(value):
            continue  # a run at one call per 1e300 s is a background-run limit, reported apart
        argv += [flag, value]
    if data.draw(st.booleans(), label="run id"):
        argv += ["--run-id", data.draw(hostile_ids(["bob-run"]), label="run id value")]
    if data.draw(st.integers(0, 3), label="resume") == 0:
        argv = [command, "--resume", data.draw(hostile_ids(["bob-run"]), label="resume id"), "--no-progress"]
    run(monkeypatch, capsys, argv)


def _is_tiny_rate(value: str) -> bool:
    try:
        return 0 < float(value) < 0.01
    except ValueError:
        return False


@settings(max_examples=examples(30))
@given(respondent_files())
def test_twins_respondent_files(cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], file: tuple[str, bytes]) -> None:  # fmt: skip
    suffix, content = file
    path = new_file(tmp_path / "people", suffix, content)
    run(monkeypatch, capsys, ["survey", "--select", f"source:{path}", "--select", "random:2:1", "--count"])


# --- CRM ------------------------------------------------------------------------------------------------

CRM_FLAGS = [
    "persona",
    "brand",
    "product",
    "stage_index",
    "style_index",
    "is_event",
    "channel",
    "top_k",
    "lang",
]


@settings(max_examples=examples(40))
@given(st.data())
def test_crm(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             data: st.DataObject) -> None:  # fmt: skip
    raw = data.draw(mutated({k: str(v) for k, v in CRM_REQUEST.items()}, arg_text(["²", "Budget Seeker"])))
    argv = ["crm"]
    for key, value in raw.items():
        argv += [f"--{key}" if key in CRM_FLAGS else str(key), str(value)]
    if data.draw(st.integers(0, 5)) == 0:
        argv.append("--list")
    run(monkeypatch, capsys, argv)


@settings(max_examples=examples(30))
@given(st.data())
def test_crm_batch(cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str], data: st.DataObject) -> None:  # fmt: skip
    name, text = data.draw(batch_files(), label="batch")
    path = new_file(tmp_path / "batch", Path(name).suffix, text.encode("utf-8", "surrogatepass"))
    out = data.draw(st.sampled_from(["out.json", "out.jsonl", "missing/dir/out.json", ""]), label="out")
    argv = ["crm", "--batch_json", str(path)]
    if out:
        argv += ["--out_path", str(tmp_path / "results" / out)]
    if data.draw(st.integers(0, 4)) == 0:
        argv[2] = data.draw(st.sampled_from(["/", "/dev/null", "/nonexistent.json", "\x00"]), label="path")
    run(monkeypatch, capsys, argv)


# --- customer insight ---------------------------------------------------------------------------------


@settings(max_examples=examples(15))
@given(st.data())
def test_insight(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 data: st.DataObject) -> None:  # fmt: skip
    kind = data.draw(st.sampled_from(["ask", "generate-history", "simulate", "bogus"]), label="command")
    argv = ["insight", kind]
    if kind == "ask":
        argv.append(
            data.draw(arg_text(["VIP 고객은 어떤 특징이 있어?", "How many customers?"]), label="question")
        )
        if data.draw(st.booleans(), label="with thread"):
            argv += ["--thread", data.draw(hostile_ids(), label="thread")]
        argv += ["--router", data.draw(st.sampled_from(["keywords", "hybrid", "model", "x"]), label="router")]
        if data.draw(st.booleans(), label="json"):
            argv.append("--json")
    elif kind == "generate-history":
        for flag in data.draw(st.lists(st.sampled_from(["--customers", "--orders", "--seed"]), unique=True)):
            argv += [flag, data.draw(st.one_of(st.sampled_from(["-5", "0", "1", "x", "1e3", ""]),
                                               st.integers(-10, 300).map(str)), label=flag)]  # fmt: skip
        if "--customers" not in argv:  # the default (from INSIGHT_CUSTOMERS) is small here
            argv += ["--customers", "50"]
        if "--orders" not in argv:
            argv += ["--orders", "400"]
    elif kind == "simulate":
        argv += ["--count", data.draw(arg_text(), label="count")]
        url = data.draw(
            st.sampled_from(["http://x", "redis://127.0.0.1:1", "unix:///nonexistent", "", "\x00"])
        )
        argv += ["--redis-url", url]
    run(monkeypatch, capsys, argv)


@settings(max_examples=examples(40))
@given(st.lists(st.one_of(arg_text(["chat", "survey", "crm", "insight", "accounts", "--help"]),
                          st.sampled_from(["--select", "--out", "--persona"])), max_size=4))  # fmt: skip
def test_any_arguments(cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                       argv: list[str]) -> None:  # fmt: skip
    """Words in any order: argparse refuses them (exit 2), or a command runs and ends cleanly."""
    if argv and argv[0] in ("app", "serve-model", "redis", "prepare", "index"):
        return  # long-running or heavy commands (see the module docstring)
    run(monkeypatch, capsys, argv)


@pytest.mark.parametrize("hours", ["1e300", "inf", "nan", "0", "-2"])
def test_a_token_lifetime_out_of_range_is_an_error(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], hours: str
) -> None:
    """`accounts token USER --hours 1e300` overflowed the expiry date: a traceback."""
    assert (
        run(monkeypatch, capsys, ["accounts", "add", "mina", "--password-stdin"], "a long enough password\n")[
            0
        ]
        == 0
    )
    code, _, err = run(monkeypatch, capsys, ["accounts", "token", "mina", "--hours", hours])
    assert code == 2 and "hours: " in err
