"""LOCAL_MODEL resolution: packaged names or an existing .gguf path, with a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from personagraph.serving.local_model import PACKAGED_MODELS, LocalModelError, resolve_model_file


def assert_lists_allowed(error: LocalModelError) -> None:
    for name in PACKAGED_MODELS:
        assert name in str(error)
    assert "qwen2.5-coder-1.5b" in str(error) and "smollm2-135m" in str(error)


def test_unknown_name_lists_packaged_models(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError) as info:
        resolve_model_file("llama-70b", tmp_path)
    assert "'llama-70b'" in str(info.value)
    assert_lists_allowed(info.value)


def test_existing_file_that_is_not_gguf_is_rejected(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"\0" * 8)
    with pytest.raises(LocalModelError) as info:
        resolve_model_file(str(model), tmp_path)
    assert_lists_allowed(info.value)


def test_missing_gguf_path_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match=r"existing \.gguf file"):
        resolve_model_file(str(tmp_path / "absent.gguf"), tmp_path)


def test_gguf_directory_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "weird.gguf"
    folder.mkdir()
    with pytest.raises(LocalModelError):
        resolve_model_file(str(folder), tmp_path)


def test_existing_gguf_path_is_accepted_with_its_stem_as_alias(tmp_path: Path) -> None:
    model = tmp_path / "My-Model.Q4_K_M.GGUF"
    model.write_bytes(b"GGUF")
    path, alias = resolve_model_file(str(model), tmp_path / "cache")
    assert path == model
    assert alias == "My-Model.Q4_K_M"
