"""The stub model server as a process: the OpenAI client streams from it with the configured timing,
and a SIGKILLed stub comes back on the same port."""

from __future__ import annotations

import time

import openai
import pytest

from personagraph.serving.stub_model import StubModelServer

pytestmark = pytest.mark.integration


def test_stub_process_streams_is_killed_and_restarts() -> None:
    with StubModelServer(first_token_delay_s=0.05, tokens_per_s=100, reply_tokens=10) as stub:
        env = stub.env()
        assert env["LLM_BASE_URL"] == stub.base_url and env["LLM_BACKEND"] == "vllm"
        client = openai.OpenAI(base_url=stub.base_url, api_key=env["LLM_API_KEY"], max_retries=0)
        started = time.perf_counter()
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model=env["LLM_MODEL"], stream=True, messages=[{"role": "user", "content": "hi pgm00000001"}]
            )
            if chunk.choices
        ]
        assert "".join(pieces).startswith("pgm00000001") and time.perf_counter() - started >= 0.05 + 9 / 100
        record = stub.stats()["records"][0]
        assert record["tokens"] == 10 and record["first_token_s"] >= 0.05

        stub.kill()
        assert not stub.running
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
        stub.start()
        reply = client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert stub.stats()["requests"] == 1  # a fresh process
