"""Run the crm_message graph: one request or a batch, with a result cache and timing logs.

- Cache: PERSONAGRAPH_HOME/crm/cache/<key>.json, the key hashing the resolved request, the models of
  the drafter and stylist roles (name and server), the catalog fingerprint, the prompt version and the
  refine budget. Only finished runs (passed/failed) are cached; errors are retried next time.
- Timing log: PERSONAGRAPH_HOME/crm/timings.jsonl, one line per run with the step timings and the
  rolling average of each step over the last `CRM_TIMING_WINDOW` (default 20) runs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from personagraph.crm.catalog import crm_home, crm_settings, load_catalog
from personagraph.crm.inputs import CrmInputError, CrmRequest, parse_request
from personagraph.nodes.crm import CrmContext, model_names
from personagraph.prompts.crm import PROMPT_VERSION

STEPS = ("load", "retrieval", "draft", "refine", "checks", "total")


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

    @property
    def timing_log(self) -> Path:
        return crm_home() / "timings.jsonl"

    def _log(self, key: str, result: Mapping[str, Any]) -> dict[str, float]:
        self.timing_log.parent.mkdir(parents=True, exist_ok=True)
        window = crm_settings().timing_window
        with self.timing_log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"ts": time.time(), "key": key, "status": result.get("status"),
                                     "timings": result.get("timings", {})}) + "\n")  # fmt: skip
        return rolling_average(self.timing_log, window)

    def run(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """One request (raises `CrmInputError` for an invalid value); the result JSON as a dict."""
        from personagraph.graphs.crm_message import graph

        request = parse_request(raw)
        key = cache_key(request, self.context)
        path = self.cache_dir / f"{key}.json"
        if self.use_cache and path.exists():
            result = json.loads(path.read_text(encoding="utf-8"))
            result["cached"] = True
            return result
        state: Any = graph.invoke(cast(Any, request.model_dump()), context=self.context)
        result = dict(state.get("result") or {"status": "error", "error": "the graph returned no result"})
        result["cached"] = False
        result["cache_key"] = key
        result["timing_average"] = self._log(key, result)
        if self.use_cache and result.get("status") in ("passed", "failed"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return result

    def run_batch(
        self, rows: Iterable[Mapping[str, Any]], progress: Callable[[int, int], None] | None = None
    ) -> list[dict[str, Any]]:
        """Every row, in order; a bad row is reported (status invalid/error, with its row number) and skipped."""
        items = list(rows)
        results = []
        for number, row in enumerate(items, start=1):
            try:
                result = self.run(row)
            except CrmInputError as exc:
                result = {"status": "invalid", "error": str(exc), "field": exc.field}
            except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
                result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            results.append({"row": number, **result})
            if progress is not None:
                progress(number, len(items))
        return results


class BatchFileError(ValueError):
    """A batch file that cannot be read; the message names the file and the problem."""


def parse_rows(text: str, name: str) -> list[dict[str, Any]]:
    """Rows of a batch file: a JSON list (or {"rows": [...]}), JSON lines, or CSV with a header."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".csv":
            return [dict(row) for row in csv.DictReader(io.StringIO(text))]
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (json.JSONDecodeError, csv.Error) as exc:
        raise BatchFileError(f"{name}: cannot be read: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise BatchFileError(f"{name}: expected a JSON list of request objects")
    return data


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise BatchFileError(f"{path}: no such file")
    return parse_rows(path.read_text(encoding="utf-8-sig"), path.name)


def write_results(results: list[dict[str, Any]], path: Path) -> None:
    """JSON (a list) or JSON lines, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    else:
        path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
