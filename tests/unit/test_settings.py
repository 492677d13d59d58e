"""Role resolution: shared defaults, per-role overrides from the environment, backend auto-detection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from personagraph.serving.settings import ROLES, get_settings


def fresh():
    get_settings.cache_clear()
    return get_settings()


def test_defaults_use_embedded_llamacpp_for_every_role() -> None:
    settings = fresh()
    for role in ROLES:
        resolved = settings.role(role)
        assert resolved.role == role
        assert resolved.model == "local"
        assert resolved.base_url is None
        assert resolved.embedded
        assert resolved.backend == "llamacpp"
        assert resolved.api_key == "EMPTY"
        assert resolved.temperature == pytest.approx(0.7)


def test_shared_base_url_switches_auto_backend_to_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("LLM_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("LLM_API_KEY", "secret-1")
    settings = fresh()
    for role in ROLES:
        resolved = settings.role(role)
        assert resolved.base_url == "http://gpu-box:8000/v1"
        assert resolved.backend == "vllm"
        assert not resolved.embedded
        assert resolved.model == "Qwen/Qwen2.5-7B-Instruct"
        assert resolved.api_key == "secret-1"


def test_role_model_override_only_changes_that_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("LLM_MODEL", "base-model")
    monkeypatch.setenv("LLM_STYLIST_MODEL", "stylist")
    settings = fresh()
    assert settings.role("stylist").model == "stylist"
    assert settings.role("stylist").base_url == "http://gpu-box:8000/v1"
    assert settings.role("chat").model == "base-model"
    assert settings.role("drafter").model == "base-model"


def test_role_base_url_override_with_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_JUDGE_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("LLM_JUDGE_API_KEY", "sk-judge")
    monkeypatch.setenv("LLM_JUDGE_TEMPERATURE", "0.1")
    settings = fresh()
    judge = settings.role("judge")
    assert judge.base_url == "https://api.openai.com/v1"
    assert judge.backend == "vllm"  # auto with a base URL
    assert judge.api_key == "sk-judge"
    assert judge.temperature == pytest.approx(0.1)
    chat = settings.role("chat")
    assert chat.embedded and chat.backend == "llamacpp"
    assert chat.api_key == "EMPTY"
    assert chat.temperature == pytest.approx(0.7)


def test_explicit_backends_win_over_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("LLM_BACKEND", "llamacpp")
    monkeypatch.setenv("LLM_JUDGE_BACKEND", "openai")
    settings = fresh()
    assert settings.role("chat").backend == "llamacpp"
    assert settings.role("judge").backend == "openai"


def test_role_temperature_zero_is_not_replaced_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ROUTER_TEMPERATURE", "0")
    assert fresh().role("router").temperature == 0.0


def test_unknown_role_error_lists_allowed_roles() -> None:
    with pytest.raises(ValueError) as info:
        fresh().role("poet")  # type: ignore[arg-type]
    message = str(info.value)
    assert "'poet'" in message
    for role in ROLES:
        assert role in message


def test_out_of_range_temperature_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TEMPERATURE", "5")
    with pytest.raises(ValidationError, match="llm_temperature"):
        fresh()


def test_cache_clear_picks_up_new_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fresh().llm_model == "local"
    monkeypatch.setenv("LLM_MODEL", "other")
    assert get_settings().llm_model == "local"  # cached
    assert fresh().llm_model == "other"


def test_home_directories_follow_personagraph_home(isolated_home) -> None:
    settings = fresh()
    assert settings.personagraph_home == isolated_home
    assert settings.state_dir == isolated_home / "state"
    assert settings.chroma_dir == isolated_home / "chroma"
