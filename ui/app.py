"""The Gradio app: one tab per job. The chat tab streams replies from `persona_chat`.

personagraph app            (or: make run)  ->  http://127.0.0.1:7860
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr

from graphs.chat_session import ChatService, InvalidRequestError, validate_request
from personas.model import UnknownPersonaError, list_personas, load_persona
from serving.settings import get_settings

ChatHistory = list[dict[str, Any]]
COMING = {
    "Survey & interviews": "Digital-twin surveys and interviews (Twin-2K-500) arrive with the twin-interview feature.",
    "CRM messages": "Brand-tone CRM messages arrive with the CRM-message feature.",
    "Customer insight": "Live RFM/GMM segments and insight Q&A arrive with the customer-insight feature.",
}


def _thread_choices(service: ChatService, user_id: str) -> list[tuple[str, str]]:
    return [
        (f"{t['title']} · {t['updated_at'][:16]}", t["thread_id"])
        for t in service.threads(user_id or "anonymous")
    ]


def _to_history(service: ChatService, thread_id: str) -> ChatHistory:
    history: ChatHistory = []
    for message in service.history(thread_id):
        role = "user" if message.type == "human" else "assistant"
        history.append({"role": role, "content": str(message.content)})
    return history


def greeting(persona_id: str, lang: str = "ko") -> str:
    persona = load_persona(persona_id)
    return persona.greeting.get(lang) or persona.greeting.get("en") or f"Hi, I'm {persona.name}!"


def build_app(service: ChatService | None = None) -> gr.Blocks:
    service = service or ChatService()
    personas = list_personas()

    def send(
        message: str, history: ChatHistory, persona_id: str, user_id: str, thread_id: str
    ) -> Iterator[tuple[ChatHistory, str, str, str, str]]:
        """Stream one chat turn: (history, message box, thread id, details JSON, status)."""
        history = list(history or [])
        thread_id = thread_id or uuid.uuid4().hex
        try:
            request = validate_request(
                message=message or "", user_id=(user_id or "anonymous").strip(), thread_id=thread_id,
                persona_id=persona_id,
            )  # fmt: skip
        except (InvalidRequestError, UnknownPersonaError) as exc:
            yield history, message, thread_id, "{}", f"⚠️ {exc}"
            return
        history += [{"role": "user", "content": request.message}, {"role": "assistant", "content": ""}]
        partial = ""
        for event in service.stream_turn(request):
            if event.kind == "token":
                partial += event.text
                history[-1] = {"role": "assistant", "content": partial}
                yield history, "", thread_id, "{}", "…"
            elif event.kind == "reset":
                partial = ""
            elif event.kind == "error":
                # The turn was rolled back: put the message back in the box so the fan can retry.
                yield history[:-2], request.message, thread_id, "{}", f"⚠️ {event.text} — press Send to retry."
                return
            elif event.kind == "final" and event.result is not None:
                history[-1] = {"role": "assistant", "content": event.result.reply}
                details = {"intent": event.result.intent, "sources": event.result.sources,
                           "blocks": event.result.blocks}  # fmt: skip
                yield history, "", thread_id, json.dumps(details, ensure_ascii=False, indent=1), "✓"

    def new_session(persona_id: str) -> tuple[ChatHistory, str, str]:
        return [{"role": "assistant", "content": greeting(persona_id)}], "", "new session"

    def load_thread(thread_id: str) -> tuple[ChatHistory, str]:
        return (_to_history(service, thread_id) if thread_id else []), thread_id or ""

    def refresh_threads(user_id: str) -> Any:
        return gr.update(choices=_thread_choices(service, user_id), value=None)

    with gr.Blocks(title="PersonaGraph") as app:
        gr.Markdown("# PersonaGraph")
        with gr.Tab("Persona chat"):
            with gr.Row():
                persona = gr.Dropdown(personas, value=personas[0] if personas else None, label="Persona")
                user = gr.Textbox(value="anonymous", label="Fan (user id)")
                sessions = gr.Dropdown(choices=[], label="Session", allow_custom_value=False)
                new_btn = gr.Button("New session")
            thread = gr.Textbox(label="Thread id", interactive=False)
            chatbot = gr.Chatbot(height=420, label="Chat")
            with gr.Row():
                box = gr.Textbox(
                    placeholder="메시지를 입력하세요 / Type a message", show_label=False, scale=5
                )
                send_btn = gr.Button("Send", variant="primary", scale=1)
            status = gr.Markdown()
            details = gr.Code(label="Turn details (intent, sources, safety blocks)", language="json")

            outputs = [chatbot, box, thread, details, status]
            inputs = [box, chatbot, persona, user, thread]
            send_btn.click(send, inputs, outputs, api_name="send")
            box.submit(send, inputs, outputs, api_visibility="private")
            new_btn.click(new_session, [persona], [chatbot, thread, status], api_name="new_session")
            sessions.change(load_thread, [sessions], [chatbot, thread], api_visibility="private")
            user.change(refresh_threads, [user], [sessions], api_visibility="private")
            app.load(refresh_threads, [user], [sessions], api_visibility="private")
        for title, text in COMING.items():
            with gr.Tab(title):
                gr.Markdown(f"**Coming soon.** {text}")
    return app


def warm_up(service: ChatService) -> None:
    """Start the embedded model server and build the index before the first fan arrives."""
    from nodes.retrieval import vector_client
    from personas.index import ensure_persona_index
    from serving.models import endpoint_of

    for persona_id in list_personas():
        ensure_persona_index(vector_client(), persona_id)
    base_url, model = endpoint_of("chat")
    print(f"model for role 'chat': {model} at {base_url}")


def launch(host: str = "127.0.0.1", port: int = 7860) -> None:
    settings = get_settings()
    print(f"PersonaGraph: state in {settings.personagraph_home}")
    service = ChatService()
    warm_up(service)
    build_app(service).queue(default_concurrency_limit=4).launch(server_name=host, server_port=port)
