"""`personagraph crm`: one CRM message (JSON on stdout) or a batch file.

    personagraph crm --persona 0 --brand lumiere --product lum-01 --stage_index 1 --style_index 2 \
                     --is_event 1 [--channel sms] [--top_k 3] [--lang ko] [--disable_cache]
    personagraph crm --batch_json FILE.json|.jsonl|.csv --out_path results.json|.jsonl|.csv [--disable_cache]
                     [--concurrency N] [--resume] [--variants K] [--format legacy]
    personagraph crm ... --variants 3                  3 candidates, checked and ranked (CSV: a row each)
    personagraph crm import-catalog --catalog NAME --products FILE.csv|.xlsx [--brands F] [--reviews F]
                     [--promotions F]                  a shop's own catalog (templates: data/crm/templates/)
    personagraph crm ... --catalog NAME                run on an imported catalog (`personagraph crm catalogs`)
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
    "catalog",
)


def add_crm_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("crm", help="brand-tone CRM messages (single run or batch)")
    parser.add_argument("action", nargs="?", choices=("import-catalog", "catalogs"),
                        help="import-catalog: a catalog from CSV/Excel (see --products ...); catalogs: list them")  # fmt: skip
    parser.add_argument(
        "--catalog", default=None, help="an imported catalog's name (default: the shipped one)"
    )
    parser.add_argument("--products", type=Path, help="import-catalog: products .csv or .xlsx")
    parser.add_argument("--brands", type=Path, help="import-catalog: brands (tone copy) .csv or .xlsx")
    parser.add_argument("--reviews", type=Path, help="import-catalog: reviews .csv or .xlsx")
    parser.add_argument("--promotions", type=Path, help="import-catalog: promotions .csv or .xlsx")
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
        "--variants", type=int, default=1, help="candidates per request, checked and ranked (1-5)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="batch rows run at the same time (1-16)")
    parser.add_argument("--resume", action="store_true",
                        help="with --batch_json: skip rows already in --out_path's .partial.jsonl")  # fmt: skip
    parser.add_argument("--format", default="default", choices=("default", "legacy"),
                        help="result shape: default, or legacy (qwen.draft, exaone.result_raw, timing ...)")  # fmt: skip
    parser.add_argument(
        "--build_index", action="store_true", help="(re)build the CRM Chroma index, then exit"
    )
    parser.add_argument("--force", action="store_true", help="with --build_index: rebuild even if unchanged")
    parser.add_argument("--list", action="store_true", help="print the choices as JSON, then exit")
    parser.set_defaults(func=cmd_crm)


def _error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def choices(catalog_name: str | None = None) -> dict[str, Any]:
    from personagraph.crm.catalog import catalog_folder, load_catalog
    from personagraph.crm.definitions import PERSONAS, STAGES, STYLES

    catalog = load_catalog(catalog_folder(catalog_name))
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
    from personagraph.crm.importer import CatalogImportError
    from personagraph.crm.inputs import CrmInputError
    from personagraph.crm.legacy import to_legacy
    from personagraph.services.crm import BatchFileError, CrmService

    try:
        if args.action == "catalogs":
            from personagraph.crm.catalog import list_catalogs

            print(json.dumps(["default", *list_catalogs()]))
            return 0
        if args.action == "import-catalog":
            from personagraph.crm.importer import import_catalog

            if not args.catalog:
                return _error("--catalog: required with import-catalog (the new catalog's name)")
            counts = import_catalog(args.catalog, products=args.products, brands=args.brands, reviews=args.reviews,
                                    promotions=args.promotions)  # fmt: skip
            print(json.dumps(counts, ensure_ascii=False))
            return 0
        if args.list:
            print(json.dumps(choices(args.catalog), ensure_ascii=False, indent=1))
            return 0
        if args.build_index:
            from personagraph.crm.index import main as index_main

            return index_main(["--force"] if args.force else [])
        service = CrmService(use_cache=False if args.disable_cache else None)
        if args.batch_json is not None:
            if args.out_path is None:
                return _error("--out_path: required with --batch_json (a .json, .jsonl or .csv file)")
            return _batch(service, args)
        raw = {name: getattr(args, name) for name in FIELD_FLAGS if getattr(args, name) is not None}
        if args.variants != 1:
            result = service.run_variants(CLI_CALLER, raw, args.variants)
        else:
            result = service.run(CLI_CALLER, raw)
        if args.format == "legacy":
            result = to_legacy(result)
    except CrmInputError as exc:
        return _error(f"--{exc}")
    except (BatchFileError, CatalogError, CatalogImportError) as exc:
        return _error(str(exc))
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if result.get("status") == "error":
        print(f"error: {result.get('error')}", file=sys.stderr)
        return 1
    return 0


def _batch(service: Any, args: argparse.Namespace) -> int:
    """A batch file: rows run `--concurrency` at a time with a progress bar; each result is appended
    to OUT.partial.jsonl as it finishes, so `--resume` after a stop runs only the rows not there yet;
    at the end the results are written to --out_path in row order and the partial file removed."""
    from tqdm import tqdm

    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.crm import read_partial, write_results

    rows = service.read_batch(CLI_CALLER, args.batch_json)
    partial = args.out_path.with_name(args.out_path.name + ".partial.jsonl")
    done = read_partial(partial) if args.resume else {}
    if not args.resume:
        partial.unlink(missing_ok=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(rows), initial=len(done), unit="row", file=sys.stderr, desc="crm")
    with partial.open("a", encoding="utf-8") as handle:

        def keep(result: dict[str, Any]) -> None:
            handle.write(json.dumps(result, ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(1)

        new = service.run_batch(CLI_CALLER, rows, concurrency=args.concurrency, variants=args.variants,
                                skip=set(done), on_result=keep)  # fmt: skip
    bar.close()
    results = sorted([*done.values(), *new], key=lambda r: int(r["row"]))
    write_results(results, args.out_path, args.format)
    partial.unlink()
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result.get("status"))] = counts.get(str(result.get("status")), 0) + 1
    bad = [
        {"row": r["row"], "error": r.get("error")} for r in results if r.get("status") in ("invalid", "error")
    ]
    print(json.dumps({"rows": len(results), "statuses": counts, "resumed": len(done), "out_path": str(args.out_path),
                      "problems": bad}, ensure_ascii=False))  # fmt: skip
    return 0
