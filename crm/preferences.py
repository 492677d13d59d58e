"""Preference pairs for DPO fine-tuning of the stylist, from CRM results.

Two kinds of pair, one JSON object per line (the TRL `DPOTrainer` format: prompt, chosen, rejected):
- accepted/rejected: within one run, a message that passed the checks is chosen over an earlier
  attempt that failed them (the rejection reasons are kept in `meta`);
- draft/final: when no attempt passed, nothing is exported for that run (a failed final message is
  not a good "chosen" text). The draft itself is never "chosen": it is not in the brand's voice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def stylist_prompt(result: Mapping[str, Any]) -> str:
    """The instruction a stylist sees, rebuilt from the result (brand, style, channel, draft)."""
    draft = result.get("draft") or {}
    lines = [draft.get("headline", ""), *(f"- {p.get('text', '')}" for p in draft.get("points", [])),
             draft.get("call_to_action", "")]  # fmt: skip
    return (
        f"Rewrite in the voice of {result.get('brand', {}).get('name', '')}; style "
        f"{result.get('style', {}).get('name', '')}; channel {result.get('channel', {}).get('name', '')}; "
        f"goal {result.get('stage', {}).get('name', '')}.\n" + "\n".join(line for line in lines if line)
    )


def preference_pairs(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    pairs = []
    for result in results:
        attempts = result.get("attempts") or []
        accepted = [a for a in attempts if a.get("passed")]
        rejected = [a for a in attempts if not a.get("passed") and a.get("message")]
        if not accepted or not rejected:
            continue
        chosen = accepted[-1]
        for bad in rejected:
            pairs.append({
                "prompt": stylist_prompt(result),
                "chosen": chosen["message"],
                "rejected": bad["message"],
                "meta": {"kind": "accepted_rejected", "request": result.get("request"),
                         "rejected_reasons": bad.get("reasons", []), "round": bad.get("round")},
            })  # fmt: skip
    return pairs


def export_preferences(results: Iterable[Mapping[str, Any]], path: Path) -> int:
    pairs = preference_pairs(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    return len(pairs)
