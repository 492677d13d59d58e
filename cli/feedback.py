"""`personagraph feedback export|stats`: fans' ratings of persona replies, as DPO preference pairs.

personagraph feedback export [--out FILE] [--persona ID] [--mine]   TRL prompt/chosen/rejected JSONL
personagraph feedback stats [--persona ID]                          counts (no text), as JSON

The terminal operator exports every account's ratings by default (they hold the database files
anyway); `--mine` exports only the operator's own (user `local`). Over HTTP, each account exports
only its own (GET /api/chat/feedback/export).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_feedback(args: argparse.Namespace) -> int:
    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.memory.feedback import feedback_counts
    from personagraph.services.chat import ChatService

    service = ChatService()
    try:
        if args.action == "stats":
            print(json.dumps(feedback_counts(service.store, args.persona), indent=2))
            return 0
        pairs = service.export_preferences(CLI_CALLER, persona_id=args.persona, all_accounts=not args.mine)
    except (ValueError, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:
            print(f"error: --out: cannot write {args.out!r}: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(f"{len(pairs)} preference pairs -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_feedback_parser(sub: Any) -> None:
    feedback = sub.add_parser(
        "feedback", help="fans' thumbs up/down on replies: export DPO preference pairs, or counts"
    )
    actions = feedback.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="preference pairs as JSONL (TRL: prompt/chosen/rejected)")
    export.add_argument("--out", default=None, help="write to this file (default: stdout)")
    export.add_argument("--persona", default=None, help="only this persona's replies")
    export.add_argument("--mine", action="store_true", help="only the terminal operator's own ratings")
    stats = actions.add_parser("stats", help="ratings up/down, with a reason, pairs, accounts (no text)")
    stats.add_argument("--persona", default=None, help="only this persona's replies")
    feedback.set_defaults(func=cmd_feedback)
