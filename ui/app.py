"""The Gradio app: one tab per job. The chat tab streams replies from `persona_chat`.

personagraph app            (or: make run)  ->  http://127.0.0.1:7860  (served by `personagraph.api`)

Chat tab: persona picker with Character Card V2 import, new/continue session with a greeting
(returning fans are greeted by name), streamed replies, Regenerate and Stop, the sources and safety
decisions of each turn, and a panel where the fan can read, edit or delete what the persona
remembers about them.

The fan is the signed-in account: every handler takes the `gr.Request` and asks
`ui.identity.caller_of` who it is (there is no user-id field), and the services check ownership.
Handlers marked private are still callable by `fn_index`, so none of them trusts its inputs.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from personagraph.accounts.identity import AccessError, Caller
from personagraph.accounts.store import AccountStore
from personagraph.personas.cards import CardError, check_card_size
from personagraph.personas.model import load_persona
from personagraph.services.chat import ChatService, TurnEvent, validate_request
from personagraph.services.crm import CrmService
from personagraph.services.insight import InsightService
from personagraph.serving.safe_paths import confined_path
from personagraph.ui.crm_tab import build_crm_tab
from personagraph.ui.identity import caller_of, who_is_signed_in
from personagraph.ui.insight_tab import build_insight_tab
from personagraph.ui.twins_tab import build_twins_tabs

ChatHistory = list[dict[str, Any]]
SendOutput = tuple[ChatHistory, str, str, str, str]
LANGS = [("한국어", "ko"), ("English", "en")]
DEFAULT_FAN = {"ko": "친구", "en": "friend"}
DEFAULT_PERSONA = "stella_yuna"


# What a handler shows instead of failing: bad input (400s) and refusals (401/403/404/409).
Problem = (ValueError, AccessError, PermissionError)


def _thread_choices(service: ChatService, caller: Caller) -> list[tuple[str, str]]:
    return [(f"{t['title']} · {t['updated_at'][:16]}", t["thread_id"]) for t in service.threads(caller)]


def _persona_choices(persona_ids: list[str]) -> list[tuple[str, str]]:
    choices = []
    for persona_id in persona_ids:
        try:
            label = f"{load_persona(persona_id).name} · {persona_id}"
        except Exception:  # noqa: BLE001 - a broken folder is still listed, by id
            label = persona_id
        choices.append((label, persona_id))
    return choices


def _to_history(service: ChatService, caller: Caller, thread_id: str) -> ChatHistory:
    history: ChatHistory = []
    for message in service.history(caller, thread_id):
        role = "user" if message.type == "human" else "assistant"
        history.append({"role": role, "content": str(message.content)})
    return history


def _uploaded_card(file_path: str) -> bytes:
    """The bytes of a card uploaded through the app: only files in Gradio's upload folder are read."""
    path = confined_path(file_path, [Path(get_upload_folder())], "file")
    if not path.is_file():
        raise CardError("file: the uploaded card is gone; upload it again")
    check_card_size(path.stat().st_size)
    return path.read_bytes()


def greeting(persona_id: str, lang: str = "ko", profile: dict[str, Any] | None = None) -> str:
    """The persona's greeting; a returning fan (one with a profile) gets the returning greeting by name."""
    persona = load_persona(persona_id)
    if profile:
        template = persona.returning_greeting.get(lang) or persona.returning_greeting.get("en")
        name = (
            profile.get("nickname") or profile.get("name") or persona.fan_address(lang) or DEFAULT_FAN[lang]
        )
        if template:
            return template.replace("{name}", str(name))
    return persona.greeting.get(lang) or persona.greeting.get("en") or f"Hi, I'm {persona.name}!"


def turn_details(result: Any) -> dict[str, Any]:
    """The JSON shown under "Sources and safety" for one turn."""
    return {
        "intent": result.intent,
        "sources": result.sources,
        "retrieved": [
            {
                "source": d.get("source", ""),
                "category": d.get("category", ""),
                "score": d.get("score"),
                "text": str(d.get("text", ""))[:400],
            }
            for d in result.retrieved
        ],  # fmt: skip
        "blocks": result.blocks,
    }


def _plain(text: str, limit: int = 300) -> str:
    """One line of text safe to show inside Markdown: headings dropped, markup characters escaped."""
    text = " ".join(re.sub(r"(?m)^\s*#+\s*", "", text).split())[:limit]
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


def render_details(details: str | None) -> str:
    """Turn details as readable Markdown: intent, each source with a snippet, each safety decision."""
    try:
        data = json.loads(details or "{}")
    except json.JSONDecodeError:
        return ""
    if not data:
        return "_No turn yet._"
    lines = [f"**Intent:** `{data.get('intent') or '-'}`"]
    retrieved = data.get("retrieved") or []
    sources = data.get("sources") or []
    if retrieved:
        lines.append("\n**Sources used**")
        for i, doc in enumerate(retrieved, 1):
            snippet = _plain(str(doc.get("text", "")), 160)
            score = doc.get("score")
            meta = ", ".join(
                x for x in (doc.get("category"), f"score {score}" if score is not None else "") if x
            )
            lines.append(f"{i}. `{doc.get('source')}` ({meta})  \n   {snippet}…")
    elif sources:
        lines.append("\n**Sources used**")
        lines += [f"{i}. `{s}`" for i, s in enumerate(sources, 1)]
    else:
        lines.append("\n**Sources used:** none (no retrieval for this turn)")
    blocks = data.get("blocks") or []
    if blocks:
        lines.append("\n**Safety decisions**")
        for block in blocks:
            stage = "fan message" if block.get("stage") == "input" else "draft reply"
            lines.append(
                f"- ⛔ {stage} blocked: **{block.get('category')}** — {block.get('reason') or '-'}"
                f" ({block.get('layer', '')})"
            )
        if all(b.get("stage") == "output" for b in blocks):
            lines.append("- the reply shown is the rewritten or safe fallback reply")
    else:
        lines.append("\n**Safety decisions:** ✅ the message and the reply passed every check")
    return "\n".join(lines)


def render_profile(name: str, profile: dict[str, Any], memories: list[dict[str, Any]]) -> str:
    """What the persona called `name` remembers about the fan, as Markdown."""
    name = _plain(name, 100)
    if not profile and not memories:
        return f"**{name} doesn't remember anything about you yet.** Tell them about yourself!"
    lines = [f"**What {name} remembers about you**"]
    for key, value in profile.items():
        if key not in ("facts", "updated_at") and value:
            lines.append(f"- {key.replace('_', ' ')}: {_plain(str(value))}")
    lines += [f"- {_plain(str(fact))}" for fact in profile.get("facts", [])]
    if memories:
        lines.append(f"\n**Things you said** ({len(memories)}, newest first)")
        lines += [f"- “{_plain(m['text'], 120)}”" for m in memories[:5]]
    return "\n".join(lines)


def build_app(
    service: ChatService | None = None,
    accounts: AccountStore | None = None,
    insight: InsightService | None = None,
    crm: CrmService | None = None,
) -> gr.Blocks:
    """The whole app; the caller of every event is the signed-in account (`accounts`).

    `insight` and `crm` are the services the HTTP API uses too (one set of data per server);
    by default the tabs make their own.
    """
    service = service or ChatService()
    accounts = accounts or AccountStore()
    choices = _persona_choices(service.shared_personas())
    ids = [pid for _, pid in choices]
    default = DEFAULT_PERSONA if DEFAULT_PERSONA in ids else (ids[0] if ids else None)

    def caller(request: gr.Request | None) -> Caller:
        return caller_of(accounts, request)

    def banner(request: gr.Request) -> str:
        return who_is_signed_in(accounts, request)

    def profile_view(persona_id: str, request: gr.Request) -> tuple[str, str]:
        """(Markdown of what the persona remembers, the editable profile JSON)."""
        if not persona_id:
            return "", "{}"
        try:
            fan = caller(request)
            name = service.persona(fan, persona_id).name
            profile = service.get_profile(fan, persona_id)
            memories = service.memories(fan, persona_id)
        except Problem as exc:
            return f"⚠️ {exc}", "{}"
        editable = {k: v for k, v in profile.items() if k != "updated_at"}
        return render_profile(name, profile, memories), json.dumps(editable, ensure_ascii=False, indent=2)

    def start_session(
        persona_id: str, lang: str, request: gr.Request
    ) -> tuple[ChatHistory, str, str, str, str]:
        """A new session: (chat with the greeting, thread id, status, profile Markdown, profile JSON)."""
        if not persona_id:
            return [], "", "", "", "{}"
        try:
            fan = caller(request)
            service.persona(fan, persona_id)  # someone else's persona looks unknown
            text = greeting(persona_id, lang or "ko", service.get_profile(fan, persona_id))
        except Problem as exc:
            return [], "", f"⚠️ {exc}", "", "{}"
        return [{"role": "assistant", "content": text}], "", "new session", *profile_view(persona_id, request)

    def run_turn(
        history: ChatHistory,
        events: Iterator[TurnEvent],
        thread_id: str,
        on_error: Callable[[str], SendOutput],
    ) -> Iterator[SendOutput]:
        """Stream a turn into the chat: `history` ends with the fan's message and an empty reply.

        The service's events carry checked text only ("token": sentences that passed the output
        checks; "reset": what was shown is withdrawn), so the reply grows sentence by sentence.
        """
        yield history, "", thread_id, "{}", "…"  # the thread id is known at once, so Stop can name it
        partial = ""
        for event in events:
            if event.kind == "token":
                partial += event.text
                history[-1] = {"role": "assistant", "content": partial}
                yield history, "", thread_id, "{}", "…"
            elif event.kind == "reset":  # a checked replacement follows: clear the withdrawn text now
                partial = ""
                history[-1] = {"role": "assistant", "content": ""}
                yield history, "", thread_id, "{}", "…"
            elif event.kind == "error":
                yield on_error(event.text)
                return
            elif event.kind == "final" and event.result is not None:
                history[-1] = {"role": "assistant", "content": event.result.reply}
                details = json.dumps(turn_details(event.result), ensure_ascii=False, indent=1)
                yield history, "", thread_id, details, "✓"

    def send(
        message: str, history: ChatHistory, persona_id: str, thread_id: str, request: gr.Request
    ) -> Iterator[SendOutput]:
        """Stream one chat turn: (history, message box, thread id, details JSON, status)."""
        history = list(history or [])
        thread_id = thread_id or uuid.uuid4().hex
        try:
            turn = validate_request(message=message or "", thread_id=thread_id, persona_id=persona_id)
            events = service.stream_turn(caller(request), turn)
        except Problem as exc:
            yield history, message, thread_id, "{}", f"⚠️ {exc}"
            return
        shown = history + [{"role": "user", "content": turn.message}, {"role": "assistant", "content": ""}]

        def rolled_back(error: str) -> SendOutput:
            # The turn was rolled back: put the message back in the box so the fan can retry.
            return history, turn.message, thread_id, "{}", f"⚠️ {error} — press Send to retry."

        yield from run_turn(shown, events, thread_id, rolled_back)

    def regenerate(
        history: ChatHistory, persona_id: str, thread_id: str, request: gr.Request
    ) -> Iterator[SendOutput]:
        """Re-run the last fan message of the session and stream the new reply in place of the old one."""
        history = list(history or [])
        try:
            if not thread_id:
                raise ValueError("thread_id: no session yet; send a message first")
            fan = caller(request)
            events = service.regenerate(fan, thread_id, persona_id=persona_id or None)
            fan_text = next(
                (str(m.content) for m in reversed(service.history(fan, thread_id)) if m.type == "human"), ""
            )
            last_user = max((i for i, m in enumerate(history) if m.get("role") == "user"), default=None)
            if last_user is None:  # the chat shown is not this thread's: show the thread instead
                history = _to_history(service, fan, thread_id)
                last_user = max(
                    (i for i, m in enumerate(history) if m["role"] == "user"), default=len(history)
                )
        except Problem as exc:
            yield history, "", thread_id, "{}", f"⚠️ {exc}"
            return
        shown = history[:last_user] + [
            {"role": "user", "content": fan_text},
            {"role": "assistant", "content": ""},
        ]

        def kept(error: str) -> SendOutput:
            return history, "", thread_id, "{}", f"⚠️ {error} — the previous reply was kept."

        yield from run_turn(shown, events, thread_id, kept)

    def stop(thread_id: str, request: gr.Request) -> str:
        """Stop the reply being written; the turn is undone and the message returns to the box."""
        if not thread_id:
            return "nothing to stop"
        try:
            return "stopping…" if service.stop(caller(request), thread_id) else "nothing to stop"
        except Problem as exc:
            return f"⚠️ {exc}"

    def load_thread(thread_id: str, request: gr.Request) -> tuple[ChatHistory, str, Any, str]:
        if not thread_id:
            return [], "", gr.update(), ""
        try:
            fan = caller(request)
            row = next((t for t in service.threads(fan) if t["thread_id"] == thread_id), {})
            persona_id = row.get("persona_id")
            persona_update = (
                gr.update(value=persona_id) if persona_id in service.personas(fan) else gr.update()
            )
            return _to_history(service, fan, thread_id), thread_id, persona_update, ""
        except Problem as exc:
            return [], "", gr.update(), f"⚠️ {exc}"

    def refresh_threads(request: gr.Request) -> Any:
        try:
            return gr.update(choices=_thread_choices(service, caller(request)), value=None)
        except Problem:
            return gr.update(choices=[], value=None)

    def refresh_threads_keep(request: gr.Request) -> Any:
        try:
            return gr.update(choices=_thread_choices(service, caller(request)))
        except Problem:
            return gr.update(choices=[])

    def on_load(persona_id: str, lang: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            current = _persona_choices(service.personas(caller(request)))
        except Problem:
            current = []
        ids = [pid for _, pid in current]
        persona_id = persona_id if persona_id in ids else (ids[0] if ids else "")
        return (banner(request), gr.update(choices=current, value=persona_id or None), refresh_threads(request),
                *start_session(persona_id, lang, request))  # fmt: skip

    def regreet(persona_id: str, lang: str, thread_id: str, history: ChatHistory, request: gr.Request) -> Any:
        """Switching the greeting language re-greets a session that has not started yet."""
        if thread_id or len(history or []) > 1 or not persona_id:
            return gr.update()
        return start_session(persona_id, lang, request)[0]

    def import_uploaded(
        file_path: str | None, overwrite: bool, lang: str, request: gr.Request
    ) -> tuple[Any, ...]:
        """Import a Character Card V2 file as the signed-in account's persona and switch to it."""
        unchanged = (gr.update(),) * 5
        if not file_path:
            return gr.update(), "⚠️ card: choose a Character Card V2 file (.json or .png)", *unchanged
        try:
            fan = caller(request)
            persona_id = service.import_card(fan, _uploaded_card(file_path), overwrite=bool(overwrite))
            name = service.persona(fan, persona_id).name
            current = _persona_choices(service.personas(fan))
        except Problem as exc:
            return gr.update(), f"⚠️ {exc}", *unchanged
        note = f"✓ imported **{_plain(name, 100)}** as `{persona_id}`"
        return (gr.update(choices=current, value=persona_id), note,
                *start_session(persona_id, lang, request))  # fmt: skip

    def save_profile(persona_id: str, edited: str, request: gr.Request) -> tuple[str, str, str]:
        try:
            service.update_profile(caller(request), persona_id, edited or "{}")
        except Problem as exc:
            view, _ = profile_view(persona_id, request)
            return view, edited, f"⚠️ {exc}"
        return (*profile_view(persona_id, request), "✓ saved")

    def forget_me(persona_id: str, with_sessions: bool, request: gr.Request) -> tuple[Any, ...]:
        try:
            counts = service.forget(caller(request), persona_id, threads=bool(with_sessions))
        except Problem as exc:
            return gr.update(), gr.update(), f"⚠️ {exc}", gr.update()
        done = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "nothing was stored"
        return (*profile_view(persona_id, request), f"✓ forgotten: {done}", refresh_threads(request))

    def after_turn(details: str, persona_id: str, request: gr.Request) -> tuple[str, str, str, Any]:
        return render_details(details), *profile_view(persona_id, request), refresh_threads_keep(request)

    def open_insight(request: gr.Request) -> Any:
        """Opening the insight tab starts its live refresh (for a signed-in account only)."""
        caller(request)
        return gr.Timer(active=True)

    with gr.Blocks(title="PersonaGraph") as app:
        gr.Markdown("# PersonaGraph")
        signed_in = gr.Markdown()
        with gr.Tab("Persona chat"), gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Row():
                    persona = gr.Dropdown(choices, value=default, label="Persona", scale=2)
                    greet_lang = gr.Radio(LANGS, value="ko", label="Greeting language", scale=1)
                with gr.Row(equal_height=True):
                    sessions = gr.Dropdown(
                        choices=[], label="Continue a session", allow_custom_value=False, scale=3
                    )
                    new_btn = gr.Button("New session", scale=1)
                thread = gr.Textbox(label="Thread id", interactive=False, max_lines=1)
                chatbot = gr.Chatbot(height=460, label="Chat")
                with gr.Row(equal_height=True):
                    box = gr.Textbox(
                        placeholder="메시지를 입력하세요 / Type a message", show_label=False, scale=5
                    )
                    send_btn = gr.Button("Send", variant="primary", scale=1)
                    regen_btn = gr.Button("↻ Regenerate", scale=1)
                    stop_btn = gr.Button("■ Stop", scale=1)
                status = gr.Markdown()
                with gr.Accordion("Sources and safety for this turn", open=False):
                    details_view = gr.Markdown("_No turn yet._")
                    details = gr.Code(
                        value="{}", label="Raw turn details (JSON)", language="json", interactive=False,
                        wrap_lines=True, max_lines=20,
                    )  # fmt: skip
            with gr.Column(scale=2):
                with gr.Accordion("What the persona remembers about you", open=True):
                    profile_md = gr.Markdown()
                    profile_json = gr.Code(
                        value="{}", label="Your profile (edit the JSON, then Save)", language="json",
                        interactive=True, lines=6, max_lines=20,
                    )  # fmt: skip
                    with gr.Row():
                        save_btn = gr.Button("Save profile", size="sm")
                        forget_btn = gr.Button("Forget me", variant="stop", size="sm")
                    forget_sessions = gr.Checkbox(
                        value=False, label="Forget me also deletes my chat sessions"
                    )
                    profile_status = gr.Markdown()
                with gr.Accordion("Import a character card", open=False):
                    gr.Markdown(
                        "Upload a **Character Card V2** (`chara_card_v2`) as `.json` or a `.png` card. "
                        "It becomes a new persona of your own; its character book becomes the persona's "
                        "knowledge."
                    )
                    card_file = gr.File(label="Card file", file_types=[".json", ".png"], type="filepath")
                    overwrite = gr.Checkbox(value=False, label="Replace my persona with the same id")
                    import_status = gr.Markdown()

            outputs = [chatbot, box, thread, details, status]
            inputs = [box, chatbot, persona, thread]
            after_outputs = [details_view, profile_md, profile_json, sessions]
            session_outputs = [chatbot, thread, status, profile_md, profile_json]
            send_btn.click(send, inputs, outputs, api_name="send").then(
                after_turn, [details, persona], after_outputs, api_visibility="private"
            )
            box.submit(send, inputs, outputs, api_visibility="private").then(
                after_turn, [details, persona], after_outputs, api_visibility="private"
            )
            regen_btn.click(regenerate, [chatbot, persona, thread], outputs, api_name="regenerate").then(
                after_turn, [details, persona], after_outputs, api_visibility="private"
            )
            stop_btn.click(stop, [thread], [status], api_name="stop")
            new_btn.click(start_session, [persona, greet_lang], session_outputs, api_name="new_session")
            persona.input(start_session, [persona, greet_lang], session_outputs, api_visibility="private")
            greet_lang.input(
                regreet, [persona, greet_lang, thread, chatbot], [chatbot], api_visibility="private"
            )
            sessions.input(
                load_thread, [sessions], [chatbot, thread, persona, status], api_visibility="private"
            ).then(profile_view, [persona], [profile_md, profile_json], api_visibility="private")
            card_file.upload(
                import_uploaded, [card_file, overwrite, greet_lang],
                [persona, import_status, *session_outputs], api_name="import_card",
            )  # fmt: skip
            save_btn.click(
                save_profile, [persona, profile_json], [profile_md, profile_json, profile_status],
                api_name="update_profile",
            )  # fmt: skip
            forget_btn.click(
                forget_me, [persona, forget_sessions], [profile_md, profile_json, profile_status, sessions],
                api_name="forget",
            )  # fmt: skip
            app.load(
                on_load, [persona, greet_lang], [signed_in, persona, sessions, *session_outputs],
                api_visibility="private",
            )  # fmt: skip
        build_twins_tabs(accounts)
        with gr.Tab("Customer insight") as insight_tab:
            insight_timer = build_insight_tab(accounts, insight)
        insight_tab.select(open_insight, None, [insight_timer], api_visibility="private")
        with gr.Tab("CRM messages"):
            build_crm_tab(accounts, crm)
    return app
