"""Run the crm_message graph: one request or a batch, with a result cache and timing logs.

    service = CrmService()
    result = service.run(caller, {"persona": 1, "brand": "dewylab", "product": "dew-01", ...})
    rows = service.read_batch(caller, "requests.csv")      # confined to the caller's folders
    results = service.run_batch(caller, rows)

- Cache: PERSONAGRAPH_HOME/crm/cache/<key>.json, the key hashing the resolved request, the models of
  the drafter and stylist roles (name and server), the catalog fingerprint, the prompt version and the
  refine budget. Only finished runs (passed/failed) are cached; errors are retried next time.
  It is shared by every account on purpose: a request holds only catalog ids and indices (persona
  type, brand, product, stage, style, channel, language), and the cached result only what the shop's
  catalog and the models made of them, never who asked. The per-account rolling timing average is
  left out of the cache and added for the caller on every read.
- Timing log: PERSONAGRAPH_HOME/crm/timings/<user id>.jsonl, one line per run of that account with the
  step timings; the rolling average of each step over that account's last `CRM_TIMING_WINDOW`
  (default 20) runs comes back with each result. A run history is the account's own.
- Batch files: a caller from the app or the HTTP API may name only files in their upload folder
  (PERSONAGRAPH_HOME/uploads/<user id>/) or the shipped data; the terminal operator (the CLI) anywhere.
- Limits (settings): a batch has at most CRM_BATCH_MAX_ROWS rows (a BatchFileError naming `rows`
  otherwise, before any row runs); a batch file is at most UPLOAD_MAX_BYTES.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from personagraph.accounts.identity import Caller
from personagraph.crm.catalog import catalog_folder, crm_home, crm_settings, load_catalog, use_catalog
from personagraph.crm.definitions import HOOKS
from personagraph.crm.importer import import_catalog
from personagraph.crm.inputs import CrmInputError, CrmRequest, parse_request
from personagraph.crm.legacy import to_legacy
from personagraph.crm.tone_classifier import brand_score
from personagraph.nodes.crm import CrmContext, model_names
from personagraph.prompts.crm import PROMPT_VERSION
from personagraph.serving.models import ModelError
from personagraph.serving.redact import user_error
from personagraph.serving.safe_paths import check_id, child_path, confined_path
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import run_config

log = logging.getLogger(__name__)

STEPS = ("load", "retrieval", "draft", "refine", "repair", "checks", "total")
MAX_CONCURRENCY = 16  # rows of one batch run at the same time, at most
PER_CALLER_KEYS = ("timing_average",)  # never cached: they describe the caller's own runs


def cache_key(request: CrmRequest, context: CrmContext) -> str:
    payload = {
        "request": request.model_dump(), "models": model_names(context), "catalog": load_catalog().fingerprint,
        "prompt": PROMPT_VERSION, "rounds": context.max_refine_rounds, "draft_tokens": context.draft_max_tokens,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def rolling_average(path: Path, window: int) -> dict[str, float]:
    """Mean seconds per step over the last `window` logged runs."""
    if not path.exists():
        return {}
    lines = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[-window:] if line.strip()
    ]
    averages = {}
    for step in STEPS:
        values = [float(row["timings"][step]) for row in lines if step in row.get("timings", {})]
        if values:
            averages[step] = round(sum(values) / len(values), 4)
    return averages


class CrmService:
    """Runs requests through the graph with caching and timing logs."""

    def __init__(self, context: CrmContext | None = None, *, use_cache: bool | None = None):
        settings = crm_settings()
        self.context = context or CrmContext(
            max_refine_rounds=settings.max_refine_rounds, draft_max_tokens=settings.draft_max_tokens
        )
        self.use_cache = crm_settings().cache if use_cache is None else use_cache

    @property
    def cache_dir(self) -> Path:
        return crm_home() / "cache"

    def timing_log(self, caller: Caller) -> Path:
        """The caller's own run log."""
        return child_path(crm_home() / "timings", f"{check_id(caller.user_id, 'user_id')}.jsonl")

    def _log(self, caller: Caller, key: str, result: Mapping[str, Any]) -> dict[str, float]:
        log = self.timing_log(caller)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"ts": time.time(), "key": key, "status": result.get("status"),
                                     "timings": result.get("timings", {})}) + "\n")  # fmt: skip
        return self.timing_average(caller)

    def timing_average(self, caller: Caller) -> dict[str, float]:
        """Mean seconds per step over the caller's last `CRM_TIMING_WINDOW` runs."""
        return rolling_average(self.timing_log(caller), crm_settings().timing_window)

    def run(self, caller: Caller, raw: Mapping[str, Any]) -> dict[str, Any]:
        """One request (raises `CrmInputError` for an invalid value); the result JSON as a dict."""
        request = parse_request(raw)
        with use_catalog(request.catalog):  # the graph's nodes read this catalog
            return self._run(caller, request)

    def _run(self, caller: Caller, request: CrmRequest) -> dict[str, Any]:
        from personagraph.graphs.crm_message import graph

        key = cache_key(request, self.context)
        path = self.cache_dir / f"{key}.json"
        if self.use_cache and path.exists():
            result = json.loads(path.read_text(encoding="utf-8"))
            result["cached"] = True
            result["timing_average"] = self.timing_average(caller)
            return result
        state: Any = graph.invoke(
            cast(Any, request.model_dump()),
            run_config({}, "crm_message", caller.user_id),
            context=self.context,
        )
        result = dict(state.get("result") or {"status": "error", "error": "the graph returned no result"})
        result["cached"] = False
        result["cache_key"] = key
        result["timing_average"] = self._log(caller, key, result)
        if self.use_cache and result.get("status") in ("passed", "failed"):
            shared = {k: v for k, v in result.items() if k not in PER_CALLER_KEYS}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(shared, ensure_ascii=False), encoding="utf-8")
        return result

    def run_variants(self, caller: Caller, raw: Mapping[str, Any], k: int) -> dict[str, Any]:
        """K candidates of one request, each opening with a different hook (crm.definitions.HOOKS)
        within the asked style, all checked; ranked passed first, then by how much the message sounds
        like the brand (crm.tone_classifier), then by fewer rounds. Returns the best candidate's
        result with `variants`: every candidate (rank, hook, status, message, reasons, brand_score)
        and its full result under `result`."""
        if not 1 <= k <= len(HOOKS):
            raise CrmInputError("variants", f"{k} is not allowed; allowed: an integer from 1 to {len(HOOKS)}")
        base = {key: value for key, value in raw.items() if key != "hook"}
        request = parse_request(base)  # an invalid request fails once, before any model call
        candidates = [self.run(caller, {**base, "hook": hook}) for hook in range(k)]
        catalog = load_catalog(catalog_folder(request.catalog))
        scored = []
        for hook, result in enumerate(candidates):
            brand = str((result.get("request") or {}).get("brand") or "")
            score = brand_score(str(result.get("message") or ""), brand, catalog) if brand else 0.0
            scored.append(
                (result.get("status") != "passed", -score, int(result.get("rounds") or 0), hook, score)
            )
        order = sorted(scored)
        variants = []
        for rank, (_, _, _, hook, score) in enumerate(order, start=1):
            result = candidates[hook]
            variants.append({"rank": rank, "hook": HOOKS[hook].name, "hook_index": hook,
                             "status": result.get("status"), "message": result.get("message") or "",
                             "reasons": result.get("reasons") or ([result["error"]] if result.get("error") else []),
                             "brand_score": round(score, 4), "result": result})  # fmt: skip
        best = dict(candidates[order[0][3]])
        best["variants"] = variants
        return best

    def import_catalog(
        self,
        caller: Caller,
        name: str,
        files: Mapping[str, str | Path | None],
        upload_roots: Sequence[Path] | None = None,
    ) -> dict[str, Any]:
        """Import a catalog (crm/importer.py) from `files` (products, brands, reviews, promotions ->
        path). Admins only (a catalog is the shop's, used by every account): PermissionError
        otherwise. A caller other than the terminal operator may name only files in their upload
        folder, or in `upload_roots` where the app keeps its uploads (the UI: Gradio's upload folder)."""
        if not caller.admin:
            raise PermissionError("catalog: only an admin may import a catalog")
        allowed = ("products", "brands", "reviews", "promotions")
        unknown = sorted(set(files) - set(allowed))
        if unknown:
            raise CrmInputError(unknown[0], f"unknown file kind; allowed: {', '.join(allowed)}")
        roots = list(upload_roots) if upload_roots is not None else self.batch_roots(caller)[:1]
        paths = {
            kind: (Path(path) if caller.local else confined_path(path, roots, kind))
            for kind, path in files.items()
            if path
        }
        return import_catalog(name, **paths)

    def batch_roots(self, caller: Caller) -> list[Path]:
        """Where a batch file of this caller may be: their upload folder, then the shipped data."""
        settings = get_settings()
        return [child_path(settings.uploads_dir, check_id(caller.user_id, "user_id")), settings.data_dir]

    def read_batch(self, caller: Caller, path: str | Path) -> list[dict[str, Any]]:
        """The rows of a batch file (JSON list, JSONL or CSV).

        The terminal operator (`caller.local`) may name any file; anyone else only files in their
        upload folder or the shipped data (relative paths are in the upload folder): PathOutsideError
        otherwise, the same whether or not the file exists. BatchFileError for an unreadable file.
        """
        file = Path(path) if caller.local else confined_path(path, self.batch_roots(caller), "batch_file")
        return load_rows(file)

    def run_row(self, caller: Caller, row: Any, number: int, variants: int = 1) -> dict[str, Any]:
        """One batch row's result: a bad row is an `invalid` or `error` result with its row number,
        never an exception."""
        try:
            if not isinstance(row, Mapping):
                raise CrmInputError("row", "must be an object of request fields")
            result = self.run_variants(caller, row, variants) if variants > 1 else self.run(caller, row)
        except CrmInputError as exc:
            result = {"status": "invalid", "error": str(exc), "field": exc.field}
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            # The user sees a short text; the exception and its traceback go to the log.
            message = str(exc) if isinstance(exc, ModelError) else user_error(log, exc, "internal error")
            result = {"status": "error", "error": message}
        return {"row": number, **result}

    def run_batch(
        self,
        caller: Caller,
        rows: Iterable[Mapping[str, Any]],
        progress: Callable[[int, int], None] | None = None,
        *,
        concurrency: int = 1,
        variants: int = 1,
        skip: Collection[int] = (),
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every row (numbered from 1) except those in `skip` (done in an earlier, resumed run), at
        most `concurrency` at a time; results in row order. A bad row is reported (status
        invalid/error, with its row number) and the others go on. `on_result` gets each result as
        it finishes (to write it at once), `progress` (done, total) after each."""
        items = list(rows)
        check_row_count(len(items))
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CrmInputError(
                "concurrency", f"{concurrency} is not allowed; allowed: 1 to {MAX_CONCURRENCY}"
            )
        todo = [(number, row) for number, row in enumerate(items, start=1) if number not in skip]
        results: dict[int, dict[str, Any]] = {}
        lock = threading.Lock()

        def one(number: int, row: Any) -> None:
            result = self.run_row(caller, row, number, variants)
            with lock:
                results[number] = result
                if on_result is not None:
                    on_result(result)
                if progress is not None:
                    progress(len(results), len(todo))

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="crm-batch") as pool:
            futures = [pool.submit(one, number, row) for number, row in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # Stopped (SIGTERM's SystemExit, Ctrl-C) or a result that could not be kept: the rows
                # not started are cancelled, only those running finish (leaving the block used to
                # wait for the whole batch). A resumed run starts from the first row not kept.
                for future in futures:
                    future.cancel()
                raise
        return [results[number] for number, _ in todo]


class BatchFileError(ValueError):
    """A batch file that cannot be read, or a batch over its limits; the message names the file or
    the field and the problem."""


def check_row_count(count: int) -> None:
    """BatchFileError naming `rows` when a batch has more than CRM_BATCH_MAX_ROWS rows."""
    limit = get_settings().crm_batch_max_rows
    if count > limit:
        raise BatchFileError(f"rows: the batch has {count} rows; the maximum is {limit} (CRM_BATCH_MAX_ROWS)")


def _csv_rows(text: str) -> list[dict[str, Any]]:
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append(dict(row))
        check_row_count(len(rows))  # stops reading at the first row over the limit
    return rows


def _jsonl_rows(text: str) -> list[Any]:
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append(json.loads(line))
            check_row_count(len(rows))
    return rows


def parse_rows(text: str, name: str) -> list[dict[str, Any]]:
    """Rows of a batch file: a JSON list (or {"rows": [...]}), JSON lines, or CSV with a header;
    at most CRM_BATCH_MAX_ROWS of them."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".csv":
            return _csv_rows(text)
        if suffix == ".jsonl":
            data: Any = _jsonl_rows(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, csv.Error) as exc:
        raise BatchFileError(f"{name}: cannot be read: {exc}") from exc
    except RecursionError:
        raise BatchFileError(f"{name}: cannot be read: nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise BatchFileError(f"{name}: expected a JSON list of request objects")
    check_row_count(len(data))
    return data


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a batch file, read from anywhere: for paths the app itself chose (see read_batch).
    A file over UPLOAD_MAX_BYTES is refused before it is read."""
    if not path.is_file():
        raise BatchFileError(f"{path}: no such file")
    limit = get_settings().upload_max_bytes
    if path.stat().st_size > limit:
        raise BatchFileError(f"{path.name}: is over {limit} bytes (UPLOAD_MAX_BYTES)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    return parse_rows(text, path.name)


def variant_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per candidate message (a result without variants is one candidate), for A/B
    tests in a CRM tool."""
    rows = []
    for result in results:
        request = result.get("request") or {}
        candidates = result.get("variants") or [{"rank": 1, "hook": "As asked", "status": result.get("status"),
                                                  "message": result.get("message") or "", "brand_score": None,
                                                  "reasons": result.get("reasons") or [], "result": result}]  # fmt: skip
        for variant in candidates:
            own = variant.get("result") or {}
            rows.append({
                "row": result.get("row", ""), "variant": variant.get("rank"), "hook": variant.get("hook"),
                "status": variant.get("status"), "brand": request.get("brand", ""),
                "product": request.get("product", ""), "channel": request.get("channel", ""),
                "lang": request.get("lang", ""), "persona": request.get("persona", ""),
                "stage_index": request.get("stage_index", ""), "style_index": request.get("style_index", ""),
                "message": variant.get("message") or "", "brand_score": variant.get("brand_score"),
                "repairs": len([f for a in own.get("attempts") or [] for f in a.get("repairs") or []]),
                "reasons": "; ".join(variant.get("reasons") or []) or result.get("error") or "",
            })  # fmt: skip
    return rows


def read_partial(path: Path) -> dict[int, dict[str, Any]]:
    """The results a stopped batch wrote as JSON lines, by row number (empty when there is no file)."""
    done: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                result = json.loads(line)
                done[int(result["row"])] = result
    return done


def write_results(results: list[dict[str, Any]], path: Path, fmt: str = "default") -> None:
    """JSON (a list), JSON lines, or CSV (one row per variant), by the file's suffix; `fmt="legacy"`
    writes each result in the shape of the CRM generator this job replaced (crm/legacy.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        rows = variant_rows(results)
        with path.open("w", encoding="utf-8-sig", newline="") as handle:  # BOM: Excel opens Korean right
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["row"])
            writer.writeheader()
            writer.writerows(rows)
        return
    if fmt == "legacy":
        results = [to_legacy(r) for r in results]
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    else:
        path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
