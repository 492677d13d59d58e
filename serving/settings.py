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

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
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
    prompt_fence_key: SecretStr | None = Field(
        default=None,
        description="Key of the ids that fence untrusted text in prompts (PROMPT_FENCE_KEY). Unset: "
        "a random key made once and kept in <home>/secrets/prompt-fence-key (mode 600), so every "
        "process of one home writes the same prompt for the same data and a model server's prompt "
        "cache matches across processes and replicas. Set it to share that across homes.",
    )

    # Memory and data services.
    database_url: str | None = Field(
        default=None,
        description="postgresql://... : threads (PostgresSaver), long-term memory (PostgresStore with "
        "pgvector), accounts and runs in this Postgres; unset = SQLite files under PERSONAGRAPH_HOME.",
    )
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

    # --- limits-16: sizes, counts and rates of untrusted input (issue 16, part "limits") ---
    # Each error that one of these produces names the setting (as its environment variable).
    card_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest character card file (JSON or PNG), in bytes."
    )
    card_max_text_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024,
        description="Largest 'chara' text of a PNG card after decompression (zTXt/iTXt), in bytes.",
    )  # fmt: skip
    card_max_field_chars: int = Field(
        default=50_000, ge=100,
        description="Longest text field of a card (description, personality, a book entry, ...), in characters.",
    )  # fmt: skip
    card_max_items: int = Field(
        default=1000, ge=1, description="Most character-book entries, greetings or tags in one card."
    )
    upload_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024,
        description="Largest uploaded file (respondents, answers, surveys, CRM batches), in bytes.",
    )  # fmt: skip
    survey_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest survey or interview guide (file or text), in bytes.",
    )
    survey_max_questions: int = Field(default=1000, ge=1, description="Most questions in a survey or guide.")
    question_max_chars: int = Field(
        default=4000,
        ge=100,
        description="Longest text of a survey or guide question, an option or an instruction.",
    )
    question_max_options: int = Field(
        default=200, ge=2, description="Most options (or Likert points) of one survey question."
    )
    respondents_max_rows: int = Field(
        default=100_000, ge=1, description="Most rows read from a respondents file."
    )
    crm_batch_max_rows: int = Field(default=1000, ge=1, description="Most rows in one CRM batch.")
    crm_field_max_chars: int = Field(
        default=200, ge=10, description="Longest value of a CRM request field (brand, product, names)."
    )
    interview_max_message_chars: int = Field(
        default=2000, ge=1, description="Longest follow-up a researcher types in an interactive interview."
    )
    runs_max_active_per_account: int = Field(
        default=2, ge=1, description="Twin runs one account may have running at once."
    )
    runs_max_active: int = Field(default=8, ge=1, description="Twin runs running at once in this process.")
    api_max_json_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body of the API and the app (not uploads).",
    )
    ui_queue_max_size: int = Field(
        default=100,
        ge=1,
        description="Most app events waiting in the queue; more are refused until it drains.",
    )
    signin_max_failures: int = Field(
        default=5, ge=1, description="Wrong passwords (per account and per address) before sign-in waits."
    )
    signin_lockout_s: float = Field(
        default=30.0,
        gt=0,
        description="First wait after too many wrong passwords; doubles per further failure.",
    )
    signin_max_lockout_s: float = Field(default=900.0, gt=0, description="Longest sign-in wait, in seconds.")
    # Local services started by the app get a key/password: this one, or a new random one per start.
    local_redis_password: SecretStr | None = Field(
        default=None, description="Password of the local Redis (`personagraph redis`, the insight demo)."
    )
    local_server_api_key: SecretStr | None = Field(
        default=None, description="API key of the embedded model server."
    )
    local_postgres_password: SecretStr | None = Field(
        default=None, description="Password of the local Postgres (`personagraph postgres`, `stack up`)."
    )
    # runs-17: twin runs claimed through the database with a lease (issue 17, part "runs")
    worker_id: str | None = Field(
        default=None,
        description="This app process's name in run leases (WORKER_ID); unset = <hostname>-<pid>.",
    )
    runs_lease_s: float = Field(
        default=30.0,
        ge=0.1,
        description="How long a run's lease lasts without a heartbeat (renewed every third of it); "
        "another worker resumes the run of a dead one after this.",
    )
    runs_resume_interval_s: float = Field(
        default=10.0, ge=0.1, description="How often the app looks for runs whose worker died."
    )
    # --- end limits-16 ---

    # --- B: LangSmith tracing (issue 22, serving/tracing.py) ---
    # The older LANGCHAIN_* names still work, as they do for the langsmith client itself.
    langsmith_tracing: bool = Field(
        default=False,
        validation_alias=AliasChoices("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"),
        description="Trace graph runs and model calls to LangSmith (needs LANGSMITH_API_KEY).",
    )
    langsmith_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"),
        description="LangSmith API key.",
    )
    langsmith_endpoint: str = Field(
        default="https://api.smith.langchain.com",
        validation_alias=AliasChoices("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT"),
        description="LangSmith API URL (or a self-hosted one).",
    )
    langsmith_project: str = Field(
        default="personagraph",
        validation_alias=AliasChoices("LANGSMITH_PROJECT", "LANGCHAIN_PROJECT"),
        description="LangSmith project for traces.",
    )
    langsmith_account_key: SecretStr | None = Field(
        default=None,
        description="Key of the hash that names accounts in traces (acct_...); set it so ids are unguessable.",
    )
    # --- end B ---

    # --- A: metrics and logs (issue 22, serving/metrics.py, serving/logs.py, api/metrics.py) ---
    log_format: Literal["text", "json"] = Field(
        default="text", description="Server log lines: text, or one JSON object per line (LOG_FORMAT)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log level written (LOG_LEVEL); DEBUG adds node starts."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; unset = open.",
    )
    # --- end A ---

    # --- H: twin run usage and cost (issue 19, services/twins/analysis.py) ---
    twin_price_prompt_per_million: float = Field(
        default=0.0, ge=0,
        description="Price of one million prompt tokens of the twin model, for run cost estimates "
        "(TWIN_PRICE_PROMPT_PER_MILLION; 0 = the embedded model, free).",
    )  # fmt: skip
    twin_price_completion_per_million: float = Field(
        default=0.0, ge=0, description="Price of one million completion tokens of the twin model."
    )
    twin_price_currency: str = Field(default="USD", max_length=8, description="Currency of the twin prices.")
    # --- end H ---

    # --- E: chat speed (issue 18, nodes/routing.py, serving/local_server.py) ---
    chat_intent_router: Literal["hybrid", "classifier", "router"] = Field(
        default="hybrid",
        description="How persona chat finds a message's intent (CHAT_INTENT_ROUTER): hybrid = the trained "
        "classifier, the router model only when it is unsure; classifier = never the model; router = "
        "always the model (one more model call before every reply).",
    )
    local_model_prompt_cache_mb: int = Field(
        default=512, ge=0,
        description="RAM for the embedded model server's prompt cache (LOCAL_MODEL_PROMPT_CACHE_MB): "
        "the evaluated prompt of each call is kept (about 30 KB a token for the default model, so "
        "512 MB holds several chat prompts), so a chat turn after a profile extraction call resumes "
        "its draft prompt instead of re-reading it; 0 turns the cache off.",
    )  # fmt: skip
    chat_prewarm: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="After a chat turn, have the chat model's server read the next turn's stable "
        "prompt (the system prompt and the conversation with the new reply) while the fan reads and "
        "types (CHAT_PREWARM), so the next reply starts after reading only the new message and the "
        "per-turn data: auto = only for the embedded model server (one user, a prompt cache; a "
        "shared server would spend a call a turn), on = any server, off = never.",
    )
    # --- end E ---

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
