"""`personagraph survey`, `personagraph interview` and `personagraph twins`: parsers ready to be
added to cli/main.py.

    from personagraph.cli.twins import add_interview_parser, add_survey_parser, add_twins_parser
    add_survey_parser(sub); add_interview_parser(sub); add_twins_parser(sub)   # each sets `func`

personagraph survey --survey FILE --select SPEC [--select SPEC ...] --out DIR
                    [--mode per_question|per_person|distribution [--policy mode|median|mean|draw]]
                    [--concurrency N] [--rate PER_S] [--resume RUN_ID]
personagraph survey --select SPEC --count                 how many respondents match, then exit
personagraph interview --guide FILE --select SPEC --out DIR [--max-followups N] [--resume RUN_ID]
personagraph interview --guide FILE --select ids:17 --interactive      type your own follow-ups
personagraph twins calibrate RUN_ID --pilot FILE [--policy mean|median|mode|draw]
                    calibrate a survey run with the real answers of a pilot among its respondents

--select (combined in order): all | random:N[:SEED] | ids:1,2,3 | where:KEY=V1|V2;KEY=LO..HI |
saved:NAME | file:PATH.json | source:twin2k|hf:PATH|PERSONAS_FILE.  Exit codes: 0 ok, 1 model
error or a stopped run (it can be resumed), 2 invalid input (the message names the field and allowed
values) or an unknown run id.

The terminal operator is `CLI_CALLER` (the local admin): runs made here belong to "local" (the one
person of an app without accounts), and files may be named anywhere on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

SELECT_HELP = (
    "respondents, combined in order: all | random:N[:SEED] | ids:1,2,3 | where:KEY=V1|V2;KEY=LO..HI | "
    "saved:NAME | file:PATH.json | source:twin2k|hf:PATH|FILE (repeatable)"
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", action="append", default=[], metavar="SPEC", help=SELECT_HELP)
    parser.add_argument(
        "--count", action="store_true", help="print how many respondents the selection gives, then exit"
    )
    parser.add_argument("--save-selection", metavar="NAME", help="save the selection for reuse (saved:NAME)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the exports")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="model calls in flight at once (default 2)"
    )
    parser.add_argument("--rate", type=float, default=None, help="most model calls started per second")
    parser.add_argument(
        "--retries", type=int, default=3, help="retries after a server error (backoff doubles)"
    )
    parser.add_argument(
        "--resume", metavar="RUN_ID", help="continue an earlier run (asks only what is missing)"
    )
    parser.add_argument("--retry-failed", action="store_true", help="on resume, ask failed answers again")
    parser.add_argument("--run-id", default=None, help="id for a new run (default: generated)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_survey_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("survey", help="digital twins answer a survey (resumable batch run)")
    parser.add_argument("--survey", type=Path, help="survey file: JSON/YAML, native or Twin-2K-500 format")
    parser.add_argument(
        "--mode", default="per_question",
        help="per_question (default), per_person, or distribution (closed questions answered from the "
        "model's token probabilities; the distribution is stored with each answer)",
    )  # fmt: skip
    parser.add_argument(
        "--policy", default="mode",
        help="distribution: the stored answer: mode (most likely), median, mean (expected value) or draw",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the between-subject arm assignment")
    parser.add_argument("--reason-chars", type=int, default=None, help="longest reason per answer (0 = none)")
    _common(parser)
    parser.set_defaults(func=cmd_survey)
    return parser


def add_interview_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "interview", help="interview digital twins from a guide (batch or interactive)"
    )
    parser.add_argument("--guide", type=Path, help="interview guide: JSON/YAML")
    parser.add_argument(
        "--max-followups", type=int, default=2, help="most follow-ups per question (default 2)"
    )
    parser.add_argument(
        "--interactive", action="store_true", help="interview one twin, typing your own follow-ups"
    )
    _common(parser)
    parser.set_defaults(func=cmd_interview)
    return parser


def add_twins_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("twins", help="work on finished twin runs (calibrate with a pilot)")
    actions = parser.add_subparsers(dest="action", required=True)
    calibrate = actions.add_parser(
        "calibrate",
        help="fit a calibration on a pilot's real answers (some of the run's respondents) and answer for "
        "everyone else; the zero-shot answers stay",
    )
    calibrate.add_argument("run_id", metavar="RUN_ID", help="a survey run")
    calibrate.add_argument(
        "--pilot", type=Path, required=True,
        help="the pilot's real answers: CSV with twin_id + one column per question id (rows of people "
        "outside the run are ignored)",
    )  # fmt: skip
    calibrate.add_argument(
        "--policy", default="mean",
        help="the stored answer of a calibrated distribution: mean (default), median, mode or draw",
    )  # fmt: skip
    parser.set_defaults(func=cmd_twins)
    return parser


def cmd_twins(args: argparse.Namespace) -> int:
    """`twins calibrate`: prints the calibration summary as JSON."""
    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.services.twins.calibration import calibrate_run

    try:
        summary = calibrate_run(CLI_CALLER, args.run_id, args.pilot, args.policy)
    except (ValueError, AccessError) as exc:
        message = str(exc)
        for field, flag in (("pilot_file:", "--pilot:"), ("policy:", "--policy:")):
            if message.startswith(field):
                message = flag + message.removeprefix(field)
        return _error(message)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


_FLAGS = {"mode": "--mode", "concurrency": "--concurrency", "rate_per_s": "--rate", "retries": "--retries",
          "reason_chars": "--reason-chars", "max_followups": "--max-followups", "seed": "--seed",
          "answer_policy": "--policy"}  # fmt: skip


def _options(args: argparse.Namespace) -> Any:
    from personagraph.services.twins.answering import MODES
    from personagraph.services.twins.executor import BatchOptions

    mode: Any = getattr(args, "mode", "per_question")
    if mode not in MODES:
        raise ValueError(f"--mode: {mode!r} is not allowed; allowed: {', '.join(MODES)}")
    try:
        return BatchOptions(
            mode=mode, concurrency=args.concurrency, rate_per_s=args.rate, retries=args.retries,
            reason_chars=getattr(args, "reason_chars", None), seed=getattr(args, "seed", 0),
            retry_failed=args.retry_failed, max_followups=getattr(args, "max_followups", 2),
            answer_policy=getattr(args, "policy", "mode"),
        )  # fmt: skip
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "options"
        raise ValueError(f"{_FLAGS.get(field, field)}: {err['msg']}") from None


def _selection(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.selections import (
        count_respondents,
        parse_selection,
        respondent_pool,
        save_selection,
        select_respondents,
    )

    selection = parse_selection(CLI_CALLER, args.select or ["all"])
    pool = respondent_pool(CLI_CALLER, selection.source)
    matching = count_respondents(CLI_CALLER, selection, pool)
    print(f"{matching} respondents selected ({selection.describe()})", file=sys.stderr)
    if args.save_selection:
        name = save_selection(CLI_CALLER, selection, args.save_selection)
        print(f"selection saved: use it as saved:{name}", file=sys.stderr)
    return selection, select_respondents(CLI_CALLER, selection, pool) if not args.count else []


def _progress_printer(args: argparse.Namespace) -> bool:
    return not args.no_progress


def cmd_survey(args: argparse.Namespace) -> int:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.surveys import create_survey_run, run_survey
    from personagraph.twins.surveys import load_survey

    def create(options: Any, selection: Any, people: list[Any]) -> str | int:
        if args.survey is None:
            return _error("--survey: give a survey file (JSON/YAML), or --resume RUN_ID")
        if args.out is None:
            return _error("--out: give a folder for the exports")
        survey = load_survey(args.survey)
        run_id = create_survey_run(CLI_CALLER, survey, people, options, run_id=args.run_id, selection=selection,
                                   source=selection.source).run_id  # fmt: skip
        print(f"run {run_id}: {len(people)} respondents x {len(survey.questions)} questions "
              f"(resume with --resume {run_id})", file=sys.stderr)  # fmt: skip
        return run_id

    return _run_command(args, create, run_survey)


def cmd_interview(args: argparse.Namespace) -> int:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.interviews import create_interview_run, run_interviews
    from personagraph.twins.guides import load_guide

    def create(options: Any, selection: Any, people: list[Any]) -> str | int:
        if args.guide is None:
            return _error("--guide: give an interview guide (JSON/YAML), or --resume RUN_ID")
        guide = load_guide(args.guide)
        if args.interactive:
            if len(people) != 1:
                return _error(f"--select: --interactive interviews exactly one respondent, got {len(people)}")
            return interactive_interview(people[0], guide, args.out, options.max_followups)
        if args.out is None:
            return _error("--out: give a folder for the transcripts")
        run_id = create_interview_run(CLI_CALLER, guide, people, options, run_id=args.run_id,
                                      selection=selection, source=selection.source)  # fmt: skip
        print(f"run {run_id}: {len(people)} interviews (resume with --resume {run_id})", file=sys.stderr)
        return run_id

    return _run_command(args, create, run_interviews)


def _run_command(
    args: argparse.Namespace,
    create: Callable[[Any, Any, list[Any]], str | int],
    run: Callable[..., Any],
) -> int:
    """Shared flow of `survey` and `interview`: select or resume, run, export, print the summary.

    `create` makes the run and returns its id, or an exit code when it finished the command itself.
    """
    from personagraph.accounts.identity import CLI_CALLER, AccessError
    from personagraph.services.twins.executor import RunStorageFullError
    from personagraph.services.twins.exports import export_all
    from personagraph.serving.models import ModelError
    from personagraph.twins.guides import GuideError
    from personagraph.twins.respondents import RespondentError
    from personagraph.twins.surveys import SurveyError

    try:
        options = _options(args)
        if args.resume:
            run_id = args.resume
        else:
            selection, people = _selection(args)
            if args.count:
                return 0
            created = create(options, selection, people)
            if isinstance(created, int):
                return created
            run_id = created
        summary = run(CLI_CALLER, run_id, options, progress=_progress_printer(args))
    except (SurveyError, GuideError, RespondentError, ValueError, AccessError) as exc:
        return _error(str(exc))
    except (ModelError, RunStorageFullError) as exc:  # the run keeps what it stored: --resume it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result: dict[str, Any] = summary.as_dict()
    if args.out is not None:
        result["files"] = export_all(CLI_CALLER, run_id, args.out)
    print(json.dumps(result, ensure_ascii=False))
    if summary.stopped:
        print(f"stopped: {summary.stopped}; run again with --resume {run_id}", file=sys.stderr)
        return 1
    return 0


def interactive_interview(person: Any, guide: Any, out: Path | None, max_followups: int) -> int:
    """A terminal interview: the twin answers; you type a follow-up, Enter to move on, /end to stop."""
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.interviews import InterviewSession

    session = InterviewSession(CLI_CALLER)
    turn = session.start(person, guide, max_followups=max_followups)
    while turn.waiting is not None:
        print(f"\nQ: {turn.waiting['question']}\n{person.id}: {turn.waiting['answer']}\n")
        try:
            text = input("follow-up (Enter = next question, /end = finish)> ")
        except EOFError:
            text = "/end"
        turn = session.reply(turn.thread_id, text)
    files = session.save_transcript(turn.thread_id, out)
    print(json.dumps({"thread_id": turn.thread_id, "files": files}, ensure_ascii=False))
    return 0
