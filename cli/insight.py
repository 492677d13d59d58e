"""`personagraph insight ...`: history, live stream, consumers, model report, questions.

    from personagraph.cli.insight import add_insight_parser
    add_insight_parser(sub)           # sets `func`, returning an exit code

personagraph insight generate-history [--customers 5000] [--orders 100000] [--seed 7] [--regenerate]
personagraph insight load [--redis-url URL]           history -> Redis (replaces the live state), fit, score
personagraph insight simulate --rate 200 --seed 1 (--count N | --seconds S) [--redis-url URL]
    [--speed 3600 [--scenario steady|shift] [--shift-after-days 3]]
personagraph insight consume [--name c1] [--seconds S] [--refit-interval 60] [--record-latency]
personagraph insight status [--dead-letters N] [--redis-url URL]   consumers, restarts, dead letters
personagraph insight accept-drift [--redis-url URL]   swap in the refit held as drift (status: segments.held)
personagraph insight report                           K-Means vs GMM (BIC, silhouette, stability)
personagraph insight ask "question" [--router hybrid|model|keywords] [--thread ID] [--dataset NAME] [--json]
personagraph insight import-orders FILE.csv --dataset NAME [--replace] [--skip-bad-rows] [--timezone Asia/Seoul]
personagraph insight datasets                         the imported datasets
personagraph insight orders-template [--out FILE]     an example order export (every column)
Redis: --redis-url, else INSIGHT_REDIS_URL, else REDIS_URL (`personagraph redis` runs one).
Exit codes: 0 ok, 1 service or model error, 2 invalid input.

Every command runs as the terminal operator (CLI_CALLER: the local admin), so `ask` threads are the
same "local" person's as in an app with no accounts; `ask` prints its thread id on stderr, and
`--thread ID` asks a follow-up in it. Without --json, `ask` prints the figures at once and the model's
narrative as it is written (a rewritten answer is printed again in full after a "revised" line).
`import-orders` reads a shop's order export (columns: `personagraph insight orders-template`); a bad
row refuses the file, each problem named by row and column.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from personagraph.accounts.identity import CLI_CALLER
from personagraph.insight.questions import ROUTER_MODES


def add_insight_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("insight", help="customer insight: order history, live segments, Q&A")
    sub = parser.add_subparsers(dest="insight_command", required=True)

    gen = sub.add_parser("generate-history", help="generate the seeded order history (SQLite)")
    gen.add_argument("--customers", type=int, default=None)
    gen.add_argument("--orders", type=int, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--regenerate", action="store_true", help="overwrite a stored history")
    gen.set_defaults(func=cmd_generate)

    load = sub.add_parser("load", help="load the history into Redis and segment every customer")
    load.add_argument("--redis-url", default=None)
    load.set_defaults(func=cmd_load)

    sim = sub.add_parser("simulate", help="publish live orders to the Redis Stream")
    sim.add_argument(
        "--rate", type=float, default=200.0, help="orders per second (default 200; not with --speed)"
    )
    sim.add_argument(
        "--speed", type=float, default=None,
        help="run the shop's simulated clock at S simulated seconds per real second (3600: an hour a second); "
        "customers then buy at the history's rates",
    )  # fmt: skip
    sim.add_argument("--scenario", choices=("steady", "shift"), default="steady",
                     help="with --speed: steady, or shift (the order mix changes; drift must be reported)")  # fmt: skip
    sim.add_argument("--shift-after-days", type=float, default=3.0, help="simulated days before the shift")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--count", type=int, default=None, help="stop after N orders")
    sim.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    sim.add_argument("--redis-url", default=None)
    sim.set_defaults(func=cmd_simulate)

    con = sub.add_parser("consume", help="run one consumer of the group until Ctrl-C")
    con.add_argument("--name", default="c1", help="consumer name in the group (restart with the same name)")
    con.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    con.add_argument("--refit-interval", type=float, default=None, help="seconds between model refits")
    con.add_argument("--record-latency", action="store_true", help="store order->visible latencies in Redis")
    con.add_argument("--redis-url", default=None)
    con.set_defaults(func=cmd_consume)

    st = sub.add_parser("status", help="the live consumers (state, restarts, last error) and dead letters")
    st.add_argument(
        "--dead-letters", type=int, default=0, metavar="N", help="also show the latest N dead letters"
    )
    st.add_argument("--redis-url", default=None)
    st.set_defaults(func=cmd_status)

    acc = sub.add_parser("accept-drift", help="accept the refit held as drift as the new segment model")
    acc.add_argument("--redis-url", default=None)
    acc.set_defaults(func=cmd_accept_drift)

    rep = sub.add_parser("report", help="K-Means vs GMM model report")
    rep.add_argument("--redis-url", default=None, help="use the live state (default: the stored history)")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)

    ask = sub.add_parser("ask", help="ask a question (Korean or English)")
    ask.add_argument("question")
    ask.add_argument("--router", default="hybrid", choices=ROUTER_MODES)
    ask.add_argument("--thread", default=None, help="a thread id printed by an earlier ask: a follow-up")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument("--dataset", default=None, help="ask about an imported dataset (see `insight datasets`)")
    ask.add_argument("--redis-url", default=None)
    ask.set_defaults(func=cmd_ask)

    imp = sub.add_parser(
        "import-orders", help="import a shop's order export (CSV) as a dataset and segment it"
    )
    imp.add_argument("file", type=Path, help="CSV, one row per order line (see `insight orders-template`)")
    imp.add_argument("--dataset", required=True, help="name of the new dataset: a-z, 0-9, _ or -")
    imp.add_argument("--replace", action="store_true", help="replace a dataset of the same name")
    imp.add_argument(
        "--skip-bad-rows", action="store_true", help="leave bad rows out (listed) instead of refusing"
    )
    imp.add_argument("--timezone", default="Asia/Seoul", help="time zone of times without an offset")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import_orders)

    ds = sub.add_parser("datasets", help="the imported datasets")
    ds.set_defaults(func=cmd_datasets)

    tpl = sub.add_parser("orders-template", help="print (or write) an example order export")
    tpl.add_argument("--out", type=Path, default=None, help="write it to this file")
    tpl.set_defaults(func=cmd_orders_template)
    return parser


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_generate(args: argparse.Namespace) -> int:
    from personagraph.services.insight import generate_history

    try:
        made = generate_history(
            CLI_CALLER, args.customers, args.orders, args.seed, regenerate=args.regenerate
        )
    except ValueError as exc:
        return _error(str(exc), 2)
    print(f"{made.customers:,} customers, {made.orders:,} orders, {made.items:,} items -> {made.path}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import redis

    from personagraph.insight.source import RedisNotConfiguredError
    from personagraph.services.insight import InsightService

    try:
        loaded = InsightService.redis(args.redis_url).load_history(CLI_CALLER)
    except RedisNotConfiguredError as exc:
        return _error(str(exc), 2)
    except redis.RedisError as exc:
        return _error(f"Redis: {exc}", 1)
    print(json.dumps({"customers": loaded.customers, "segments": loaded.segments}, ensure_ascii=False))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from personagraph.insight.simulator import check_simulation_options

    # Options are checked before the service stack is imported (seconds): a mistyped command fails at once.
    if args.count is None and args.seconds is None:
        return _error("give --count N or --seconds S", 2)
    try:
        check_simulation_options(args.speed, args.scenario, args.shift_after_days)
    except ValueError as exc:
        return _error(str(exc), 2)

    import redis

    from personagraph.insight.source import RedisNotConfiguredError
    from personagraph.services.insight import InsightService

    try:
        run = InsightService.redis(args.redis_url).simulate(
            CLI_CALLER, rate=args.rate, seed=args.seed, count=args.count, seconds=args.seconds,
            speed=args.speed, scenario=args.scenario, shift_after_days=args.shift_after_days,
        )  # fmt: skip
    except (RedisNotConfiguredError, ValueError) as exc:
        return _error(str(exc), 2)
    except redis.RedisError as exc:
        return _error(f"Redis: {exc}", 1)
    except KeyboardInterrupt:
        return 0
    print(f"published {run.sent} orders to {run.stream} (run {run.run_id})")
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    import redis

    from personagraph.insight.source import RedisNotConfiguredError
    from personagraph.services.insight import InsightService

    try:
        service = InsightService.redis(args.redis_url)
        print(f"consumer {args.name} of group {service.settings.group} on {service.settings.stream}",
              file=sys.stderr)  # fmt: skip
        stats = service.consume(CLI_CALLER, args.name, seconds=args.seconds, refit_interval_s=args.refit_interval,
                                record_latency=args.record_latency)  # fmt: skip
    except RedisNotConfiguredError as exc:
        return _error(str(exc), 2)
    except redis.RedisError as exc:
        return _error(f"Redis: {exc}", 1)
    print(json.dumps({"read": stats.read, "applied": stats.applied, "duplicates": stats.duplicates,
                      "invalid": stats.invalid, "dead_lettered": stats.invalid}))  # fmt: skip
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import redis

    from personagraph.insight.source import RedisNotConfiguredError
    from personagraph.services.insight import InsightService

    try:
        service = InsightService.redis(args.redis_url)
        out = service.status(CLI_CALLER)
        if args.dead_letters > 0:
            out["latest_dead_letters"] = service.dead_letters(CLI_CALLER, args.dead_letters)
    except (RedisNotConfiguredError, ValueError) as exc:
        return _error(str(exc), 2)
    except redis.RedisError as exc:
        return _error(f"Redis: {exc}", 1)
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def cmd_accept_drift(args: argparse.Namespace) -> int:
    import redis

    from personagraph.accounts.identity import NotFoundError
    from personagraph.insight.source import RedisNotConfiguredError
    from personagraph.services.insight import InsightService

    try:
        out = InsightService.redis(args.redis_url).accept_drift(CLI_CALLER)
    except RedisNotConfiguredError as exc:
        return _error(str(exc), 2)
    except NotFoundError as exc:
        return _error(str(exc), 1)
    except redis.RedisError as exc:
        return _error(f"Redis: {exc}", 1)
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from personagraph.insight.segments import report_markdown
    from personagraph.services.insight import InsightService

    service = InsightService.redis(args.redis_url) if args.redis_url else InsightService.history()
    report = service.model_report(CLI_CALLER)
    print(json.dumps(report) if args.json else report_markdown(report))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from personagraph.insight.questions import validate_question, validate_router_mode
    from personagraph.serving.safe_paths import check_id

    # What the service refuses anyway, checked before it is imported (seconds): errors come at once.
    try:
        validate_router_mode(args.router)
        validate_question(args.question)
        if args.thread is not None:
            check_id(args.thread, "thread_id")
    except ValueError as exc:
        return _error(str(exc), 2)

    from personagraph.accounts.identity import NotFoundError
    from personagraph.services.insight import InsightAnswer, InsightService

    service = InsightService.from_settings(args.redis_url)
    try:
        events = service.ask_stream(CLI_CALLER, args.question, args.thread, args.router, args.dataset)
        out: InsightAnswer | None = None
        shown = ""  # the narrative printed so far
        for event in events:
            if args.json:
                out = event.answer or out
                continue
            if event.kind == "figures":
                print(event.text + "\n", flush=True)
            elif event.kind == "token":
                shown += event.text
                print(event.text, end="", flush=True)
            elif event.kind == "final" and event.answer is not None:
                out = event.answer
                if out.answer != shown:  # a refusal, a question back, or a rewritten/flagged narrative
                    print(("\n\n[revised]\n" if shown else "") + out.answer)
                else:
                    print()
    except (ValueError, NotFoundError) as exc:  # InvalidQuestionError, a malformed or unknown thread id
        return _error(str(exc), 2)
    if out is None:  # pragma: no cover - the stream always ends with its final event
        return _error("the answer did not finish", 1)
    if args.json:
        print(json.dumps(out.as_dict(), ensure_ascii=False, indent=1, default=str))
    else:
        print(f"[intent {out.intent} | scope {out.scope} | figures {len(out.figures)}"
              f"{' | follow-up' if out.follow_up else ''}{' | FLAGGED' if out.flagged else ''}"
              f"{f' | dataset {out.dataset}' if out.dataset else ''} | thread {out.thread_id}]",
              file=sys.stderr)  # fmt: skip
    return 1 if out.error else 0


def cmd_import_orders(args: argparse.Namespace) -> int:
    from personagraph.services.insight import InsightService

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        return _error(f"file: cannot read {args.file}: {exc.strerror or exc}", 2)
    try:
        imported = InsightService.history().import_orders(
            CLI_CALLER, data, args.dataset, filename=args.file.name, replace=args.replace,
            skip_bad_rows=args.skip_bad_rows, timezone=args.timezone,
        )  # fmt: skip
    except ValueError as exc:  # OrdersFileError (row and column named), a bad or taken name
        return _error(str(exc), 2)
    out = imported.as_dict()
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    print(f"dataset {imported.dataset}: {imported.customers:,} customers, {imported.orders:,} orders "
          f"({imported.rows:,} rows), as of {out['as_of'][:10]} -> {imported.path}")  # fmt: skip
    print(
        "segments: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(imported.segments.items(), key=lambda kv: -kv[1]))
    )
    if imported.skipped:
        print(f"left out {len(imported.skipped)} bad row(s):", file=sys.stderr)
        for line in imported.skipped[:20]:
            print(f"  {line}", file=sys.stderr)
    if imported.ignored_columns:
        print(f"ignored columns: {', '.join(imported.ignored_columns)}", file=sys.stderr)
    print(
        f'ask: personagraph insight ask "VIP 고객은 어떤 특징이 있어?" --dataset {imported.dataset}',
        file=sys.stderr,
    )
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from personagraph.insight.importer import list_datasets

    print(json.dumps(list_datasets(), ensure_ascii=False, indent=1))
    return 0


def cmd_orders_template(args: argparse.Namespace) -> int:
    from personagraph.insight.importer import template_path

    text = template_path().read_text(encoding="utf-8")
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
