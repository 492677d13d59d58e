"""The Gradio app: one tab per job. The chat tab streams replies from `persona_chat`.

personagraph app            (or: make run)  ->  http://127.0.0.1:7860  (served by `personagraph.api`)

Chat tab: persona picker with Character Card V2 import, new/continue session with a greeting
(returning fans are greeted by name), streamed replies, Regenerate (the earlier reply stays as an
alternative) and Stop (keeping the partial reply or not), 👍/👎 with a reason on any reply, editing an
earlier message and switching between branches, generation settings in an advanced panel, the
sources, safety decisions, timings and token usage of each turn, the persona's profile card, and a
panel where the fan can read, edit or delete what the persona remembers about them.

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
from personagraph.services.chat import ChatService, TurnEvent, validate_request, validate_settings
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


def persona_card(persona_id: str, lang: str = "ko") -> str:
    """Who the persona is and what they like to talk about, as Markdown (card text shown as plain text)."""
    persona = load_persona(persona_id)
    name = _plain(persona.display_name(lang), 100)
    other = persona.name if lang == "ko" else persona.name_ko
    title = f"**{name}**" + (
        f" ({_plain(other, 100)})" if other and other != persona.display_name(lang) else ""
    )
    role = " · ".join(_plain(str(x), 100) for x in (persona.position, persona.group, persona.age) if x)
    lines = [f"{title}  \n{role}" if role else title]
    if persona.personality:
        lines.append("**Personality:** " + _plain(", ".join(persona.personality), 300))
    if persona.biography:
        lines.append(_plain(persona.biography, 400))
    topics = [*persona.opinions, *persona.habits][:6]
    if topics:
        lines.append("**Likes to talk about**")
        lines += [f"- {_plain(t, 160)}" for t in topics]
    if persona.speech.signature_expressions:
        lines.append(
            "**Says things like:** " + _plain(" / ".join(persona.speech.signature_expressions[:3]), 200)
        )
    return "\n\n".join(lines)


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
        "timings": result.timings,
        "usage": {k: v for k, v in result.usage.items() if k != "calls"},
        "model_calls": result.usage.get("calls", []),
    }


def _plain(text: str, limit: int = 300) -> str:
    """One line of text safe to show inside Markdown: headings dropped, markup characters escaped."""
    text = " ".join(re.sub(r"(?m)^\s*#+\s*", "", text).split())[:limit]
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


def _settings(temperature: float | None, top_p: float | None, max_tokens: float | None) -> dict[str, Any]:
    """The advanced panel's settings that were filled in (an empty box keeps the default)."""
    given = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    settings = {k: v for k, v in given.items() if v is not None and v != ""}
    if isinstance(settings.get("max_tokens"), float) and float(settings["max_tokens"]).is_integer():
        settings["max_tokens"] = int(settings["max_tokens"])
    return settings


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
    timings = data.get("timings") or {}
    if timings:
        nodes = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in (timings.get("nodes") or {}).items())
        first = timings.get("first_token_s")
        lines.append(
            f"\n**Timings:** first text {first if first is not None else '-'} s, turn {timings.get('total_s')} s"
            f"  \n{nodes}"
        )
    usage = data.get("usage") or {}
    if usage:
        tokens_in = usage.get("input_tokens")
        lines.append(
            f"**Tokens:** {tokens_in if tokens_in is not None else 'n/a'} in, {usage.get('output_tokens')} out, "
            f"{usage.get('model_calls')} model calls"
        )
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
                done = "■ stopped: the partial reply was kept" if event.result.stopped else "✓"
                yield history, "", thread_id, details, done

    def send(
        message: str,
        history: ChatHistory,
        persona_id: str,
        thread_id: str,
        request: gr.Request,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: float | None = None,
    ) -> Iterator[SendOutput]:
        """Stream one chat turn: (history, message box, thread id, details JSON, status).
        The advanced panel's settings (empty: the defaults) apply to this reply."""
        history = list(history or [])
        thread_id = thread_id or uuid.uuid4().hex
        try:
            settings = _settings(temperature, top_p, max_tokens)
            turn = validate_request(
                message=message or "", thread_id=thread_id, persona_id=persona_id, **settings
            )
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
        history: ChatHistory,
        persona_id: str,
        thread_id: str,
        request: gr.Request,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: float | None = None,
    ) -> Iterator[SendOutput]:
        """Write a new reply to the last fan message and stream it in place of the old one (which
        stays as an alternative: see Branches)."""
        history = list(history or [])
        try:
            if not thread_id:
                raise ValueError("thread_id: no session yet; send a message first")
            fan = caller(request)
            settings = validate_settings(**_settings(temperature, top_p, max_tokens))
            events = service.regenerate(fan, thread_id, persona_id=persona_id or None, settings=settings)
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

    def stop(thread_id: str, request: gr.Request, keep_partial: bool = False) -> str:
        """Stop the reply being written: the partial reply is kept (the box ticked) or the turn is
        undone and the message returns to the box."""
        if not thread_id:
            return "nothing to stop"
        try:
            stopped = service.stop(caller(request), thread_id, keep_partial=bool(keep_partial))
        except Problem as exc:
            return f"⚠️ {exc}"
        return "stopping…" if stopped else "nothing to stop"

    def edit_message(
        message_id: str | None,
        text: str,
        persona_id: str,
        thread_id: str,
        request: gr.Request,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: float | None = None,
    ) -> Iterator[SendOutput]:
        """Replace an earlier fan message and stream the conversation on from there (the later turns
        stay as another branch)."""
        try:
            if not thread_id or not message_id:
                raise ValueError("message_id: choose one of your earlier messages to edit")
            fan = caller(request)
            settings = validate_settings(**_settings(temperature, top_p, max_tokens))
            history = _to_history(service, fan, thread_id)
            ids = [str(m.id) for m in service.history(fan, thread_id) if m.type in ("human", "ai")]
            events = service.edit(fan, thread_id, message_id, text or "", persona_id=persona_id or None,
                                  settings=settings)  # fmt: skip
        except Problem as exc:
            yield gr.update(), gr.update(), thread_id, "{}", f"⚠️ {exc}"  # type: ignore[misc]  # unchanged chat
            return
        index = ids.index(message_id)
        shown = history[:index] + [
            {"role": "user", "content": " ".join((text or "").split())},
            {"role": "assistant", "content": ""},
        ]

        def kept(error: str) -> SendOutput:
            return history, "", thread_id, "{}", f"⚠️ {error} — the conversation was left as it was."

        yield from run_turn(shown, events, thread_id, kept)

    def thread_tools(thread_id: str, request: gr.Request) -> tuple[Any, Any]:
        """The thread's fan messages (to edit one) and its branches (to switch), as dropdown choices."""
        if not thread_id:
            return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
        try:
            fan = caller(request)
            messages = [m for m in service.history(fan, thread_id) if m.type == "human"]
            branches = service.branches(fan, thread_id)
        except Problem:
            return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
        edits = [(f"{i}. {str(m.content)[:60]}", str(m.id)) for i, m in enumerate(messages, 1)]
        rows = [
            (f"{'● ' if b['current'] else ''}{b['messages']} messages · “{b['reply'][:50]}” · {str(b['updated_at'])[:16]}",
             b["branch_id"])
            for b in branches
        ]  # fmt: skip
        return gr.update(choices=edits, value=None), gr.update(choices=rows, value=None)

    def switch_branch(thread_id: str, branch_id: str | None, request: gr.Request) -> tuple[Any, str]:
        """Show another branch of the thread (an earlier version of the conversation) and continue it."""
        try:
            if not thread_id or not branch_id:
                raise ValueError("branch_id: choose a branch of this session")
            fan = caller(request)
            service.switch_branch(fan, thread_id, branch_id)
            return _to_history(service, fan, thread_id), "✓ switched branch"
        except Problem as exc:
            return gr.update(), f"⚠️ {exc}"

    def rate_reply(
        history: ChatHistory, thread_id: str, reason: str, like: gr.LikeData, request: gr.Request
    ) -> str:
        """👍/👎 on a reply (with the optional reason): stored for the signed-in account."""
        try:
            if not thread_id:
                raise ValueError("thread_id: no session yet; the greeting cannot be rated")
            fan = caller(request)
            messages = [m for m in service.history(fan, thread_id) if m.type in ("human", "ai")]
            # The chat shows the thread's messages last (a greeting may come first): align from the end.
            index = like.index if isinstance(like.index, int) else like.index[0]
            position = index - (len(history or []) - len(messages))
            if not 0 <= position < len(messages) or messages[position].type != "ai":
                raise ValueError("message_id: only the persona's replies in this session can be rated")
            rating = "up" if like.liked is True else "down" if like.liked is False else "none"
            service.rate(fan, thread_id, str(messages[position].id), rating, reason or "")
        except Problem as exc:
            return f"⚠️ {exc}"
        return {"up": "👍 thanks!", "down": "👎 noted, thanks", "none": "rating removed"}[rating]

    def show_persona(persona_id: str, lang: str, request: gr.Request) -> str:
        """The persona's profile card, for a persona the signed-in account may use."""
        if not persona_id:
            return ""
        try:
            service.persona(caller(request), persona_id)
            return persona_card(persona_id, lang or "ko")
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
                with gr.Row(equal_height=True):
                    keep_partial = gr.Checkbox(value=True, label="Stop keeps the partial reply", scale=1)
                    reason = gr.Textbox(
                        label="Why? (optional, sent with 👍/👎 on a reply)",
                        max_lines=1,
                        max_length=500,
                        scale=3,
                    )
                status = gr.Markdown()
                with gr.Accordion("Edit an earlier message / branches", open=False):
                    with gr.Row(equal_height=True):
                        edit_pick = gr.Dropdown(choices=[], label="Your message to edit", scale=2)
                        edit_text = gr.Textbox(label="New text", max_lines=3, scale=3)
                        edit_btn = gr.Button("Edit and continue", scale=1)
                    with gr.Row(equal_height=True):
                        branch_pick = gr.Dropdown(
                            choices=[], label="Branches of this session (● current)", scale=5
                        )
                        branch_btn = gr.Button("Switch", scale=1)
                with gr.Accordion("Advanced: generation settings (empty = default)", open=False), gr.Row():
                    temperature = gr.Number(
                        value=None, label="Temperature (0 to 2)", minimum=0, maximum=2, step=0.05
                    )
                    top_p = gr.Number(
                        value=None, label="Top p (above 0, up to 1)", minimum=0, maximum=1, step=0.05
                    )
                    max_tokens = gr.Number(
                        value=None,
                        label="Max tokens (1 to 4096)",
                        minimum=1,
                        maximum=4096,
                        step=16,
                        precision=0,
                    )
                with gr.Accordion("Sources and safety for this turn", open=False):
                    details_view = gr.Markdown("_No turn yet._")
                    details = gr.Code(
                        value="{}", label="Raw turn details (JSON)", language="json", interactive=False,
                        wrap_lines=True, max_lines=20,
                    )  # fmt: skip
            with gr.Column(scale=2):
                with gr.Accordion("About the persona", open=True):
                    persona_md = gr.Markdown()
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
            generation = [temperature, top_p, max_tokens]
            inputs = [box, chatbot, persona, thread, *generation]
            tools = [edit_pick, branch_pick]
            after_outputs = [details_view, profile_md, profile_json, sessions]
            session_outputs = [chatbot, thread, status, profile_md, profile_json]
            send_btn.click(send, inputs, outputs, api_name="send").then(
                after_turn, [details, persona], after_outputs, api_visibility="private"
            ).then(thread_tools, [thread], tools, api_visibility="private")
            box.submit(send, inputs, outputs, api_visibility="private").then(
                after_turn, [details, persona], after_outputs, api_visibility="private"
            ).then(thread_tools, [thread], tools, api_visibility="private")
            regen_btn.click(
                regenerate, [chatbot, persona, thread, *generation], outputs, api_name="regenerate"
            ).then(after_turn, [details, persona], after_outputs, api_visibility="private").then(
                thread_tools, [thread], tools, api_visibility="private"
            )
            stop_btn.click(stop, [thread, keep_partial], [status], api_name="stop")
            edit_btn.click(
                edit_message, [edit_pick, edit_text, persona, thread, *generation], outputs, api_name="edit"
            ).then(after_turn, [details, persona], after_outputs, api_visibility="private").then(
                thread_tools, [thread], tools, api_visibility="private"
            )
            branch_btn.click(
                switch_branch, [thread, branch_pick], [chatbot, status], api_name="switch_branch"
            ).then(thread_tools, [thread], tools, api_visibility="private")
            chatbot.like(rate_reply, [chatbot, thread, reason], [status], api_name="rate")
            persona.change(show_persona, [persona, greet_lang], [persona_md], api_visibility="private")
            new_btn.click(start_session, [persona, greet_lang], session_outputs, api_name="new_session")
            persona.input(start_session, [persona, greet_lang], session_outputs, api_visibility="private")
            greet_lang.input(
                regreet, [persona, greet_lang, thread, chatbot], [chatbot], api_visibility="private"
            )
            sessions.input(
                load_thread, [sessions], [chatbot, thread, persona, status], api_visibility="private"
            ).then(profile_view, [persona], [profile_md, profile_json], api_visibility="private").then(
                thread_tools, [thread], tools, api_visibility="private"
            )
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
            ).then(show_persona, [persona, greet_lang], [persona_md], api_visibility="private")  # fmt: skip
        build_twins_tabs(accounts)
        with gr.Tab("Customer insight") as insight_tab:
            insight_timer = build_insight_tab(accounts, insight)
        insight_tab.select(open_insight, None, [insight_timer], api_visibility="private")
        with gr.Tab("CRM messages"):
            build_crm_tab(accounts, crm)
    return app
