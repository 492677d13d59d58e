"""`--format legacy`: a result in the shape of the CRM generator this job replaced, so scripts written
for it keep working. Its two models map to our roles: `qwen` was the drafter (the factual draft),
`exaone` the stylist (the brand-tone message); their timings are ours for those steps (the stylist's
includes the repair step and the checks, which the old generator did inside its rewrite).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render_draft(draft: Mapping[str, Any] | None) -> str:
    if not draft:
        return ""
    lines = [draft.get("headline", ""), *(f"- {p.get('text', '')}" for p in draft.get("points", [])),
             draft.get("call_to_action", "")]  # fmt: skip
    return "\n".join(str(line).strip() for line in lines if str(line).strip())


def to_legacy(result: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy shape; `row`, `status`, `error` and `reasons` are kept beside it."""
    timings = result.get("timings") or {}
    request = result.get("request") or {}
    style = result.get("style") or {}
    stage = result.get("stage") or {}
    out: dict[str, Any] = {
        "persona": request.get("persona"), "brand": request.get("brand"), "product": request.get("product"),
        "stage_index": request.get("stage_index"), "style_index": request.get("style_index"),
        "is_event": request.get("is_event"), "channel": request.get("channel"),
        "stage_kr": stage.get("name_ko", ""),
        "style_templates": {"name": style.get("name_ko", ""), "name_en": style.get("name", ""),
                            "instruction": style.get("instruction", "")},
        "selected_event": result.get("event"),
        "qwen": {"draft": render_draft(result.get("draft"))},
        "exaone": {"result_raw": result.get("message") or ""},
        "timing": {
            "load": timings.get("load", 0.0), "rag": timings.get("retrieval", 0.0),
            "qwen": timings.get("draft", 0.0),
            "exaone": round(sum(float(timings.get(k, 0.0)) for k in ("refine", "repair", "checks")), 4),
            "total": timings.get("total", 0.0),
        },
        "status": result.get("status"), "error": result.get("error"), "reasons": result.get("reasons") or [],
    }  # fmt: skip
    if "row" in result:
        out = {"row": result["row"], **out}
    return out
