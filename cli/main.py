"""`personagraph`: command line for chat, indexing, local services and the app.

personagraph chat --message TEXT [--thread ID] [--persona ID]     as the local operator (user `local`)
    [--temperature T] [--top-p P] [--max-tokens N]                  generation settings of this reply
personagraph feedback export [--out FILE] [--persona ID] | stats     ratings as DPO preference pairs
personagraph app [--host H] [--port 7860]  the Gradio app at / and the HTTP API (/api, docs at /docs)
personagraph accounts add USER [--role user|admin] | list | remove USER | passwd USER
personagraph accounts token USER [--name NAME] | revoke USER NAME      API tokens (printed once)
personagraph prepare                      build what the first start needs (setup runs it)
personagraph index [--persona ID]         (re)build the Chroma index
personagraph import-card FILE [--id ID] [--overwrite] [--public]   a Character Card V2 (.json/.png) as a persona
personagraph export-card PERSONA_ID [--out FILE]        a persona as Character Card V2 JSON
personagraph serve-model [--port P]       run the embedded model server in the foreground
personagraph redis [--port P]             run a local Redis with search + JSON modules
personagraph survey ... | interview ...    digital twins (see `personagraph survey --help`)
personagraph twins calibrate RUN_ID --pilot FILE [--policy mean|median|mode|draw]   calibrate a run with a pilot
personagraph insight generate-history|load|simulate|consume|report|ask   customer insight
personagraph crm --persona 0 --brand B --product P --stage_index 1 --style_index 2 --is_event 1 [--channel sms]
personagraph crm --batch_json FILE --out_path FILE | --build_index | --list       CRM messages
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from personagraph.services.chat import TurnEvent


def _offline_defaults() -> None:
    # No telemetry or hub look-ups: the app must work with no network.
    for key, value in {
        "ANONYMIZED_TELEMETRY": "False",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    }.items():
        os.environ.setdefault(key, value)


def cmd_chat(args: argparse.Namespace) -> int:
    """One turn as the terminal operator (`CLI_CALLER`, user `local`): their threads and memories."""
    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.services.chat import ChatService, InvalidRequestError, validate_request

    service = ChatService(warm_after_turn=False)  # the next turn is another process
    try:
        request = validate_request(
            message=args.message,
            thread_id=args.thread or uuid.uuid4().hex,
            persona_id=args.persona,
            temperature=args.temperature,
            top_p=args.top_p,
            max_tokens=args.max_tokens,
        )
        events = service.stream_turn(CLI_CALLER, request)
    except (InvalidRequestError, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The service streams checked text only. A terminal sees it sentence by sentence; a pipe or a
    # file gets just the final reply (a withdrawn sentence cannot be taken back from a file).
    live = sys.stdout.isatty()
    try:
        return _print_turn(events, request.thread_id, live)
    finally:
        service.settle_warm_ups()


def _print_turn(events: Iterator[TurnEvent], thread_id: str, live: bool) -> int:
    shown = ""
    for event in events:
        if event.kind == "token":
            shown += event.text
            if live:
                print(event.text, end="", flush=True)
        elif event.kind == "reset":
            if live and shown:
                print("\n[rewriting the reply]", file=sys.stderr)
            shown = ""
        elif event.kind == "error":
            print(f"\nerror: {event.text}", file=sys.stderr)
            print(f"Your message was not added to thread {thread_id}; run the same command again to retry.",
                  file=sys.stderr)  # fmt: skip
            return 1
        elif event.kind == "final" and event.result is not None:
            if not live:
                print(event.result.reply, end="")
            print()
            took = event.result.timings
            print(f"[thread {thread_id} | intent {event.result.intent or '-'} | first text "
                  f"{took.get('first_token_s')} s | turn {took.get('total_s')} s]", file=sys.stderr)  # fmt: skip
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from personagraph.accounts.store import AccountConfigError
    from personagraph.api.server import serve

    try:
        serve(host=args.host, port=args.port)
    except AccountConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """From stdin (`--password-stdin`, first line) or typed twice without echo."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.user}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("password: the two entries differ")
    return first


def cmd_accounts(args: argparse.Namespace) -> int:
    """`personagraph accounts add|list|remove|passwd|token|revoke`: accounts in PERSONAGRAPH_HOME."""
    from personagraph.accounts.identity import AccessError, NotFoundError
    from personagraph.accounts.store import AccountStore

    try:
        accounts = AccountStore()
        if args.action == "add":
            info = accounts.add(args.user, _new_password(args), role=args.role)
            print(f"added {info.user_id} ({info.role})")
        elif args.action == "list":
            for account in accounts.list():
                print(f"{account.user_id}\t{account.role}\t{account.source}\t{account.created_at}")
        elif args.action == "remove":
            accounts.remove(args.user)
            print(f"removed {args.user} and its tokens")
        elif args.action == "passwd":
            if accounts.role_of(args.user) is None:
                raise NotFoundError(f"user_id: no account {args.user!r}")
            accounts.set_password(args.user, _new_password(args))
            print(f"password changed for {args.user}")
        elif args.action == "token":
            print(accounts.new_api_token(args.user, args.name, args.hours))
            print(f"(token {args.name!r} for {args.user}: shown once; revoke with "
                  f"`personagraph accounts revoke {args.user} {args.name}`)", file=sys.stderr)  # fmt: skip
        elif args.action == "revoke":
            if not accounts.revoke_named(args.user, args.name):
                raise NotFoundError(f"name: {args.user!r} has no token {args.name!r}")
            print(f"revoked {args.user}'s token {args.name}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from personagraph.personas.index import main as index_main

    return index_main(sum((["--persona", p] for p in args.persona or []), []))


def cmd_prepare(args: argparse.Namespace) -> int:
    from personagraph.services.prepare import prepare

    for line in prepare():
        print(line)
    return 0


def cmd_import_card(args: argparse.Namespace) -> int:
    """Import as the terminal operator: any file path; the persona is `local`'s unless --public."""
    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.services.chat import ChatService

    try:
        persona_id = ChatService.import_card(
            CLI_CALLER, args.file, overwrite=args.overwrite, persona_id=args.id, public=args.public
        )
    except (ValueError, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read (a device, no permission)
        print(f"error: file: cannot read {args.file!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(persona_id)
    return 0


def cmd_export_card(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.services.chat import ChatService

    try:
        card = ChatService.export_card(CLI_CALLER, args.persona_id)
    except (ValueError, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(card, ensure_ascii=False, indent=2) + "\n"
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:  # no such folder, no permission, a folder, a NUL in the name
            print(f"error: --out: cannot write {args.out!r}: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def _write_secret(name: str, text: str) -> str:
    """Write a secret into PERSONAGRAPH_HOME/NAME, readable by this user only; returns the path.
    Secrets are handed over in files, never printed (terminals are logged and shared)."""
    from personagraph.serving.settings import get_settings

    home = get_settings().personagraph_home
    home.mkdir(parents=True, exist_ok=True)
    path = home / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return str(path)


def cmd_serve_model(args: argparse.Namespace) -> int:
    from personagraph.serving.local_model import resolve_model_file
    from personagraph.serving.local_server import local_model_server
    from personagraph.serving.settings import get_settings

    settings = get_settings()
    model_file, alias = resolve_model_file(args.model or settings.local_model, settings.model_cache_dir)
    server = local_model_server(settings, model_file, alias)
    server.start(timeout_s=settings.local_server_start_timeout_s)
    key_file = _write_secret("local-model.key", server.api_key)
    print(f"serving {alias} at {server.base_url}; it takes requests with the API key in {key_file}")
    print(f'  export LLM_BASE_URL={server.base_url} LLM_MODEL={alias} LLM_API_KEY="$(cat {key_file})"')
    return _wait_forever(server.stop)


def cmd_redis(args: argparse.Namespace) -> int:
    from pathlib import Path

    from personagraph.memory.redis_server import LocalRedis

    server = LocalRedis(port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None).start()
    url_file = _write_secret("redis.url", server.url)
    print(f"Redis with search + JSON at {server.describe()}; its URL with the password is in {url_file}")
    print(f'  export REDIS_URL="$(cat {url_file})"')
    return _wait_forever(server.stop)


def cmd_postgres(args: argparse.Namespace) -> int:
    from pathlib import Path

    from personagraph.serving.postgres_server import LocalPostgres
    from personagraph.serving.settings import get_settings

    data_dir = Path(args.data_dir) if args.data_dir else get_settings().personagraph_home / "postgres"
    server = LocalPostgres(port=args.port, data_dir=data_dir).start()
    url_file = _write_secret("database.url", server.url)
    print(
        f"PostgreSQL with pgvector at {server.describe()}, data in {data_dir}; its URL with the password is in {url_file}"
    )
    print(f'  export DATABASE_URL="$(cat {url_file})"')
    return _wait_forever(server.stop)


def _wait_forever(stop: object) -> int:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()  # type: ignore[operator]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personagraph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="send one message to a persona and print the streamed reply")
    chat.add_argument("--message", required=True)
    chat.add_argument("--thread", default=None, help="thread id; reuse it to continue a conversation")
    chat.add_argument("--persona", default="stella_yuna")
    chat.add_argument("--temperature", type=float, default=None, help="0 to 2 (default: the chat role's)")
    chat.add_argument("--top-p", type=float, default=None, help="above 0, up to 1")
    chat.add_argument("--max-tokens", type=int, default=None, help="1 to 4096 (default: LLM_MAX_TOKENS)")
    chat.set_defaults(func=cmd_chat)

    app = sub.add_parser("app", help="start the app: the Gradio UI at / and the HTTP API (/api, /docs)")
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=7860)
    app.set_defaults(func=cmd_app)

    accounts = sub.add_parser("accounts", help="add, list and remove accounts; API tokens")
    actions = accounts.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an account (asks for the password twice)")
    add.add_argument("user", metavar="USER")
    add.add_argument("--role", choices=["user", "admin"], default="user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    actions.add_parser("list", help="every account: id, role, where it is defined, created")
    remove = actions.add_parser("remove", help="remove an account and its tokens")
    remove.add_argument("user", metavar="USER")
    passwd = actions.add_parser("passwd", help="set a new password")
    passwd.add_argument("user", metavar="USER")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    token = actions.add_parser("token", help="create an API token for the account and print it once")
    token.add_argument("user", metavar="USER")
    token.add_argument("--name", default="api", help="the token's name (to revoke it by)")
    token.add_argument("--hours", type=float, default=None, help="lifetime (default: until revoked)")
    revoke = actions.add_parser("revoke", help="revoke the account's tokens with this name")
    revoke.add_argument("user", metavar="USER")
    revoke.add_argument("name", metavar="NAME")
    accounts.set_defaults(func=cmd_accounts)

    prep = sub.add_parser(
        "prepare",
        help="build what the first start needs (model file, safety classifier, indexes); setup runs it",
    )
    prep.set_defaults(func=cmd_prepare)

    index = sub.add_parser("index", help="build the Chroma index of persona knowledge")
    index.add_argument("--persona", action="append")
    index.set_defaults(func=cmd_index)

    imp = sub.add_parser("import-card", help="import a Character Card V2 (.json or .png) as a new persona")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--id", default=None, help="persona id (default: from the character's name)")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing persona with this id")
    imp.add_argument("--public", action="store_true", help="visible to every account (default: yours only)")
    imp.set_defaults(func=cmd_import_card)

    exp = sub.add_parser("export-card", help="print a persona as Character Card V2 JSON")
    exp.add_argument("persona_id", metavar="PERSONA_ID")
    exp.add_argument("--out", default=None, help="write the card to this file instead of stdout")
    exp.set_defaults(func=cmd_export_card)

    serve = sub.add_parser("serve-model", help="run the embedded model server until Ctrl-C")
    serve.add_argument("--model", default=None, help="qwen2.5-coder-1.5b, smollm2-135m or a .gguf path")
    serve.set_defaults(func=cmd_serve_model)

    redis = sub.add_parser("redis", help="run a local Redis (search + JSON modules) until Ctrl-C")
    redis.add_argument("--port", type=int, default=6379)
    redis.add_argument("--data-dir", default=None)
    redis.set_defaults(func=cmd_redis)

    postgres = sub.add_parser("postgres", help="run a local PostgreSQL (with pgvector) until Ctrl-C")
    postgres.add_argument("--port", type=int, default=5432)
    postgres.add_argument("--data-dir", default=None, help="default: PERSONAGRAPH_HOME/postgres")
    postgres.set_defaults(func=cmd_postgres)
    from personagraph.cli.twins import add_interview_parser, add_survey_parser, add_twins_parser

    add_survey_parser(sub)
    add_interview_parser(sub)
    add_twins_parser(sub)
    from personagraph.cli.insight import add_insight_parser

    add_insight_parser(sub)
    from personagraph.cli.crm import add_crm_parser

    add_crm_parser(sub)
    from personagraph.cli.feedback import add_feedback_parser

    add_feedback_parser(sub)
    from personagraph.cli.stack import add_stack_parser

    add_stack_parser(sub)
    return parser


def _exit_on_sigterm() -> None:
    # SIGTERM (kill, a stopped container) exits normally, so atexit stops the embedded model server.
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    _offline_defaults()
    _exit_on_sigterm()
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
