"""Settings read from the environment and `.env`.

Every LLM call is made for a *role*. Each role has a model name, an OpenAI-compatible base URL and a
key; unset role values fall back to the shared `LLM_*` defaults. With no base URL anywhere, the
embedded local model server is used.

    LLM_BASE_URL=http://gpu-box:8000/v1      shared default for every role
    LLM_MODEL=Qwen/Qwen2.5-7B-Instruct
    LLM_STYLIST_MODEL=stylist                 a LoRA adapter served by the same vLLM server
    LLM_JUDGE_BASE_URL=https://api.openai.com/v1   one role on another server
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["router", "drafter", "stylist", "twin", "judge", "chat"]
ROLES: tuple[Role, ...] = get_args(Role)

Backend = Literal["auto", "vllm", "llamacpp", "openai"]
BACKENDS: tuple[str, ...] = get_args(Backend)

REPO_ROOT = Path(__file__).resolve().parent.parent


class RoleSettings(BaseSettings):
    """Overrides for one role, read from `LLM_<ROLE>_MODEL`, `LLM_<ROLE>_BASE_URL`, ... (all optional)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    model: str | None = Field(default=None, description="Model (or LoRA adapter) name for this role.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible base URL for this role.")
    api_key: SecretStr | None = Field(default=None, description="API key for this role's server.")
    backend: Backend | None = Field(
        default=None, description="Server kind, picks the structured-output method."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class Settings(BaseSettings):
    """Application settings (environment variables, `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Shared model defaults (LLM_*).
    llm_base_url: str | None = Field(default=None, description="Default OpenAI-compatible base URL.")
    llm_api_key: SecretStr = Field(default=SecretStr("EMPTY"), description="Default API key.")
    llm_model: str = Field(default="local", description="Default model name.")
    llm_backend: Backend = Field(
        default="auto",
        description="vllm: json_schema guided decoding; llamacpp: json_object+schema grammar; "
        "openai: json_schema; auto: llamacpp for the embedded server, vllm otherwise.",
    )
    llm_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    llm_timeout_s: float = Field(default=180.0, gt=0, description="Per-request timeout in seconds.")
    llm_max_retries: int = Field(default=2, ge=0, description="Transport retries per request.")
    llm_structured_attempts: int = Field(
        default=3, ge=1, description="Attempts at valid structured output before a clear error."
    )
    llm_max_tokens: int = Field(default=512, gt=0, description="Default max tokens per reply.")

    # Embedded local model server (used when no base URL is configured).
    local_model: str = Field(
        default="qwen2.5-coder-1.5b",
        description="Packaged model name (qwen2.5-coder-1.5b, smollm2-135m) or a path to any GGUF file.",
    )
    local_model_ctx: int = Field(default=4096, ge=512)
    local_model_threads: int | None = Field(default=None, ge=1)
    local_server_start_timeout_s: float = Field(default=300.0, gt=0)

    # Where the app keeps its files.
    personagraph_home: Path = Field(
        default=Path.home() / ".personagraph",
        description="Checkpoints, long-term memory and the Chroma index live here.",
    )
    model_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "personagraph" / "models",
        description="Where the packaged GGUF parts are joined into one file (outside site-packages).",
    )
    data_dir: Path = Field(default=REPO_ROOT / "data", description="Shipped personas and documents.")

    # Memory and data services.
    redis_url: str | None = Field(default=None, description="Use the Redis checkpointer when set.")
    checkpoint_ttl_minutes: int = Field(default=30, ge=1, description="Per-thread TTL with Redis.")
    store_url: str | None = Field(
        default=None, description="Long-term memory store: unset = SQLite; redis://... or postgresql://..."
    )
    chroma_url: str | None = Field(default=None, description="Chroma server URL (HttpClient) when set.")

    # Chat limits.
    max_message_chars: int = Field(default=2000, ge=1)

    # Sign-in. Accounts live in the app's database (`personagraph accounts add`); these pairs add one
    # quick user and/or admin account from the environment or `.env`.
    auth_user_id: str = ""
    auth_user_pw: SecretStr = SecretStr("")
    auth_admin_id: str = ""
    auth_admin_pw: SecretStr = SecretStr("")
    session_token_hours: float = Field(default=12.0, gt=0, description="Lifetime of a sign-in token.")

    def role(self, role: Role) -> ResolvedRole:
        """Resolve a role's model, URL, key and backend from its overrides and the shared defaults."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
        over = RoleSettings(_env_prefix=f"LLM_{role.upper()}_")  # type: ignore[call-arg]
        base_url = over.base_url or self.llm_base_url
        backend = over.backend or self.llm_backend
        if backend == "auto":
            backend = "llamacpp" if base_url is None else "vllm"
        return ResolvedRole(
            role=role,
            model=over.model or self.llm_model,
            base_url=base_url,
            api_key=(over.api_key or self.llm_api_key).get_secret_value(),
            backend=backend,
            temperature=over.temperature if over.temperature is not None else self.llm_temperature,
        )

    @property
    def state_dir(self) -> Path:
        return self.personagraph_home / "state"

    @property
    def chroma_dir(self) -> Path:
        return self.personagraph_home / "chroma"

    @property
    def accounts_db(self) -> Path:
        return self.personagraph_home / "accounts.sqlite"

    @property
    def uploads_dir(self) -> Path:
        """Each account's files (uploads, persona files for twin runs) live in uploads/<user id>/."""
        return self.personagraph_home / "uploads"


class ResolvedRole(BaseModel):
    """A role's effective settings; `base_url=None` means the embedded local server."""

    model_config = ConfigDict(frozen=True)

    role: str
    model: str
    base_url: str | None
    api_key: str
    backend: Literal["vllm", "llamacpp", "openai"]
    temperature: float

    @property
    def embedded(self) -> bool:
        return self.base_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (call `get_settings.cache_clear()` after changing the environment)."""
    return Settings()
