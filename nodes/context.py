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
    max_context_chars: int = field(
        default=1800,
        metadata={
            "description": "Budget for retrieved text in the draft prompt (small local models are slow)."
        },
    )
    history_turns: int = field(
        default=20, metadata={"description": "Recent turns sent verbatim; older ones are summarised."}
    )
    max_message_chars: int = field(default=2000, metadata={"description": "Longest fan message accepted."})
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
