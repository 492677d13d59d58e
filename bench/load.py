"""Benchmark: N concurrent fans chatting through the HTTP API of two app replicas, against the stub model.

Why: the product's serving path (HTTP, sign-in, the persona_chat graph, checks, Postgres
checkpoints and memory, Redis, Chroma) should add little to what the model itself takes. With the
stub model server (serving/stub_model.py) the model's own time for every call is known, so each
turn's overhead is measured directly: the turn's time minus the stub's time for the calls of that
turn (found by the marker each fan message carries and the stub echoes). Goal: p95 overhead <= 10%
of the stub's turn latency at 50 fans.

Set-up, like tests/integration/test_replicas.py: LocalPostgres, LocalRedis and LocalChroma on
loopback ports, `personagraph prepare`, one account and one API token per fan (made with the
accounts store in the same database before the apps start), two `personagraph app` processes
(replica-a, replica-b). Each fan has its own thread and sends `--turns` messages back to back,
alternating between the replicas (as a round-robin proxy would), reading the Server-Sent Events.

Per level it prints p50/p95 time to first token (the first checked sentence) and turn time, the
stub's own latency for the same turns, the overhead ratio (p95 of turn - stub, over the median stub
turn latency), errors, the replicas' CPU seconds per turn, and a cross-talk check: every reply
must carry its own turn's marker and no other.

    python bench/load.py                                   # 50 fans
    python bench/load.py --fans 1,10,50,100 --turns 3      # the sweep
    python bench/load.py --fans 5 --turns 2 --json         # quick, machine-readable
    python bench/load.py --first-token-delay 0.3 --tokens-per-s 30 --reply-tokens 60
    python bench/load.py --chroma-dir /tmp/load-chroma     # reuse the knowledge index between runs

`personagraph prepare` trains the input-safety classifier once per change of its training data
(cached in ~/.cache/personagraph); a first run after such a change takes minutes longer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personagraph.memory.redis_server import LocalRedis  # noqa: E402
from personagraph.serving.chroma_server import LocalChroma  # noqa: E402
from personagraph.serving.postgres_server import LocalPostgres  # noqa: E402
from personagraph.serving.processes import app_process  # noqa: E402
from personagraph.serving.stub_model import MARKER, SENTENCE_WORDS, StubModelServer  # noqa: E402

BIN = Path(sys.executable).parent
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LANGSMITH_TRACING": "false",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
}
PERSONA = "stella_yuna"
APP_START_S = 180.0
TURN_TIMEOUT_S = 300.0
MESSAGES = (
    "Hi Yuna! I'm {marker} and I loved the concert last night.",
    "What was the hardest part of preparing the world tour? {marker}",
    "I listen to your songs every morning on the way to school. {marker}",
    "Do you have a favourite place to eat after practice? {marker}",
)


@dataclass
class Turn:
    fan: int
    index: int
    marker: str
    replica: str
    started: float = 0.0  # time.time()
    ttft_s: float | None = None
    turn_s: float | None = None
    error: str | None = None
    reply: str = ""
    stub_s: float = 0.0
    stub_ttft_s: float = 0.0
    stub_calls: int = 0


@dataclass
class Fan:
    index: int
    user_id: str
    token: str
    thread_id: str
    turns: list[Turn] = field(default_factory=list)


def marker_for(level: int, fan: int, turn: int) -> str:
    """A unique marker per turn in the stub's form: pgm + 8 hex digits (level, fan, turn)."""
    return f"pgm{level:02x}{fan:03x}{turn:03x}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its finished-and-waited children (/proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


# --- the stack --------------------------------------------------------------------------------------------


def make_fans(count: int, run: str) -> list[Fan]:
    """One account and one API token per fan, in the database the apps use (fast bcrypt: never signed
    in with a password)."""
    from personagraph.accounts.store import AccountStore
    from personagraph.serving.settings import get_settings

    get_settings.cache_clear()
    store = AccountStore(bcrypt_rounds=4)
    fans = []
    try:
        for i in range(count):
            user_id = f"loadfan{i:04d}"
            store.add(user_id, f"password-{run}-{i}")
            fans.append(Fan(i, user_id, store.issue_token(user_id, "load"), f"load-{run}-{i:04d}"))
    finally:
        store.close()
    return fans


# --- one level ------------------------------------------------------------------------------------------


async def one_turn(client: httpx.AsyncClient, url: str, fan: Fan, turn: Turn) -> None:
    body = {
        "message": MESSAGES[turn.index % len(MESSAGES)].format(marker=turn.marker),
        "persona_id": PERSONA,
        "thread_id": fan.thread_id,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {fan.token}"}
    started = time.perf_counter()
    turn.started = time.time()
    try:
        async with client.stream("POST", f"{url}/api/chat/send", json=body, headers=headers) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}"
                await response.aread()
                return
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "token" and turn.ttft_s is None:
                        turn.ttft_s = time.perf_counter() - started
                    elif event == "final":
                        turn.reply = str(data.get("reply", ""))
                        turn.turn_s = time.perf_counter() - started
                    elif event == "error":
                        turn.error = f"error event: {str(data.get('reason', ''))[:80]}"
    except httpx.HTTPError as exc:
        turn.error = type(exc).__name__
    if turn.turn_s is None and turn.error is None:
        turn.error = "no final event"


async def run_fans(
    fans: list[Fan], urls: list[str], names: list[str], level: int, turns: int, think_s: float
) -> float:
    limits = httpx.Limits(max_connections=len(fans) + 10, max_keepalive_connections=len(fans) + 10)
    timeout = httpx.Timeout(TURN_TIMEOUT_S, connect=30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def fan_loop(fan: Fan) -> None:
            for t in range(turns):
                which = (fan.index + t) % len(urls)
                turn = Turn(fan.index, t, marker_for(level, fan.index, t), names[which])
                fan.turns.append(turn)
                await one_turn(client, urls[which], fan, turn)
                if think_s:
                    await asyncio.sleep(think_s)

        started = time.perf_counter()
        await asyncio.gather(*(fan_loop(f) for f in fans))
        return time.perf_counter() - started


def attribute_stub_time(turns: list[Turn], records: list[dict[str, Any]], tokens_per_s: float) -> None:
    """Each turn's stub latency: the stub's own seconds for the calls that carried its marker and
    started before the turn ended (calls run one after another within a turn). The stub's part of
    the time to first token: the calls before the streamed drafting call plus that call's time to
    the end of its first sentence (the sentence gate releases whole sentences)."""
    by_marker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["marker"]:
            by_marker[record["marker"]].append(record)
    step = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
    for turn in turns:
        end = turn.started + (turn.turn_s or 0.0)
        calls = sorted(
            (r for r in by_marker.get(turn.marker, []) if r["started"] <= end), key=lambda r: r["started"]
        )
        turn.stub_calls = len(calls)
        turn.stub_s = sum(r["total_s"] for r in calls)
        before = 0.0
        for r in calls:
            if r["kind"] == "text" and r["stream"]:
                sentence = r["first_token_s"] + (min(SENTENCE_WORDS, r["tokens"]) - 1) * step
                turn.stub_ttft_s = before + min(r["total_s"], sentence)
                break
            before += r["total_s"]


def cross_talk(turn: Turn) -> tuple[bool, bool]:
    """(carries its own marker, carries another turn's marker)."""
    found = set(MARKER.findall(turn.reply))
    return turn.marker in found, bool(found - {turn.marker})


def summarize(
    level_fans: int, turns: list[Turn], seconds: float, cpu: dict[str, float], stub_max: int
) -> dict[str, Any]:
    done = [t for t in turns if t.error is None and t.turn_s is not None]
    ttft = [t.ttft_s for t in done if t.ttft_s is not None]
    turn_s = [t.turn_s for t in done if t.turn_s is not None]
    stub = [t.stub_s for t in done]
    overhead = [t.turn_s - t.stub_s for t in done if t.turn_s is not None]
    ttft_overhead = [t.ttft_s - t.stub_ttft_s for t in done if t.ttft_s is not None]
    stub_median = statistics.median(stub) if stub else None
    stub_ttft_median = statistics.median([t.stub_ttft_s for t in done]) if done else None
    errors: dict[str, int] = defaultdict(int)
    for t in turns:
        if t.error:
            errors[t.error] += 1
    own = [cross_talk(t) for t in done]

    def r(v: float | None, n: int = 3) -> float | None:
        return None if v is None else round(v, n)

    p95_overhead = percentile(overhead, 0.95)
    return {
        "fans": level_fans,
        "turns": len(turns),
        "ok": len(done),
        "errors": dict(errors),
        "seconds": r(seconds, 2),
        "turns_per_s": r(len(done) / seconds if seconds else None, 2),
        "ttft_p50_s": r(percentile(ttft, 0.5)),
        "ttft_p95_s": r(percentile(ttft, 0.95)),
        "turn_p50_s": r(percentile(turn_s, 0.5)),
        "turn_p95_s": r(percentile(turn_s, 0.95)),
        "stub_turn_p50_s": r(stub_median),
        "stub_ttft_p50_s": r(stub_ttft_median),
        "stub_calls_per_turn": r(statistics.mean(t.stub_calls for t in done) if done else None, 2),
        "overhead_p50_s": r(percentile(overhead, 0.5)),
        "overhead_p95_s": r(p95_overhead),
        "overhead_ratio_p95": r(
            p95_overhead / stub_median if p95_overhead is not None and stub_median else None
        ),
        "ttft_overhead_p95_s": r(percentile(ttft_overhead, 0.95)),
        "ttft_overhead_ratio_p95": r(
            percentile(ttft_overhead, 0.95) / stub_ttft_median if ttft_overhead and stub_ttft_median else None  # type: ignore[operator]
        ),
        "cross_talk": sum(1 for _, other in own if other),
        "own_marker_missing": sum(1 for mine, _ in own if not mine),
        "replica_cpu_s_per_turn": r(sum(cpu.values()) / len(done) if done else None),
        "replica_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "stub_max_in_flight": stub_max,
    }


def run_level(
    level: int,
    count: int,
    all_fans: list[Fan],
    apps: list[tuple[str, str, int]],
    stub: StubModelServer,
    args: argparse.Namespace,
) -> dict[str, Any]:
    fans = all_fans[:count]
    for fan in fans:
        fan.turns = []
        fan.thread_id = f"load-l{level}-{fan.index:04d}"
    stub.clear_stats()
    since = int(stub.stats()["requests"])
    cpu_before = {name: cpu_seconds(pid) for name, _, pid in apps}
    seconds = asyncio.run(
        run_fans(fans, [u for _, u, _ in apps], [n for n, _, _ in apps], level, args.turns, args.think_s)
    )
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, _, pid in apps}
    time.sleep(0.5)
    stats = stub.stats(since=since)
    turns = [t for f in fans for t in f.turns]
    attribute_stub_time(turns, stats["records"], args.tokens_per_s)
    return summarize(count, turns, seconds, cpu, int(stats["max_in_flight"]))


def print_level(r: dict[str, Any]) -> None:
    print(
        f"{r['fans']:>4} fans: {r['ok']}/{r['turns']} turns ok in {r['seconds']} s ({r['turns_per_s']}/s); "
        f"TTFT p50 {r['ttft_p50_s']} p95 {r['ttft_p95_s']} s (stub {r['stub_ttft_p50_s']}); "
        f"turn p50 {r['turn_p50_s']} p95 {r['turn_p95_s']} s (stub {r['stub_turn_p50_s']}, "
        f"{r['stub_calls_per_turn']} calls); overhead p50 {r['overhead_p50_s']} p95 {r['overhead_p95_s']} s "
        f"= {r['overhead_ratio_p95']} of the stub turn; CPU {r['replica_cpu_s_per_turn']} s/turn; "
        f"errors {r['errors'] or 0}; cross-talk {r['cross_talk']}, own marker missing {r['own_marker_missing']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fans", default="50", help="comma-separated fan counts, e.g. 1,10,50,100")
    parser.add_argument("--turns", type=int, default=3, help="turns per fan per level")
    parser.add_argument("--think-s", type=float, default=0.0, help="pause between a fan's turns")
    parser.add_argument(
        "--first-token-delay", type=float, default=0.2, help="stub: seconds to the first token"
    )
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="stub: tokens per second after it")
    parser.add_argument("--reply-tokens", type=int, default=40, help="stub: words in a text reply")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--chroma-dir",
        type=Path,
        default=None,
        help="keep Chroma's data here (the knowledge index is built once)",
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the app logs to this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args()
    levels = [int(n) for n in args.fans.split(",") if n.strip()]
    say = (
        (lambda *a: print(*a, file=sys.stderr, flush=True))
        if args.json
        else (lambda *a: print(*a, flush=True))
    )
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="personagraph-load-")))
        say("starting the stub model, Postgres, Redis, Chroma ...")
        stub = stack.enter_context(
            StubModelServer(
                first_token_delay_s=args.first_token_delay,
                tokens_per_s=args.tokens_per_s,
                reply_tokens=args.reply_tokens,
            )
        )
        postgres = stack.enter_context(LocalPostgres())
        redis = stack.enter_context(LocalRedis())
        chroma = stack.enter_context(LocalChroma(path=args.chroma_dir))
        env = {
            **OFFLINE_ENV, **stub.env(), "PERSONAGRAPH_HOME": str(home), "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url, "CHROMA_URL": chroma.url,
        }  # fmt: skip
        os.environ.update(env)
        say("personagraph prepare ...")
        subprocess.run(
            [str(BIN / "personagraph"), "prepare"],
            env=os.environ.copy(),
            check=True,
            capture_output=True,
            timeout=900,
        )
        fans = make_fans(max(levels), run=str(int(time.time())))
        say(f"{len(fans)} fan accounts; starting {args.replicas} app replicas ...")
        apps: list[tuple[str, str, int]] = []
        for i in range(args.replicas):
            name = f"replica-{chr(ord('a') + i)}"
            url, process = stack.enter_context(
                app_process(env, home / f"{name}.log", worker=name, start_timeout_s=APP_START_S)
            )
            apps.append((name, url, process.pid))
        # Warm-up: the first turn in a process loads models, indexes and pools.
        warm = [
            Fan(10_000 + i, f.user_id, f.token, f"load-warm-{i}") for i, f in enumerate(fans[: args.replicas])
        ]
        asyncio.run(run_fans(warm, [u for _, u, _ in apps], [n for n, _, _ in apps], 255, 2, 0.0))
        for level, count in enumerate(levels):
            results.append(run_level(level, count, fans, apps, stub, args))
            if not args.json:
                print_level(results[-1])
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for name, _, _ in apps:
                (args.keep_logs / f"{name}.log").write_bytes((home / f"{name}.log").read_bytes())
    at_50 = next((r for r in results if r["fans"] == 50), None)
    report = {
        "bench": "load",
        "stub": {
            "first_token_delay_s": args.first_token_delay,
            "tokens_per_s": args.tokens_per_s,
            "reply_tokens": args.reply_tokens,
        },
        "replicas": args.replicas,
        "turns_per_fan": args.turns,
        "cpu_count": os.cpu_count(),
        "goal": "overhead_ratio_p95 <= 0.10 at 50 fans",
        "overhead_ratio_p95_at_50": at_50["overhead_ratio_p95"] if at_50 else None,
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    elif at_50:
        verdict = "met" if (at_50["overhead_ratio_p95"] or 99) <= 0.10 else "MISSED"
        print(
            f"goal p95 overhead <= 10% of the stub turn at 50 fans: {at_50['overhead_ratio_p95']} ({verdict})"
        )


if __name__ == "__main__":
    main()
