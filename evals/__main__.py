"""`python -m evals NAME [options] [--langsmith]`: run one evaluation; the last line of output is one
JSON object. `--langsmith` runs it as a LangSmith experiment (evals/langsmith_experiment.py).

Evaluations: see EVALS below (`python -m evals --help` lists them).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

EVALS = {
    "chat_smoke": "evals.chat_smoke",
    "persona": "evals.persona",
    "memory": "evals.memory",
    "twins": "evals.twins",
    "safety": "evals.safety",
    "insight": "evals.insight",
    "crm": "evals.crm",
    "injection": "evals.injection",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in EVALS:
        names = ", ".join(sorted(EVALS))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown evaluation {argv[0]!r}; available: {names}", file=sys.stderr)
            return 2
        print(f"usage: python -m evals NAME [options] [--langsmith]\navailable: {names}")
        return 0
    for key, value in {"ANONYMIZED_TELEMETRY": "False", "LANGSMITH_TRACING": "false"}.items():
        os.environ.setdefault(key, value)
    import signal

    # SIGTERM exits normally, so atexit stops any embedded model server this process started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rest = argv[1:]
    if "--langsmith" in rest:
        # As a LangSmith experiment (evals/langsmith_experiment.py); without the flag, all stays local.
        from evals import langsmith_experiment

        result = langsmith_experiment.run(argv[0], [a for a in rest if a != "--langsmith"])
    else:
        result = importlib.import_module(EVALS[argv[0]]).run(rest)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
