"""Run-time configuration of the conversational graphs (LangGraph `context_schema`, editable in Studio)."""

from __future__ import annotations

from dataclasses import dataclass, field

from personagraph.serving.settings import Role


@dataclass(kw_only=True)
class ChatContext:
    """Knobs of one chat run; every field is visible in LangGraph Studio."""

    persona_id: str = field(
        default="stella_yuna", metadata={"description": "Persona folder under data/personas."}
    )
    user_id: str = field(
        default="anonymous", metadata={"description": "The fan; long-term memory is kept per user id."}
    )
    top_k: int = field(default=3, metadata={"description": "Documents retrieved per store."})
    max_context_tokens: int = field(
        default=300,
        metadata={
            "description": "Budget for retrieved text in the draft prompt, in tokens (the embedding "
            "tokenizer's count; one knowledge chunk and part of another). Every token is read anew "
            "each turn: about 60 tokens/s for the embedded model on two cores."
        },
    )
    history_turns: int = field(
        default=20, metadata={"description": "Recent turns sent verbatim; older ones are summarised."}
    )
    max_message_chars: int = field(default=2000, metadata={"description": "Longest fan message accepted."})
    temperature: float | None = field(
        default=None,
        metadata={
            "description": "Sampling temperature of the reply, 0 to 2 (none: the chat role's setting)."
        },
    )
    top_p: float | None = field(
        default=None,
        metadata={"description": "Nucleus sampling of the reply, above 0 up to 1 (none: the server's)."},
    )
    max_tokens: int | None = field(
        default=None,
        metadata={"description": "Most tokens in the reply, 1 to LLM_MAX_TOKENS (none: LLM_MAX_TOKENS)."},
    )
    router_role: Role = field(default="router", metadata={"description": "Model role for intent routing."})
    chat_role: Role = field(default="chat", metadata={"description": "Model role that drafts replies."})
    memory_role: Role = field(
        default="router", metadata={"description": "Model role that extracts the fan profile."}
    )
    extract_profile: bool = field(
        default=True, metadata={"description": "Extract profile facts from the fan's messages."}
    )
    max_revisions: int = field(
        default=1, metadata={"description": "Regenerations after a failed output check."}
    )
    safety_judge: bool = field(
        default=False,
        metadata={
            "description": "Ask the judge role about fan messages that the safety rules let through "
            "(after the classifier); a judge error keeps the classifier's verdict."
        },
    )
