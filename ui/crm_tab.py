"""The CRM tab: a request form, the message with its facts highlighted by evidence id, the checks, and a
batch upload (JSON, JSONL or CSV) with progress and a downloadable results file.

    with gr.Tab("CRM"):
        build_crm_tab(accounts)           # or build_crm_tab(accounts, CrmService(...))

Every handler takes the signed-in Caller from the request (`caller_of`): the service logs each run
under that account. A batch file is the one the browser uploaded: only files in Gradio's upload
folder are read (Gradio hands handlers nothing else; checked again here), and the results file is
written to a fresh temporary folder for the download.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from personagraph.accounts.identity import Caller
from personagraph.accounts.store import AccountStore
from personagraph.crm.catalog import CatalogError, catalog_folder, list_catalogs, load_catalog
from personagraph.crm.definitions import PERSONAS, STAGES, STYLES
from personagraph.crm.importer import CatalogImportError
from personagraph.crm.inputs import CrmInputError
from personagraph.services.crm import BatchFileError, CrmService, load_rows, write_results
from personagraph.serving.safe_paths import PathOutsideError, confined_path
from personagraph.ui.identity import caller_of

Highlight = list[tuple[str, str | None]]


def highlight(result: dict[str, Any]) -> Highlight:
    """The message split into plain text and facts, each fact labelled with its evidence ids (or UNSUPPORTED)."""
    message = str(result.get("message") or "")
    grounding = (result.get("checks") or {}).get("grounding") or {}
    spans = [(f["start"], f["end"], "+".join(f["evidence_ids"])) for f in grounding.get("supported", [])]
    spans += [(f["start"], f["end"], "UNSUPPORTED") for f in grounding.get("unsupported", [])]
    parts: Highlight = []
    position = 0
    for start, end, label in sorted(spans):
        if start < position:
            continue
        if start > position:
            parts.append((message[position:start], None))
        parts.append((message[start:end], label))
        position = end
    if position < len(message):
        parts.append((message[position:], None))
    return parts


def render_checks(result: dict[str, Any]) -> str:
    if result.get("status") in ("invalid", "error"):
        return f"**{result['status']}**: {result.get('error')}"
    lines = [f"**status: {result.get('status')}** · rounds {result.get('rounds')} · "
             f"{'cached · ' if result.get('cached') else ''}total {result.get('timings', {}).get('total', 0):.1f}s"]  # fmt: skip
    for name, check in (result.get("checks") or {}).items():
        lines.append(f"- {'✅' if check.get('passed') else '❌'} {name}")
    lines += [f"- reason: {reason}" for reason in result.get("reasons") or []]
    event = result.get("event")
    if event:
        lines.append(f"\n**event**: {event.get('text')}")
    return "\n".join(lines)


def evidence_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [[e["id"], e["kind"], "✓" if e.get("cited") else "", "✓" if e.get("supports_message") else "", e["text"]]
            for e in result.get("evidence") or []]  # fmt: skip


def _products(brand_id: str, catalog: str = "") -> list[tuple[str, str]]:
    products = load_catalog(catalog_folder("" if catalog == "default" else catalog)).brand_products(brand_id)
    return [(f"{p.name} · {p.price:,}원", p.id) for p in products]


def _service(service: CrmService | None, disable_cache: bool) -> CrmService:
    """The tab's service, or one that skips the cache when the box is ticked (same context)."""
    if service is None:
        return CrmService(use_cache=not disable_cache)
    return CrmService(service.context, use_cache=False) if disable_cache else service


def render_variants(result: dict[str, Any]) -> str:
    """The candidates side by side: one column each, ranked, with status, brand-tone score and reasons."""
    variants = result.get("variants") or []
    if not variants:
        return ""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    head = "| " + " | ".join(f"#{v['rank']} {v['hook']}" for v in variants) + " |"
    rule = "|" + "---|" * len(variants)
    status = "| " + " | ".join(f"{'✅' if v['status'] == 'passed' else '❌'} {v['status']} · tone "
                                f"{v['brand_score']:.2f}" for v in variants) + " |"  # fmt: skip
    message = "| " + " | ".join(cell(v["message"]) for v in variants) + " |"
    reasons = "| " + " | ".join(cell("; ".join(v["reasons"])) for v in variants) + " |"
    return "\n".join([head, rule, status, message, reasons])


def generate(caller: Caller, persona: int, brand: str, product: str, stage: int, style: int, event: bool,
             channel: str, top_k: float, lang: str, disable_cache: bool, service: CrmService | None = None,
             variants: float = 1, catalog: str = "",
             ) -> tuple[str, Highlight, str, list[list[Any]], dict[str, Any], str]:  # fmt: skip
    raw = {"persona": persona, "brand": brand, "product": product, "stage_index": stage, "style_index": style,
           "is_event": int(bool(event)), "channel": channel, "top_k": int(top_k), "lang": lang,
           "catalog": catalog or ""}  # fmt: skip
    try:
        crm = _service(service, disable_cache)
        result = crm.run_variants(caller, raw, int(variants)) if int(variants) > 1 else crm.run(caller, raw)
    except CrmInputError as exc:
        result = {"status": "invalid", "error": str(exc)}
    return (
        str(result.get("message") or ""),
        highlight(result),
        render_checks(result),
        evidence_rows(result),
        result,
        render_variants(result),
    )


def import_uploads(caller: Caller, name: str, products: str | None, brands: str | None, reviews: str | None,
                   promotions: str | None, service: CrmService | None = None) -> str:  # fmt: skip
    """Import a catalog from files the browser uploaded (Gradio's upload folder only); the status line."""
    files = {"products": products, "brands": brands, "reviews": reviews, "promotions": promotions}
    try:
        paths = {k: v for k, v in files.items() if v}
        counts = (service or CrmService()).import_catalog(
            caller, (name or "").strip(), paths, upload_roots=[Path(get_upload_folder())]
        )
    except (CatalogImportError, CrmInputError, PathOutsideError, PermissionError) as exc:
        return f"error: {exc}"
    return (f"catalog **{counts['catalog']}**: {counts['brands']} brands, {counts['products']} products, "
            f"{counts['reviews']} reviews, {counts['promotions']} promotions")  # fmt: skip


def read_upload(file_path: str) -> list[dict[str, Any]]:
    """The rows of a file the browser uploaded: it must lie in Gradio's upload folder (GRADIO_TEMP_DIR)."""
    return load_rows(confined_path(file_path, [Path(get_upload_folder())], "file"))


def run_batch_file(caller: Caller, file_path: str | None, disable_cache: bool,
                   progress: gr.Progress | None = None, service: CrmService | None = None,
                   ) -> tuple[list[list[Any]], str | None, str]:  # fmt: skip
    if not file_path:
        return [], None, "Upload a .json, .jsonl or .csv file of requests first."
    try:
        rows = read_upload(file_path)
    except (BatchFileError, PathOutsideError) as exc:
        return [], None, f"error: {exc}"
    tracker = progress or (lambda *a, **k: None)

    def report(done: int, total: int) -> None:
        tracker((done, total), desc=f"{done}/{total} messages")

    results = _service(service, disable_cache).run_batch(caller, rows, progress=report)
    out = Path(tempfile.mkdtemp(prefix="crm-batch-")) / f"crm-results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_results(results, out)
    table = [[r["row"], r.get("status"), r.get("message") or "", "; ".join(r.get("reasons") or [r.get("error") or ""])]
             for r in results]  # fmt: skip
    counts: dict[str, int] = {}
    for r in results:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    return (
        table,
        str(out),
        f"{len(results)} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
    )


def build_crm_tab(accounts: AccountStore, service: CrmService | None = None) -> None:
    """Components of the CRM tab, created inside the caller's open Blocks/Tab context."""
    catalog = load_catalog()
    brands = [(f"{b.name} ({b.name_en})", b.id) for b in catalog.brands.values()]
    first = brands[0][1]
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            persona = gr.Dropdown([(f"{p.index} {p.name} · {p.name_ko}", p.index) for p in PERSONAS], value=0,
                                  label="Persona (Who)")  # fmt: skip
            brand = gr.Dropdown(brands, value=first, label="Brand")
            product = gr.Dropdown(_products(first), value=_products(first)[0][1], label="Product (What)")
            stage = gr.Dropdown([(f"{s.index} {s.name} · {s.name_ko}", s.index) for s in STAGES], value=0,
                                label="AARRR stage (Why)")  # fmt: skip
            style = gr.Dropdown([(f"{s.index} {s.name} · {s.name_ko}", s.index) for s in STYLES], value=0,
                                label="Style template")  # fmt: skip
            channel = gr.Dropdown([(f"{c.label} ({k})", k) for k, c in catalog.channels.items()], value="sms",
                                  label="Channel")  # fmt: skip
            with gr.Row():
                event = gr.Checkbox(value=False, label="Include the promotion")
                disable_cache = gr.Checkbox(value=False, label="Skip cache")
            top_k = gr.Slider(1, 10, value=3, step=1, label="Reviews / tone exemplars (top_k)")
            lang = gr.Radio([("한국어", "ko"), ("English", "en")], value="ko", label="Language")
            variants = gr.Slider(1, 5, value=1, step=1, label="Variants (candidates checked and ranked)")
            catalog_name = gr.Dropdown(["default", *list_catalogs()], value="default", label="Catalog",
                                       allow_custom_value=True)  # fmt: skip
            go = gr.Button("Generate", variant="primary")
        with gr.Column(scale=2):
            message = gr.Textbox(label="Message", lines=5, buttons=["copy"], interactive=False)
            marked = gr.HighlightedText(label="Facts and their evidence (UNSUPPORTED = not in the data)",
                                        combine_adjacent=False, show_legend=True)  # fmt: skip
            checks = gr.Markdown()
            variants_view = gr.Markdown(label="Variants side by side")
            evidence = gr.Dataframe(headers=["id", "kind", "cited by draft", "supports message", "text"],
                                    label="Evidence", wrap=True, interactive=False)  # fmt: skip
            with gr.Accordion("Result JSON", open=False):
                result_json = gr.JSON()
    with gr.Accordion("Batch (JSON list, JSONL or CSV with columns persona, brand, product, stage_index, "
                      "style_index, is_event, channel)", open=False):  # fmt: skip
        with gr.Row():
            upload = gr.File(label="Requests file", file_types=[".json", ".jsonl", ".csv"], type="filepath")
            batch_cache = gr.Checkbox(value=False, label="Skip cache")
        run_batch = gr.Button("Run batch")
        batch_status = gr.Markdown()
        batch_table = gr.Dataframe(headers=["row", "status", "message", "reasons / error"], wrap=True,
                                   interactive=False)  # fmt: skip
        download = gr.File(label="Results (JSON)", interactive=False)
    with gr.Accordion("Import a catalog (admin; CSV or Excel, templates in data/crm/templates/)", open=False):
        with gr.Row():
            new_catalog = gr.Textbox(label="Catalog name", placeholder="myshop")
            up_products = gr.File(label="Products", file_types=[".csv", ".xlsx"], type="filepath")
            up_brands = gr.File(label="Brands (tone copy)", file_types=[".csv", ".xlsx"], type="filepath")
            up_reviews = gr.File(label="Reviews", file_types=[".csv", ".xlsx"], type="filepath")
            up_promotions = gr.File(label="Promotions", file_types=[".csv", ".xlsx"], type="filepath")
        do_import = gr.Button("Import catalog")
        import_status = gr.Markdown()

    def on_brand(brand_id: str, catalog: str, request: gr.Request) -> Any:
        caller_of(accounts, request)  # signed in; the catalog is the shop's
        choices = _products(brand_id, catalog or "")
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def on_generate(persona: int, brand: str, product: str, stage: int, style: int, event: bool, channel: str,
                    top_k: float, lang: str, disable_cache: bool, count: float, catalog: str,
                    request: gr.Request) -> Any:  # fmt: skip
        caller = caller_of(accounts, request)
        return generate(caller, persona, brand, product, stage, style, event, channel, top_k, lang, disable_cache,
                        service, count, "" if catalog == "default" else catalog)  # fmt: skip

    def on_import(name: str, products: str | None, brands: str | None, reviews: str | None,
                  promotions: str | None, request: gr.Request) -> Any:  # fmt: skip
        status = import_uploads(
            caller_of(accounts, request), name, products, brands, reviews, promotions, service
        )
        return status, gr.update(choices=["default", *list_catalogs()])

    def on_catalog(name: str, request: gr.Request) -> Any:
        caller_of(accounts, request)
        try:
            folder_catalog = load_catalog(catalog_folder("" if name == "default" else name))
        except CatalogError:
            return gr.update()  # an unknown name typed in: the run names the allowed ones
        choices = [(f"{b.name} ({b.name_en})", b.id) for b in folder_catalog.brands.values()]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def on_batch(
        file_path: str | None,
        skip: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Any:
        return run_batch_file(caller_of(accounts, request), file_path, skip, progress, service)

    brand.change(on_brand, [brand, catalog_name], [product], api_visibility="private")
    go.click(
        on_generate,
        [
            persona,
            brand,
            product,
            stage,
            style,
            event,
            channel,
            top_k,
            lang,
            disable_cache,
            variants,
            catalog_name,
        ],
        [message, marked, checks, evidence, result_json, variants_view],
        api_name="crm_generate",
    )
    do_import.click(
        on_import,
        [new_catalog, up_products, up_brands, up_reviews, up_promotions],
        [import_status, catalog_name],
        api_name="crm_import_catalog",
    )
    catalog_name.change(on_catalog, [catalog_name], [brand], api_visibility="private")
    run_batch.click(
        on_batch, [upload, batch_cache], [batch_table, download, batch_status], api_name="crm_batch"
    )
