"""Which answer a twin's distribution over a closed question's codes stands for (a run setting).

- `mode`: the most likely answer;
- `median`: the weighted median code (what minimises the expected absolute error on ordinal scales);
- `mean`: the expected value (a number between codes; ordinal codes only, else the mode);
- `draw`: a draw from the distribution, seeded by (run seed, person, question) so a resume repeats it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Literal

Policy = Literal["mode", "median", "mean", "draw"]
POLICIES: tuple[str, ...] = ("mode", "median", "mean", "draw")


def pick(
    distribution: Mapping[int, float],
    policy: Policy,
    *,
    ordinal: bool = True,
    rng: random.Random | None = None,
) -> int | float:
    """The stored answer of a distribution (code -> probability) under `policy`."""
    codes = sorted(distribution)
    if policy == "mean" and ordinal:
        return round(sum(c * distribution[c] for c in codes), 4)
    if policy == "median" and ordinal:
        total = sum(distribution.values())
        cumulative = 0.0
        for c in codes:
            cumulative += distribution[c]
            if cumulative >= total / 2 - 1e-9:
                return c
    if policy == "draw":
        return (rng or random.Random()).choices(codes, weights=[distribution[c] for c in codes])[0]
    return max(codes, key=lambda c: (distribution[c], -c))


def draw_rng(seed: int, person_id: str, question_id: str) -> random.Random:
    """A generator that repeats for the same run seed, person and question (resumes draw the same)."""
    digest = hashlib.sha256(f"{seed}\x1f{person_id}\x1f{question_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
