"""The FastAPI app: every job as JSON routes under /api, health and readiness, docs at /docs, and the
Gradio app mounted at / on the same server (one process, one port).

    app = create_app(accounts, chat, insight, crm, ui=build_app(chat, accounts))

Routes are registered before Gradio is mounted, so /api, /health, /ready and /docs are the API's.
Every route has a name and tags (the authorization tests read the route list); the routes in
`PUBLIC_ROUTES` need no sign-in, every other one takes its caller from the bearer token.
"""

from __future__ import annotations

from collections.abc import Mapping

import gradio as gr
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from personagraph.accounts.store import AccountStore
from personagraph.api import chat, crm, health, insight, personas, session, twins
from personagraph.api import metrics as metrics_api
from personagraph.api.deps import Services
from personagraph.api.errors import install_error_handlers
from personagraph.api.health import READY_CHECKS_KEY, ReadyCheck
from personagraph.api.limits import BodyLimitMiddleware, SignInClientMiddleware
from personagraph.services.chat import ChatService
from personagraph.services.crm import CrmService
from personagraph.services.insight import InsightService
from personagraph.serving.settings import get_settings

# Routes anyone may call (no token): liveness, readiness and signing in.
# /metrics: labels carry no personal data; METRICS_TOKEN, when set, guards it instead (api/metrics.py).
PUBLIC_ROUTES = frozenset({"health", "ready", "session_sign_in", "metrics"})
ROUTERS = (
    health.router,
    session.router,
    chat.router,
    personas.router,
    twins.router,
    crm.router,
    insight.router,
    metrics_api.router,
)
AUTH_MESSAGE = "PersonaGraph: sign in with your account (created with `personagraph accounts add`)."


def create_app(
    accounts: AccountStore,
    chat: ChatService,
    insight: InsightService | None = None,
    crm: CrmService | None = None,
    ui: gr.Blocks | None = None,
    *,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
) -> FastAPI:
    """The API over these services; with `ui`, that Gradio app is served at / (signed in the same way).

    `ready_checks` replaces the readiness checks (tests); by default /ready asks the chat model
    server and the stores.
    """
    app = FastAPI(
        title="PersonaGraph API",
        summary="Persona chat, digital twins, CRM messages and customer insight over HTTP.",
        description=(
            "Sign in with `POST /api/session` (or create an API token with `personagraph accounts "
            "token`) and send `Authorization: Bearer <token>`. Errors are JSON: "
            '`{"error": {"status", "field", "reason"}}`.'
        ),
        version="1.0",
    )
    extras = {READY_CHECKS_KEY: dict(ready_checks)} if ready_checks is not None else {}
    app.state.services = Services(accounts=accounts, chat=chat, insight=insight, crm=crm, extras=extras)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(SignInClientMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    metrics_api.install(app, ui=ui, insight=insight)  # /metrics, request ids, the run observer
    if ui is not None:
        gr.mount_gradio_app(
            app, ui, path="/", auth=accounts.gradio_auth if accounts.enabled else None,
            auth_message=AUTH_MESSAGE, max_file_size=get_settings().upload_max_bytes, footer_links=["api", "settings"],
        )  # fmt: skip
    return app


def api_routes(app: FastAPI) -> list[APIRoute]:
    """The API's own routes (not the docs, not the mounted Gradio app), for listings and tests.

    FastAPI keeps included routers nested (`app.routes` holds the routers); this lists their routes.
    """
    routes = (context.original_route for context in iter_route_contexts(app.routes))
    return [route for route in routes if isinstance(route, APIRoute)]
