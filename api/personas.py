"""Personas: the ones you may chat with, Character Card V2 import (a multipart upload, size-limited),
and any visible persona exported as a card.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status

from personagraph.api.deps import CallerDep, ChatDep
from personagraph.api.limits import read_upload
from personagraph.personas.cards import max_card_bytes

router = APIRouter(prefix="/api/personas", tags=["personas"])


@router.get("", name="personas_list")
def personas(caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """The personas you can chat with: the shipped ones and the cards you imported."""
    return {"personas": chat.personas(caller)}


@router.post("/import", name="personas_import", status_code=status.HTTP_201_CREATED)
def import_card(
    file: Annotated[UploadFile, File(description="A Character Card V2 as .json or .png")],
    caller: CallerDep,
    chat: ChatDep,
    overwrite: Annotated[bool, Form(description="Replace your persona with the same id.")] = False,
    persona_id: Annotated[str | None, Form(description="Default: from the character's name.")] = None,
    public: Annotated[bool, Form(description="Admins: visible to every account.")] = False,
) -> dict[str, Any]:
    """Import a card as a new persona of yours; its id is in the answer."""
    limit = max_card_bytes()
    data = read_upload(file, limit, f"file: the card is over {limit} bytes (CARD_MAX_BYTES)")
    if not data:
        raise ValueError("file: the upload is empty; send a Character Card V2 (.json or .png)")
    return {
        "persona_id": chat.import_card(
            caller, data, overwrite=overwrite, persona_id=persona_id, public=public
        )
    }


@router.get("/{persona_id}/card", name="personas_export_card")
def export_card(persona_id: str, caller: CallerDep, chat: ChatDep) -> dict[str, Any]:
    """The persona as Character Card V2 JSON (`chara_card_v2`)."""
    return chat.export_card(caller, persona_id)
