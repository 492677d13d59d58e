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
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from personagraph.accounts.identity import Caller
from personagraph.crm.catalog import crm_home, crm_settings, load_catalog
from personagraph.crm.inputs import CrmInputError, CrmRequest, parse_request
from personagraph.nodes.crm import CrmContext, model_names
from personagraph.prompts.crm import PROMPT_VERSION
from personagraph.serving.models import ModelError
from personagraph.serving.redact import user_error
from personagraph.serving.safe_paths import check_id, child_path, confined_path
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import run_config

log = logging.getLogger(__name__)

STEPS = ("load", "retrieval", "draft", "refine", "checks", "total")
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
        from personagraph.graphs.crm_message import graph

        request = parse_request(raw)
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

    def run_batch(
        self,
        caller: Caller,
        rows: Iterable[Mapping[str, Any]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every row, in order; a bad row is reported (status invalid/error, with its row number) and skipped."""
        items = list(rows)
        check_row_count(len(items))
        results = []
        for number, row in enumerate(items, start=1):
            try:
                if not isinstance(row, Mapping):
                    raise CrmInputError("row", "must be an object of request fields")
                result = self.run(caller, row)
            except CrmInputError as exc:
                result = {"status": "invalid", "error": str(exc), "field": exc.field}
            except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
                # The user sees a short text; the exception and its traceback go to the log.
                message = str(exc) if isinstance(exc, ModelError) else user_error(log, exc, "internal error")
                result = {"status": "error", "error": message}
            results.append({"row": number, **result})
            if progress is not None:
                progress(number, len(items))
        return results


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


def write_results(results: list[dict[str, Any]], path: Path) -> None:
    """JSON (a list) or JSON lines, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    else:
        path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
