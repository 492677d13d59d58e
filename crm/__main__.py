"""`python -m crm ...`: the `personagraph crm` command on its own (same flags, same exit codes)."""

from __future__ import annotations

import argparse
import sys

from crm.cli import add_crm_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm")
    sub = parser.add_subparsers(dest="command")
    add_crm_parser(sub)
    args = parser.parse_args(["crm", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
