"""`personagraph app`: the HTTP API and the Gradio app on one uvicorn server (one process, one port).

Start order: accounts (refuse a non-loopback host without any), what a first start needs
(`prepare`, which also starts the embedded model server), the services, the Gradio app, the API.
"""

from __future__ import annotations

import uvicorn

from personagraph.accounts.store import AccountStore, check_host
from personagraph.api.app import create_app
from personagraph.services.chat import ChatService
from personagraph.services.crm import CrmService
from personagraph.services.crm_jobs import CrmBatchResumer
from personagraph.services.insight import InsightService
from personagraph.services.prepare import prepare
from personagraph.services.twins.runs import RunResumer
from personagraph.serving.logs import configure_logging
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import configure_tracing, flush_tracing
from personagraph.ui.app import build_app

GRADIO_CONCURRENCY = 4  # Gradio events at once (each holds a worker thread while a reply streams)


def serve(host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve until interrupted. Raises AccountConfigError (a ValueError) for bad AUTH_* settings or host."""
    settings = get_settings()
    configure_logging()  # LOG_FORMAT, LOG_LEVEL: uvicorn's lines too (log_config=None below)
    accounts = AccountStore()
    check_host(accounts, host)
    print(f"PersonaGraph: state in {settings.personagraph_home}")
    count = len(accounts.list())
    print(
        f"sign-in: required ({count} account{'s' if count != 1 else ''})"
        if accounts.enabled
        else "sign-in: none (open mode, 127.0.0.1 only; add accounts with `personagraph accounts add`)"
    )
    for line in prepare(start_model=True):
        print(line)
    tracing = configure_tracing()  # LANGSMITH_TRACING + LANGSMITH_API_KEY (environment or .env)
    print(f"tracing: LangSmith project {settings.langsmith_project!r}" if tracing else "tracing: off")
    chat = ChatService()
    # One insight and one CRM service for the app and the API. Insight: the configured Redis, else an
    # in-process Redis with simulated orders (started on first use); question threads live in the
    # chat's memory store, per account.
    insight = InsightService.live(store=chat.store)
    crm = CrmService()
    blocks = build_app(chat, accounts, insight, crm).queue(
        default_concurrency_limit=GRADIO_CONCURRENCY, max_size=settings.ui_queue_max_size
    )
    app = create_app(accounts, chat, insight, crm, blocks)
    print(f"app: http://{_url_host(host)}:{port}/   API docs: http://{_url_host(host)}:{port}/docs")
    # Twin runs and CRM batches left "running" by a process that died (this one before a restart, or another replica)
    # resume here once their lease has lapsed.
    resumer = RunResumer().start()
    batch_resumer = CrmBatchResumer(crm).start()  # CRM batches whose worker died
    try:
        uvicorn.run(
            app, host=host, port=port, log_level="warning", log_config=None, timeout_graceful_shutdown=5
        )
    finally:
        batch_resumer.stop()
        resumer.stop()
        insight.close()
        accounts.close()
        flush_tracing()  # runs still queued for LangSmith


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
