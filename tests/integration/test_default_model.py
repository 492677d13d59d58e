"""The default embedded model (Qwen2.5-Coder-1.5B from 22 PyPI parts): assembled, verified, served."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from personagraph.serving.language import script_drift
from personagraph.serving.local_model import QWEN_CODER_1_5B, resolve_model_file, sha256_of
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.models import endpoint_of, invoke_text
from personagraph.serving.settings import get_settings

pytestmark = pytest.mark.integration


def test_default_model_is_assembled_and_verified() -> None:
    path, alias = resolve_model_file(QWEN_CODER_1_5B.name, get_settings().model_cache_dir)
    assert path.stat().st_size == QWEN_CODER_1_5B.size
    assert sha256_of(path) == QWEN_CODER_1_5B.sha256
    assert alias == QWEN_CODER_1_5B.alias


def test_default_model_answers_in_korean(default_model_env: LocalModelServer) -> None:
    base_url, model = endpoint_of("chat")  # no base URL configured: the embedded server
    assert base_url == default_model_env.base_url and model == QWEN_CODER_1_5B.alias
    reply = invoke_text(
        "chat",
        [
            SystemMessage(content="한국어로만 짧게 답하세요."),
            HumanMessage(content="안녕하세요! 오늘 기분이 어때요?"),
        ],
    )
    assert not script_drift(str(reply.content), "ko"), reply.content
