"""crm_message end to end: real Chroma (PersistentClient under the test home), real embeddings and the
real llama.cpp server with SmolLM2-135M. A tiny model writes weak copy: the run must end with a passing
message or a failed result with reasons, never a crash; the CLI prints valid JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_crm_graph import make_tiny_catalog

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--persona", "2", "--brand", "dewylab", "--product", "dew-01", "--stage_index", "1",
        "--style_index", "2", "--is_event", "1", "--channel", "kakao", "--lang", "en"]  # fmt: skip


def test_crm_cli_with_the_real_model_prints_a_checked_result(
    real_model_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from personagraph.cli.main import main
    from personagraph.crm.catalog import load_catalog

    monkeypatch.setenv("CRM_DATA_DIR", str(make_tiny_catalog(tmp_path / "crm")))
    monkeypatch.setenv("CRM_MAX_REFINE_ROUNDS", "1")  # keeps this test near a minute on 2 shared cores
    load_catalog.cache_clear()  # type: ignore[attr-defined]
    code = main(["crm", *ARGS, "--disable_cache"])
    result = json.loads(capsys.readouterr().out)
    print(
        json.dumps(
            {k: result.get(k) for k in ("status", "message", "reasons", "rounds", "timings")},
            ensure_ascii=False,
        ),
        file=sys.stderr,
    )  # shown with -s
    assert code == 0, result.get("error")
    assert result["status"] in ("passed", "failed")
    if result["status"] == "failed":
        assert result["reasons"] and result["rounds"] == 2
    assert result["message"] and result["draft"]["points"]
    assert {e["kind"] for e in result["evidence"]} == {"product", "review", "tone", "event"}
    assert result["timings"]["total"] > 0 and result["models"]["stylist"].startswith(
        real_model_env["LLM_MODEL"]
    )
    load_catalog.cache_clear()  # type: ignore[attr-defined]


def test_crm_cli_invalid_value_exits_2() -> None:
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    bad = [a if a != "kakao" else "fax" for a in ARGS]
    proc = subprocess.run([sys.executable, "-m", "personagraph.cli", "crm", *bad], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "--channel: 'fax' is not allowed" in proc.stderr and "sms, lms, push, kakao, email" in proc.stderr
    assert proc.stdout == ""
