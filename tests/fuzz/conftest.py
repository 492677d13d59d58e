"""Fuzz-test settings and fixtures.

Hypothesis runs derandomized with no example database by default (profile `fuzz`): CI and every
developer see the same examples, and nothing is written under .hypothesis/. For a longer, random
hunt (with shrinking) run `HYPOTHESIS_PROFILE=fuzz-deep FUZZ_SCALE=10 pytest tests/fuzz`.

Hangs are caught by a per-test timeout (pytest-timeout), not by per-example deadlines: the shared
CI machine is too noisy for a deadline per example, and a hang is still a failure within a minute.

The fuzz tests drive the product's input handling, not its models: the chat model roles are fakes
(`tests/fakes.py`) and the input-safety classifier is replaced by "safe" (its own tests and the
safety eval cover it; with an empty cache it would train for minutes first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

_SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
# No shrinking in the default profile: a failure prints its drawn (labelled) inputs, and an
# expected failure (xfail) would otherwise cost a long shrink on every CI run.
_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
settings.register_profile(
    "fuzz", database=None, derandomize=True, deadline=None, suppress_health_check=_SUPPRESSED,
    phases=_NO_SHRINK, print_blob=True,
)  # fmt: skip
settings.register_profile(
    "fuzz-deep", database=None, derandomize=False, deadline=None, suppress_health_check=_SUPPRESSED,
    max_examples=1000, print_blob=True,
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))


def _safe(text: str, *, threshold: float | None = None, **_: Any) -> tuple[bool, str, float]:
    return False, "safe", 0.0


@pytest.fixture
def no_classifier(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Input safety without the trained classifier (the rules still run)."""
    monkeypatch.setattr("personagraph.safety.input_filter.classify", _safe)
    yield
