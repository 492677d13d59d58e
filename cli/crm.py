"""`personagraph crm`: one CRM message (JSON on stdout) or a batch file.

    personagraph crm --persona 0 --brand lumiere --product lum-01 --stage_index 1 --style_index 2 \
                     --is_event 1 [--channel sms] [--top_k 3] [--lang ko] [--disable_cache]
    personagraph crm --batch_json FILE.json|.jsonl|.csv --out_path results.json [--disable_cache]
    personagraph crm --build_index [--force]          (re)build the Chroma index of the catalog
    personagraph crm --list                            brands, products, personas, stages, styles, channels

Exit codes: 0 ok (a message that failed its checks is still printed, with status "failed"),
1 a model or run error, 2 an invalid value (the message names the field and the allowed values).
Runs as the terminal operator (CLI_CALLER): the batch file may be anywhere on disk, and the runs
are logged under the local account.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FIELD_FLAGS = (
    "persona",
    "brand",
    "product",
    "stage_index",
    "style_index",
    "is_event",
    "channel",
    "top_k",
    "lang",
)


def add_crm_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("crm", help="brand-tone CRM messages (single run or batch)")
    parser.add_argument("--persona", help="0-4 or name: Luxury Lover, Sensitive Skin, Budget Seeker, ...")
    parser.add_argument("--brand", help="brand id or name (see --list)")
    parser.add_argument("--product", help="product id or name of that brand (see --list)")
    parser.add_argument("--stage_index", help="AARRR stage 0-4 or name (Acquisition ... Referral)")
    parser.add_argument("--style_index", help="style template 0-5 or name")
    parser.add_argument("--is_event", default=None, help="1 to include the product's promotion, else 0")
    parser.add_argument("--channel", default=None, help="sms (default), lms, push, kakao, email")
    parser.add_argument("--top_k", default=None, help="reviews and tone exemplars retrieved (default 3)")
    parser.add_argument("--lang", default=None, help="message language: ko (default) or en")
    parser.add_argument("--batch_json", type=Path, help="batch of requests: JSON list, JSONL or CSV")
    parser.add_argument("--out_path", type=Path, help="where the batch results go (.json or .jsonl)")
    parser.add_argument("--disable_cache", action="store_true", help="skip the result cache")
    parser.add_argument(
        "--build_index", action="store_true", help="(re)build the CRM Chroma index, then exit"
    )
    parser.add_argument("--force", action="store_true", help="with --build_index: rebuild even if unchanged")
    parser.add_argument("--list", action="store_true", help="print the choices as JSON, then exit")
    parser.set_defaults(func=cmd_crm)


def _error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def choices() -> dict[str, Any]:
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.definitions import PERSONAS, STAGES, STYLES

    catalog = load_catalog()
    return {
        "personas": [f"{p.index} {p.name}" for p in PERSONAS],
        "stages": [f"{s.index} {s.name}" for s in STAGES],
        "styles": [f"{s.index} {s.name}" for s in STYLES],
        "channels": list(catalog.channels),
        "brands": {b.id: {"name": b.name, "products": {p.id: p.name for p in catalog.brand_products(b.id)}}
                   for b in catalog.brands.values()},
    }  # fmt: skip


def cmd_crm(args: argparse.Namespace) -> int:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.crm.catalog import CatalogError
    from personagraph.crm.inputs import CrmInputError
    from personagraph.services.crm import BatchFileError, CrmService, write_results

    try:
        if args.list:
            print(json.dumps(choices(), ensure_ascii=False, indent=1))
            return 0
        if args.build_index:
            from personagraph.crm.index import main as index_main

            return index_main(["--force"] if args.force else [])
        service = CrmService(use_cache=False if args.disable_cache else None)
        if args.batch_json is not None:
            if args.out_path is None:
                return _error("--out_path: required with --batch_json (a .json or .jsonl file)")
            rows = service.read_batch(CLI_CALLER, args.batch_json)
            results = service.run_batch(
                CLI_CALLER,
                rows,
                progress=lambda done, total: print(f"\r{done}/{total}", end="", file=sys.stderr),
            )
            print(file=sys.stderr)
            write_results(results, args.out_path)
            counts: dict[str, int] = {}
            for result in results:
                counts[str(result.get("status"))] = counts.get(str(result.get("status")), 0) + 1
            bad = [
                {"row": r["row"], "error": r.get("error")}
                for r in results
                if r.get("status") in ("invalid", "error")
            ]
            print(json.dumps({"rows": len(results), "statuses": counts, "out_path": str(args.out_path),
                              "problems": bad}, ensure_ascii=False))  # fmt: skip
            return 0
        raw = {name: getattr(args, name) for name in FIELD_FLAGS if getattr(args, name) is not None}
        result = service.run(CLI_CALLER, raw)
    except CrmInputError as exc:
        return _error(f"--{exc}")
    except (BatchFileError, CatalogError) as exc:
        return _error(str(exc))
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if result.get("status") == "error":
        print(f"error: {result.get('error')}", file=sys.stderr)
        return 1
    return 0
